"""Time and profile one model on CPU (or a GPU with ``--device cuda``): a training step (energy,
forces, stress when the frames are periodic, backward) on the first batch of the training set
(mlearn Si unless ``data=...``), and an inference call (energy + forces) on a rattled 216-atom Si
cell (models with Si only).

    OMP_NUM_THREADS=2 python scripts/profile_model.py model=equivariant model.size=small [--profile]
    OMP_NUM_THREADS=1 python scripts/profile_model.py --calls 30 model=equivariant model.size=medium data=rmd17_ethanol
    python scripts/profile_model.py --device cuda --compile --calls 50 model=equivariant data.batch_size=64

Arguments after the options are Hydra overrides of the training config (model, data). Times are
medians over ``--calls`` calls. Like ``python train.py``, the script keeps freed memory in the
process (``mlip.cli.malloc_tuning``; ``MLIP_MALLOC_TUNING=0`` turns it off).
"""

import argparse
import statistics
import time

import torch
from ase.build import bulk
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mlip.cli.config_path import CONFIG_DIR
from mlip.data.graph import atoms_to_graph, frame_to_graph
from mlip.data.io import LabelKeys, read_frames
from mlip.models import build_model
from mlip.nn.batch import collate
from mlip.physics import ForcesAndStress

try:
    from mlip.cli.malloc_tuning import keep_freed_memory
except ImportError:  # PYTHONPATH=<a tree before the setting>, e.g. the baseline of issue 16's 2x goal
    def keep_freed_memory() -> bool:
        return False


def _finished(fn, device: torch.device) -> None:
    """``fn()``, returning once its work is done (on a GPU: once its kernels have run)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, n, device: torch.device):
    """Median seconds per call of ``fn`` over ``n`` calls, after one warm-up call."""
    _finished(fn, device)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        _finished(fn, device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--compile", action="store_true",
                        help="the training step through torch.compile (train.py's compile=true); the first "
                             "call's time (compiling) is printed apart")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args, overrides = parser.parse_known_args()
    print(f"kept freed memory: {keep_freed_memory()}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    label_keys = LabelKeys(**OmegaConf.to_container(cfg.data["keys"]))
    frames = read_frames(cfg.data.train, keys=label_keys)[: cfg.data.batch_size]
    species = sorted({int(z) for f in frames for z in f.numbers})
    index = {z: i for i, z in enumerate(species)}
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model = build_model(**model_cfg, species=species, e0=[-5.0] * len(species), scale=0.7, shift=0.1,
                        avg_num_neighbors=25.0)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}")
    device = torch.device(args.device)
    physics = ForcesAndStress(model).to(device)
    forces = lambda b: physics(b, compute_forces=True, compute_stress=stress, create_graph=True)  # noqa: E731
    if args.compile:
        from mlip.training.compiled_step import CompiledForcesAndStress

        compiled = CompiledForcesAndStress(physics)
        forces = lambda b: compiled(b, compute_forces=True, compute_stress=stress)  # noqa: E731

    batch = collate([frame_to_graph(f, cfg.model.cutoff, index) for f in frames], torch.float32)
    batch = {k: v.to(device) for k, v in batch.items()}
    stress = all(bool(f.pbc.all()) for f in frames)
    print(f"training batch: {len(frames)} frames, {batch['positions'].shape[0]} atoms, "
          f"{batch['edge_index'].shape[1]} edges")
    opt = torch.optim.Adam(physics.parameters(), lr=1e-4)

    def train_step():
        out = forces(batch)
        loss = out["total_energy"].pow(2).mean() + out["pred_forces"].pow(2).mean()
        if stress:
            loss = loss + out["pred_stress"].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=0)
    single = collate([atoms_to_graph(atoms, cfg.model.cutoff, {14: index.get(14, 0)})], torch.float32)
    single = {k: v.to(device) for k, v in single.items()}

    def infer():
        physics(single, compute_forces=True, compute_stress=False)

    if args.compile:
        start = time.perf_counter()
        _finished(train_step, device)
        print(f"first (compiling) train step: {time.perf_counter() - start:.1f} s")
    t_train = _time(train_step, args.calls, device)
    line = f"train step: {t_train * 1e3:.1f} ms ({len(frames) / t_train:.1f} frames/s)"
    if 14 in index:
        t_infer = _time(infer, args.calls, device)
        line += (f"; inference: {t_infer * 1e6 / len(atoms):.1f} µs/atom ({len(atoms)} atoms, "
                 f"{single['edge_index'].shape[1]} edges)")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"{line}, {where}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, fn in (("train step", train_step), ("inference", infer))[: 2 if 14 in index else 1]:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    fn()
            print(f"--- {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
