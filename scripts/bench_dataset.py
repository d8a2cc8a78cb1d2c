"""Benchmark (issue 13): is a recipe's training set better than the same number of MD frames?
And how fast does the oracle label (frames/s with 1 and 2 processes)? Appends a dated section to
docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_dataset.py --workdir /tmp/mlip-bench2/dataset --epochs 100

1. ``recipe``: ``mlip dataset build cuag_emt scale=<scale> seed=0`` (Cu-Ag, EMT): N frames besides
   the isolated atoms (which only give E0).
2. ``md_only``: the same recipe with every generator off and only ``md`` (same temperatures, same
   starting alloy, more trajectories), N frames drawn at random (seeded) from its snapshots. E0
   from the recipe's isolated atoms (``data.e0_file``), so both models have the same E0.
3. ``test``: the recipe again with ``seed=1`` (another alloy configuration, other strains,
   rattles, defects, MD seeds) and ``generators.dimer.r_max=4.7`` (dimer distances between the
   training ones); frames identical to a training frame are dropped (the shortest dimers).
4. The same model (``model=invariant experiment=quick`` sizes) trained the same number of epochs
   on each set (random 10% validation split, same seed), tested on ``test`` with ``data.test``:
   MAE per config_type (``metrics.json``: best.ckpt, lowest validation loss; and last.ckpt, the
   fixed epoch budget, evaluated here) and per category (defects, surfaces, other phases...).
   A rerun with the same ``--workdir`` reuses finished runs and cached labels.
5. Labelling throughput: the same structures (the test set's, labels dropped) labelled by
   ``label_all`` with 1 and 2 worker processes into fresh caches; EMT, and GFN2-xTB (tblite) on
   rattled ethanol when tblite is importable.
"""

import argparse
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import append_section, commit, machine  # noqa: E402

#: categories of config_type for the summary (prefix match)
CATEGORIES = {
    "defects (vacancy, interstitial)": ("vacancy", "interstitial"),
    "surfaces (100, 111)": ("surface_",),
    "other phases (bcc, hcp)": ("phase_",),
    "dimers": ("dimer",),
    "bulk strain and rattle": ("strain_", "rattle"),
    "MD (300, 900, 1500 K)": ("md_",),
}


#: finished runs of an earlier invocation with the same --workdir, reused (said in the section)
REUSED: list = []


def recipe_cfg(recipe: str, overrides: list, workdir: Path, name: str) -> dict:
    from mlip.cli.dataset import compose_recipe

    return compose_recipe(recipe, [*overrides, f"output={workdir / (name + '.extxyz')}",
                                   f"cache_dir={workdir / 'cache'}"])


def build(cfg: dict) -> tuple:
    import ase.io

    from mlip.building.recipe import build_dataset

    prov = build_dataset(cfg, progress=False)
    return list(ase.io.read(prov["output"], ":")), prov


def is_isolated(atoms) -> bool:
    return atoms.info.get("config_type") == "isolated_atom"


def write(path: Path, frames) -> Path:
    import ase.io

    ase.io.write(str(path), list(frames), format="extxyz")
    return path


def counts_by_type(frames) -> dict:
    out: dict = {}
    for f in frames:
        ct = f.info.get("config_type", "default")
        n, atoms = out.get(ct, (0, 0))
        out[ct] = (n + 1, atoms + len(f))
    return out


def train(name: str, train_file: Path, test_file: Path, extra: list, epochs: int, workdir: Path) -> dict:
    run_dir = workdir / f"run_{name}"
    if (run_dir / "metrics.json").exists():
        REUSED.append(f"run_{name}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = [sys.executable, str(REPO / "train.py"), "data=custom", f"data.train={train_file}",
               f"data.test={test_file}", "model=invariant", "experiment=quick", f"trainer.max_epochs={epochs}",
               "seed=0", "export=false", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *extra]
        t0 = time.time()
        with open(workdir / f"train_{name}.log", "w") as log:
            res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
        if res.returncode != 0:
            raise RuntimeError(f"training {name} failed: see {workdir / f'train_{name}.log'}")
        print(f"trained {name} in {time.time() - t0:.0f} s", flush=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["run_dir"] = str(run_dir)
    metrics["test_last"] = evaluate_checkpoint(run_dir / "checkpoints" / "last.ckpt", test_file)
    metrics["best_epoch"] = best_epoch(workdir / f"train_{name}.log")
    return metrics


def best_epoch(log: Path) -> tuple:
    """(epoch of the lowest val/loss, its val/loss, the last epoch's val/loss) from the run's log lines."""
    import re

    rows = [(float(m.group(2)), int(m.group(1))) for m in
            (re.search(r"epoch (\d+)/\d+ .*val loss ([0-9.e+-]+)", line) for line in log.read_text().splitlines())
            if m]
    best = min(rows)
    return best[1], best[0], rows[-1][0]


def evaluate_checkpoint(ckpt: Path, test_file: Path) -> dict:
    """Test metrics (metrics.json's units and keys, per config_type too) of a checkpoint's model."""
    from functools import partial

    from torch.utils.data import DataLoader

    from mlip.data.dataset import GraphDataset
    from mlip.data.store.reader import read_any
    from mlip.models.contract import species_of
    from mlip.nn.batch import collate
    from mlip.training.checkpoint_load import model_from_checkpoint
    from mlip.training.evaluate import evaluate

    model = model_from_checkpoint(str(ckpt))
    frames = [f for f in read_any(str(test_file)) if not f.is_isolated_atom]
    config_types = sorted({f.config_type for f in frames})
    cutoff = float(getattr(model, "energy_model", model).cutoff)
    ds = GraphDataset(frames, cutoff, {z: k for k, z in enumerate(species_of(model))}, config_types)
    loader = DataLoader(ds, batch_size=16, collate_fn=partial(collate, dtype=next(model.parameters()).dtype))
    metrics, _ = evaluate(model, loader, config_types)
    return metrics


def category_mae(test_metrics: dict, counts: dict, prefixes: tuple, kind: str) -> float:
    """MAE over the config_types starting with ``prefixes``: energies weighted by frames, forces by atoms."""
    total = weight = 0.0
    for ct, (n_frames, n_atoms) in counts.items():
        key = f"{ct}/{kind}_mae"
        if ct.startswith(prefixes) and key in test_metrics:
            w = n_frames if kind == "energy" else n_atoms
            total += w * test_metrics[key]
            weight += w
    return total / weight if weight else float("nan")


def throughput(structures, oracle_cfg: dict, workers: int, cache: Path) -> dict:
    from mlip.building.labelling import label_all

    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    frames, failures, counts = label_all(structures, oracle_cfg, str(cache), workers, progress=False)
    seconds = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    return {"workers": workers, "structures": len(structures), "atoms": sum(len(s) for s in structures),
            "computed": counts["computed"], "failed": counts["failed"], "seconds": seconds,
            "frames_per_s": counts["computed"] / seconds}


def xtb_structures(n: int) -> tuple:
    """``n`` rattled ethanol molecules and the ethanol_xtb recipe's oracle settings (None without tblite)."""
    try:
        import tblite.ase  # noqa: F401
    except ImportError:
        return None, None
    import numpy as np

    from mlip.building.generators import rattle
    from mlip.building.structures import build_structure
    from mlip.cli.dataset import compose_recipe

    cfg = compose_recipe("ethanol_xtb", [])
    rng = np.random.default_rng(2)
    base = build_structure(cfg["structure"], rng)
    return rattle(base, {"count": n, "stdev": 0.05}, rng), dict(cfg["oracle"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/mlip-bench-dataset")
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the training recipe")
    parser.add_argument("--test-scale", type=float, default=1.0, help="scale of the test recipe (seed=1)")
    parser.add_argument("--epochs", type=int, default=100, help="training epochs, both models")
    parser.add_argument("--label-n", type=int, default=200, help="structures for the EMT throughput")
    parser.add_argument("--xtb-n", type=int, default=40, help="ethanol structures for the xTB throughput (0: skip)")
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not append it")
    args = parser.parse_args()

    import numpy as np

    from mlip.building.labelling import structure_hash

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    revision = commit()  # at the start: the code that ran
    t_start = time.time()

    # 1. the recipe's set
    t0 = time.time()
    recipe_frames, recipe_prov = build(recipe_cfg("cuag_emt", [f"scale={args.scale}", "seed=0"], workdir, "recipe"))
    build_s = time.time() - t0
    n = sum(not is_isolated(f) for f in recipe_frames)
    isolated = [f for f in recipe_frames if is_isolated(f)]
    e0_file = write(workdir / "isolated.extxyz", isolated)
    print(f"recipe: {len(recipe_frames)} frames ({n} besides isolated atoms) in {build_s:.0f} s", flush=True)

    # 2. MD only, same N
    md_cfg = recipe_cfg("cuag_emt", [f"scale={args.scale}", "seed=0"], workdir, "md_pool")
    md_cfg["generators"] = {}
    md = md_cfg["md"]
    per_trajectory = (int(md["steps"]) - int(md.get("equilibration", 0))) // int(md.get("interval", 10))
    n_temps = len(md["temperatures"]) * len(md.get("pressures") or [None])
    trajectories = int(math.ceil(1.1 * n / (per_trajectory * n_temps)))
    md["trajectories"] = trajectories / float(md_cfg.get("scale", 1.0))  # the recipe multiplies it by scale
    md_pool, _ = build(md_cfg)
    if len(md_pool) < n:
        raise RuntimeError(f"MD gave {len(md_pool)} frames, fewer than the recipe's {n}")
    pick = sorted(np.random.default_rng(0).choice(len(md_pool), size=n, replace=False).tolist())
    md_frames = [md_pool[i] for i in pick]
    md_file = write(workdir / "md_only.extxyz", md_frames)
    print(f"md_only: {n} of {len(md_pool)} MD frames", flush=True)

    # 3. the independent test set
    test_overrides = [f"scale={args.test_scale}", "seed=1", "generators.dimer.r_max=4.7"]
    test_all, test_prov = build(recipe_cfg("cuag_emt", test_overrides, workdir, "test_full"))
    seen = {structure_hash(f, "") for f in recipe_frames + md_frames}
    test_frames = [f for f in test_all if not is_isolated(f) and structure_hash(f, "") not in seen]
    n_isolated_test = sum(is_isolated(f) for f in test_all)
    dropped = len(test_all) - len(test_frames) - n_isolated_test
    test_file = write(workdir / "test.extxyz", test_frames)
    test_counts = counts_by_type(test_frames)
    print(f"test: {len(test_frames)} frames ({n_isolated_test} isolated atoms and {dropped} identical to a "
          "training frame dropped)", flush=True)

    # 4. train both, test on the same frames
    results = {
        "recipe": train("recipe", workdir / "recipe.extxyz", test_file, [], args.epochs, workdir),
        "md_only": train("md_only", md_file, test_file, [f"data.e0_file={e0_file}"], args.epochs, workdir),
    }

    # 5. labelling throughput
    import ase.io

    structures = []
    for f in ase.io.read(str(test_file), ":")[: args.label_n]:
        f.calc = None
        structures.append(f)
    emt_cfg = dict(recipe_prov["recipe"]["oracle"])
    rates = {"emt": [throughput(structures, emt_cfg, w, workdir / f"tp_emt_{w}") for w in (1, 2)]}
    if args.xtb_n:
        mols, xtb_cfg = xtb_structures(args.xtb_n)
        if mols is not None:
            rates["xtb"] = [throughput(mols, xtb_cfg, w, workdir / f"tp_xtb_{w}") for w in (1, 2)]
    load_end = os.getloadavg()
    total_s = time.time() - t_start

    # the section
    command = "OMP_NUM_THREADS=1 python scripts/bench_dataset.py " + " ".join(sys.argv[1:])
    r, m = results["recipe"], results["md_only"]
    by_type_train = recipe_prov["frames_by_config_type"]
    labels = recipe_prov["labels"]
    lines = [f"\n## Training-set recipe against MD only (issue 13), {datetime.date.today().isoformat()}\n",
             f"- command: `{command}` (mlip commit {revision})",
             f"- machine: {machine()}; **shared** with two other engineers' jobs (load average "
             f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end); every job 1 thread, one at a time "
             f"(but the 2-process labelling rows); wall time of this invocation {total_s / 60:.0f} min"
             + (f" (reusing the finished training runs {', '.join(REUSED)} and the label cache of an earlier "
                "invocation with the same --workdir; their fit times are below)" if REUSED else ""),
             f"- recipe set: `mlip dataset build cuag_emt scale={args.scale:g} seed=0` (EMT, Cu-Ag, 32-atom "
             f"fcc cell with 30% Ag): {len(recipe_frames)} frames, {n} besides the {len(isolated)} isolated "
             f"atoms (built in {build_s:.0f} s: {labels['computed']} labels computed, {labels['cached']} from the "
             f"cache, {labels['md_snapshots_labelled_in_md']} during MD); by config_type: "
             + ", ".join(f"{k} {v}" for k, v in by_type_train.items()),
             f"- MD-only set: the same recipe with every generator off, {trajectories} "
             f"trajectories per temperature ({', '.join(f'{t:g}' for t in md['temperatures'])} K, "
             f"{md['steps']} steps of {md.get('timestep_fs', 2.0):g} fs, a snapshot every {md['interval']} after "
             f"{md.get('equilibration', 0)}): {n} of its {len(md_pool)} snapshots at random (seed 0); E0 from the "
             "recipe's isolated atoms (`data.e0_file`), so both models share E0",
             f"- test set: `mlip dataset build cuag_emt {' '.join(test_overrides)}` (another alloy configuration "
             f"and other random structures and MD seeds), without the isolated atoms and {dropped} frame(s) "
             f"identical to a training frame: {len(test_frames)} frames, "
             + ", ".join(f"{k} {v[0]}" for k, v in test_counts.items()),
             f"- training: `python train.py data=custom data.train=<set> data.test=test.extxyz model=invariant "
             f"experiment=quick trainer.max_epochs={args.epochs} seed=0` (MD-only: plus `data.e0_file=`), "
             f"{r.get('n_parameters')} parameters, random 10% validation split (seed 0); fit time "
             f"{r['fit_time_s']:.0f} s (recipe) and {m['fit_time_s']:.0f} s (MD only)",
             f"- two models per set: **best** = `checkpoints/best.ckpt` (lowest validation loss, what `metrics.json` "
             f"reports: epoch {r['best_epoch'][0]} for the recipe set, val/loss {r['best_epoch'][1]:.3g} against "
             f"{r['best_epoch'][2]:.3g} at the last epoch; epoch {m['best_epoch'][0]} for MD only) and **last** = "
             f"`checkpoints/last.ckpt` (epoch {args.epochs}, the fixed budget), evaluated on the same test frames\n",
             "MAE per test config_type, best / last (energy meV/atom, forces meV/Å):", "",
             "| test config_type | frames | atoms | E recipe | E MD only | F recipe | F MD only |",
             "|---|---|---|---|---|---|---|"]
    sel = {"best": (r["test"], m["test"]), "last": (r["test_last"], m["test_last"])}

    def cell(key: str, digits: int, which: int) -> str:
        vals = [sel[s][which].get(key) for s in ("best", "last")]
        return " / ".join("-" if v is None else f"{v:.{digits}f}" for v in vals)

    for ct, (nf, na) in sorted(test_counts.items()):
        lines.append(f"| {ct} | {nf} | {na} | {cell(f'{ct}/energy_mae', 1, 0)} | {cell(f'{ct}/energy_mae', 1, 1)} | "
                     f"{cell(f'{ct}/forces_mae', 0, 0)} | {cell(f'{ct}/forces_mae', 0, 1)} |")
    lines.append(f"| **all** | {len(test_frames)} | {sum(len(f) for f in test_frames)} | {cell('energy_mae', 1, 0)} | "
                 f"{cell('energy_mae', 1, 1)} | {cell('forces_mae', 0, 0)} | {cell('forces_mae', 0, 1)} |")
    lines += ["", "By category (energies weighted by frames, forces by atoms), best / last:", "",
              "| category | E recipe | E MD only | F recipe | F MD only | recipe better (best; last)? |",
              "|---|---|---|---|---|---|"]
    verdict: dict = {"best": {}, "last": {}}
    for cat, prefixes in CATEGORIES.items():
        vals = {s: [category_mae(d, test_counts, prefixes, k) for k in ("energy", "forces") for d in sel[s]]
                for s in sel}
        if all(math.isnan(v) for v in vals["best"]):
            continue
        said = []
        for s, v in vals.items():
            e_better, f_better = v[0] < v[1], v[2] < v[3]
            verdict[s][cat] = e_better and f_better
            said.append("yes" if verdict[s][cat] else
                        f"E {'yes' if e_better else 'no'}, F {'yes' if f_better else 'no'}")
        pair = [" / ".join(f"{vals[s][i]:.{1 if i < 2 else 0}f}" for s in sel) for i in range(4)]
        lines.append(f"| {cat} | {' | '.join(pair)} | {'; '.join(said)} |")
    goal_text = []
    for s in sel:
        goal = [c for c in verdict[s] if c.startswith(("defects", "surfaces", "other phases"))]
        met = all(verdict[s][c] for c in goal)
        missed = "" if met else f" (not on: {', '.join(c for c in goal if not verdict[s][c])})"
        goal_text.append(f"{s}: **{'met' if met else 'not met'}**{missed}")
    lines += ["", "Goal (recipe better on defects, surfaces and other phases, energy and forces): "
              + "; ".join(goal_text) + ".", "",
              "Labelling throughput (`label_all`, fresh cache each time; the same structures for 1 and 2 "
              "processes; with 2 processes both cores are used while the machine is shared, so the speed-up is a "
              "lower bound):", "",
              "| oracle | structures | atoms | processes | seconds | frames/s |", "|---|---|---|---|---|---|"]
    for oracle, rows in rates.items():
        what = f"{rows[0]['structures']} test-set structures" if oracle == "emt" else \
            f"{rows[0]['structures']} rattled ethanol (GFN2-xTB, tblite)"
        for row in rows:
            lines.append(f"| {oracle} | {what} | {row['atoms']} | {row['workers']} | {row['seconds']:.1f} | "
                         f"{row['frames_per_s']:.1f} |")
    if "xtb" not in rates:
        lines.append("\n(xTB row skipped: tblite is not importable or `--xtb-n 0`.)")
    text = "\n".join(lines) + "\n"
    (workdir / "results.json").write_text(json.dumps({"rates": rates, "verdict": verdict, "test_counts": test_counts,
                                                      "recipe": r, "md_only": m}, indent=1, default=str))
    if not args.no_write:
        append_section(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
