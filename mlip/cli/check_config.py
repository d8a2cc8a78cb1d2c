"""Settings checked before any work: ``check_config(cfg)`` raises ``ConfigError`` on the first
setting of a composed ``train.yaml`` config that cannot work, naming the key, the bad value, what
is allowed and how to fix it.

``run()`` calls it first, before reading data, so a typo costs seconds, not a data load or an
epoch. It checks ranges and types only; the checks that need the data (labels present, E0,
enough frames for the split) stay where the data is read.

Under torchrun or SLURM, ``trainer.devices`` and ``trainer.num_nodes`` must match the ranks they
started (``mlip.training.distributed.check_launch``).

``trainer.max_epochs=-1`` (Lightning's "unlimited") is accepted only together with a wall-clock
budget ``trainer.max_time``; without one the run would never end.
"""

import math
import re
from pathlib import Path
from typing import Any, NoReturn, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from mlip import targets
from mlip.cli.config_path import config_dict
from mlip.errors import ConfigError

_ABSENT = object()
#: largest plausible model.cutoff (Å); longer ranges need other physics (electrostatics)
MAX_CUTOFF = 30.0
DTYPES = ("float32", "float64")
E0_MODES = ("auto", "isolated", "least_squares", "zero")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
#: ``trainer.max_time`` as a string, the format Lightning's Timer accepts
MAX_TIME_FORMAT = re.compile(r"(\d+):(\d\d):(\d\d):(\d\d)")
MAX_TIME_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")
SHIPPED_SI = "${mlip_data:mlearn_si/Si_test.extxyz}"


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` on the first setting of ``cfg`` that cannot work (see the module docstring)."""
    for check in (_check_top, _check_model, _check_data, _check_split, _check_optimizer, _check_loss,
                  _check_regularization, _check_trainer):
        check(cfg)


# ---------------------------------------------------------------------------------------- helpers
def _get(cfg: DictConfig, key: str) -> Any:
    """Value at dotted ``key`` (interpolations resolved, containers as plain Python), or ``_ABSENT``."""
    value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).replace("None", "null")


def _fail(key: str, value: Any, rule: str, fix: str = "") -> NoReturn:
    raise ConfigError(f"{key}={_show(value)} {rule}" + (f"; {fix}" if fix else ""))


def _is_number(value: Any, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if integer else math.isfinite(value)


def _range_text(low, high, low_open: bool, high_open: bool, integer: bool, null: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        text = f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"{kind} {'>' if low_open else '>='} {low:g}"
    else:
        text = kind
    return "must be " + text + (" or null" if null else "")


def _number(cfg: DictConfig, key: str, low=None, high=None, low_open: bool = False, high_open: bool = False,
            integer: bool = False, null: bool = False, fix: str = "") -> Optional[float]:
    """Check that ``key`` holds a number in the given range; returns it (None when null or absent)."""
    value = _get(cfg, key)
    if value is _ABSENT or (value is None and null):
        return None
    ok = _is_number(value, integer)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        _fail(key, value, _range_text(low, high, low_open, high_open, integer, null), fix)
    return value


def _choice(cfg: DictConfig, key: str, choices, null: bool = False) -> Any:
    """Check that ``key`` holds one of ``choices``."""
    value = _get(cfg, key)
    if value is _ABSENT or (value is None and null):
        return None
    if value not in choices:
        _fail(key, value, "is not known", f"choose one of {', '.join(map(str, choices))}")
    return value


def _flag(cfg: DictConfig, key: str, null: bool = False) -> None:
    value = _get(cfg, key)
    if value is not _ABSENT and not isinstance(value, bool) and not (value is None and null):
        _fail(key, value, "must be true or false" + (" or null" if null else ""))


# ----------------------------------------------------------------------------------------- groups
def _known_keys(cfg: DictConfig, group: str, accepted) -> None:
    """A ConfigError naming ``<group>.<key>`` for a key the group does not have."""
    from mlip.training.builders import refuse_unknown

    node = _get(cfg, group)
    if isinstance(node, dict):
        refuse_unknown(node, accepted, group)


#: top-level keys of train.yaml (config groups and settings)
TOP_KEYS = ("data", "model", "loss", "optimizer", "trainer", "split", "regularization", "logger", "callbacks",
            "seed", "dtype", "ckpt_path", "export", "compile", "experiment", "finetune")


def _check_top(cfg: DictConfig) -> None:
    """No unknown top-level key; seed, dtype, export, compile."""
    unknown = [str(k) for k in cfg if k not in TOP_KEYS and k != "hydra"]
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a setting of train.py; the top-level settings are: "
                          f"{', '.join(TOP_KEYS)} (did you mean one of them?)")
    _number(cfg, "seed", 0, 2**32 - 1, integer=True, fix="e.g. seed=0")
    tune = cfg.get("finetune")
    if tune is not None:
        from mlip.training.builders import refuse_unknown
        from mlip.training.finetune import DEFAULTS

        if not isinstance(tune, DictConfig):
            _fail("finetune", tune, "must be a mapping", "e.g. finetune.from=outputs/<run>")
        refuse_unknown(config_dict(tune), tuple(DEFAULTS), "finetune")
        _number(cfg, "finetune.lr_scale", 0.0, low_open=True, fix="e.g. finetune.lr_scale=0.1")
        _number(cfg, "finetune.replay_fraction", 0.0, 1.0, fix="e.g. finetune.replay_fraction=0.2")
        source = tune.get("from")
        if source and not Path(str(source)).exists():
            _fail("finetune.from", source, "does not exist", "give a run directory or its checkpoints/best.ckpt")
    _choice(cfg, "dtype", DTYPES)
    _flag(cfg, "export")
    _flag(cfg, "compile")


def _check_model(cfg: DictConfig) -> None:
    """model.name, model.cutoff, settings the model does not take, and cheap model numerics."""
    from mlip.models.registry import MODEL_REGISTRY, check_model_keys, check_model_settings

    name = _choice(cfg, "model.name", sorted(MODEL_REGISTRY))
    cutoff = _number(cfg, "model.cutoff", 0.0, MAX_CUTOFF, low_open=True,
                     fix="the cutoff is a distance in Å, typically 4-6 (e.g. model.cutoff=5.0)")
    check_model_keys(name, config_dict(cfg.model, resolve=False).keys())
    for key in ("num_channels", "num_basis", "n_knots", "n_rho_knots", "num_interactions", "correlation",
                "readout_hidden", "cutoff_p"):
        _number(cfg, f"model.{key}", 1, integer=True, null=True)
    for key in ("l_max", "sh_l_max"):
        _number(cfg, f"model.{key}", 0, integer=True, null=True)
    for key in ("hidden", "radial_hidden"):
        widths = _get(cfg, f"model.{key}")
        if widths not in (_ABSENT, None) and (not isinstance(widths, list)
                                              or not all(_is_number(w, True) and w >= 1 for w in widths)):
            _fail(f"model.{key}", widths, "must be a list of layer widths, integers >= 1",
                  f"e.g. model.{key}=[32,32]")
    for key in ("epsilon_init", "D_e_init", "a_init", "rho_max_init"):
        _number(cfg, f"model.{key}", 0.0, low_open=True)
    _number(cfg, "model.rho_margin", 1.0)
    if cutoff is not None:
        _number(cfg, "model.r_min", 0.0, cutoff, low_open=True, high_open=True,
                fix="the first knot lies between 0 and model.cutoff")
    _flag(cfg, "model.fit_e0")
    _flag(cfg, "model.parity", null=True)
    check_model_settings(name, config_dict(cfg.model))  # the model's own checks


def _check_data(cfg: DictConfig) -> None:
    """data.train set, data files present, your own data.train not silently tested on the shipped
    Si set, batch sizes, workers, allow_missing, e0."""
    if "data" not in cfg:
        return
    if OmegaConf.is_missing(cfg.data, "train") or cfg.data.get("train") in (None, ""):
        raise ConfigError("data.train is not set: give your training file, e.g. "
                          "python train.py data=custom data.train=my_train.extxyz")
    for key in ("train", "val", "test", "e0_file"):
        path = _get(cfg, f"data.{key}")
        if path is _ABSENT or path is None:
            continue
        if not isinstance(path, str):
            _fail(f"data.{key}", path, "must be one file", "join several files into one first "
                  "(e.g. cat a.extxyz b.extxyz > train.extxyz); tag frames with config_type to tell them apart")
        if not Path(path).exists():
            hint = (" (the shipped presets find ../shared/data beside the checkout, or set MLIP_SHARED_DATA=<dir>)"
                    if "shared/data" in path else "")
            raise ConfigError(f"data.{key}={path}: file not found (relative paths start from {Path.cwd()}){hint}")
        if Path(path).is_dir():
            from mlip.data.store import is_store, read_manifest

            if not is_store(path):
                _fail(f"data.{key}", path, "is a directory but not a dataset written by mlip preprocess",
                      "give a file ASE can read (extxyz, OUTCAR, ...) or the --output directory of mlip preprocess")
            read_manifest(path)  # a DataError when preprocessing did not finish
    train = _get(cfg, "data.train")
    for key in ("val", "test"):
        other = _get(cfg, f"data.{key}")
        if isinstance(other, str) and Path(other).resolve() == Path(train).resolve():
            _fail(f"data.{key}", other, "is the training file: its errors would be measured on trained frames",
                  f"give a separate file, or data.{key}=null to hold out split.{key}_fraction of data.train")
    keys = _get(cfg, "data.keys")
    if keys is not _ABSENT and not isinstance(keys, dict):
        _fail("data.keys", keys, "must be a mapping", "set one key at a time, e.g. data.keys.energy=REF_energy")
    _check_shipped_test(cfg)
    _number(cfg, "data.batch_size", 1, integer=True, fix="frames per training batch and rank, e.g. data.batch_size=8")
    _number(cfg, "data.eval_batch_size", 1, integer=True, fix="e.g. data.eval_batch_size=16")
    _number(cfg, "data.num_workers", 0, integer=True, fix="0 loads batches in the main process")
    allow = _get(cfg, "data.allow_missing")
    kinds = targets.names()
    if allow not in (_ABSENT, None) and (not isinstance(allow, list) or not set(allow) <= set(kinds)):
        _fail("data.allow_missing", allow, f"must be a list of label kinds among {', '.join(kinds)}",
              "e.g. data.allow_missing=[stress]")
    e0 = _get(cfg, "data.e0")
    if isinstance(e0, dict):
        bad = [k for k, v in e0.items() if not _is_number(v)]
        if bad:
            _fail(f"data.e0.{bad[0]}", e0[bad[0]], "must be a finite number (eV per atom)")
    elif e0 is not _ABSENT and e0 not in E0_MODES:
        _fail("data.e0", e0, "is not known", f"choose one of {', '.join(E0_MODES)} or a mapping such as "
              "'data.e0={Si: -0.8}'")


def _check_shipped_test(cfg: DictConfig) -> None:
    """Refuse your own data.train still tested on the shipped Si test file (data=mlearn_si's default)."""
    raw = config_dict(cfg.data, resolve=False)
    if raw.get("test") != SHIPPED_SI:
        return
    from mlip.cli.config_path import shipped_data

    train = str(cfg.data.train)
    if Path(train).resolve() == Path(shipped_data("mlearn_si/Si_training.extxyz")).resolve():
        return
    raise ConfigError(
        f"data.train={train!r} is your own file but data.test is still the shipped mlearn Si test set "
        "(the default data=mlearn_si): add data=custom, e.g. python train.py data=custom "
        f"data.train={train} (test frames are then split off your file; data.test=FILE gives a test "
        "file of your own)")


def _check_split(cfg: DictConfig) -> None:
    """split.name, fractions in [0, 1) with val + test < 1, k >= 2 and 0 <= fold < k."""
    name = _choice(cfg, "split.name", ("random", "kfold"))
    _number(cfg, "split.seed", 0, 2**32 - 1, integer=True)
    val = _number(cfg, "split.val_fraction", 0.0, 1.0, high_open=True, fix="e.g. split.val_fraction=0.1")
    test = _number(cfg, "split.test_fraction", 0.0, 1.0, high_open=True, fix="e.g. split.test_fraction=0.1")
    if name == "random":
        used_val = 0.0 if _get(cfg, "data.val") not in (None, _ABSENT) else (val or 0.0)
        used_test = 0.0 if _get(cfg, "data.test") not in (None, _ABSENT) else (test or 0.0)
        if used_val + used_test >= 1.0:
            raise ConfigError(f"split.val_fraction={val} + split.test_fraction={test} = {used_val + used_test:g} "
                              "must be < 1: nothing would be left for training; lower one of them")
    if name == "kfold":
        if val is not None and val <= 0.0 and _get(cfg, "data.val") in (None, _ABSENT):
            _fail("split.val_fraction", val, "must be in (0, 1) with split=kfold",
                  "an inner validation set is carved from the training folds (e.g. split.val_fraction=0.1)")
        k = _number(cfg, "split.k", 2, integer=True, fix="k-fold cross-validation needs at least 2 folds")
        if k is not None:
            _number(cfg, "split.fold", 0, k - 1, integer=True,
                    fix=f"folds are numbered 0..{k - 1} for split.k={k}")


def _check_optimizer(cfg: DictConfig) -> None:
    """optimizer class and its arguments, lr, weight decay, EMA decay and the learning-rate schedule."""
    import inspect

    import torch

    from mlip.training.builders import OPTIMIZER_OWN_KEYS, check_arguments, locate

    target = _get(cfg, "optimizer._target_")
    if target is _ABSENT or not isinstance(target, str):
        _fail("optimizer._target_", None if target is _ABSENT else target, "must name a torch.optim class",
              "e.g. optimizer=adamw or optimizer=sgd (configs/optimizer/)")
    cls = locate(target, "optimizer")
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        _fail("optimizer._target_", target, "is not a torch.optim.Optimizer", "e.g. torch.optim.AdamW")
    node = _get(cfg, "optimizer")
    check_arguments(cls, {k: v for k, v in node.items() if k not in OPTIMIZER_OWN_KEYS}, "optimizer",
                    positional=("params",))
    _number(cfg, "optimizer.lr", 0.0, low_open=True, fix="e.g. optimizer.lr=0.005")
    _number(cfg, "optimizer.weight_decay", 0.0, fix="0 turns weight decay off")
    _flag(cfg, "optimizer.amsgrad")
    _number(cfg, "optimizer.ema_decay", 0.0, 1.0, high_open=True, null=True,
            fix="e.g. optimizer.ema_decay=0.99; null (or 0) turns the EMA off")
    from mlip.training.schedule import SCHEDULERS

    _choice(cfg, "optimizer.scheduler.name", SCHEDULERS)
    _number(cfg, "optimizer.scheduler.factor", 0.0, 1.0, low_open=True, high_open=True,
            fix="the learning rate is multiplied by it on a plateau (e.g. 0.5)")
    _number(cfg, "optimizer.scheduler.patience", 0, integer=True, fix="epochs without improvement, e.g. 10")
    _number(cfg, "optimizer.scheduler.min_lr", 0.0, fix="e.g. optimizer.scheduler.min_lr=1e-5")


def _check_loss(cfg: DictConfig) -> None:
    """loss.sigma (> 0, null or 'learned'), loss.sigma_init (> 0), loss.huber_delta (> 0 or null);
    no other key in loss (the arguments of training.loss.WeightedLoss)."""
    _known_keys(cfg, "loss", ("sigma", "huber_delta", "sigma_init", "properties"))
    props = _get(cfg, "loss.properties")
    if props not in (_ABSENT, None):
        from mlip.training.property_loss import check_properties

        if not isinstance(props, list):
            _fail("loss.properties", props, "must be a list of {structure, elastic, sigma} entries")
        check_properties(list(props))
    sigma = _get(cfg, "loss.sigma")
    kinds = targets.names()
    if isinstance(sigma, str) and sigma != "learned":
        _fail("loss.sigma", sigma, "is not known", "use 'learned' or per kind, e.g. loss.sigma.forces=0.05")
    if sigma is not _ABSENT and not isinstance(sigma, (str, dict)):
        _fail("loss.sigma", sigma, "is one value for every kind", "set it per kind (e.g. loss.sigma.forces=0.05 "
              "loss.sigma.energy=0.02), or loss.sigma=learned")
    if isinstance(sigma, dict):
        for kind, value in sigma.items():
            if kind not in kinds:
                raise ConfigError(f"loss.sigma.{kind}: unknown kind; use {', '.join(kinds)}")
            if value is not None and value != "learned" and not (_is_number(value) and value > 0):
                _fail(f"loss.sigma.{kind}", value, "must be > 0, 'learned', or null",
                      f"null leaves {kind} out of the loss")
        if all(v is None for v in sigma.values()):
            _fail("loss.sigma", sigma, "leaves every kind out",
                  "set at least one of loss.sigma.energy, loss.sigma.forces, loss.sigma.stress")
    for kind in kinds:
        _number(cfg, f"loss.sigma_init.{kind}", 0.0, low_open=True, null=True)
    _number(cfg, "loss.huber_delta", 0.0, low_open=True, null=True,
            fix="in units of sigma, e.g. loss.huber_delta=1.0; null for squared errors")


def _check_regularization(cfg: DictConfig) -> None:
    """regularization name and alpha >= 0, and no other key."""
    _known_keys(cfg, "regularization", ("name", "alpha"))
    from mlip.training.regularization import REGULARIZERS

    _choice(cfg, "regularization.name", REGULARIZERS)
    _number(cfg, "regularization.alpha", 0.0, null=True, fix="e.g. regularization.alpha=1e-6")


def _check_trainer(cfg: DictConfig) -> None:
    """Arguments of lightning.Trainer, epochs, wall-clock budget, clipping, devices and the accelerator."""
    import lightning

    from mlip.training.builders import check_arguments
    from mlip.training.distributed import TRAINER_OWN_KEYS

    trainer = _get(cfg, "trainer")
    if isinstance(trainer, dict):  # mlip sets these itself
        own = ("default_root_dir", "callbacks", "logger", "plugins", "precision", "inference_mode",
               "use_distributed_sampler", "deterministic")
        taken = [k for k in trainer if k in own]
        if taken:
            _fail(f"trainer.{taken[0]}", trainer[taken[0]], "is set by mlip",
                  "use dtype= for precision, the logger and callbacks groups, hydra.run.dir for the directory")
        check_arguments(lightning.Trainer, {k: v for k, v in trainer.items() if k not in TRAINER_OWN_KEYS}, "trainer")
    _check_epochs(cfg)
    _number(cfg, "trainer.gradient_clip_val", 0.0, null=True, fix="null or 0 turns clipping off")
    _number(cfg, "trainer.num_nodes", 1, integer=True)
    _number(cfg, "trainer.log_every_n_steps", 1, integer=True)
    _number(cfg, "trainer.check_val_every_n_epoch", 1, integer=True, null=True)
    _flag(cfg, "trainer.enable_progress_bar", null=True)
    _flag(cfg, "trainer.enable_model_summary")
    _number(cfg, "trainer.ddp_timeout_s", 0.0, low_open=True, null=True,
            fix="seconds a rank waits in a collective for the others, e.g. trainer.ddp_timeout_s=600; null: 1800")
    _check_devices(cfg)
    _check_launch(cfg)


def _check_launch(cfg: DictConfig) -> None:
    """Under torchrun or SLURM, trainer.devices and trainer.num_nodes match the ranks they started;
    trainer.ddp_timeout_s only with a ddp strategy."""
    from mlip.training.distributed import check_launch, strategy_argument

    devices, nodes = _get(cfg, "trainer.devices"), _get(cfg, "trainer.num_nodes")
    check_launch(None if devices is _ABSENT else devices, 1 if nodes is _ABSENT else nodes)
    timeout, strategy = _get(cfg, "trainer.ddp_timeout_s"), _get(cfg, "trainer.strategy")
    if timeout not in (_ABSENT, None):
        strategy_argument("auto" if strategy is _ABSENT else strategy, timeout)  # a ConfigError unless ddp


def _check_epochs(cfg: DictConfig) -> None:
    """max_epochs >= 1, or -1 (unlimited) with a max_time; max_time parseable."""
    budget = _check_max_time(cfg)
    epochs = _get(cfg, "trainer.max_epochs")
    if epochs is _ABSENT:
        return
    if epochs == 0 and _is_number(epochs, True):
        _fail("trainer.max_epochs", epochs, "would train nothing", "use trainer.max_epochs >= 1")
    if epochs in (-1, None) and not isinstance(epochs, bool):
        if budget is None:
            _fail("trainer.max_epochs", epochs, "(unlimited) needs a wall-clock budget, else the run never ends",
                  "set trainer.max_time=DD:HH:MM:SS too (e.g. trainer.max_time=00:01:00:00), or "
                  "trainer.max_epochs >= 1")
        return
    _number(cfg, "trainer.max_epochs", 1, integer=True,
            fix="e.g. trainer.max_epochs=100 (-1 for unlimited, together with trainer.max_time)")


def _check_max_time(cfg: DictConfig) -> Optional[float]:
    """``trainer.max_time`` in seconds (None when unset), as Lightning parses it: a "DD:HH:MM:SS"
    string or a mapping of timedelta units such as {hours: 1, minutes: 30}."""
    value = _get(cfg, "trainer.max_time")
    if value in (None, _ABSENT):
        return None
    fix = 'use "DD:HH:MM:SS", e.g. trainer.max_time=00:01:30:00, or a mapping such as \'trainer.max_time={hours: 1}\''
    seconds: Optional[float] = None
    if isinstance(value, str):
        match = MAX_TIME_FORMAT.fullmatch(value.strip())
        if match:
            d, h, m, s = (int(g) for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + s
    elif isinstance(value, dict) and value and set(value) <= set(MAX_TIME_UNITS) and all(
            _is_number(v) and v >= 0 for v in value.values()):
        import datetime

        seconds = datetime.timedelta(**value).total_seconds()
    if seconds is None:
        _fail("trainer.max_time", value, "is not a duration", fix)
    if seconds <= 0:
        _fail("trainer.max_time", value, "is zero: nothing would be trained", fix)
    return seconds


def _check_devices(cfg: DictConfig) -> None:
    """trainer.accelerator known, a GPU present when asked for, trainer.devices >= 1 (or -1, auto,
    a list of indices)."""
    accelerator = _choice(cfg, "trainer.accelerator", ACCELERATORS)
    devices = _get(cfg, "trainer.devices")
    ok = (devices in (_ABSENT, "auto", -1) or (_is_number(devices, True) and devices >= 1)
          or (isinstance(devices, list) and devices and all(_is_number(d, True) and d >= 0 for d in devices))
          or (isinstance(devices, str) and re.fullmatch(r"\d+(,\d+)*,?", devices.replace(" ", ""))))
    if not ok:
        _fail("trainer.devices", devices, "must be an integer >= 1, -1 (all), auto, or a list of device indices",
              "e.g. trainer.devices=1")
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        _fail("trainer.accelerator", accelerator,
              f"but PyTorch sees no GPU (torch {torch.__version__}, {build}; torch.cuda.is_available() is False)",
              "train on the CPU with trainer.accelerator=cpu (or auto), or install the CUDA build of torch on a "
              "GPU machine")
    if _is_number(devices, True) and devices > torch.cuda.device_count():
        _fail("trainer.devices", devices, f"asks for more GPUs than the {torch.cuda.device_count()} PyTorch sees",
              f"use trainer.devices={torch.cuda.device_count()} or fewer")
