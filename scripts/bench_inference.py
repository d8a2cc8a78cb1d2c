"""Inference cost of exported files side by side: TorchScript ``model.pt`` against the
AOTInductor package ``model.pt2`` of the same checkpoint (``torch.compile``'s kernels ahead of
time), energy + forces + stress on an engine's neighbour list (vesin, outside the timing), rattled
diamond Si, one thread. Appends a dated table to docs/benchmarks.md.

    mlip export outputs/<run>; mlip export outputs/<run> --format aoti
    OMP_NUM_THREADS=1 python scripts/bench_inference.py outputs/<run>/model.pt outputs/<run>/model.pt2 \\
        --label "model=equivariant (small)"
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, publish  # noqa: E402

from mlip.nn.neighbors import vesin_neighbor_list  # noqa: E402


def load(path: str):
    """A callable ``compute(positions, numbers, cell, pbc, edge_index, shifts)`` and its cutoff (Å)."""
    if path.endswith(".pt2"):
        from mlip.export.aoti import load_aoti

        potential, meta = load_aoti(path)
        potential.min_distance = 0.0  # time the graph, as an engine runs it, not mlip's overlap check
        return potential.compute, float(meta["cutoff"])
    from mlip.export.torchscript import load_exported

    module, meta = load_exported(path)
    return module.compute, float(meta["cutoff"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="model.pt / model.pt2 files")
    p.add_argument("--label", default="", help="what the models are, for the table")
    p.add_argument("--repeats", default="3,5", help="cubic 8-atom cells per edge, comma-separated")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = ["| file | atoms | ms per call | µs/atom |", "|---|---|---|---|"]
    for rep in (int(r) for r in args.repeats.split(",")):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((rep,) * 3)
        atoms.rattle(0.05, seed=0)
        for path in args.models:
            compute, cutoff = load(path)
            ei, shifts, _ = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
            inputs = (torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
                      torch.tensor(atoms.pbc), torch.tensor(ei), torch.tensor(shifts, dtype=torch.float64))
            compute(*inputs)
            times = []
            for _ in range(args.calls):
                t = time.perf_counter()
                compute(*inputs)
                times.append(time.perf_counter() - t)
            best = min(times)
            rows.append(f"| `{Path(path).name}` | {len(atoms)} | {1e3 * best:.1f} | {1e6 * best / len(atoms):.1f} |")
            print(rows[-1], flush=True)
    publish(f"Inference of exported files{': ' + args.label if args.label else ''}",
            f"OMP_NUM_THREADS=1 python scripts/bench_inference.py {' '.join(argv or sys.argv[1:])}",
            ["one thread", f"energy, forces and stress of rattled diamond Si on vesin's list (not timed), best of "
             f"{args.calls} calls after a warm-up"], rows, args.output, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
