"""The monitored jobs: ``mlip preprocess`` and ``python train.py`` runs (one rank or DDP)."""

import json
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .common import REPO, job_env, load_average, log
from .procmon import peaks_by_role, run_monitored


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def preprocess(inputs: List[Path], output: Path, workers: int, logs: Path) -> Dict:
    """A fresh ``mlip preprocess`` of ``inputs`` into ``output`` (removed first)."""
    if output.exists():
        shutil.rmtree(output)
    cmd = [sys.executable, "-m", "mlip.cli.main", "preprocess", *map(str, inputs), "--output", str(output),
           "--workers", str(workers), "--no-progress"]
    load = load_average()
    res = run_monitored(cmd, job_env(1), logs / f"preprocess_{output.stem}_w{workers}.log")
    if res["rc"] != 0:
        raise RuntimeError(f"preprocess failed, see {res['log']}")
    manifest = json.loads((output / "mlip_dataset.json").read_text())
    stats = manifest["statistics"]
    res.update(load_before=load, workers=workers, frames=stats["n_frames"], atoms=stats["n_atoms"],
               store_bytes=dir_size(output), extxyz_bytes=sum(dir_size(p) for p in inputs),
               frames_per_s=stats["n_frames"] / res["wall_s"], roles=peaks_by_role(res["processes"]),
               cmd_text=f"mlip preprocess {inputs[0].parent}/*.extxyz --output {output} --workers {workers}")
    return res


def train(name: str, data: str, n_frames: int, work: Path, model: str = "invariant", steps: int = 30,
          devices: int = 1, num_workers: int = 0, eval_frames: int = 32, extra: Optional[List[str]] = None,
          timeout: float = 1800) -> Dict:
    """``python train.py data=custom data.train=<data>`` for ``steps`` optimiser steps (one epoch at
    most), with validation and test splits of about ``eval_frames`` frames each (so the final
    evaluation on rank 0 costs the same at every dataset size) and ``FirstStepTimer``."""
    run_dir = work / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    out_file = work / "runs" / f"{name}.first_step.json"
    for old in out_file.parent.glob(f"{name}.first_step.rank*.json"):
        old.unlink()
    fraction = f"{eval_frames / n_frames:.6f}"
    overrides = ["data=custom", f"data.train={data}", f"model={model}", f"data.num_workers={num_workers}",
                 f"split.val_fraction={fraction}", f"split.test_fraction={fraction}",
                 f"+trainer.max_steps={steps}", "trainer.max_epochs=1", "+trainer.limit_val_batches=2",
                 "trainer.enable_progress_bar=false", "export=false",
                 "trainer.accelerator=cpu", f"trainer.devices={devices}",
                 "+callbacks.first_step._target_=bench_scale_lib.first_step.FirstStepTimer",
                 f"+callbacks.first_step.out_file={out_file}", f"hydra.run.dir={run_dir}"]
    if devices > 1:
        overrides.append("trainer.strategy=ddp")
    overrides += extra or []
    cmd = [sys.executable, str(REPO / "train.py"), *overrides]
    load = load_average()
    log(f"train {name}: {' '.join(overrides[:6])} ...")
    env = job_env(1)
    res = run_monitored(cmd, env, work / "logs" / f"train_{name}.log", timeout=timeout, cwd=str(REPO))
    res.update(name=name, model=model, data=data, steps=steps, devices=devices, num_workers=num_workers,
               load_before=load, roles=peaks_by_role(res["processes"]),
               cmd_text="python train.py " + " ".join(o for o in overrides
                                                      if not o.startswith(("hydra.", "+callbacks"))))
    res["ranks"] = [json.loads(p.read_text()) for p in sorted(out_file.parent.glob(f"{name}.first_step.rank*.json"))]
    if res["rc"] != 0 or not res["ranks"]:
        log(f"train {name} failed (rc {res['rc']}), see {res['log']}")
    return res
