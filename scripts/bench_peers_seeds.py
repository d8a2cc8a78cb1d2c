"""The 3-seed table of the peer benchmark: reads the results.json of several runs of
``scripts/bench_peers.py`` (one per seed, ``--seed N --no-write --workdir DIR``) and appends
the mean ± standard deviation over seeds, with mlip's force MAE over the best peer's per seed,
to docs/benchmarks.md.

    for s in 0 1 2; do python scripts/bench_peers.py --budget 900 --threads 1 --mlip-model equivariant \\
        --datasets si --models mlip,mace --seed $s --no-write --workdir runs/si/s$s; done
    python scripts/bench_peers_seeds.py runs/si/s0 runs/si/s1 runs/si/s2 --title "..." --command "..."
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, append_section, machine  # noqa: E402
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
        seed = int(log.split("--seed ")[1].split()[0]) if "--seed " in log else 0
        runs.setdefault(seed, []).extend(json.loads((Path(wd) / "results.json").read_text()))
    lines = [f"\n## {args.title}, {datetime.date.today().isoformat()}\n"]
    if args.command:
        lines.append(f"- command: {args.command}")
    lines += [f"- machine: {machine()}", f"- seeds {', '.join(map(str, sorted(runs)))}; runs in "
              + ", ".join(f"`{w}`" for w in args.workdirs), ""]
    lines += report.seed_summary(runs)
    if args.notes:
        lines += ["", args.notes]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        append_section(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
