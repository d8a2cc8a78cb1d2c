"""Scaling benchmark of the on-disk dataset (issue 12): generation, preprocessing, training memory
and time to first step at two dataset sizes, loader throughput against the model's step time,
format and neighbour-list micro-benchmarks, DDP on the CPU.

    OMP_NUM_THREADS=1 python scripts/bench_scale.py --work /tmp/mlip-scale            # everything
    python scripts/bench_scale.py --steps generate,preprocess                            # some steps
    python scripts/bench_scale.py --steps report                                         # the section only
    python scripts/bench_scale.py --smoke                                                # 3 frames, seconds

Cu-Ag EMT data is generated in parallel chunks (``bench_scale_lib/generate.py``) under ``--work``
(never committed): ``large/`` holds ``--large-chunks`` chunk files, ``small/`` a copy of the first
``--small-chunks`` of them. Each step saves ``<work>/results/<step>.json``; ``report`` appends a
dated section to docs/benchmarks.md from whatever results exist. Timed jobs use one thread each.
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale_lib.common import load, load_average, log, save  # noqa: E402

STEPS = ("generate", "preprocess", "train", "loader", "formats", "ddp", "extra", "report")


def step_generate(args, work: Path) -> None:
    from bench_scale_lib.generate import generate

    large = work / "large"
    log(f"generating {args.large_chunks} chunks of {args.chunk_frames} frames in {large} ({args.processes} processes)")
    load_before = load_average()
    result = generate(str(large), args.large_chunks, args.chunk_frames, processes=args.processes)
    result["load_before"], result["load_after"] = load_before, load_average()
    small = work / "small"
    small.mkdir(parents=True, exist_ok=True)
    for c in range(args.small_chunks):
        name = f"chunk_{c:04d}.extxyz"
        if not (small / name).exists():
            shutil.copy(large / name, small / name)
    save(work, "generate", result)
    log(f"generated: {result}")


def _chunks(work: Path, size: str):
    return sorted((work / size).glob("chunk_*.extxyz"))


def _frames(work: Path, size: str) -> int:
    return sum(1 for f in _chunks(work, size) for line in open(f) if line.startswith("Lattice="))


def step_preprocess(args, work: Path) -> None:
    from bench_scale_lib.runs import preprocess

    results = []
    for size, workers in args.sizes_workers:
        log(f"preprocess {size} with {workers} worker(s)")
        results.append(preprocess(_chunks(work, size), work / f"{size}.mlipdata", workers, work / "logs"))
        save(work, "preprocess", results)


def _store_frames(work: Path, size: str) -> int:
    import json

    return json.loads((work / f"{size}.mlipdata" / "mlip_dataset.json").read_text())["statistics"]["n_frames"]


def step_train(args, work: Path) -> None:
    from bench_scale_lib.runs import train

    results = []
    plan = [(f"{model}_{size}", str(work / f"{size}.mlipdata"), size, model, steps)
            for model, steps in (("invariant", args.train_steps), ("equivariant", args.train_steps_equivariant))
            for size in ("small", "large")]
    joined = work / "small_all.extxyz"
    if not joined.exists():
        with open(joined, "w") as out:
            for f in _chunks(work, "small"):
                out.write(f.read_text())
    plan.append(("invariant_small_extxyz", str(joined), "small", "invariant", args.train_steps))
    for name, data, size, model, steps in plan:
        results.append(train(name, data, _store_frames(work, size), work, model=model, steps=steps,
                             eval_frames=args.eval_frames, extra=args.extra))
        results[-1]["size"] = size
        save(work, "train", results)
    if args.worker_run:
        res = train("invariant_large_w2", str(work / "large.mlipdata"), _store_frames(work, "large"), work,
                    steps=args.train_steps, num_workers=2, eval_frames=args.eval_frames, extra=args.extra)
        res["size"] = "large"
        results.append(res)
        save(work, "train", results)


def step_ddp(args, work: Path) -> None:
    from bench_scale_lib.runs import train

    results = []
    for devices in (1, 2):
        res = train(f"ddp{devices}_large", str(work / "large.mlipdata"), _store_frames(work, "large"), work,
                    steps=args.train_steps, devices=devices, eval_frames=args.eval_frames, extra=args.extra)
        res["size"] = "large"
        results.append(res)
        save(work, "ddp", results)


def _split_files(src: Path, dest: Path, per_file: int) -> list:
    """The frames of ``src``'s chunk files rewritten ``per_file`` frames to a file under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    frames, out = [], []
    for f in sorted(src.glob("chunk_*.extxyz")):
        lines = f.read_text().splitlines(keepends=True)
        i = 0
        while i < len(lines):
            n = int(lines[i])
            frames.append("".join(lines[i:i + n + 2]))
            i += n + 2
    for k in range(0, len(frames), per_file):
        path = dest / f"part_{k // per_file:05d}.extxyz"
        if not path.exists():
            path.write_text("".join(frames[k:k + per_file]))
        out.append(path)
    return out


def step_extra(args, work: Path) -> None:
    """Checks of problems seen in the main steps: preprocessing many small files (a process pool
    per file), the main process's memory over a one-worker preprocessing run, and training the
    large set from one extxyz file (in memory) for contrast."""
    from bench_scale_lib.runs import preprocess, train

    results = load(work, "extra") or {}
    if "many_files" not in results:
        files = _split_files(work / "small", work / "small_split", 20)
        results["many_files"] = []
        for workers in (1, 2):
            log(f"preprocess {len(files)} files of 20 frames with {workers} worker(s)")
            results["many_files"].append(preprocess(files, work / "small_split.mlipdata", workers, work / "logs"))
        save(work, "extra", results)
    if "preprocess_series" not in results:
        log("preprocess large with 1 worker, memory over time")
        results["preprocess_series"] = preprocess(_chunks(work, "large"), work / "large_w1.mlipdata", 1, work / "logs")
        shutil.rmtree(work / "large_w1.mlipdata")
        save(work, "extra", results)
    if args.extxyz_large and "extxyz_large" not in results:
        joined = work / "large_all.extxyz"
        if not joined.exists():
            with open(joined, "w") as out:
                for f in _chunks(work, "large"):
                    out.write(f.read_text())
        results["extxyz_large"] = train("invariant_large_extxyz", str(joined), _store_frames(work, "large"), work,
                                        steps=args.train_steps, eval_frames=args.eval_frames, extra=args.extra)
        results["extxyz_large"]["size"] = "large"
        save(work, "extra", results)


def _subprocess_json(cmd, log_name: str, work: Path):
    from bench_scale_lib.common import job_env
    from bench_scale_lib.procmon import peaks_by_role, run_monitored

    res = run_monitored(cmd, job_env(1), work / "logs" / log_name)
    lines = [ln for ln in Path(res["log"]).read_text().splitlines() if ln.startswith("{")]
    if res["rc"] != 0 or not lines:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed, see {res['log']}")
    import json

    return {**json.loads(lines[-1]), "roles": peaks_by_role(res["processes"]), "load_before": load_average()}


def step_loader(args, work: Path) -> None:
    lib = Path(__file__).resolve().parent / "bench_scale_lib" / "loader.py"
    results = []
    for size, workers in args.loader_plan:
        log(f"loader {size} with {workers} worker(s)")
        res = _subprocess_json([sys.executable, str(lib), "loader", str(work / f"{size}.mlipdata"), "--workers",
                                str(workers), "--batches", str(args.loader_batches)], f"loader_{size}_{workers}.log",
                               work)
        results.append({**res, "size": size})
        save(work, "loader", results)
    for model in args.step_models:
        log(f"step time of {model}")
        res = _subprocess_json([sys.executable, str(lib), "step", str(work / "large.mlipdata"), "--model", model,
                                "--steps", str(args.step_batches)], f"step_{model}.log", work)
        results.append({**res, "size": "large"})
        save(work, "loader", results)


def step_formats(args, work: Path) -> None:
    lib = Path(__file__).resolve().parent / "bench_scale_lib" / "formats.py"
    log("format and neighbour-list micro-benchmark")
    res = _subprocess_json([sys.executable, str(lib), str(work / f"{args.format_set}.mlipdata"), "--h5",
                            str(work / f"{args.format_set}.h5"),
                            "--frames", str(args.format_frames)], "formats.log", work)
    save(work, "formats", res)


def step_report(args, work: Path) -> None:
    from bench_scale_lib.report import section

    text = section(work, args)
    if args.smoke:
        print(text)
        return
    from bench_common import REPO, append_section

    append_section(str(REPO / "docs" / "benchmarks.md"), text)
    log("appended to docs/benchmarks.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/mlip-scale", help="data and results folder (default /tmp/mlip-scale)")
    parser.add_argument("--steps", default=None, help=f"comma-separated, of {', '.join(STEPS)} (default all; "
                        "with --smoke: generate, preprocess, formats, report)")
    parser.add_argument("--large-chunks", type=int, default=20, help="chunk files of the large set (default 20)")
    parser.add_argument("--small-chunks", type=int, default=2, help="chunk files of the small set (default 2)")
    parser.add_argument("--chunk-frames", type=int, default=1000, help="frames per chunk file (default 1000)")
    parser.add_argument("--processes", type=int, default=2, help="processes of generation (default 2)")
    parser.add_argument("--train-steps", type=int, default=40, help="optimiser steps of invariant runs (default 40)")
    parser.add_argument("--train-steps-equivariant", type=int, default=15,
                        help="optimiser steps of equivariant runs (default 15)")
    parser.add_argument("--eval-frames", type=int, default=32, help="frames of the val and test splits (default 32)")
    parser.add_argument("--worker-run", action="store_true", help="also train on the large set with 2 loader workers")
    parser.add_argument("--loader-batches", type=int, default=100, help="batches timed per loader (default 100)")
    parser.add_argument("--step-batches", type=int, default=8, help="training steps timed per model (default 8)")
    parser.add_argument("--format-frames", type=int, default=2000, help="random frames of the format benchmark")
    parser.add_argument("--extxyz-large", action="store_true",
                        help="extra: also train the large set from one extxyz file (in memory: several GB)")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run (3 frames, in <work>/smoke) that prints the section instead of appending it; "
                        "--smoke --steps generate,preprocess,loader,train,report tries the rest too (slower)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.smoke:
        work = work / "smoke"
        args.large_chunks, args.small_chunks, args.chunk_frames = 2, 1, 3
        args.train_steps = args.train_steps_equivariant = 2
        args.eval_frames, args.loader_batches, args.step_batches, args.format_frames = 1, 1, 1, 4
        args.sizes_workers = [("small", 1)]
        args.loader_plan = [("small", 0)]
        args.step_models, args.format_set = (), "small"
        args.extra = ["data.checks.e0_underdetermined=warn"]  # 3 frames of one composition
    else:
        args.sizes_workers = [(size, w) for size in ("small", "large") for w in (1, 2)]
        args.loader_plan = [("small", 0), ("small", 2), ("large", 0), ("large", 1), ("large", 2)]
        args.step_models, args.format_set = ("invariant", "equivariant"), "large"
        args.extra = []
    slow = ("train", "loader", "ddp", "extra")  # left out of --smoke unless asked for with --steps
    steps = (args.steps or ",".join(s for s in STEPS if not (args.smoke and s in slow))).split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step {unknown[0]!r}; steps: {', '.join(STEPS)}")
    for step in STEPS:
        if step in steps:
            globals()[f"step_{step}"](args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
