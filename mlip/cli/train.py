"""``python train.py`` / ``mlip-train``: read data, train, validate, test and export.

With ``-m`` (Hydra multirun), one job per combination of the swept values, each in its own
``<sweep dir>/<job number>``; ``mlip cv <sweep dir>`` summarises cross-validation folds.

Outputs in Hydra's run directory: ``config.yaml`` (resolved), ``split.json``, ``metrics.json``,
``parity_energy.png``, ``parity_forces.png``, ``checkpoints/{best,last}.ckpt``, ``model.pt``
and CSV / TensorBoard logs. ``last.ckpt`` is the last completed epoch, ``best.ckpt`` the epoch
of lowest ``val/loss``; each file is replaced atomically (``mlip.fileio``). The run holds the
lock file ``.mlip.lock`` in its directory while it lives, so a second run into it is refused.
"""

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from mlip.cli.check_config import check_config
from mlip.cli.config_path import CONFIG_DIR, config_dict
from mlip.cli.malloc_tuning import keep_freed_memory, restart_with_huge_pages
from mlip.errors import USER_ERRORS, ConfigError, DataError, RunInterrupted
from mlip.fileio import atomic_open, remove_temporaries, run_dir_lock, write_json, write_text
from mlip.training.distributed import PeerFailure

log = logging.getLogger("mlip")

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: training batches shown to a model's ``initialize_from_data`` before training
INIT_BATCHES = 8


#: a best epoch before this fraction of the run (of at least EARLY_BEST_MIN_EPOCHS) is reported
EARLY_BEST_FRACTION = 0.6
EARLY_BEST_MIN_EPOCHS = 20


def _say_when_best_came_early(best_epoch: Optional[int], epochs: int, best_loss: Optional[float] = None,
                              last_loss: Optional[float] = None) -> None:
    """Log when val/loss stopped improving long before the run ended: the later epochs fitted the
    training frames without helping the validation frames (small sets do this: mlearn Si's 193
    training frames reach their lowest validation loss halfway through a 15-minute run, epoch 188
    of 359). ``best_loss`` / ``last_loss``: val/loss at the best and the last epoch, when known."""
    if best_epoch is None or epochs < EARLY_BEST_MIN_EPOCHS or best_epoch > EARLY_BEST_FRACTION * epochs:
        return
    losses = f" ({best_loss:.4g} there, {last_loss:.4g} at the end)" if best_loss is not None and \
        last_loss is not None else ""
    log.info("val/loss was lowest at epoch %d of %d%s, and that epoch is the model evaluated and exported: the "
             "last %d epochs fitted the training frames without improving on the validation frames. A longer run "
             "will not lower the error; more training frames will (mlip learn grows a set where the model is "
             "uncertain), and a shorter run (trainer.max_time, trainer.max_epochs) reaches about the same error "
             "sooner.",
             best_epoch, epochs, losses, epochs - best_epoch)


def _resolve_ckpt(ckpt_path, run_dir: Path):
    """The checkpoint to resume from (``"last"``: the run directory's, if any), or None."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        path = run_dir / "checkpoints" / "last.ckpt"
        if not path.exists():
            log.info("ckpt_path=last: no checkpoint in %s yet, starting fresh (give a fixed hydra.run.dir to "
                     "resume a run)", run_dir)
            return None
        return str(path)
    if not Path(ckpt_path).exists():
        raise ConfigError(f"ckpt_path={ckpt_path}: checkpoint not found")
    return str(ckpt_path)


#: model settings that the data sets (recomputed on resume, so they may differ in the last digits)
_FROM_DATA = ("e0", "scale", "shift", "avg_num_neighbors")
#: model settings added after checkpoints were first written, with the default that old checkpoints had
_ADDED_LATER: Dict[str, Any] = {"zbl": False, "d3": None, "d3_in_labels": True, "d3_cutoff": None}


def _refuse_finished_run(cfg: DictConfig, run_dir: Path) -> None:
    """A fresh run into a directory that already holds checkpoints would overwrite them."""
    if cfg.ckpt_path in (None, "") and list((run_dir / "checkpoints").glob("*.ckpt")):
        raise ConfigError(f"hydra.run.dir={run_dir} already holds a run (checkpoints/*.ckpt): resume it with "
                          "ckpt_path=last, or choose another hydra.run.dir for a new run")


def _is_old_default(key: str, value: Any) -> bool:
    """``value`` of a model setting that a checkpoint written before the setting existed had too."""
    return value in (None, False) or (key in _ADDED_LATER and value == _ADDED_LATER[key])


def _scheduler_name(optimizer_config: Optional[Dict[str, Any]]) -> Optional[str]:
    """``optimizer.scheduler.name`` of an optimiser config (None in a checkpoint that saved none)."""
    scheduler = (optimizer_config or {}).get("scheduler") or {}
    return scheduler.get("name")


def _check_same_settings(saved: Dict[str, Any], model_config: Dict[str, Any], loss_config: Dict[str, Any],
                         optimizer_config: Dict[str, Any], ckpt_path: str) -> None:
    """Resuming needs the model and loss settings and the learning-rate schedule the checkpoint was
    trained with (a schedule's saved state means nothing to another: a run started before the default
    became ``cosine`` resumes with ``optimizer.scheduler.name=plateau``)."""
    saved_model = saved.get("model_config", {})
    # a setting added after the checkpoint was written (model.zbl, model.d3...) matches when left at its default
    pairs = [(f"model.{k}", saved_model.get(k), v) for k, v in model_config.items()
             if k not in _FROM_DATA and not (k not in saved_model and _is_old_default(k, v))]
    saved_sigma = (saved.get("loss_config") or {}).get("sigma") or {}
    pairs += [(f"loss.sigma.{k}", saved_sigma.get(k), v) for k, v in (loss_config.get("sigma") or {}).items()
              if "learned" in (saved_sigma.get(k), v)]
    saved_schedule = _scheduler_name(saved.get("optimizer_config"))
    if saved_schedule is not None:
        pairs.append(("optimizer.scheduler.name", saved_schedule, _scheduler_name(optimizer_config)))
    for key, old, new in pairs:
        if old != new:
            what = "species" if key == "model.species" else key
            raise ConfigError(f"ckpt_path={ckpt_path} was trained with {what}={old!r}, this run has {new!r}: resume "
                              "with the settings (and data) the checkpoint was trained with, or start a new run in "
                              "another hydra.run.dir")


#: keys of the data group (configs/data/*.yaml) and of each split method (configs/split/*.yaml)
DATA_KEYS = ("train", "val", "test", "format", "keys", "e0", "e0_file", "allow_missing", "checks", "batch_size",
             "eval_batch_size", "num_workers")
SPLIT_KEYS = {"random": ("name", "val_fraction", "test_fraction", "group_by", "seed"),
              "kfold": ("name", "k", "fold", "val_fraction", "group_by", "seed")}


def _group(cfg: DictConfig, name: str) -> Dict[str, Any]:
    """A mapping group that may be absent or null (``logger``, ``callbacks``) as a plain dict."""
    node = cfg.get(name)
    return config_dict(node) if node is not None else {}


def build_datamodule(cfg: DictConfig, dtype: torch.dtype, pretrained=None, replay=()):
    """The ``FrameDataModule`` of the data and split groups (their YAML files hold every default;
    an unknown key is refused by name), with the labels the loss requires; when fine-tuning, the
    pretrained model's species first, its E0 kept, and ``replay`` frames added to training."""
    from mlip import targets
    from mlip.training.builders import refuse_unknown
    from mlip.training.datamodule import FrameDataModule
    from mlip.training.loss import loss_kinds

    data, split = config_dict(cfg.data), config_dict(cfg.split)
    refuse_unknown(data, DATA_KEYS, "data")
    if split.get("name") not in SPLIT_KEYS:
        raise ConfigError(f"split.name={split.get('name')!r} is not known; use {' or '.join(SPLIT_KEYS)}")
    refuse_unknown(split, SPLIT_KEYS[split["name"]], "split")
    allowed_missing = set(data["allow_missing"] or [])
    sigma = cfg.loss.sigma if isinstance(cfg.loss.sigma, str) else config_dict(cfg.loss.sigma, resolve=False)
    require = [k for k in loss_kinds(sigma) if k not in allowed_missing]
    # loss.sigma=learned: the kinds are those the training data carries, each then required
    require_if_present = ([k for k in targets.names() if k not in allowed_missing]
                          if isinstance(sigma, str) else [])
    split_args = {("split" if k == "name" else k): v for k, v in split.items()}
    return FrameDataModule(
        train=data["train"], val=data["val"], test=data["test"], format=data["format"], keys=data["keys"],
        e0=data["e0"], e0_file=data["e0_file"], checks=data["checks"], batch_size=data["batch_size"],
        eval_batch_size=data["eval_batch_size"], num_workers=data["num_workers"], require=require,
        require_if_present=require_if_present, dtype=dtype, **split_args,
        cutoff=float(pretrained.model_config["cutoff"]) if pretrained is not None else cfg.model.cutoff,
        species_order=pretrained.species if pretrained is not None else None,
        fixed_e0=pretrained.e0 if pretrained is not None else None, replay=replay)


def run(cfg: DictConfig, run_dir: Path) -> Dict[str, Any]:
    """Train, test and export as configured; returns the metrics written to ``metrics.json``.
    Holds the run directory's lock while it runs (``RunDirInUseError`` if a live run has it)."""
    check_config(cfg)  # every setting, before any work
    with run_dir_lock(run_dir) as lock:
        if lock is not None:  # the launching process; no other writer now
            for directory in (run_dir, run_dir / "checkpoints"):
                if directory.is_dir():
                    remove_temporaries(directory)
        return _run(cfg, run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> Dict[str, Any]:
    import lightning as L
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from mlip.analysis.parity import parity_plot
    from mlip.analysis.report import banner, metric_units, sigma_units, summary_markdown, summary_table
    from mlip.data.statistics import output_normalization
    from mlip.export import export_torchscript
    from mlip.models.contract import initialize_from_data
    from mlip.training.builders import build_named
    from mlip.training.callbacks import EpochLog, checkpoint_callbacks, progress_bar_wanted
    from mlip.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint
    from mlip.training.distributed import batch_line, peer_failure, stop_started_ranks, trainer_settings
    from mlip.training.evaluate import evaluate
    from mlip.training.loss import resolve_sigma
    from mlip.training.module import PotentialModule

    _refuse_finished_run(cfg, run_dir)
    dtype = DTYPES[cfg.dtype]  # checked by check_config
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    t_start = time.time()

    from mlip.training import finetune

    tune = {**finetune.DEFAULTS, **config_dict(cfg.finetune)} if cfg.get("finetune") else dict(finetune.DEFAULTS)
    pretrained = finetune.Pretrained(str(tune["from"])) if tune["from"] else None
    dm = build_datamodule(cfg, dtype, pretrained, finetune.replay_frames(pretrained, float(tune["replay_fraction"]),
                                                                          int(cfg.seed)) if pretrained else [])
    dm.prepare()
    stats = dm.statistics
    loss_config = config_dict(cfg.loss)
    loss_config["sigma"] = resolve_sigma(loss_config["sigma"], dm.label_kinds)
    for kind in [k for k, v in loss_config["sigma"].items() if v is not None and k not in dm.label_kinds]:
        key = getattr(dm.label_keys, kind, kind)
        if key != kind:  # set on purpose, yet no frame has it: a typo, not a data set without that kind
            raise DataError(f"data.keys.{kind}={key!r} was set, but {dm.absent_label_hint(kind)}", cfg.data.train)
        if kind == "stress" and dm.n_periodic_train == 0:
            log.info("loss: stress left out of the loss (no fully periodic training frame: molecules and slabs "
                     "carry no stress)")
        else:
            log.warning("loss: %s left out of the loss: %s", kind, dm.absent_label_hint(kind))
        loss_config["sigma"][kind] = None
    if isinstance(cfg.loss.sigma, str):
        log.info("loss.sigma=learned: learning sigma of %s", ", ".join(loss_config["sigma"]) or "no kind")
    optimizer_config = config_dict(cfg.optimizer)
    if pretrained is not None:  # the pretrained model's settings and normalisation, extended species
        model_config = finetune.model_config_for(pretrained, dm.species, dm.e0)
        optimizer_config["lr"] = float(optimizer_config["lr"]) * float(tune["lr_scale"])
    else:
        model_config = config_dict(cfg.model)
        model_config.update(species=dm.species, e0=dm.e0, avg_num_neighbors=stats["avg_num_neighbors"],
                            **output_normalization(stats, loss_config["sigma"].get("forces") is not None))
    regularization = cfg.get("regularization")
    module = PotentialModule(model_config, loss_config, optimizer_config, dm.config_types,
                             config_dict(regularization) if regularization else None)
    module.to(dtype)
    if cfg.get("compile"):
        module.compile_training_step()
    ckpt_path = _resolve_ckpt(cfg.ckpt_path, run_dir)
    if ckpt_path is not None:
        _check_same_settings(load_checkpoint(ckpt_path)["hyper_parameters"], model_config, loss_config,
                             optimizer_config, ckpt_path)
    elif pretrained is not None:  # weights of the pretrained model (new elements start fresh)
        counts = finetune.transfer(module.model, pretrained)
        log.info("finetune: %d tensors copied, %d extended to new elements, %d new; from %s", counts["copied"],
                 counts["extended"], counts["new"], pretrained.checkpoint)
    else:  # data-dependent initialisation (a resumed run loads it instead)
        batches = [b for _, b in zip(range(INIT_BATCHES), dm.eval_loader("train"))]
        initialize_from_data(module.energy_model, batches)
    if pretrained is not None and tune["freeze"]:
        log.info("finetune: %d parameters frozen (%s)", finetune.freeze(module.model, list(tune["freeze"])),
                 ", ".join(tune["freeze"]))

    ckpt_dir = run_dir / "checkpoints"
    callbacks = [*checkpoint_callbacks(ckpt_dir), *build_named(_group(cfg, "callbacks"), "callbacks")]
    if cfg.optimizer.get("ema_decay"):
        # buffers (E0, scale, normalisation, index tables) are constants: average parameters only
        callbacks.append(EMAWeightAveraging(decay=cfg.optimizer.ema_decay, use_buffers=False))
    trainer_cfg = trainer_settings(config_dict(cfg.trainer))  # mlip's own keys out (ddp_timeout_s)
    trainer_cfg["enable_progress_bar"] = progress_bar_wanted(trainer_cfg.get("enable_progress_bar"))
    if not trainer_cfg["enable_progress_bar"]:
        callbacks.append(EpochLog())
    trainer = L.Trainer(
        **trainer_cfg, default_root_dir=str(run_dir), callbacks=callbacks,
        logger=build_named(_group(cfg, "logger"), "logger", save_dir=str(run_dir)) or False,
        plugins=[AtomicCheckpointIO()], inference_mode=False, use_distributed_sampler=False,
        precision="64-true" if dtype == torch.float64 else "32-true", deterministic=False,
    )
    if trainer.is_global_zero:
        print(banner(str(run_dir), cfg.model.name, sum(p.numel() for p in module.model.parameters()),
                     float(cfg.model.cutoff), dm.summary(), loss_config["sigma"], str(trainer.strategy.root_device),
                     cfg.dtype, ckpt_path), flush=True)
        # data.batch_size is per rank (each rank its own batches; DDP averages their gradients)
        print("  " + batch_line(int(cfg.data.batch_size), trainer.num_nodes * trainer.num_devices,
                                dm.summary()["n_frames"].get("train")), flush=True)
        with atomic_open(run_dir / "config.yaml") as fh:
            OmegaConf.save(cfg, fh, resolve=True)
        dm.save_split(str(run_dir / "split.json"))
    t_fit = time.time()
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    sigterm = False
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    except SIGTERMException:  # a SystemExit with code 0: a scheduler's stop would look like success
        sigterm = True
    except SystemExit:  # Lightning's exit(1) after Ctrl-C (KeyboardInterrupt, status "interrupted")
        if not trainer.interrupted:
            raise
    except Exception as err:  # this rank failed: the ranks it launched must not wait for it in a collective
        stop_started_ranks(trainer)
        lost = peer_failure(err, trainer.global_rank)
        if lost is not None:  # another rank failed first; its own error names the cause
            raise lost from err
        raise
    fit_time = time.time() - t_fit
    if sigterm or trainer.interrupted:
        raise RunInterrupted(
            f"{'SIGTERM' if sigterm else 'interrupted'} after epoch {trainer.current_epoch}: no evaluation or export; "
            f"checkpoints/last.ckpt holds the last completed epoch. Resume with: python train.py "
            f"hydra.run.dir={run_dir} ckpt_path=last (and the same settings)", 143 if sigterm else 130)
    if not trainer.is_global_zero:
        return {}

    # final evaluation on rank 0 only, with the best (EMA) weights, outside Lightning's loop
    best = Path(callbacks[0].best_model_path) if callbacks[0].best_model_path else ckpt_dir / "best.ckpt"
    best_epoch = None
    if best.exists():
        best_state = load_checkpoint(best)
        module.load_state_dict(best_state["state_dict"])
        best_epoch = int(best_state["epoch"]) + 1  # Lightning counts from 0, the epoch log lines from 1
    device = module.device  # evaluate where training ran (rank 0's device)
    results: Dict[str, Any] = {"data": dm.summary(), "epochs": trainer.current_epoch, "best_epoch": best_epoch,
                               "best_checkpoint": str(best), "fit_time_s": fit_time, "wall_time_s": None,
                               "n_parameters": sum(p.numel() for p in module.model.parameters())}
    best_score, last_score = callbacks[0].best_model_score, trainer.callback_metrics.get("val/loss")
    _say_when_best_came_early(best_epoch, trainer.current_epoch, None if best_score is None else float(best_score),
                              None if last_score is None else float(last_score))
    if module.loss_fn.learned_kinds:
        results["learned_sigma"] = module.loss_fn.learned_sigma()
    if dm.split == "kfold":
        results["split"] = {"name": "kfold", "k": dm.k, "fold": dm.fold, "group_by": dm.group_by}
    parities = {}
    for name in ("val", "test", "cv"):
        if name in dm.datasets:
            results[name], parities[name] = evaluate(module.model, dm.eval_loader(name), dm.config_types, device,
                                                     e0=dm.e0)
    if pretrained is not None:  # forgetting: both models on the pretrained run's test frames
        results["finetune"] = {"from": str(pretrained.checkpoint), "new_species": dm.species[len(pretrained.species):],
                               "replayed_frames": len(dm.replay), "freeze": list(tune["freeze"]),
                               "lr_scale": float(tune["lr_scale"]),
                               **finetune.forgetting(module.model, dm.e0, pretrained,
                                                     finetune.old_test_frames(pretrained), device)}
    plotted = "test" if "test" in parities else ("cv" if "cv" in parities else "val")
    _parity_plots(parities[plotted], dm.config_types, plotted, run_dir, parity_plot)
    if cfg.export:
        export_torchscript(module.model, str(run_dir / "model.pt"))
        results["exported_model"] = str(run_dir / "model.pt")
    results["wall_time_s"] = time.time() - t_start
    results["units"] = metric_units()
    write_json(run_dir / "metrics.json", results)
    table = summary_table(results, dm.config_types)
    write_text(run_dir / "summary.md", summary_markdown(results, dm.config_types, str(run_dir)))
    learned = results.get("learned_sigma") or {}
    units = sigma_units()
    sigma_line = ("\n  learned sigma: " + ", ".join(f"{k} {v:.4g} {units[k]}" for k, v in learned.items())
                  if learned else "")
    tuned = results.get("finetune") or {}
    if tuned.get("before"):
        sigma_line += (f"\n  fine-tuned from {tuned['from']}: on its {tuned['old_test_frames']} old test frames, "
                       f"forces MAE {tuned['before']['forces_mae']:.1f} -> {tuned['after']['forces_mae']:.1f} meV/Å, "
                       f"energy {tuned['before']['energy_mae']:.2f} -> {tuned['after']['energy_mae']:.2f} meV/atom")
    print(f"mlip: finished {run_dir} ({results['epochs']} epoch{'s' if results['epochs'] != 1 else ''}, "
          f"{fit_time:.0f} s)\n{table}{sigma_line}\n"
          f"  summary.md, metrics.json and parity plots are in {run_dir}", flush=True)
    return results


def _parity_plots(parity, config_types, split: str, run_dir: Path, parity_plot) -> None:
    """``parity_<kind>.png`` for every registered kind (``mlip.targets``): energy (eV/atom relative
    to E0) and forces (eV/Å) always, stress (GPa) and other kinds when the split has such labels;
    coloured by config_type."""
    from mlip import targets

    for t in targets.all_targets():
        if f"{t.name}_ref" not in parity or (not t.plot_unlabelled and not parity[f"{t.name}_ref"].size):
            continue
        parity_plot(parity[f"{t.name}_ref"], parity[f"{t.name}_pred"], str(run_dir / f"parity_{t.name}.png"),
                    t.parity_quantity, t.parity_unit, t.parity_scale, groups=parity[f"{t.name}_config_type"],
                    group_names=config_types, split=split)


def _quiet_lightning_logging() -> None:
    """Lightning adds its own console handler; Hydra's root handler already prints (and writes
    train.log), so drop Lightning's to avoid every line appearing twice, and drop its adverts."""
    import lightning  # noqa: F401  (its import installs the handlers removed here)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "Tip:" not in str(record.msg))
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # small data sets have fewer batches than the logging interval; the epoch line says what matters
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # epoch-level validation values are already reduced over ranks (torchmetrics sums), not per rank
    warnings.filterwarnings("ignore", message=".*sync_dist=True.* when logging on epoch level in distributed.*")


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from mlip.training.distributed import check_shared_run_dir

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    _quiet_lightning_logging()
    try:
        # before any work: ranks started by torchrun / srun must agree on the directory
        check_shared_run_dir(str(config_dict(hydra_cfg.sweep if hydra_cfg.mode == RunMode.MULTIRUN else
                                             hydra_cfg.run, resolve=False)["dir"]))
        run(cfg, run_dir)
    except (*USER_ERRORS, FloatingPointError, FileNotFoundError, PeerFailure) as err:
        _log_to_files(f"error: {err}")
        print(f"mlip: error: {err}", file=sys.stderr, flush=True)
        _exit(1)
    except RunInterrupted as err:
        _log_to_files(str(err))
        print(f"mlip: {err}", file=sys.stderr, flush=True)
        _exit(err.exit_code)
    except KeyboardInterrupt:
        print("mlip: interrupted before training started; nothing was written", file=sys.stderr, flush=True)
        sys.exit(130)


def _exit(code: int) -> None:
    """``sys.exit(code)``; in a distributed run ``os._exit`` once the logs are flushed: tearing the
    process group down waits for the other ranks, which may be gone (seconds with gloo, up to
    the collective timeout with NCCL), and every file mlip writes is complete already."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _log_to_files(message: str) -> None:
    """Record ``message`` in the run's ``train.log`` (Hydra's file handler) without echoing it on
    the console, where the one ``mlip: error:`` line already says it."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    keep_freed_memory()
    _hydra_main()


def entry() -> None:
    """The installed ``mlip-train`` command: ``main`` in a process restarted with huge pages for
    malloc (``restart_with_huge_pages``)."""
    restart_with_huge_pages()
    main()


if __name__ == "__main__":
    entry()
