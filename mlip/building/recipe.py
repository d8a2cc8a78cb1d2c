"""Running a recipe (``mlip dataset build``): starting structure → generators → MD exploration →
labelling by the oracle → an extxyz (optionally also an on-disk dataset) and a provenance file.

Recipe settings (``configs/dataset/*.yaml``, all overridable)::

    structure: {build: bulk, args: {...}, repeat: [...], substitute: {...}}   # or {file: ...}
    generators: {strain: {count: 10, max_strain: 0.05}, vacancy: {...}, ...}   # null/false: off
    md: {temperatures: [300, 900], pressures: [null], trajectories: 1, steps: 200, interval: 20,
         equilibration: 20, timestep_fs: 2.0, calculator: oracle}             # or a model file / run dir
    scale: 1.0        # multiplies every count (0.25 for a quick try)
    seed: 0, workers: 1, output: <name>.extxyz, store: false, cache_dir: <output>.cache
"""

import hashlib
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from ase import Atoms

from mlip.building.generators import GENERATORS, SCALED, run_md
from mlip.building.labelling import LabelCache, attach, label_all
from mlip.building.oracles import build_oracle, oracle_key, package_version
from mlip.building.structures import build_structure
from mlip.errors import ConfigError
from mlip.fileio import atomic_path, write_json

log = logging.getLogger(__name__)


def _scaled(params: Dict[str, Any], scale: float) -> Dict[str, Any]:
    return {k: max(1, int(round(v * scale))) if k in SCALED and isinstance(v, (int, float)) else v
            for k, v in params.items()}


def generate(cfg: Dict[str, Any], base: Atoms, rng: np.random.Generator) -> List[Atoms]:
    """Unlabelled candidates of every enabled generator, in the order of ``cfg["generators"]``."""
    out: List[Atoms] = []
    for name, params in (cfg.get("generators") or {}).items():
        if params in (None, False):
            continue
        if name not in GENERATORS:
            raise ConfigError(f"generators.{name}: unknown generator; known: {', '.join(GENERATORS)} (and md)")
        params = {} if params is True else _scaled(dict(params), float(cfg.get("scale", 1.0)))
        frames = GENERATORS[name](base, params, rng)
        log.info("generator %s: %d structures", name, len(frames))
        out += frames
    return out


def _md_tasks(cfg: Dict[str, Any], base: Atoms) -> List[Dict[str, Any]]:
    md = cfg.get("md")
    if not md:
        return []
    md = _scaled(dict(md), float(cfg.get("scale", 1.0)))
    if md.get("steps", 0) < 1:
        return []
    tasks: List[Dict[str, Any]] = []
    for temperature in md.get("temperatures", [300]):
        for pressure in md.get("pressures", [None]) or [None]:
            for k in range(int(md.get("trajectories", 1))):
                seed = int(cfg.get("seed", 0)) * 1000 + len(tasks)
                group = f"md_{temperature:g}K" + (f"_{pressure:g}GPa" if pressure is not None else "") + f"_{k}"
                tasks.append({"temperature": float(temperature), "pressure": pressure, "steps": int(md["steps"]),
                              "interval": int(md.get("interval", 10)), "equilibration": int(md.get("equilibration", 0)),
                              "timestep_fs": float(md.get("timestep_fs", 2.0)), "seed": seed, "group": group,
                              "calculator": md.get("calculator", "oracle")})
    return tasks


def _md_key(task: Dict[str, Any], base: Atoms, oracle: str) -> str:
    from mlip.building.labelling import structure_hash

    return "md:" + hashlib.sha256((structure_hash(base, oracle) + json.dumps(task, sort_keys=True, default=str))
                                  .encode()).hexdigest()


def _run_md_task(args) -> List[Dict[str, Any]]:
    """One trajectory in a worker: returns its snapshots as JSON-able dicts (labels by the MD
    calculator when it is the oracle, none when it is a model)."""
    task, base, oracle_cfg = args
    if task["calculator"] == "oracle":
        calc = build_oracle(oracle_cfg)
    else:
        from mlip.calculator import MLIPCalculator

        calc = MLIPCalculator(str(task["calculator"]))
    frames = run_md(base, calc, task["temperature"], task["pressure"], task["steps"], task["interval"],
                    task["equilibration"], task["timestep_fs"], task["seed"], task["group"])
    out = []
    for f in frames:
        d = {"numbers": f.numbers.tolist(), "positions": f.positions.tolist(), "cell": f.cell[:].tolist(),
             "pbc": f.pbc.tolist(), "info": dict(f.info)}
        if task["calculator"] == "oracle":
            d["labels"] = {k: np.asarray(v).tolist() for k, v in f.calc.results.items()}
        out.append(d)
    return out


def explore(cfg: Dict[str, Any], base: Atoms, oracle_cfg: Dict[str, Any], cache_dir: str,
            workers: int) -> List[Atoms]:
    """MD snapshots of every (temperature, pressure, trajectory), trajectories in parallel and
    cached whole (a killed build does not rerun finished trajectories)."""
    tasks = _md_tasks(cfg, base)
    if not tasks:
        return []
    key = oracle_key(oracle_cfg)
    cache = LabelCache(cache_dir)
    try:
        keys = [_md_key(t, base, key) for t in tasks]
        found = {k: cache.get(k) for k in keys}
        todo = [t for t, k in zip(tasks, keys) if found[k] is None]
        log.info("md: %d trajectories (%d cached)", len(tasks), len(tasks) - len(todo))
        if todo:
            jobs = [(t, base, oracle_cfg) for t in todo]
            results = (map(_run_md_task, jobs) if workers <= 1 else
                       ProcessPoolExecutor(min(workers, len(jobs))).map(_run_md_task, jobs))
            for t, snaps in zip(todo, results):
                k = _md_key(t, base, key)
                cache.put(k, {"frames": snaps})
                found[k] = {"frames": snaps}
    finally:
        cache.close()
    out = []
    for k in keys:
        for d in found[k]["frames"]:  # type: ignore[index]
            atoms = Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
            atoms.info.update(d["info"])
            if "labels" in d:
                atoms = attach(atoms, d["labels"], str(oracle_cfg.get("name", "oracle")), key)
            out.append(atoms)
    return out


def build_dataset(cfg: Dict[str, Any], progress: Optional[bool] = None) -> Dict[str, Any]:
    """Run the recipe ``cfg`` (the composed ``dataset_build`` config as a dict); returns the
    provenance written beside the output."""
    import ase
    import ase.io

    from mlip import __version__

    t0 = time.time()
    output = Path(cfg.get("output") or f"{cfg.get('name', 'dataset')}.extxyz")
    cache_dir = str(cfg.get("cache_dir") or f"{output}.cache")
    oracle_cfg = dict(cfg["oracle"])
    build_oracle(oracle_cfg)  # a missing package or bad setting fails now, not in a worker
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    base = build_structure(cfg["structure"], rng)
    workers = int(cfg.get("workers", 1))
    candidates = generate(cfg, base, rng)
    md_frames = explore(cfg, base, oracle_cfg, cache_dir, workers)
    unlabelled_md = [f for f in md_frames if f.calc is None]
    frames, failures, counts = label_all(candidates + unlabelled_md, oracle_cfg, cache_dir, workers, progress)
    frames += [f for f in md_frames if f.calc is not None]
    kept = [f for f in frames if f is not None]
    if not kept:
        raise ConfigError(f"the oracle labelled no structure ({len(failures)} failures; first: "
                          f"{failures[0]['error'] if failures else 'none'})")
    for f in kept:
        f.info["recipe"] = str(cfg.get("name", "recipe"))
    with atomic_path(output) as tmp:
        ase.io.write(str(tmp), kept, format="extxyz")
    by_type: Dict[str, int] = {}
    for f in kept:
        by_type[f.info["config_type"]] = by_type.get(f.info["config_type"], 0) + 1
    provenance = {
        "output": str(output), "recipe": cfg, "oracle": {"name": oracle_cfg.get("name"),
                                                         "settings": oracle_cfg.get("calculator"),
                                                         "settings_hash": oracle_key(oracle_cfg),
                                                         "package": package_version(oracle_cfg)},
        "versions": {"mlip": __version__, "ase": ase.__version__, "numpy": np.__version__},
        "seed": int(cfg.get("seed", 0)), "n_frames": len(kept), "n_atoms": sum(len(f) for f in kept),
        "frames_by_config_type": by_type, "groups": len({f.info["group"] for f in kept}),
        "labels": {**counts, "md_snapshots_labelled_in_md": len(md_frames) - len(unlabelled_md)},
        "failures": failures, "wall_time_s": time.time() - t0,
    }
    if cfg.get("store"):
        from mlip.data.store import preprocess

        store = output.with_suffix(".mlipdata")
        preprocess([str(output)], str(store), cutoff=float(cfg.get("store_cutoff", 5.0)), workers=workers,
                   progress=progress)
        provenance["store"] = str(store)
    write_json(f"{output}.provenance.json", provenance)
    return provenance
