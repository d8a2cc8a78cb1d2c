"""Neighbour-list cost against system size: the TorchScript cell list inside ``model.pt``
(``torch_neighbor_list``), the brute-force list inside ``model.pt2`` (``ExportableNeighborList``,
O(N^2)) and vesin (C++, what the trainer and the ASE calculator use), on rattled diamond Si at a
5 Å cutoff, float32, one thread. Appends a dated table to docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_neighbors.py                # 216 to 32,768 atoms
    OMP_NUM_THREADS=1 python scripts/bench_neighbors.py --no-write --repeats 3,5
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, publish  # noqa: E402

from mlip.nn.neighbors import ExportableNeighborList, torch_neighbor_list, vesin_neighbor_list  # noqa: E402


def best_of(fn, inputs: tuple, n: int) -> float:
    """Minimum wall time of ``n`` calls ``fn(*inputs)`` after one warm-up, ms."""
    fn(*inputs)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", default="3,5,8,12,16", help="cubic 8-atom cells per edge, comma-separated")
    p.add_argument("--cutoff", type=float, default=5.0, help="Å")
    p.add_argument("--brute-force-max", type=int, default=5000, help="skip the O(N^2) list above this many atoms")
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cell_list = torch.jit.script(torch_neighbor_list)
    brute = ExportableNeighborList(args.cutoff)  # eager here; AOTInductor compiles it in model.pt2
    rows = ["| atoms | edges | model.pt cell list (ms) | model.pt2 brute force (ms) | vesin (ms) | cell list µs/atom |",
            "|---|---|---|---|---|---|"]
    for rep in (int(r) for r in args.repeats.split(",")):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((rep,) * 3)
        atoms.rattle(0.05, seed=0)
        pos = torch.tensor(atoms.positions, dtype=torch.float32)
        cell = torch.tensor(atoms.cell[:], dtype=torch.float32)
        pbc = torch.tensor(atoms.pbc)
        edges = cell_list(pos, cell, pbc, args.cutoff)[0].shape[1]
        t_cell = best_of(cell_list, (pos, cell, pbc, args.cutoff), args.calls)
        t_brute = (best_of(brute, (pos, cell, pbc), args.calls) if len(atoms) <= args.brute_force_max
                   else float("nan"))
        t_vesin = best_of(vesin_neighbor_list, (atoms.positions, atoms.cell[:], atoms.pbc, args.cutoff), args.calls)
        brute_txt = "-" if np.isnan(t_brute) else f"{t_brute:.1f}"
        rows.append(f"| {len(atoms)} | {edges} | {t_cell:.1f} | {brute_txt} | {t_vesin:.1f} "
                    f"| {1e3 * t_cell / len(atoms):.2f} |")
        print(rows[-1], flush=True)
    publish("Neighbour lists inside exported models",
            f"OMP_NUM_THREADS=1 python scripts/bench_neighbors.py {' '.join(argv or sys.argv[1:])}",
            ["one thread", f"rattled diamond Si, cutoff {args.cutoff} Å, float32, best of {args.calls} calls after "
             "a warm-up"], rows, args.output, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
