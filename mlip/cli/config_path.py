"""Where the Hydra configs live: ``configs/`` beside the package in a source checkout, or
``mlip/configs`` inside an installed wheel. Also registers the ``${mlip_data:...}`` resolver."""

from pathlib import Path

from omegaconf import OmegaConf

import mlip

_PACKAGE = Path(mlip.__file__).resolve().parent
CONFIG_DIR = str(_PACKAGE.parent / "configs") if (_PACKAGE.parent / "configs").is_dir() else str(_PACKAGE / "configs")
DATA_DIR = _PACKAGE / "datasets"


def shipped_data(relative: str) -> str:
    """Absolute path of a data file shipped in ``mlip/datasets``."""
    return str(DATA_DIR / relative)


if not OmegaConf.has_resolver("mlip_data"):
    OmegaConf.register_new_resolver("mlip_data", shipped_data)
