"""Benchmark: ``MLIPCalculator`` on a ``model.pt2`` with the graph ``local`` (the invariant model), in
blocks of atoms (``AOTIPotential.block``, default 512) against the whole graph ``model`` (block 0),
on rattled diamond Si of growing size: wall µs per atom of a force call (best of 3 after a warm-up,
neighbour list included) and the largest differences between the two routes.

    OMP_NUM_THREADS=1 python scripts/bench_blocks.py outputs/<run>/model.pt2 --repeats 5,10,15,20
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import publish  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def time_calls(atoms, path: str, block: int, calls: int = 4):
    """Best wall seconds of ``calls`` - 1 force calls after one warm-up, and the last results."""
    from mlip.calculator import MLIPCalculator

    calc = MLIPCalculator(path)
    calc.potential.block = block
    atoms.calc = calc
    x0 = atoms.positions.copy()
    times = []
    for k in range(calls):
        atoms.positions = x0 + 1e-6 * k  # a new structure each call (a rigid shift: same physics)
        start = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - start)
    results = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
    atoms.positions = x0
    return min(times[1:]), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model.pt2 with the graph 'local' (mlip export <run> --format aoti)")
    parser.add_argument("--repeats", default="5,10,15,20", help="conventional cells per side (8 r^3 atoms)")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not append it")
    args = parser.parse_args()

    import torch
    from ase.build import bulk

    from mlip.export.aoti import LOCAL_BLOCK

    torch.set_num_threads(1)
    rows = ["| atoms | blocks of 512 (µs/atom) | whole graph (µs/atom) | speed-up | max abs ΔE (eV) | "
            "max abs ΔF (eV/Å) | max abs Δσ (eV/Å³) |", "|---|---|---|---|---|---|---|"]
    for r in (int(x) for x in args.repeats.split(",")):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((r,) * 3)
        atoms.rattle(0.05, seed=1)
        whole, (e0, f0, s0) = time_calls(atoms, args.model, 0)  # first: the process's warm-up lands here
        blocks, (e1, f1, s1) = time_calls(atoms, args.model, LOCAL_BLOCK)
        n = len(atoms)
        rows.append(f"| {n:,} | {blocks / n * 1e6:.1f} | {whole / n * 1e6:.1f} | {whole / blocks:.2f}x | "
                    f"{abs(e1 - e0):.1e} | {np.abs(f1 - f0).max():.1e} | {np.abs(s1 - s0).max():.1e} |")
        print(rows[-1], flush=True)
    publish("MLIPCalculator on a model.pt2 in blocks of atoms against the whole graph",
            f"OMP_NUM_THREADS=1 python scripts/bench_blocks.py {' '.join(sys.argv[1:])}",
            ["one thread; rattled diamond Si; wall time of a force call (vesin's neighbour list included), "
             "best of 3 after a warm-up"], rows, str(REPO / "docs" / "benchmarks.md"), write=not args.no_write)


if __name__ == "__main__":
    main()
