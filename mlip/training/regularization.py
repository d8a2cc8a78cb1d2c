"""Regularisation penalties added to the training loss (``regularization=none|l2|smoothness``).

- ``l2``: ``alpha * sum_w w^2`` over ``model.l2_parameters()`` when the model defines it, else over
  every trainable parameter of the energy model. E0, scale and shift are buffers of
  ``AtomicEnergies`` and never included; learned loss weights live in the loss module, not in the
  model, so they are never included either.
- ``smoothness``: ``alpha * sum_v sum_i (v[..., i-1] - 2 v[..., i] + v[..., i+1])^2`` over every
  tensor ``v`` of ``model.smooth_functions()`` (last axis along a uniform grid). Each model decides
  what its tensors hold and how they are scaled (see its ``smooth_functions`` docstring): tabulated
  potentials return their knot values (eV), the invariant model its radial functions scaled so that
  the sum approximates the integral of R''(r)^2 and does not depend on the grid size.

The penalty is dimensionless like the data loss (``alpha`` carries the inverse units of the
penalised quantity), so ``training loss = data loss + penalty``. Validation loss never includes it.
"""

from typing import Any, Dict, List, Optional

import torch

from mlip.errors import ConfigError
from mlip.models import contract

REGULARIZERS = ("none", "l2", "smoothness")


def second_differences(v: torch.Tensor) -> torch.Tensor:
    """``v[..., i-1] - 2 v[..., i] + v[..., i+1]`` for i = 1..n-2 along the last axis: [..., n-2]."""
    return v[..., :-2] - 2.0 * v[..., 1:-1] + v[..., 2:]


def l2_parameters(model: torch.nn.Module) -> List[torch.Tensor]:
    """The tensors L2 acts on: the model's ``l2_parameters()`` hook, else its trainable parameters."""
    params = contract.l2_parameters(model)
    return params if params is not None else [p for p in model.parameters() if p.requires_grad]


def l2_penalty(model: torch.nn.Module, alpha: float) -> torch.Tensor:
    params = l2_parameters(model)
    if not params:
        return torch.zeros(())
    return alpha * torch.stack([(p * p).sum() for p in params]).sum()


def smoothness_penalty(model: torch.nn.Module, alpha: float) -> torch.Tensor:
    functions = [v for v in contract.smooth_functions(model) or [] if v.shape[-1] >= 3]
    if not functions:
        return torch.zeros(())
    return alpha * torch.stack([second_differences(v).pow(2).sum() for v in functions]).sum()


class Regularizer:
    """``penalty = Regularizer(config, model)(model)``; ``config`` is ``{name, alpha}`` (or None)."""

    def __init__(self, config: Optional[Dict[str, Any]], model: torch.nn.Module, model_name: Optional[str] = None):
        config = dict(config or {})
        self.name = str(config.get("name", "none"))
        if self.name not in REGULARIZERS:
            raise ConfigError(f"regularization={self.name!r} is not known; choose one of {', '.join(REGULARIZERS)}")
        alpha = config.get("alpha", 0.0)
        try:
            self.alpha = float(alpha if alpha is not None else 0.0)
        except (TypeError, ValueError):
            raise ConfigError(f"regularization.alpha={alpha!r} must be a number >= 0") from None
        if not self.alpha >= 0.0:
            raise ConfigError(f"regularization.alpha={alpha!r} must be a number >= 0")
        if self.name == "smoothness" and (not contract.has_smooth_functions(model) or (
                self.alpha > 0.0 and not [v for v in contract.smooth_functions(model) or [] if v.shape[-1] >= 3])):
            raise ConfigError(
                f"regularization=smoothness needs a model with smooth_functions() (tabulated or learned "
                f"radial functions); model.name={model_name or type(model).__name__} has none, so it would do "
                "nothing: use "
                "regularization=l2 or regularization=none")
        if self.name == "l2" and self.alpha > 0.0 and not l2_parameters(model):
            raise ConfigError(
                f"regularization=l2 would do nothing: model.name={model_name or type(model).__name__} has no "
                "parameters that L2 acts on (a few physical constants per pair, with no natural zero); use "
                "regularization=none, or a tabulated model (spline_pair, eam) for regularised fits")

    @property
    def active(self) -> bool:
        return self.name != "none" and self.alpha > 0.0

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        if self.name == "l2":
            return l2_penalty(model, self.alpha)
        if self.name == "smoothness":
            return smoothness_penalty(model, self.alpha)
        return torch.zeros(())
