"""Model registry: ``model.name`` in the config -> class.

Adding a model family: one file in ``mlip/models`` (or ``mlip/models/classical``) with the class,
one line in ``MODEL_REGISTRY`` and one ``configs/model/<name>.yaml``; ``tests/test_model_physics.py``
then checks it (give it small settings in ``SMALL_MODEL_CONFIGS`` of ``mlip/testing/systems.py``).
``build_model`` checks every model it builds against the contract in code
(``mlip/models/contract.py``; ``ModelContractError`` names what is missing); the rest of mlip
reads hooks only through that module's functions.

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
- ``pair_names: List[str]``: names of the species pairs (``Si-Ge``), labelling per-pair tensors.

Optional hook for export: ``lammps_style() -> str`` (``"table"`` or ``"eam/alloy"``) with the
functions that form needs (``contract.LAMMPS_FUNCTIONS``), for ``mlip export --format lammps``.
"""

import inspect
from typing import Any, Dict, Iterable, List

import torch

from mlip.errors import ConfigError
from mlip.models import contract
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


#: constructor arguments the trainer fills from the data, not from ``configs/model/<name>.yaml``
DATA_DERIVED = ("species", "e0", "scale", "shift", "avg_num_neighbors")
#: settings every model takes, handled here rather than by the model class: ``zbl`` adds the
#: screened nuclear repulsion (``mlip.nn.zbl``) to the model's per-atom energies; ``d3`` (a functional
#: name) adds D3(BJ) dispersion (``mlip.nn.dispersion``) with ``d3_cutoff`` (Å, null: s-dftd3's 60 Bohr),
#: ``d3_in_labels=false`` when the labels hold no dispersion (then it is added in the exported files only)
COMMON_KEYS = ("zbl", "d3", "d3_in_labels", "d3_cutoff")


def model_class(name: str) -> type:
    """The registered class of ``model.name``; unknown names give the list of known ones."""
    if name not in MODEL_REGISTRY:
        raise ConfigError(f"model.name={name!r} is not a known model; choose one of {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name]


def accepted_keys(name: str) -> List[str]:
    """Config keys ``model.<key>`` that model ``name`` takes: its constructor's arguments other than
    the data-derived ones, plus ``name``."""
    params = inspect.signature(model_class(name)).parameters
    return ["name"] + [p for p in params if p != "self" and p not in DATA_DERIVED] + list(COMMON_KEYS)


def check_model_keys(name: str, keys: Iterable[str]) -> None:
    """ConfigError naming the first ``model.<key>`` that model ``name`` does not take."""
    allowed = accepted_keys(name)
    unknown = [k for k in keys if k not in allowed and k not in DATA_DERIVED]
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a setting of model={name}; its settings are: "
                          f"{', '.join(allowed)} (remove model.{unknown[0]}, or choose another model)")


def check_model_settings(name: str, settings: Dict[str, Any]) -> None:
    """Keys, then the model's own ranges and combinations before any data is read: the optional
    static hook ``check_settings(settings)`` of the model class (raising ``ConfigError``)."""
    check_model_keys(name, settings)
    if settings.get("zbl") not in (None, True, False):
        raise ConfigError(f"model.zbl={settings['zbl']!r} must be true or false")
    if settings.get("d3") is not None and not isinstance(settings["d3"], str):
        raise ConfigError(f"model.d3={settings['d3']!r} must be a functional name (e.g. pbe) or null")
    if settings.get("d3_in_labels") not in (None, True, False):
        raise ConfigError(f"model.d3_in_labels={settings['d3_in_labels']!r} must be true or false")
    cut = settings.get("d3_cutoff")
    if cut is not None and (isinstance(cut, bool) or not isinstance(cut, (int, float)) or cut <= 0):
        raise ConfigError(f"model.d3_cutoff={cut!r} must be a positive distance in Å, or null for s-dftd3's "
                          "default (60 Bohr = 31.75 Å)")
    if settings.get("d3") is not None:
        from mlip.nn.dispersion import d3_parameters

        d3_parameters(settings["d3"])  # an unknown functional or a missing package, before any data is read
    hook = getattr(model_class(name), "check_settings", None)
    if hook is not None:
        hook({k: v for k, v in settings.items() if k != "name" and k not in COMMON_KEYS})


def build_model(name: str, **kwargs: Any) -> torch.nn.Module:
    """Instantiate a registered energy model; unknown names give the list of known ones, unknown
    settings a ConfigError naming ``model.<key>`` and the model's settings; a model that does not
    meet the contract raises ``contract.ModelContractError`` naming what it lacks."""
    cls = model_class(name)
    check_model_keys(name, kwargs)
    zbl = bool(kwargs.pop("zbl", False))
    d3 = kwargs.pop("d3", None)
    d3_in_labels = kwargs.pop("d3_in_labels", True)
    d3_cutoff = kwargs.pop("d3_cutoff", None)
    model = cls(**kwargs)
    contract.check_energy_model(model, name)
    if zbl:
        contract.energy_tail(model).enable_zbl([int(z) for z in kwargs["species"]])
    if d3 is not None:
        contract.energy_tail(model).enable_d3([int(z) for z in kwargs["species"]], str(d3), d3_cutoff,
                                              in_labels=True if d3_in_labels is None else bool(d3_in_labels))
    return model


#: kept for callers of the registry; the hook is read by ``contract.initialize_from_data``
initialize_from_data = contract.initialize_from_data
