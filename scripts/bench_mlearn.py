"""Benchmark: mlip against the published mlearn potentials, element by element. Trains mlip on each
element's mlearn training set (Zuo et al., J. Phys. Chem. A 124, 731 (2020); data in
../shared/data/mlearn) for a wall-clock budget and compares its test-set errors with SNAP and
quadratic SNAP (qSNAP) evaluated in LAMMPS on the same test files (numbers measured in this project
with the published potential files, issue 16). Appends a dated table to docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_mlearn.py --budget 900 --elements Si,Ge,Li
    OMP_NUM_THREADS=1 python scripts/bench_mlearn.py --budget 60 --elements Li --no-write   # a smoke run

Goal (issue 16): a force MAE at most half of qSNAP's and an energy MAE not worse than qSNAP's.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import append_section, commit, machine

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLIP_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

#: test-set MAE of the published potentials in LAMMPS (energy meV/atom, forces meV/Å)
PUBLISHED = {
    "Si": {"SNAP": (6.44, 133.0), "qSNAP": (3.81, 116.0)},
    "Ge": {"SNAP": (6.59, 188.0), "qSNAP": (6.45, 133.0)},
    "Li": {"SNAP": (1.03, 28.0), "qSNAP": (0.73, 33.0)},
}


def train(element: str, budget: int, seed: int, model: str, overrides: list, workdir: Path) -> dict:
    run_dir = workdir / f"{element}_seed{seed}"
    hh, rem = divmod(budget, 3600)
    mm, ss = divmod(rem, 60)
    cmd = [sys.executable, str(REPO / "train.py"), f"data.train={SHARED}/mlearn/{element}_training.extxyz",
           f"data.test={SHARED}/mlearn/{element}_test.extxyz", f"model={model}", f"split.seed={seed}",
           f"seed={seed}", f"trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", "trainer.max_epochs=100000",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *overrides]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if res.returncode != 0:
        raise RuntimeError(f"{element} failed:\n{res.stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["total_s"] = time.time() - t0
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=900, help="training seconds per element and seed")
    parser.add_argument("--elements", default="Si,Ge,Li")
    parser.add_argument("--seeds", default="0", help="comma-separated; each changes the split and the initialisation")
    parser.add_argument("--model", default="equivariant")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlip-bench-mlearn-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for element in args.elements.split(","):
        runs = [train(element, args.budget, s, args.model, args.overrides, workdir) for s in seeds]
        e = [r["test"]["energy_mae"] for r in runs]
        f = [r["test"]["forces_mae"] for r in runs]
        rows.append((element, runs, sum(e) / len(e), sum(f) / len(f), e, f))
        print(f"{element}: E {e} meV/atom, F {f} meV/Å", flush=True)
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    lines = [f"\n## mlip against the published mlearn potentials, {datetime.date.today().isoformat()}\n",
             f"- command: `OMP_NUM_THREADS={threads} python scripts/bench_mlearn.py {' '.join(sys.argv[1:])}` "
             f"(mlip commit {commit()})", f"- machine: {machine()}",
             f"- mlip `model={args.model}` trained {args.budget} s per element and seed ({threads} thread(s)), "
             f"seeds {args.seeds} (split and initialisation); test = the element's mlearn test file. SNAP and "
             "qSNAP: the published potentials in LAMMPS on the same files (issue 16).\n",
             "| element | mlip E MAE (meV/atom) | mlip F MAE (meV/Å) | epochs | qSNAP E / F | SNAP E / F "
             "| F / qSNAP F | E / qSNAP E |",
             "|---|---|---|---|---|---|---|---|"]
    for element, runs, e, f, _es, fs in rows:
        q, s = PUBLISHED[element]["qSNAP"], PUBLISHED[element]["SNAP"]
        spread = f" ({min(fs):.1f}-{max(fs):.1f})" if len(fs) > 1 else ""
        lines.append(f"| {element} | {e:.2f} | {f:.1f}{spread} | {', '.join(str(r['epochs']) for r in runs)} | "
                     f"{q[0]} / {q[1]} | {s[0]} / {s[1]} | {f / q[1]:.2f} | {e / q[0]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        append_section(str(REPO / "docs" / "benchmarks.md"), text)


if __name__ == "__main__":
    main()
