"""Benchmark: test accuracy after a fixed wall-clock training budget, training throughput, and
inference time per atom on a 216-atom Si cell. Appends a dated section to docs/benchmarks.md.

    python scripts/bench_train.py --budget 900 --threads 2

Datasets: mlearn Si (train Si_training, test Si_test; energy, forces, stress) and rMD17 ethanol
(train train.xyz, test test_MD.xyz) from ../shared/data (or $MLIP_SHARED_DATA).
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

from bench_common import append_section, commit, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLIP_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

DATASETS = {
    "mlearn_si": [f"data.train={SHARED}/mlearn/Si_training.extxyz", f"data.test={SHARED}/mlearn/Si_test.extxyz"],
    "rmd17_ethanol": ["experiment=rmd17_ethanol", f"data.train={SHARED}/rmd17_ethanol/train.xyz",
                      f"data.test={SHARED}/rmd17_ethanol/test_MD.xyz",
                      f"data.e0_file={SHARED}/rmd17_ethanol/isolated_atoms.xyz"],
}


def train(name: str, budget: float, threads: int, extra: list, workdir: Path) -> dict:
    run_dir = workdir / name
    hh, rem = divmod(int(budget), 3600)
    mm, ss = divmod(rem, 60)
    args = [sys.executable, str(REPO / "train.py"), *DATASETS[name], *extra,
            f"trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", "trainer.max_epochs=100000",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    res = subprocess.run(args, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_train = metrics["data"]["n_frames"]["train"]
    metrics["throughput_frames_per_s"] = n_train * metrics["epochs"] / metrics["fit_time_s"]
    metrics["total_s"] = time.time() - t0
    metrics["run_dir"] = str(run_dir)
    return metrics


def inference_us_per_atom(model_path: str, threads: int, calls: int = 30) -> dict:
    """µs per atom per energy+forces call on a rattled 216-atom Si cell (after warm-up), through
    the ASE calculator (vesin neighbour list; the peer benchmark's timing loop) and through the
    bare TorchScript model."""
    import torch
    from bench_peers_lib.peer_eval import si216, time_si216

    from mlip.calculator import MLIPCalculator

    torch.set_num_threads(threads)
    ase_us = time_si216(MLIPCalculator(model_path), calls=calls)["us_per_atom"]
    atoms = si216()
    base = atoms.get_positions()
    model = torch.jit.load(model_path)
    dtype = next(model.parameters()).dtype
    inputs = (torch.tensor(base, dtype=dtype), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:], dtype=dtype),
              torch.tensor(atoms.pbc))
    for _ in range(3):
        model(*inputs)
    t = time.perf_counter()
    for _ in range(calls):
        model(*inputs)
    jit_us = (time.perf_counter() - t) / calls / len(atoms) * 1e6
    return {"ase_calculator_us_per_atom": ase_us, "torchscript_own_nl_us_per_atom": jit_us, "n_atoms": len(atoms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=900, help="training seconds per dataset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mlip-bench-"))
    results = {name: train(name, args.budget, args.threads, args.overrides, workdir) for name in args.datasets}
    si_model = results.get("mlearn_si", next(iter(results.values())))["exported_model"]
    infer = inference_us_per_atom(si_model, args.threads)

    command = "python scripts/bench_train.py " + " ".join(sys.argv[1:])
    lines = [f"\n## Training benchmark, {datetime.date.today().isoformat()}\n",
             f"- command: `{command}` (mlip commit {commit()})", f"- machine: {machine()}",
             f"- budget: {args.budget:.0f} s of training per dataset, {args.threads} threads; default model "
             "(`model=invariant`) and loss unless overridden; test sets are the given files.\n",
             "| dataset | params | epochs | train frames/s | test E MAE (meV/atom) | test F MAE (meV/Å) "
             "| test F RMSE (meV/Å) | test stress MAE (GPa) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        t = m["test"]
        stress = f"{t['stress_mae']:.3f}" if "stress_mae" in t else "-"
        lines.append(f"| {name} | {m.get('n_parameters', '-')} | {m['epochs']} | {m['throughput_frames_per_s']:.1f} | "
                     f"{t['energy_mae']:.2f} | {t['forces_mae']:.1f} | {t['forces_rmse']:.1f} | {stress} |")
    lines += ["", f"Inference on a rattled {infer['n_atoms']}-atom Si cell, energy + forces, after warm-up, "
              f"{args.threads} threads: **{infer['ase_calculator_us_per_atom']:.1f} µs/atom/call** through "
              f"`MLIPCalculator` (vesin neighbour list), {infer['torchscript_own_nl_us_per_atom']:.1f} µs/atom/call "
              "through the TorchScript model's own neighbour list.\n"]
    text = "\n".join(lines)
    append_section(args.output, text)
    print(text)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "data"} for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
