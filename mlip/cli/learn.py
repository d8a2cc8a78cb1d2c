"""``mlip learn <preset> [overrides]``: active learning with an oracle.

    mlip learn cu_emt                                   # configs/active/cu_emt.yaml
    mlip learn cu_emt iterations=3 select.per_iteration=10 --output al_cu

Each iteration i, in ``<output>/iter_<i>/``:
  1. ``committee/``: K members trained on ``data.extxyz`` (the first from scratch, later ones
     fine-tuned from the previous iteration's members), combined and calibrated (``mlip committee``);
  2. ``exploration.json``, ``candidates.extxyz``: MD with the committee from the structure at each
     temperature, stopped when the largest force uncertainty passes ``explore.threshold``;
  3. ``selected.extxyz``: the most uncertain candidates, kept diverse (farthest points);
  4. ``labelled.extxyz``: their oracle labels (cached; failures reported and skipped), added to the
     next iteration's ``data.extxyz``;
  5. ``metrics.json``: test error of the committee on the fixed test set, exploration uncertainty,
     oracle calls so far (``oracle_calls_total``) and those the committee was trained on
     (``oracle_calls_trained_on``: without this iteration's new labels; what the report plots).
Every step is written atomically and skipped when its output exists, so a killed run resumes
where it stopped. At the end: ``learn_report.md`` and ``learn_progress.png``.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from mlip.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help="a preset of configs/active (cu_emt) or your own")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. iterations=3 oracle=xtb")
    parser.add_argument("--output", default=None, help="directory of the run (default learn_<name>)")
    parser.add_argument("--config-dir", default=None, help="a folder laid out like configs/ with your presets")


def compose_learn(preset: str, overrides, config_dir=None) -> Dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.errors import ConfigError

    search = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("learn", overrides=[f"+active={preset}", *overrides, *search])
    except HydraException as err:
        raise ConfigError(f"mlip learn {preset} {' '.join(overrides)}: {err}") from None
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _write_frames(path: Path, frames) -> None:
    import ase.io

    from mlip.fileio import atomic_path

    with atomic_path(path) as tmp:
        ase.io.write(str(tmp), list(frames), format="extxyz")


def _copy(source, path: Path) -> None:
    """Copy ``source`` to ``path`` atomically: a kill mid-copy never leaves a partial file that a
    resumed run would take as done."""
    import shutil

    from mlip.fileio import atomic_path

    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def _read(path: Path) -> list:
    import ase.io

    return list(ase.io.read(str(path), ":")) if path.stat().st_size else []


def start_data(cfg: Dict[str, Any], out: Path) -> Path:
    """``<out>/start.extxyz``: the recipe's set or the given file."""

    from mlip.building.recipe import build_dataset
    from mlip.cli.dataset import compose_recipe
    from mlip.errors import ConfigError

    path = out / "start.extxyz"
    if path.exists():
        return path
    start = cfg["start"]
    if start.get("data"):
        _copy(start["data"], path)
    elif start.get("recipe"):
        recipe = compose_recipe(start["recipe"], [*start.get("overrides", []), f"oracle={cfg['oracle']['name']}",
                                                  f"output={out / 'start_recipe.extxyz'}",
                                                  f"cache_dir={out / 'cache'}", f"workers={cfg['workers']}"])
        recipe["oracle"] = cfg["oracle"]
        build_dataset(recipe, progress=False)
        _copy(out / "start_recipe.extxyz", path)
    else:
        raise ConfigError("start.recipe or start.data must name the first training set")
    return path


def test_data(cfg: Dict[str, Any], out: Path, structure) -> Path:
    """``<out>/test.extxyz``: the given file, or oracle MD at ``test.temperatures`` (never trained on)."""

    from mlip.building.generators import run_md
    from mlip.building.oracles import build_oracle

    path = out / "test.extxyz"
    if path.exists():
        return path
    test = cfg["test"]
    if test.get("data"):
        _copy(test["data"], path)
        return path
    frames = []
    for k, temperature in enumerate(test["temperatures"]):
        frames += run_md(structure, build_oracle(cfg["oracle"]), float(temperature), None, int(test["steps"]),
                         int(test["interval"]), int(test["interval"]), 2.0, 10_000 + k, f"test_{temperature:g}K")
    _write_frames(path, frames)
    return path


def train_committee(cfg: Dict[str, Any], it: int, data: Path, test: Path, out: Path) -> Dict[str, Any]:
    """The iteration's committee (trained, built, calibrated) and its metrics."""
    from hydra import compose, initialize_config_dir

    from mlip.cli.committee import build
    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run

    folder = out / f"iter_{it}" / "committee"
    if (folder / "committee_metrics.json").exists():
        return json.loads((folder / "committee_metrics.json").read_text())
    runs = []
    for k in range(int(cfg["committee"])):
        run_dir = folder / f"member_{k}"
        runs.append(run_dir)
        if (run_dir / "metrics.json").exists():
            continue
        overrides = [*cfg["train"], "data=custom", f"data.train={data}", f"data.test={test}",
                     f"seed={int(cfg['seed']) + k}", f"split.seed={cfg['seed']}", "export=false",
                     "trainer.enable_progress_bar=false", "data.checks.energy_outliers=warn"]
        if it > 0:
            previous = out / f"iter_{it - 1}" / "committee" / f"member_{k}"
            overrides += [f"finetune.from={previous}", f"finetune.lr_scale={cfg['finetune_lr_scale']}"]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            train_cfg = compose("train", overrides=overrides)
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # a member killed mid-training starts again
        run(train_cfg, run_dir)
    return build(runs, folder)


def explore_and_select(cfg: Dict[str, Any], it: int, structure, out: Path, species: List[int]) -> Dict[str, Any]:
    import numpy as np

    from mlip.fileio import write_json
    from mlip.learning.explore import explore
    from mlip.learning.select import select

    folder = out / f"iter_{it}"
    if (folder / "selected.extxyz").exists():
        return json.loads((folder / "exploration.json").read_text())
    ex = cfg["explore"]
    rng = np.random.default_rng(int(cfg["seed"]) + it)
    starts = []
    for _ in range(int(ex["starts"])):
        s = structure.copy()
        s.positions += rng.normal(0, float(ex["rattle"]), s.positions.shape)
        starts.append(s)
    trajectories = explore(starts, str(folder / "committee" / "committee.pt"), ex["temperatures"], int(ex["steps"]),
                           int(ex["interval"]), float(ex["timestep_fs"]), float(ex["threshold"]),
                           int(cfg["seed"]) * 1000 + 10 * it, f"al{it}")
    candidates = [c for t in trajectories for c in t["candidates"]]
    chosen = select(candidates, int(cfg["select"]["per_iteration"]), float(cfg["select"]["min_std"]), species)
    stds = [c.info["max_force_std"] for c in candidates]
    summary = {"trajectories": [{k: v for k, v in t.items() if k != "candidates"} for t in trajectories],
               "candidates": len(candidates), "selected": len(chosen),
               "mean_max_force_std": float(np.median(stds)) if stds else None,
               "steps_before_threshold": float(np.mean([t["mean_steps_per_trajectory"] for t in trajectories]))}
    _write_frames(folder / "candidates.extxyz", candidates)
    write_json(folder / "exploration.json", summary)
    _write_frames(folder / "selected.extxyz", [candidates[k] for k in chosen])
    return summary


def label_selected(cfg: Dict[str, Any], it: int, out: Path) -> Dict[str, Any]:
    from mlip.building.labelling import label_all
    from mlip.fileio import write_json

    folder = out / f"iter_{it}"
    if (folder / "labelled.extxyz").exists():
        return json.loads((folder / "labelling.json").read_text())
    selected = _read(folder / "selected.extxyz")
    for atoms in selected:
        atoms.info["config_type"] = f"al_iter{it}"
    frames, failures, counts = label_all(selected, cfg["oracle"], str(out / "cache"), int(cfg["workers"]), False)
    kept = [f for f in frames if f is not None]
    write_json(folder / "labelling.json", {**counts, "failures": failures})
    _write_frames(folder / "labelled.extxyz", kept)
    return {**counts, "failures": failures}


def learn(cfg: Dict[str, Any], out: Path) -> List[Dict[str, Any]]:

    import numpy as np

    from mlip.building.structures import build_structure
    from mlip.errors import ConfigError
    from mlip.fileio import write_json

    if not cfg.get("structure"):
        raise ConfigError("structure is not set: where exploration MD starts ({build: bulk, args: {...}} or "
                          "{file: ...})")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "learn_config.json", cfg)
    structure = build_structure(cfg["structure"], np.random.default_rng(int(cfg["seed"])))
    data = start_data(cfg, out)
    test = test_data(cfg, out, structure)
    start_calls = len(_read(data))
    history: List[Dict[str, Any]] = []
    best = (float("inf"), float("inf"))
    stale = 0
    for it in range(int(cfg["iterations"])):
        folder = out / f"iter_{it}"
        folder.mkdir(exist_ok=True)
        if not (folder / "data.extxyz").exists():
            _copy(data, folder / "data.extxyz")
        t0 = time.time()
        committee = train_committee(cfg, it, folder / "data.extxyz", test, out)
        species = sorted(set(int(z) for a in _read(folder / "data.extxyz") for z in a.numbers))
        exploration = explore_and_select(cfg, it, structure, out, species)
        labels = label_selected(cfg, it, out)
        new = _read(folder / "labelled.extxyz")
        data = out / f"iter_{it + 1}_data.extxyz"
        _write_frames(data, _read(folder / "data.extxyz") + new)
        calls = start_calls + sum(h["oracle_calls_this_iteration"] for h in history) + labels["computed"]
        row = {"iteration": it, "train_frames": len(_read(folder / "data.extxyz")),
               "test_forces_mae_meV_per_A": 1000 * committee["mae_of_mean"]["forces_eV_per_A"],
               "test_energy_mae_meV_per_atom": 1000 * committee["mae_of_mean"]["energy_eV_per_atom"],
               "forces_spearman": committee["calibration"].get("forces", {}).get("raw", {}).get("spearman"),
               "mean_max_force_std": exploration["mean_max_force_std"],
               "steps_before_threshold": exploration["steps_before_threshold"],
               "selected": exploration["selected"], "oracle_calls_this_iteration": labels["computed"],
               "oracle_calls_total": calls, "oracle_calls_trained_on": calls - labels["computed"],
               "failures": len(labels["failures"]), "seconds": time.time() - t0}
        write_json(folder / "metrics.json", row)
        history.append(row)
        print(f"mlip learn: iteration {it}: {row['train_frames']} training frames, test forces MAE "
              f"{row['test_forces_mae_meV_per_A']:.1f} meV/Å, exploration max force std "
              f"{row['mean_max_force_std'] or float('nan'):.3f} eV/Å, {row['selected']} selected, "
              f"{calls} oracle calls so far", flush=True)
        score = (row["test_forces_mae_meV_per_A"], row["mean_max_force_std"] or float("inf"))
        improved = score[0] < 0.98 * best[0] or score[1] < 0.98 * best[1]
        best = (min(best[0], score[0]), min(best[1], score[1]))
        stale = 0 if improved else stale + 1
        if stale >= int(cfg["patience"]) or not exploration["selected"]:
            print(f"mlip learn: stopping after iteration {it}: "
                  + ("no candidate above select.min_std" if not exploration["selected"] else
                     f"no improvement in {stale} iterations"), flush=True)
            break
    report(history, out, cfg)
    return history


def report(history: List[Dict[str, Any]], out: Path, cfg: Dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlip.fileio import save_figure, write_text

    lines = [f"# Active learning: {cfg['name']} (oracle {cfg['oracle']['name']})", "",
             "| iteration | training frames | test forces MAE (meV/Å) | test energy MAE (meV/atom) | "
             "exploration max force std, median (eV/Å) | MD steps before the threshold | oracle calls (trained on) | "
             "oracle calls (total) |",
             "|---|---|---|---|---|---|---|---|"]
    for h in history:
        std = h["mean_max_force_std"]
        lines.append(f"| {h['iteration']} | {h['train_frames']} | {h['test_forces_mae_meV_per_A']:.1f} | "
                     f"{h['test_energy_mae_meV_per_atom']:.2f} | {std if std is None else round(std, 3)} | "
                     f"{h['steps_before_threshold']:.0f} | {h.get('oracle_calls_trained_on', '-')} | "
                     f"{h['oracle_calls_total']} |")
    write_text(out / "learn_report.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    # a committee's error against the labels it was trained on: this iteration's new labels come after it
    calls = [h.get("oracle_calls_trained_on", h["oracle_calls_total"]) for h in history]
    ax.plot(calls, [h["test_forces_mae_meV_per_A"] for h in history], "o-")
    for h, x in zip(history, calls):
        ax.annotate(str(h["iteration"]), (x, h["test_forces_mae_meV_per_A"]))
    ax.set_xlabel("oracle calls (labels the committee was trained on)")
    ax.set_ylabel("test force MAE (meV/Å)")
    ax.set_title("active learning (numbers: iteration)")
    fig.tight_layout()
    save_figure(fig, out / "learn_progress.png")
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        cfg = compose_learn(args.preset, args.overrides, args.config_dir)
        out = Path(args.output or cfg.get("output") or f"learn_{cfg['name']}")
        history = learn(cfg, out)
    except USER_ERRORS as err:
        print(f"mlip learn: error: {err}", file=sys.stderr)
        return 1
    print(f"mlip learn: {len(history)} iterations; learn_report.md and learn_progress.png in {out}")
    return 0
