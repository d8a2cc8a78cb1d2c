"""Model registry: ``model.name`` in the config -> class.

The contract of an energy model (what the trainer, physics wrapper and export rely on):

- constructor: the data-derived arguments ``species`` (atomic numbers), ``cutoff`` (Å), ``e0``
  (eV per atom of each species), ``scale`` (eV), ``shift`` (eV/atom), ``avg_num_neighbors``, plus
  its own hyperparameters from ``configs/model/<name>.yaml``;
- attributes ``species: List[int]`` and ``cutoff: float``;
- ``forward(batch) -> batch`` adding ``atomic_energy`` [N] and ``total_energy`` [B] (eV),
  differentiable in positions and cell, TorchScript-compatible;
- optionally ``receptive_field: float`` (Å), the distance over which an atom's energy depends on
  others (message passing: ``num_interactions * cutoff``; default the cutoff): engines with ghost
  atoms (LAMMPS ``pair_style mlip``, MPI domains) must provide ghosts that deep;
- optionally ``initialize_from_data(batches)`` for data-dependent initialisation, called once
  before training (not on resume: the checkpoint restores its result).

Optional hooks for regularisation and analysis (``mlip.training.regularization``,
``mlip identifiability``):

- ``l2_parameters() -> List[Tensor]``: the weights L2 acts on. Without it, every trainable
  parameter. E0, scale and shift are buffers of ``AtomicEnergies`` (E0 a parameter in classical
  models with ``fit_e0``) and are never included.
- ``smooth_functions() -> List[Tensor]``: learned one-dimensional functions sampled on uniform
  grids, each [..., n_points] (last axis along the grid), for the curvature penalty
  alpha * sum (v[i-1] - 2 v[i] + v[i+1])^2. Tabulated models return their knot values; neural
  models their learned radial functions sampled on a grid over [0, cutoff]. Differentiable.
- ``identifiability_parameters() -> List[str]``: default names (of ``named_parameters`` or
  ``named_buffers``, e.g. ``energies.e0``) for the Fisher analysis: all physical parameters of
  a classical model plus E0; the readout's last layer, E0, scale and shift of a neural model.
"""

from typing import Any

import torch

from mlip.errors import ConfigError
from mlip.models.classical import EmbeddedAtomModel, LennardJones, Morse, SplinePair
from mlip.models.equivariant import EquivariantModel
from mlip.models.invariant import InvariantDescriptorModel

MODEL_REGISTRY = {
    "invariant": InvariantDescriptorModel,
    "equivariant": EquivariantModel,
    "lj": LennardJones,
    "morse": Morse,
    "spline_pair": SplinePair,
    "eam": EmbeddedAtomModel,
}


def build_model(name: str, **kwargs: Any) -> torch.nn.Module:
    """Instantiate a registered energy model; unknown names give the list of known ones."""
    if name not in MODEL_REGISTRY:
        raise ConfigError(f"model.name={name!r} is not a known model; choose one of {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](**kwargs)


def initialize_from_data(model: torch.nn.Module, batches) -> None:
    """Call the model's optional data-dependent initialisation hook."""
    hook = getattr(model, "initialize_from_data", None)
    if hook is not None:
        hook(batches)
