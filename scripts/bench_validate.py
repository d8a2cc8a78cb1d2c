"""Benchmark: properties of trained models against their reference (issue 15). A set labelled by
EMT (the ``cu_emt`` recipe by default, ``--recipe cuag_emt`` for the alloy), the default and the
equivariant model trained on it for a wall-clock budget, then ``mlip validate`` on fcc Cu against
EMT (lattice constant, bulk modulus, C11, C12, C44, vacancy formation energy, phonons at
high-symmetry points, g(r) of hot MD), and the MD stability at a high temperature of a model
with and without ``model.zbl=true``. Appends a dated section to docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_validate.py --budget 900 --scale 1.0     # the issue's setting
    OMP_NUM_THREADS=1 python scripts/bench_validate.py --budget 120 --scale 0.25    # a quick look
"""

import argparse
import datetime
import json
import os
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
    parser.add_argument("--write", action="store_true", help="append the results to docs/benchmarks.md")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    data = work / f"{args.recipe}.extxyz"
    if not data.exists():
        _run([sys.executable, "-m", "mlip.cli.main", "dataset", "build", args.recipe, f"scale={args.scale}",
              f"output={data}", "--no-progress"], env)
    hh, rem = divmod(args.budget, 3600)
    mm, ss = divmod(rem, 60)
    rows = {}
    for model in args.models.split(","):
        for zbl in (False, True) if model == "invariant" else (False,):
            name = f"{model}{'_zbl' if zbl else ''}"
            run_dir = work / name
            if not (run_dir / "model.pt").exists():
                t0 = time.time()
                _run([sys.executable, str(REPO / "train.py"), "data=custom", f"data.train={data}", f"model={model}",
                      f"model.zbl={str(zbl).lower()}", "split.group_by=group", "data.e0=isolated",
                      f"trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", "trainer.max_epochs=100000",
                      "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"], env)
                print(f"{name}: trained in {time.time() - t0:.0f} s", flush=True)
            props = "eos,elastic,vacancy,phonons,md" if not zbl else "md"
            _run([sys.executable, "-m", "mlip.cli.main", "validate", str(run_dir), "--structure", "Cu:fcc:3.61",
                  "--reference", "emt", "--properties", props, "--temperature", str(args.temperature),
                  "--md-steps", str(args.md_steps), "--output", str(run_dir / "validation")], env)
            rows[name] = json.loads((run_dir / "validation" / "validation.json").read_text())
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
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        append_section(str(REPO / "docs" / "benchmarks.md"), text)


if __name__ == "__main__":
    main()
