"""Benchmark: properties of trained models against their reference (issue 15). A set labelled by
EMT (the ``cu_emt`` recipe by default, ``--recipe cuag_emt`` for the alloy), the default and the
equivariant model trained on it for a wall-clock budget, then ``mlip validate`` on fcc Cu against
EMT (lattice constant, bulk modulus, C11, C12, C44, vacancy formation energy, phonons at
high-symmetry points, g(r) of hot MD), and the MD stability of a model with and without
``model.zbl=true``: NVT at ``--temperature`` and at the harsher ``--stability-temperature``
(default 3000 K), for the models above and for a pair trained without the close-contact frames
``--stability-drop`` (config_type, default dimer) of the set, where nothing but ZBL tells the
model that atoms repel at short range. Appends a dated section to docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_validate.py --budget 900 --scale 1.0     # the issue's setting
    OMP_NUM_THREADS=1 python scripts/bench_validate.py --budget 120 --scale 0.25    # a quick look
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench_common import append_section, commit, machine

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, env=None):
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{res.stderr[-3000:]}")
    return res


def drop_config_types(src: Path, dst: Path, drop) -> dict:
    """Copy the extxyz ``src`` to ``dst`` without the frames whose ``config_type`` is in ``drop``
    (text-level, so every key is kept as written); returns {kept, dropped}."""
    lines = src.read_text().splitlines(keepends=True)
    out, kept, dropped, i = [], 0, 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i])
        frame = lines[i:i + n + 2]
        m = re.search(r"config_type=(\"[^\"]*\"|\S+)", frame[1])
        if m is not None and m.group(1).strip('"') in drop:
            dropped += 1
        else:
            out += frame
            kept += 1
        i += n + 2
    tmp = dst.with_suffix(".tmp")
    tmp.write_text("".join(out))
    tmp.replace(dst)
    return {"kept": kept, "dropped": dropped}


def _stability(result: dict) -> str:
    md = result["model"]["md"]
    if md["failed_at_ps"] is not None:
        return f"failed at {md['failed_at_ps']:g} ps"
    return f"stable {md['simulated_ps']:g} ps"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=900, help="training seconds per model (default 900)")
    parser.add_argument("--scale", type=float, default=1.0, help="recipe scale (default 1.0)")
    parser.add_argument("--recipe", default="cu_emt", help="dataset recipe labelled by EMT (default cu_emt: the "
                        "validated structure, fcc Cu, is in its distribution; cuag_emt is 30 %% Ag)")
    parser.add_argument("--workdir", default="/tmp/mlip-bench-validate")
    parser.add_argument("--models", default="invariant,equivariant")
    parser.add_argument("--md-steps", type=int, default=1500)
    parser.add_argument("--temperature", type=float, default=1400.0, help="K of the g(r) and stability runs")
    parser.add_argument("--stability-temperature", default="3000", help="K of the extra stability runs, "
                        "comma-separated (default 3000; empty: none)")
    parser.add_argument("--stability-drop", default="dimer", help="config_types left out of the set of the "
                        "extra invariant pair (with and without ZBL) of the stability runs (default dimer; "
                        "empty: no pair)")
    parser.add_argument("--stability-budget", type=int, default=None, help="training seconds of that pair "
                        "(default --budget)")
    parser.add_argument("--write", action="store_true", help="append the results to docs/benchmarks.md")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    data = work / f"{args.recipe}.extxyz"
    if not data.exists():
        _run([sys.executable, "-m", "mlip.cli.main", "dataset", "build", args.recipe, f"scale={args.scale}",
              f"output={data}", "--no-progress"], env)
    drop = [c for c in args.stability_drop.split(",") if c]
    stab_temps = [float(t) for t in args.stability_temperature.split(",") if t]
    runs = []  # (name, model, zbl, data, budget, full validation)
    for model in args.models.split(","):
        for zbl in (False, True) if model == "invariant" else (False,):
            runs.append((f"{model}{'_zbl' if zbl else ''}", model, zbl, data, args.budget, not zbl))
    dropped = None
    if drop:
        data_nd = work / f"{args.recipe}_no_{'_'.join(drop)}.extxyz"
        dropped = drop_config_types(data, data_nd, set(drop))
        print(f"{data_nd.name}: {dropped}", flush=True)
        for zbl in (False, True):
            runs.append((f"invariant_no_{'_'.join(drop)}{'_zbl' if zbl else ''}", "invariant", zbl, data_nd,
                         args.stability_budget or args.budget, False))
    rows, stab, trained, dimers = {}, {}, {}, {}
    for name, model, zbl, train_set, budget, full in runs:
        run_dir = work / name
        if not (run_dir / "model.pt").exists():
            hh, rem = divmod(budget, 3600)
            mm, ss = divmod(rem, 60)
            t0 = time.time()
            _run([sys.executable, str(REPO / "train.py"), "data=custom", f"data.train={train_set}", f"model={model}",
                  f"model.zbl={str(zbl).lower()}", "split.group_by=group", "data.e0=isolated",
                  f"trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", "trainer.max_epochs=100000",
                  "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"], env)
            print(f"{name}: trained in {time.time() - t0:.0f} s", flush=True)
        trained[name] = (train_set.name, budget, zbl)
        props = "eos,elastic,vacancy,phonons,md" if full else "md"
        for temp, out in [(args.temperature, "validation")] + [(t, f"validation_{t:g}K") for t in stab_temps]:
            if not (run_dir / out / "validation.json").exists():
                t0 = time.time()
                _run([sys.executable, "-m", "mlip.cli.main", "validate", str(run_dir), "--structure", "Cu:fcc:3.61",
                      "--reference", "emt", "--properties", props if out == "validation" else "md",
                      "--temperature", str(temp), "--md-steps", str(args.md_steps),
                      "--output", str(run_dir / out)], env)
                print(f"{name}: {out} in {time.time() - t0:.0f} s", flush=True)
            result = json.loads((run_dir / out / "validation.json").read_text())
            stab[(name, temp)] = result
            if out == "validation":
                rows[name] = result
        if not (run_dir / "validation_dimer" / "validation.json").exists():  # seconds: isolated dimers only
            _run([sys.executable, "-m", "mlip.cli.main", "validate", str(run_dir), "--structure", "Cu:fcc:3.61",
                  "--reference", "emt", "--properties", "dimer", "--output", str(run_dir / "validation_dimer")], env)
        dimers[name] = json.loads((run_dir / "validation_dimer" / "validation.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows[name]["test_forces_mae"] = metrics["test"]["forces_mae"]
    lines = [f"\n## Validation against EMT (issue 15), {datetime.date.today()}\n",
             f"Command: `OMP_NUM_THREADS=1 python scripts/bench_validate.py {' '.join(sys.argv[1:])}`; {machine()}; "
             f"commit {commit()}. Data: `mlip dataset build {args.recipe} scale={args.scale}` (EMT), grouped split; "
             f"each model trained {args.budget} s on one thread; `mlip validate ... --structure Cu:fcc:3.61 "
             f"--reference emt`.\n"]
    for name, result in rows.items():
        lines += [f"\n**{name}** (test force MAE {result['test_forces_mae']:.1f} meV/Å)\n",
                  "| property | unit | model | EMT | relative error |", "|---|---|---|---|---|"]
        for row in result["table"]:
            rel = row["relative_error"]
            fmt = (lambda x: "–" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x)))  # noqa: E731
            lines.append(f"| {row['property']} | {row['unit']} | {fmt(row['model'])} | {fmt(row['reference'])} | "
                         f"{'–' if rel is None else f'{100 * rel:+.1f} %'} |")
    temps = [args.temperature] + stab_temps
    lines += [f"\n**MD stability** (NVT Langevin, {args.md_steps} steps of 2 fs, 2x2x2 fcc Cu cell of 32 atoms; "
              "failed: two atoms closer than 0.5 Å or T above 3x the target)\n",
              "| model | training set | ZBL | training s | " + " | ".join(f"{t:g} K" for t in temps) + " |",
              "|---|---|---|---|" + "---|" * len(temps)]
    for name, (set_name, budget, zbl) in trained.items():
        lines.append(f"| {name} | {set_name} | {'yes' if zbl else 'no'} | {budget} | "
                     + " | ".join(_stability(stab[(name, t)]) for t in temps) + " |")
    ref_cells = " | ".join(_stability({"model": stab[(next(iter(trained)), t)]["reference"]}) for t in temps)
    lines.append(f"| EMT | – | – | – | {ref_cells} |")
    lines += ["\n**Short-range repulsion** (`mlip validate --properties dimer`: isolated Cu-Cu dimer, V(r) = "
              "E(r) - E(6 Å) from 0.3 Å; closest approach of a head-on collision at a centre-of-mass energy, "
              "none: the atoms pass through each other; hole: V drops again as the atoms come closer than this)\n",
              "| model | ZBL | bond length (Å) | closest approach at 10 eV (Å) | at 100 eV (Å) | hole below (Å) "
              "| V(0.3 Å) (eV) |", "|---|---|---|---|---|---|---|"]

    def _dimer_cells(entry: dict) -> str:
        near = entry["closest_approach"]
        show = (lambda x: "none" if x is None else f"{x:.2f}")  # noqa: E731
        return (f"{entry['minimum_r']:.2f} | {show(near['10'])} | {show(near['100'])} | {show(entry['hole_below'])} "
                f"| {entry['energy'][0]:.3g}")

    for name, (_, _, zbl) in trained.items():
        lines.append(f"| {name} | {'yes' if zbl else 'no'} | "
                     f"{_dimer_cells(dimers[name]['model']['dimer']['pairs']['Cu-Cu'])} |")
    first = next(iter(trained))
    lines.append(f"| EMT | – | {_dimer_cells(dimers[first]['reference']['dimer']['pairs']['Cu-Cu'])} |")
    if dropped is not None:
        lines.append(f"\nThe `_no_{'_'.join(drop)}` set: the {args.recipe} set without its {dropped['dropped']} "
                     f"frames of config_type {', '.join(drop)} ({dropped['kept']} frames kept).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        append_section(str(REPO / "docs" / "benchmarks.md"), text)


if __name__ == "__main__":
    main()
