"""Objects built from config groups: ``_target_`` names a class, the other keys are its arguments.

    optimizer:  {_target_: torch.optim.AdamW, lr: 0.005, amsgrad: true, ema_decay: 0.99, scheduler: {...}}
    logger:     {csv: {_target_: lightning.pytorch.loggers.CSVLogger, name: logs}, ...}
    callbacks:  {lr_monitor: {_target_: lightning.pytorch.callbacks.LearningRateMonitor, ...}, ...}

A key that the class does not accept is a ``ConfigError`` naming ``<group>.<key>`` and the accepted
arguments, before anything is built; a class that cannot be imported names the package to install.
Adding an optimiser, logger or callback is a config file (``configs/optimizer/sgd.yaml``,
``configs/logger/wandb.yaml``, ``configs/callbacks/early_stopping.yaml``), not code.
"""

import importlib
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from mlip.errors import ConfigError

#: keys of the optimizer group that are not arguments of the optimiser class
OPTIMIZER_OWN_KEYS = ("_target_", "ema_decay", "scheduler", "name")
#: the optimiser of checkpoints written before ``optimizer._target_`` existed
LEGACY_OPTIMIZER = "torch.optim.AdamW"


def locate(target: str, key: str) -> Callable:
    """The class or function a dotted ``target`` names; ``key`` is the config key, for errors."""
    module_name, _, attr = str(target).rpartition(".")
    if not module_name:
        raise ConfigError(f"{key}._target_={target!r} must be a dotted path such as torch.optim.AdamW")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{key}._target_={target!r}: cannot import {module_name} ({err}); install the package "
                          f"that provides it (pip install {(err.name or module_name).split('.')[0]})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"{key}._target_={target!r}: {module_name} has no {attr!r}")
    return getattr(module, attr)


def check_arguments(cls: Callable, kwargs: Mapping[str, Any], key: str, positional: Sequence[str] = ()) -> None:
    """Refuse keys that ``cls`` does not accept, naming ``<key>.<name>`` and the accepted ones."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return  # a builtin without a signature: let the call itself decide
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if n not in positional and n != "self"
                and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not an argument of {cls.__module__}.{cls.__qualname__}; "
                          f"its arguments are: {', '.join(accepted)}")


def instantiate(node: Mapping[str, Any], key: str, *args: Any, skip: Sequence[str] = ("_target_",),
                positional: Sequence[str] = (), **extra: Any) -> Any:
    """``node["_target_"](*args, **(node minus skip), **extra)`` with its arguments checked first."""
    if "_target_" not in node:
        raise ConfigError(f"{key}._target_ is missing: name the class to build, e.g. {key}._target_=...")
    cls = locate(node["_target_"], key)
    kwargs = {k: v for k, v in node.items() if k not in skip}
    kwargs.update(extra)
    check_arguments(cls, kwargs, key, positional)
    try:
        return cls(*args, **kwargs)
    except ImportError as err:  # e.g. a logger whose package is not installed
        raise ConfigError(f"{key}: {node['_target_']} needs a package that is not installed ({err}); "
                          f"pip install {(err.name or 'it').split('.')[0]}, or drop {key}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: {node['_target_']} refused its settings: {err}") from None


def build_optimizer(config: Mapping[str, Any], param_groups: List[Dict[str, Any]]):
    """A ``torch.optim.Optimizer`` from the optimizer group (any ``torch.optim`` class, or another
    ``Optimizer`` subclass by dotted path); ``ema_decay`` and ``scheduler`` are read elsewhere."""
    import torch

    node = dict(config)
    node.setdefault("_target_", LEGACY_OPTIMIZER)
    cls = locate(node["_target_"], "optimizer")
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer._target_={node['_target_']!r} is not a torch.optim.Optimizer")
    return instantiate(node, "optimizer", param_groups, skip=OPTIMIZER_OWN_KEYS, positional=("params",))


def build_named(configs: Optional[Mapping[str, Any]], group: str, **defaults: Any) -> List[Any]:
    """One object per entry of a mapping group (``logger``, ``callbacks``); a null entry is skipped.
    ``defaults`` fill arguments the entry does not set and the class accepts (e.g. ``save_dir``)."""
    built = []
    for name, node in dict(configs or {}).items():
        if node is None:
            continue
        key = f"{group}.{name}"
        if not isinstance(node, Mapping):
            raise ConfigError(f"{key} must be a mapping with a _target_ (or null to drop it)")
        cls = locate(node.get("_target_", ""), key) if node.get("_target_") else None
        extra = {}
        if cls is not None:
            try:
                params: Mapping[str, inspect.Parameter] = inspect.signature(cls).parameters
            except (TypeError, ValueError):
                params = {}
            extra = {k: v for k, v in defaults.items() if k in params and k not in node}
        built.append(instantiate(node, key, **extra))
    return built


def refuse_unknown(node: Mapping[str, Any], accepted: Sequence[str], key: str) -> None:
    """A ``ConfigError`` naming ``<key>.<name>`` for the first entry of ``node`` not in ``accepted``."""
    unknown = [k for k in node if k not in accepted]
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not a setting of {key}; its settings are: {', '.join(accepted)}")
