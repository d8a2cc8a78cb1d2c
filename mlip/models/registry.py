"""Model registry: ``model.name`` in the config -> class. Every model takes the same data-derived
arguments (species, cutoff, e0, scale, shift, avg_num_neighbors) plus its own hyperparameters."""

from typing import Any, Dict

import torch

from mlip.errors import ConfigError

from mlip.models.invariant import InvariantDescriptorModel

MODEL_REGISTRY = {"invariant": InvariantDescriptorModel}


def build_model(name: str, **kwargs: Any) -> torch.nn.Module:
    """Instantiate a registered energy model; unknown names give the list of known ones."""
    if name not in MODEL_REGISTRY:
        raise ConfigError(f"model.name={name!r} is not a known model; choose one of {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](**kwargs)

