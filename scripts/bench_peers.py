"""Side-by-side benchmark of mlip, NequIP (0.19) and MACE (mace-torch 0.3.16): same data, same
validation split, same E0, cutoff, dtype, batch size, threads and wall-clock training budget;
one evaluator for all. Appends a dated table to docs/benchmarks.md.

    python scripts/bench_peers.py --budget 900 --threads 2                  # the full run
    python scripts/bench_peers.py --budget 60 --no-write                    # a smoke run
    python scripts/bench_peers.py --setup-only                              # only create the peer envs
    python scripts/bench_peers.py --dry-run                                 # prepare data, print the plan
    python scripts/bench_peers.py --mlip-model equivariant --mlip-overrides "model.size=small"

Run it with the Python that has mlip (the repo's venv); it creates one virtual environment per
peer on first use under --cache (default ~/.cache/mlip-bench-peers/<peer>), installing
torch==2.13.0 (CPU) first, then the peer. The rules (what is timed, which settings each tool
gets) are in docs/benchmarks.md, section "Peer benchmark"; helpers live in
scripts/bench_peers_lib/.
"""

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import append_section, commit, machine  # noqa: E402
from bench_peers_lib import report  # noqa: E402
from bench_peers_lib.data import DATASETS, prepare, read_references  # noqa: E402
from bench_peers_lib.envs import PEER_REQUIREMENTS, ensure_env  # noqa: E402
from bench_peers_lib.runners import LIB, REPO, thread_env, train_mace, train_mlip, train_nequip  # noqa: E402

MODELS = ("mlip", "nequip", "mace")
DATASET_LABELS = {"si": "mlearn Si", "ge": "mlearn Ge", "li": "mlearn Li", "ethanol": "rMD17 ethanol"}


class Log:
    def __init__(self, path: Path):
        self.fh = open(path, "a")

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=900, help="training seconds per model and dataset (default 900)")
    p.add_argument("--threads", type=int, default=2, help="OMP/MKL threads and torch threads for every process")
    p.add_argument("--datasets", default="si,ethanol", help=f"comma-separated, from {','.join(DATASETS)}")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from mlip,nequip,mace")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"),
                   help="folder with mlearn/ and rmd17_ethanol/ (default ../shared/data from the repo)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "mlip-bench-peers"),
                   help="where the peer environments live (created on first use)")
    p.add_argument("--workdir", default=None, help="where runs go (default: a new temporary folder)")
    p.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"), help="markdown file to append to")
    p.add_argument("--no-write", action="store_true", help="print the table, do not append it to --output")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="for all models")
    p.add_argument("--cutoff", type=float, default=5.0, help="Å, for all models")
    p.add_argument("--seed", type=int, default=0, help="split seed and every tool's seed")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--mlip-model", default="invariant", help="mlip's model= choice")
    p.add_argument("--mlip-overrides", default="", help="extra Hydra overrides for mlip, one string")
    p.add_argument("--mace-args", default="", help="extra mace_run_train arguments, one string")
    p.add_argument("--nequip-overrides", default="", help="extra Hydra overrides for nequip-train, one string")
    p.add_argument("--nequip-deploy", default="aoti", choices=["aoti", "eager"],
                   help="NequIP model for evaluation: nequip-compile --mode aotinductor (NequIP's recommended "
                        "path for ASE; TorchScript compile is not supported on torch>=2.10), or the eager checkpoint")
    p.add_argument("--setup-only", action="store_true", help="create the peer environments and exit")
    p.add_argument("--dry-run", action="store_true", help="prepare the data files and print the plan; no training")
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.models = [m for m in args.models.split(",") if m]
    for d in args.datasets:
        if d not in DATASETS:
            p.error(f"--datasets: unknown {d!r}; choose from {', '.join(DATASETS)}")
    for m in args.models:
        if m not in MODELS:
            p.error(f"--models: unknown {m!r}; choose from {', '.join(MODELS)}")
    return args


def evaluate(tool: str, python: str, model: str, test: str, out: Path, threads: int, dtype: str,
             timing: bool, log_file: Path) -> dict:
    cmd = [python, str(LIB / "peer_eval.py"), "--tool", tool, "--model", model, "--test", test, "--out", str(out),
           "--threads", str(threads), "--dtype", dtype] + (["--timing"] if timing else [])
    env = thread_env(threads, [REPO] if tool == "mlip" else [])
    with open(log_file, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"evaluation of {tool} failed; see {log_file}:\n{log_file.read_text()[-2000:]}")
    return json.loads(out.read_text())


def run_one(tool: str, data, workdir: Path, args, envs: dict, log: Log) -> dict:
    """Train ``tool`` on ``data``, evaluate it with the common evaluator, score it."""
    wd = workdir / data.name / tool
    common = dict(budget=args.budget, threads=args.threads, dtype=args.dtype, cutoff=args.cutoff, seed=args.seed)
    if tool == "mlip":
        python = sys.executable
        label = f"mlip ({args.mlip_model}{', ' + args.mlip_overrides if args.mlip_overrides else ''})"
        res = train_mlip(data, wd, model=args.mlip_model, overrides=shlex.split(args.mlip_overrides), **common)
    elif tool == "mace":
        python = envs["mace"]["python"]
        label = f"MACE {envs['mace']['versions'].get('mace-torch', '')}"
        res = train_mace(data, wd, python=python, extra=shlex.split(args.mace_args), **common)
    else:
        python = envs["nequip"]["python"]
        label = f"NequIP {envs['nequip']['versions'].get('nequip', '')}"
        res = train_nequip(data, wd, python=python, extra=shlex.split(args.nequip_overrides),
                           deploy=args.nequip_deploy, **common)
    log(f"{data.name}/{tool}: trained {res['epochs']} epochs in {res['fit_time_s']:.0f} s "
        f"(process {res['total_s']:.0f} s); evaluating")
    t0 = time.time()
    pred = evaluate(tool, python, res["model"], data.test, wd / "predictions.json", args.threads, args.dtype,
                    timing=data.name == "si", log_file=wd / "eval.log")
    scores = report.score(read_references(data.test), pred["predictions"])
    row = {"dataset": DATASET_LABELS[data.name], "tool": tool, "label": label, "molecule": not data.periodic,
           "n_params": res.get("n_params") or pred.get("n_params"), "epochs": res["epochs"],
           "fit_time_s": res["fit_time_s"], "frames_per_s": res["epochs"] * data.n_train / max(res["fit_time_s"], 1e-9),
           "scores": scores, "us_per_atom": (pred.get("timing") or {}).get("us_per_atom"),
           "eval_s": time.time() - t0, **{k: v for k, v in res.items() if k not in ("epochs", "fit_time_s")}}
    log(f"{data.name}/{tool}: {json.dumps({k: round(v, 3) for k, v in scores.items()})}, "
        f"{row['n_params']} params, inference {row['us_per_atom']} µs/atom")
    return row


def section(args, rows, envs, datasets, argv) -> str:
    versions = "; ".join(f"{p}: " + ", ".join(f"{k} {v}" for k, v in envs[p]["versions"].items()
                                                if k in ("torch", "e3nn", "mace-torch", "nequip"))
                         for p in envs)
    import torch

    split = "; ".join(f"{DATASET_LABELS[d.name]}: {d.n_train} train / {d.n_val} val (seed {args.seed}) / {d.n_test} "
                      f"test frames, batch {d.batch_size}, E0 from {d.e0_source}" for d in datasets)
    lines = [f"\n## Peer benchmark, {datetime.date.today().isoformat()}\n",
             f"- command: `python scripts/bench_peers.py {' '.join(shlex.quote(a) for a in argv)}` "
             f"(mlip commit {commit()})",
             f"- machine: {machine()}; {args.threads} threads per process; mlip env torch {torch.__version__}"
             + (f"; peers: {versions}" if versions else ""),
             f"- budget {args.budget:.0f} s of training per model and dataset; {args.dtype}; cutoff {args.cutoff} Å; "
             f"{split}", ""]
    lines += report.table(rows)
    lines += ["", "Inference: energy + forces on a rattled 216-atom Si cell through each tool's ASE calculator, "
              "after warm-up (Si-trained models only). Rules: see \"Peer benchmark: how to run it, and the rules\"."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mlip-bench-peers-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = Log(workdir / "bench.log")
    log(f"bench_peers {' '.join(argv)}; workdir {workdir}")
    peers = [m for m in args.models if m in PEER_REQUIREMENTS]
    envs = {}
    if not args.dry_run:
        for peer in peers:
            envs[peer] = ensure_env(peer, Path(args.cache).expanduser(), log=log)
            log(f"{peer} environment: {envs[peer]['python']} {envs[peer]['versions']} "
                f"(created in {envs[peer]['created_s']:.0f} s on {envs[peer]['created']})")
    if args.setup_only:
        return 0
    datasets = [prepare(name, Path(args.data_root), workdir / name / "data", seed=args.seed,
                        val_fraction=args.val_fraction) for name in args.datasets]
    for d in datasets:
        log(f"{d.name}: {d.n_train} train, {d.n_val} val, {d.n_test} test frames; E0 {d.e0} ({d.e0_source}); "
            f"stress {'yes' if d.has_stress else 'no'}; files in {Path(d.train).parent}")
    if args.dry_run:
        log(f"dry run: would train {', '.join(args.models)} on {', '.join(args.datasets)} for {args.budget:.0f} s each")
        return 0
    rows = []
    for d in datasets:
        for tool in args.models:
            try:
                rows.append(run_one(tool, d, workdir, args, envs, log))
            except Exception as err:  # one failing tool must not lose the others' results
                log(f"{d.name}/{tool} FAILED: {err}")
                rows.append({"dataset": DATASET_LABELS[d.name], "tool": tool, "label": tool, "error": str(err)})
            (workdir / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    text = section(args, rows, envs, datasets, argv)
    print(text)
    if not args.no_write:
        append_section(args.output, text)
        log(f"appended to {args.output}")
    log(f"results in {workdir / 'results.json'}, log {workdir / 'bench.log'}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
