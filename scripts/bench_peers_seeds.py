"""The 3-seed table of the peer benchmark: reads the results.json of several runs of
``scripts/bench_peers.py`` (one per seed, ``--seed N --no-write --workdir DIR``) and appends
the mean ± standard deviation over seeds, with mlip's force MAE over the best peer's per seed,
to docs/benchmarks.md.

    for s in 0 1 2; do python scripts/bench_peers.py --budget 900 --threads 1 --mlip-model equivariant \\
        --datasets si --models mlip,mace --seed $s --no-write --workdir runs/si/s$s; done
    python scripts/bench_peers_seeds.py runs/si/s0 runs/si/s1 runs/si/s2 --title "..." --command "..."
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, publish  # noqa: E402
from bench_peers_lib import report  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdirs", nargs="+", help="bench_peers.py --workdir folders, each with results.json")
    p.add_argument("--title", default="Peer benchmark over seeds")
    p.add_argument("--command", default="", help="how the runs were made, quoted in the section")
    p.add_argument("--notes", default="", help="a paragraph after the tables")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = p.parse_args(argv)
    runs = {}
    for wd in args.workdirs:
        log = (Path(wd) / "bench.log").read_text().splitlines()[0]
        seed = int(log.split("--seed ")[1].split()[0].rstrip(";")) if "--seed " in log else 0
        runs.setdefault(seed, []).extend(json.loads((Path(wd) / "results.json").read_text()))
    body = report.seed_summary(runs) + (["", args.notes] if args.notes else [])
    publish(args.title, args.command or "python scripts/bench_peers_seeds.py " + " ".join(argv or sys.argv[1:]),
            [f"seeds {', '.join(map(str, sorted(runs)))}; runs in " + ", ".join(f"`{w}`" for w in args.workdirs)],
            body, args.output, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
