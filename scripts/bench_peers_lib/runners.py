"""Train one tool on one prepared dataset under a wall-clock budget; return its model and timing.

Every runner returns ``{"model": path for peer_eval.py, "fit_time_s", "epochs", "steps"
(when known), "total_s" (the whole training process: reading data, statistics, training,
the tool's own final evaluation and saving), "log": path, "command": list}``.

Budget rule, the same for all three: the clock starts at the first training epoch (after the
tool has read the data, built neighbour lists and computed its statistics) and training stops at
the first optimiser step after ``budget`` seconds (Lightning's ``trainer.max_time`` for mlip and
NequIP, the MACE wrapper in ``mace_train.py``); validation every epoch counts towards it. The
model kept is each tool's best checkpoint by validation loss (EMA weights for all three).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from ase.data import atomic_numbers

from .data import PreparedData

LIB = Path(__file__).resolve().parent
REPO = LIB.parents[1]


def _max_time(budget: float) -> str:
    """Lightning's DD:HH:MM:SS for a budget in seconds (rounded up to a whole second)."""
    s = int(-(-budget // 1))
    dd, s = divmod(s, 86400)
    hh, s = divmod(s, 3600)
    mm, ss = divmod(s, 60)
    return f"{dd:02d}:{hh:02d}:{mm:02d}:{ss:02d}"


def thread_env(threads: int, extra_pythonpath: List[str] = ()) -> dict:
    """The environment of every tool's process: ``threads`` threads, and glibc's huge pages for malloc
    where they can take effect (what mlip's commands restart with; the peers get it too, so the
    tools run side by side in the same environment)."""
    from mlip.cli.malloc_tuning import with_huge_pages

    env = with_huge_pages(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[k] = str(threads)
    env.pop("PYTHONPATH", None)
    if extra_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extra_pythonpath)
    return env


def _run(cmd: List[str], log: Path, env: dict, cwd: Path, timeout: float) -> float:
    t0 = time.time()
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(map(str, cmd)) + "\n")
        fh.flush()
        try:
            res = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(cwd),
                                 timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"{cmd[0]} ran past {timeout:.0f} s; see {log}") from err
    if res.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"command failed (exit {res.returncode}), log {log}:\n{tail}")
    return time.time() - t0


def _hard_timeout(budget: float) -> float:
    """Kill a training process that overruns its budget badly (data preparation, final evaluation
    and export come on top of the budget)."""
    return 3 * budget + 1800


# ----------------------------------------------------------------------------------------- mlip
def train_mlip(data: PreparedData, workdir: Path, budget: float, threads: int, dtype: str, cutoff: float,
               model: str, overrides: List[str], seed: int) -> dict:
    run_dir = workdir / "run"
    workdir.mkdir(parents=True, exist_ok=True)
    log, timing = workdir / "train.log", workdir / "fit_timing.json"
    e0 = "{" + ", ".join(f"{s}: {v!r}" for s, v in data.e0.items()) + "}"
    cmd = [sys.executable, LIB / "mlip_train.py", "--timing-out", timing, "--", f"model={model}"]
    if data.name == "ethanol":
        cmd.append("experiment=rmd17_ethanol")  # mlip's preset loss for rMD17 (no stress term)
    cmd += [f"data.train={data.train}", f"data.val={data.val}", f"data.test={data.test}", f"data.e0={e0}",
            "data.e0_file=null", f"data.batch_size={data.batch_size}", f"dtype={dtype}", f"model.cutoff={cutoff}",
            f"seed={seed}", f"trainer.max_time={_max_time(budget)}", "trainer.max_epochs=10000000",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *overrides]
    total = _run(cmd, log, thread_env(threads, [REPO]), REPO, _hard_timeout(budget))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    t = json.loads(timing.read_text())
    return {"model": str(run_dir / "model.pt"), "fit_time_s": t["fit_time_s"], "epochs": t["epochs"],
            "steps": t["steps"], "n_params": metrics.get("n_parameters"), "total_s": total, "log": str(log),
            "command": [str(c) for c in cmd], "own_test_metrics": metrics.get("test")}


# ----------------------------------------------------------------------------------------- MACE
def mace_args(data: PreparedData, workdir: Path, dtype: str, cutoff: float, seed: int, extra: List[str]) -> List[str]:
    """mace_run_train arguments: MACE with 32x0e+32x1o hidden features, max_L 1, correlation 3,
    2 interactions; MACE's default weighted loss (energy 1, forces 100; stress 1 for Si), Adam
    (AMSGrad) lr 0.01, ReduceLROnPlateau, EMA 0.99; no stage two (it needs a known epoch count)."""
    e0s = "{" + ", ".join(f"{atomic_numbers[s]}: {v!r}" for s, v in data.e0.items()) + "}"
    args = ["--name", "mace", "--seed", str(seed), "--work_dir", str(workdir), "--train_file", data.train,
            "--valid_file", data.val, "--E0s", e0s, "--model", "MACE", "--num_channels", "32", "--max_L", "1",
            "--correlation", "3", "--num_interactions", "2", "--r_max", str(cutoff),
            "--batch_size", str(data.batch_size), "--valid_batch_size", str(2 * data.batch_size),
            "--max_num_epochs", "10000000", "--patience", "10000000", "--ema", "--ema_decay", "0.99",
            "--default_dtype", dtype, "--device", "cpu", "--save_cpu", "--eval_interval", "1",
            "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress"]
    if data.has_stress:
        args += ["--loss", "stress", "--error_table", "PerAtomMAEstressvirials"]
    else:
        args += ["--loss", "weighted", "--error_table", "PerAtomMAE"]
    return args + list(extra)


def train_mace(data: PreparedData, workdir: Path, budget: float, threads: int, dtype: str, cutoff: float,
               python: str, seed: int, extra: List[str]) -> dict:
    (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)  # MACE fails to save if no epoch finished
    log, timing = workdir / "train.log", workdir / "fit_timing.json"
    cmd = [python, LIB / "mace_train.py", "--budget-s", str(budget), "--timing-out", timing, "--",
           *mace_args(data, workdir, dtype, cutoff, seed, extra)]
    total = _run(cmd, log, thread_env(threads), workdir, _hard_timeout(budget))
    t = json.loads(timing.read_text())
    return {"model": str(workdir / "mace.model"), "fit_time_s": t["fit_time_s"], "epochs": t["epochs"],
            "steps": t["steps"], "total_s": total, "log": str(log), "command": [str(c) for c in cmd]}


# --------------------------------------------------------------------------------------- NequIP
NEQUIP_CONFIG = """\
# Written by scripts/bench_peers.py; follows NequIP's configs/tutorial.yaml except where noted.
run: [train]
seed: {seed}
cutoff_radius: {cutoff}
chemical_symbols: {species}
model_type_names: ${{chemical_symbols}}
monitored_metric: val0_epoch/weighted_sum

data:
  _target_: nequip.data.datamodule.ASEDataModule
  seed: {seed}
  train_file_path: {train}
  val_file_path: {val}
  ase_args: {{format: extxyz}}
  transforms:
    - _target_: nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper
      model_type_names: ${{model_type_names}}
      chemical_species_to_atom_type_map: ${{list_to_identity_dict:${{chemical_symbols}}}}
    - _target_: nequip.data.transforms.NeighborListTransform
      r_max: ${{cutoff_radius}}
  train_dataloader:
    _target_: torch.utils.data.DataLoader
    batch_size: {batch_size}
    shuffle: true
  val_dataloader:
    _target_: torch.utils.data.DataLoader
    batch_size: {val_batch_size}
  stats_manager:
    _target_: nequip.data.CommonDataStatisticsManager
    dataloader_kwargs:
      batch_size: {val_batch_size}
    type_names: ${{model_type_names}}

trainer:
  _target_: lightning.Trainer
  accelerator: cpu
  enable_checkpointing: true
  enable_progress_bar: false
  max_epochs: 10000000
  max_time: "{max_time}"        # the benchmark's budget (tutorial: early stopping instead)
  check_val_every_n_epoch: 1
  log_every_n_steps: 20
  logger:
    _target_: lightning.pytorch.loggers.CSVLogger
    save_dir: ${{hydra:runtime.output_dir}}
  callbacks:
    - _target_: lightning.pytorch.callbacks.ModelCheckpoint
      monitor: ${{monitored_metric}}
      dirpath: ${{hydra:runtime.output_dir}}
      filename: best
      save_last: true
    - _target_: fit_timer.FitTimer
      out_file: {timing}

training_module:
  _target_: nequip.train.EMALightningModule
  ema_decay: 0.999
  loss:
    _target_: nequip.train.{loss_class}
    per_atom_energy: true
    coeffs:
{loss_coeffs}
  val_metrics:
    _target_: nequip.train.{metrics_class}
    coeffs:
{metric_coeffs}
  train_metrics: ${{training_module.val_metrics}}
  test_metrics: ${{training_module.val_metrics}}
  optimizer:
    _target_: torch.optim.Adam
    lr: 0.01
  lr_scheduler:
    scheduler:
      _target_: torch.optim.lr_scheduler.ReduceLROnPlateau
      factor: 0.6
      patience: 5
      threshold: 0.2
      min_lr: 1e-6
    monitor: ${{monitored_metric}}
    interval: epoch
    frequency: 1
  model:
    _target_: nequip.model.NequIPGNNModel
    seed: {seed}
    model_dtype: {dtype}
    type_names: ${{model_type_names}}
    r_max: ${{cutoff_radius}}
    num_bessels: 8
    bessel_trainable: false
    polynomial_cutoff_p: 6
    num_layers: {num_layers}
    l_max: 1
    parity: false                  # the tutorial's "often equally good but faster" choice
    num_features: 32
    radial_mlp_depth: 2
    radial_mlp_width: 64
    avg_num_neighbors: ${{training_data_stats:num_neighbors_mean}}
    per_type_energy_scales: ${{training_data_stats:per_type_forces_rms}}
    per_type_energy_shifts: {e0}   # the benchmark's E0 (the tutorial's recommendation)
    per_type_energy_scales_trainable: false
    per_type_energy_shifts_trainable: false

global_options:
  allow_tf32: false
"""


def nequip_config(data: PreparedData, workdir: Path, budget: float, dtype: str, cutoff: float, seed: int,
                  num_layers: int = 3) -> str:
    if data.has_stress:
        loss_class, metrics_class = "EnergyForceStressLoss", "EnergyForceStressMetrics"
        loss_coeffs = {"total_energy": 1.0, "forces": 1.0, "stress": 1.0}
        metric_coeffs = {"total_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": 1.0}
    else:
        loss_class, metrics_class = "EnergyForceLoss", "EnergyForceMetrics"
        loss_coeffs = {"total_energy": 1.0, "forces": 1.0}
        metric_coeffs = {"total_energy_mae": 1.0, "forces_mae": 1.0}

    def block(d):
        return "\n".join(f"      {k}: {v}" for k, v in d.items())

    e0 = "{" + ", ".join(f"{s}: {v!r}" for s, v in data.e0.items()) + "}"
    return NEQUIP_CONFIG.format(
        seed=seed, cutoff=cutoff, species="[" + ", ".join(data.species) + "]", train=data.train, val=data.val,
        batch_size=data.batch_size, val_batch_size=2 * data.batch_size, max_time=_max_time(budget),
        timing=workdir / "fit_timing.json", loss_class=loss_class, metrics_class=metrics_class,
        loss_coeffs=block(loss_coeffs), metric_coeffs=block(metric_coeffs), dtype=dtype, num_layers=num_layers, e0=e0)


def train_nequip(data: PreparedData, workdir: Path, budget: float, threads: int, dtype: str, cutoff: float,
                 python: str, seed: int, extra: List[str], deploy: str = "aoti") -> dict:
    """NequIP: ``nequip-train`` on the config above, then the best checkpoint is deployed for the
    evaluator: ``deploy="aoti"`` runs ``nequip-compile --mode aotinductor --target ase`` (NequIP's
    recommended path for its ASE calculator; TorchScript compilation is refused on torch >= 2.10),
    ``"eager"`` evaluates the checkpoint itself."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, run_dir = workdir / "train.log", workdir / "run"
    (workdir / "bench.yaml").write_text(nequip_config(data, workdir, budget, dtype, cutoff, seed))
    bindir = Path(python).parent
    env = thread_env(threads, [LIB])
    cmd = [bindir / "nequip-train", "-cp", workdir, "-cn", "bench", f"hydra.run.dir={run_dir}", *extra]
    total = _run(cmd, log, env, workdir, _hard_timeout(budget))
    t0 = time.time()
    if deploy == "aoti":
        model = workdir / "model.nequip.pt2"
        _run([bindir / "nequip-compile", run_dir / "best.ckpt", model, "--mode", "aotinductor", "--device", "cpu",
              "--target", "ase"], log, env, workdir, 3600)
    else:
        model = run_dir / "best.ckpt"
    t = json.loads((workdir / "fit_timing.json").read_text())
    return {"model": str(model), "fit_time_s": t["fit_time_s"], "epochs": t["epochs"], "steps": t["steps"],
            "n_params": t.get("n_params"),
            "total_s": total, "compile_s": time.time() - t0, "log": str(log), "command": [str(c) for c in cmd]}
