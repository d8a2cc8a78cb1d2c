"""Loader throughput and model step time on one on-disk dataset (run as a subprocess, one thread):

    python scripts/bench_scale_lib/loader.py loader STORE --workers 2 --batches 100
    python scripts/bench_scale_lib/loader.py step STORE --model equivariant --steps 10

``loader``: frames/s of the training DataLoader of ``FrameDataModule`` (shuffled, batch 8, graphs
built with vesin in the workers) after its first batch; the first batch's time (worker start-up)
is reported apart. ``step``: seconds per training step (energy, forces, stress with
``create_graph``, the loss, backward, optimiser step) of a model on batches of the same loader.
Prints one JSON line.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _datamodule(store: str, workers: int, batch_size: int):
    from mlip.training.datamodule import FrameDataModule

    before = _anon()
    dm = FrameDataModule(train=store, cutoff=5.0, batch_size=batch_size, num_workers=workers, val_fraction=0.01,
                         test_fraction=0.01, checks={"e0_underdetermined": "warn"})  # warn: for --smoke's 3 frames
    t = time.time()
    dm.prepare()
    dm.prepare_anon_bytes = _anon() - before
    return dm, time.time() - t


def _anon() -> int:
    """This process's anonymous resident memory (bytes), from /proc/self/status."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))


def _cycle(loader):
    """Batches of ``loader`` epoch after epoch (for sets smaller than the batches asked for)."""
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def loader(args) -> dict:
    dm, prepare_s = _datamodule(args.store, args.workers, args.batch_size)
    t0 = time.time()
    batches = _cycle(dm.train_dataloader())
    next(batches)
    t1, c1 = time.time(), time.process_time()
    frames = 0
    for _, batch in zip(range(args.batches), batches):
        frames += int(batch["n_atoms"].shape[0])
    t2, c2 = time.time(), time.process_time()
    return {"main_cpu_s_per_frame": (c2 - c1) / frames,
            "mode": "loader", "workers": args.workers, "batch_size": args.batch_size, "prepare_s": prepare_s,
            "prepare_anon_bytes": dm.prepare_anon_bytes, "n_frames": sum(len(d) for d in dm.datasets.values()),
            "first_batch_s": t1 - t0, "frames": frames, "seconds": t2 - t1, "frames_per_s": frames / (t2 - t1),
            "batch_s": (t2 - t1) / args.batches}


def step(args) -> dict:
    from hydra import compose, initialize_config_dir

    from mlip.cli.config_path import CONFIG_DIR, config_dict
    from mlip.data.statistics import output_normalization
    from mlip.training.loss import resolve_sigma
    from mlip.training.module import PotentialModule

    dm, _ = _datamodule(args.store, 0, args.batch_size)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={args.model}"])
    loss_config = config_dict(cfg.loss)
    loss_config["sigma"] = resolve_sigma(loss_config["sigma"], dm.label_kinds)
    model_config = config_dict(cfg.model)
    model_config.update(species=dm.species, e0=dm.e0, avg_num_neighbors=dm.statistics["avg_num_neighbors"],
                        **output_normalization(dm.statistics, True))
    module = PotentialModule(model_config, loss_config, config_dict(cfg.optimizer), dm.config_types)
    module.to(torch.float32)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    batches = [b for _, b in zip(range(args.steps + 2), _cycle(dm.train_dataloader()))]

    def one(batch):
        out = module.model(batch, compute_forces=True, compute_stress=True, create_graph=True)
        loss, _ = module.loss_fn(out, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for b in batches[:2]:
        one(b)
    t, c = time.perf_counter(), time.process_time()
    for b in batches[2:]:
        one(b)
    step_s = (time.perf_counter() - t) / args.steps
    cpu_step_s = (time.process_time() - c) / args.steps
    return {"mode": "step", "model": args.model, "batch_size": args.batch_size, "step_s": step_s,
            "cpu_step_s": cpu_step_s,
            "frames_per_s": args.batch_size / step_s,
            "n_params": sum(p.numel() for p in module.model.parameters()),
            "atoms_per_batch": sum(int(b["positions"].shape[0]) for b in batches) / len(batches)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["loader", "step"])
    parser.add_argument("store")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="invariant")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(loader(args) if args.mode == "loader" else step(args)), flush=True)


if __name__ == "__main__":
    main()
