"""Training throughput on one device: frames/s and atoms/s of a full training step (energy, forces,
stress with create_graph, backward, AdamW step) per model and batch size, and peak device memory.
With more than one GPU, the DDP scaling of ``train.py`` (steps/s with 1..N devices).

    python scripts/bench_gpu.py --write                     # on a GPU machine (scripts/gpu_check.sh)
    python scripts/bench_gpu.py --device cpu --steps 3      # smoke run anywhere

Data: the shipped mlearn Si training set (frames of 8-63 atoms), or ``--data FILE|DIR`` (an extxyz
or an ``mlip preprocess`` directory). ``--write`` appends a dated section to docs/benchmarks.md.
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

import torch
from bench_common import append_section, commit, machine

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "invariant": ["model=invariant"],
    "equivariant small": ["model=equivariant", "model.size=small"],
    "equivariant medium": ["model=equivariant", "model.size=medium"],
    "equivariant large": ["model=equivariant", "model.size=large"],
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_throughput(overrides, data: str, batch_size: int, steps: int, device: torch.device, dtype: torch.dtype):
    """Mean time of a training step after 3 warm-up steps, on batches drawn in turn from the data."""
    from hydra import compose, initialize_config_dir

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import build_datamodule
    from mlip.data.statistics import output_normalization
    from mlip.models import build_model
    from mlip.nn.batch import collate
    from mlip.physics import ForcesAndStress

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data=custom", f"data.train={data}",
                                          f"data.batch_size={batch_size}", "data.test=null"])
    dm = build_datamodule(cfg, dtype)
    dm.prepare()
    model_cfg = dict(cfg.model)
    model = build_model(**model_cfg, species=dm.species, e0=dm.e0,
                        avg_num_neighbors=dm.statistics["avg_num_neighbors"],
                        **output_normalization(dm.statistics, True)).to(device=device, dtype=dtype)
    physics = ForcesAndStress(model)
    opt = torch.optim.AdamW(physics.parameters(), lr=1e-4)
    batches = []
    loader = torch.utils.data.DataLoader(dm.datasets["train"], batch_size=batch_size, shuffle=True,
                                         collate_fn=lambda graphs: collate(graphs, dtype))
    for batch in loader:
        batches.append({k: v.to(device) for k, v in batch.items()})
        if len(batches) == 8:
            break

    def step(batch):
        out = physics(batch, compute_forces=True, compute_stress=True, create_graph=True)
        loss = ((out["total_energy"] - batch["energy"].reshape(-1)) ** 2).mean() + \
            ((out["pred_forces"] - batch["forces"]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for k in range(3):
        step(batches[k % len(batches)])
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    frames = atoms = 0
    t0 = time.perf_counter()
    for k in range(steps):
        b = batches[k % len(batches)]
        step(b)
        frames += int(b["n_atoms"].numel())
        atoms += int(b["positions"].shape[0])
    _sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"params": sum(p.numel() for p in model.parameters()), "ms_per_step": 1e3 * dt / steps,
            "frames_per_s": frames / dt, "atoms_per_s": atoms / dt, "peak_mib": peak}


def ddp_scaling(data: str, n_devices: int, max_steps: int) -> list:
    """steps/s of ``train.py`` (default model) with 1..n_devices GPUs, fixed per-rank batch size."""
    rows = []
    for devices in sorted({1, 2, n_devices} & set(range(1, n_devices + 1))):
        with tempfile.TemporaryDirectory() as tmp:
            args = [sys.executable, str(REPO / "train.py"), "data=custom", f"data.train={data}", "data.test=null",
                    "trainer.accelerator=gpu", f"trainer.devices={devices}", "trainer.strategy=ddp",
                    f"trainer.max_steps={max_steps}", "trainer.max_epochs=100000", "export=false",
                    "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp}/run"]
            t0 = time.time()
            res = subprocess.run(args, capture_output=True, text=True)
            if res.returncode != 0:
                rows.append({"devices": devices, "error": res.stderr[-500:]})
                continue
            metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
            rows.append({"devices": devices, "steps_per_s": max_steps / metrics["fit_time_s"],
                         "wall_s": time.time() - t0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default=str(REPO / "mlip" / "datasets" / "mlearn_si" / "Si_training.extxyz"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ddp-steps", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="append the results to docs/benchmarks.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device (use --device cpu for a smoke run)")
    dtype = getattr(torch, args.dtype)
    rows = []
    for name in args.models.split(","):
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            r = step_throughput(MODELS[name], args.data, bs, args.steps, device, dtype)
            rows.append({"model": name, "batch": bs, **r})
            print(json.dumps(rows[-1]), flush=True)
    ddp = ddp_scaling(args.data, torch.cuda.device_count(), args.ddp_steps) \
        if device.type == "cuda" and torch.cuda.device_count() > 1 else []
    for r in ddp:
        print(json.dumps(r), flush=True)
    if not args.write:
        return
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"\n## GPU training throughput, {datetime.date.today()}\n",
             f"Command: `python scripts/bench_gpu.py {' '.join(sys.argv[1:])}`; device {gpu}; {machine()}; "
             f"commit {commit()}; {args.dtype}; data {Path(args.data).name}; {args.steps} timed steps after 3 "
             "warm-up steps (energy, forces, stress with create_graph, backward, AdamW).\n",
             "| model | parameters | batch (frames) | ms/step | frames/s | atoms/s | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['batch']} | {r['ms_per_step']:.1f} | {r['frames_per_s']:.0f} | "
              f"{r['atoms_per_s']:.0f} | {r['peak_mib']:.0f} |" for r in rows]
    if ddp:
        lines += ["", "DDP scaling of `train.py` (default model, per-rank batch as configured):", "",
                  "| GPUs | steps/s |", "|---|---|"]
        lines += [f"| {r['devices']} | {r.get('steps_per_s', float('nan')):.2f} |" for r in ddp]
    elif device.type == "cuda":
        lines += ["", f"One GPU on this machine ({torch.cuda.device_count()}): no DDP scaling measured."]
    append_section(str(REPO / "docs" / "benchmarks.md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
