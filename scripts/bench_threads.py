"""Speed-up from 1 to 2 (or more) CPU threads, and from ``torch.compile``, for a training step and
for inference: runs ``scripts/profile_model.py`` once per model, thread count and mode in a fresh
process (``OMP_NUM_THREADS`` and torch's intra-op threads set to the count) and appends a dated
table to docs/benchmarks.md. Run it on a quiet machine: the two-thread rows need both cores.

    python scripts/bench_threads.py                                   # invariant and equivariant, 1 and 2 threads
    python scripts/bench_threads.py --threads 1,2,4 --compile --no-write
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, publish  # noqa: E402

LINE = re.compile(r"train step: ([\d.]+) ms \(([\d.]+) frames/s\); inference: ([\d.]+) µs/atom")


def measure(model: str, threads: int, compiled: bool, calls: int) -> dict:
    """One profile_model.py process; its train-step ms, frames/s and inference µs/atom."""
    cmd = [sys.executable, str(REPO / "scripts" / "profile_model.py"), "--calls", str(calls), f"model={model}"]
    if compiled:
        cmd.insert(2, "--compile")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    match = LINE.search(res.stdout)
    if res.returncode != 0 or not match:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:160]}
    return {"train_ms": float(match[1]), "frames_per_s": float(match[2]), "infer_us_per_atom": float(match[3])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="invariant,equivariant")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated; the first is the baseline")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(model, dynamic=True)")
    p.add_argument("--calls", type=int, default=10, help="timed calls per measurement (after one warm-up)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = p.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    rows = ["| model | mode | threads | train step (ms) | train frames/s | speed-up | inference (µs/atom) | speed-up |",
            "|---|---|---|---|---|---|---|---|"]
    for model in args.models.split(","):
        for compiled in ([False, True] if args.compile else [False]):
            mode = "torch.compile" if compiled else "eager"
            base = None
            for t in counts:
                r = measure(model, t, compiled, args.calls)
                if "error" in r:
                    rows.append(f"| {model} | {mode} | {t} | failed: {r['error']} | | | | |")
                else:
                    base = base or r
                    rows.append(f"| {model} | {mode} | {t} | {r['train_ms']:.1f} | {r['frames_per_s']:.1f} "
                                f"| {base['train_ms'] / r['train_ms']:.2f}x | {r['infer_us_per_atom']:.1f} "
                                f"| {base['infer_us_per_atom'] / r['infer_us_per_atom']:.2f}x |")
                print(rows[-1], flush=True)
    publish("Threads and torch.compile on CPU",
            f"python scripts/bench_threads.py {' '.join(argv if argv is not None else sys.argv[1:])}",
            ["training step: 8 shipped mlearn Si frames (energy, forces, stress, backward, Adam), float32; inference: "
             "energy and forces of a rattled 216-atom Si cell (`scripts/profile_model.py`); speed-up against the "
             "first thread count of the same mode"], rows, args.output, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
