"""Where the Hydra configs live: ``configs/`` beside the package in a source checkout, or
``mlip/configs`` inside an installed wheel. Also registers the ``${mlip_data:...}`` resolver."""

from pathlib import Path
from typing import Any, Dict, cast

from omegaconf import OmegaConf

import mlip

_PACKAGE = Path(mlip.__file__).resolve().parent
CONFIG_DIR = str(_PACKAGE.parent / "configs") if (_PACKAGE.parent / "configs").is_dir() else str(_PACKAGE / "configs")
DATA_DIR = _PACKAGE / "datasets"


def shipped_data(relative: str) -> str:
    """Absolute path of a data file shipped in ``mlip/datasets``."""
    return str(DATA_DIR / relative)


def config_dict(node: Any, resolve: bool = True) -> Dict[str, Any]:
    """A mapping config node as a plain dict (``OmegaConf.to_container``, typed for a mapping)."""
    container = OmegaConf.to_container(node, resolve=resolve)
    if not isinstance(container, dict):
        raise TypeError(f"expected a mapping config node, got {type(container).__name__}")
    return cast(Dict[str, Any], container)


if not OmegaConf.has_resolver("mlip_data"):
    OmegaConf.register_new_resolver("mlip_data", shipped_data)
