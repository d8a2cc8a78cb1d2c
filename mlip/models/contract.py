"""The energy-model contract in code: what every registered model has, the optional hooks it may
define, the check ``build_model`` runs on each model it builds, and the one way the rest of mlip
(training, export, analysis, CLI) reads a hook. Outside ``mlip/models`` no code looks up a hook
by name or dispatches on a model's class: it calls the functions here.

Required (``EnergyModel``):

- ``species: List[int]``: atomic numbers, in the order of the species index of a batch;
- ``cutoff: float`` (Å, > 0): the neighbour-list radius;
- ``forward(batch) -> batch``: adds ``atomic_energy`` [N] and ``total_energy`` [B] (eV),
  differentiable in positions and cell, TorchScript-compatible.

Optional hooks (``OPTIONAL_HOOKS``):

- ``receptive_field: float`` (Å, >= cutoff): how far an atom's energy depends on others (message
  passing: ``num_interactions * cutoff``); engines with ghost atoms need ghosts that deep.
  Default: the cutoff.
- ``initialize_from_data(batches)``: data-dependent initialisation, called once before a fresh
  run (not on resume: the checkpoint restores its result).
- ``l2_parameters() -> List[Tensor]``: the weights L2 acts on (default: every trainable parameter).
- ``smooth_functions() -> List[Tensor]``: learned 1-D functions on uniform grids, each
  [..., n_points], for the curvature penalty (``regularization=smoothness`` needs it).
- ``identifiability_parameters() -> List[str]``: default tensor names for ``mlip identifiability``
  (default: every trainable parameter).
- ``last_layer_parameters() -> List[Tensor]``: the parameters of the last layer the per-atom
  energy is linear in, for last-layer uncertainty (``mlip/uncertainty/llpr.py``). Default: the
  weights and biases of every ``Linear`` with one output (the readout output layers); a model
  without any (the classical ones) has none.
- ``pair_names: List[str]``: names of the species pairs (``Si-Ge``) in the order of per-pair
  parameters, to label them in analyses.
- ``exchange_widths() -> List[int]`` (floats per atom of each layer's output),
  ``exchange_begin(batch, n_centres) -> (h, edges)``,
  ``exchange_layer(t, h, batch, edges) -> (h_centres, y_centres)``, ``exchange_energies(y, batch)``:
  a message-passing model layer by layer, so that an engine with spatial domains (LAMMPS on
  several MPI ranks) can exchange node features between layers and keep its ghost atoms one
  cutoff deep. The first ``n_centres`` atoms are the centres (every edge is centred on one);
  ``h`` is the first layer's input for every atom (for the centres only in a one-layer model,
  where nothing is exchanged), a layer returns the centres' new features and their readout,
  ``exchange_energies`` their per-atom energies (eV). ``forward`` must equal the loop with every
  atom a centre. All four or none (``mlip.export.torchscript.ExportedExchangePotential``).
- ``compile_inputs(batch) -> batch``: the batch with index tensors whose sizes depend on the data
  (per-species atom lists, reverse-edge pairs), computed eagerly before a compiled training step
  (``mlip.training.compiled_step``, ``compile=true``): a compiled graph takes them as inputs, whose
  sizes it can lower, instead of deriving them itself. The model reads them when present and
  computes them itself otherwise. Default: the batch unchanged.
- ``reads_paired_edges: bool``: True when the model exploits ``keys.PAIRED_EDGES`` (edges in
  reverse halves: functions of the edge vector on half of them); the AOTInductor exporter then adds
  the graph ``paired``, which takes an engine's half list. Default: False.
- ``lammps_style() -> str``: the LAMMPS-native form of the model, ``"table"`` or ``"eam/alloy"``
  (``mlip export --format lammps``; without it, only the TorchScript export). A model declaring a
  form provides that form's functions (``LAMMPS_FUNCTIONS``), all in float64 eV / Å:
  ``pair_table`` [S*S] long (pair index of species a, b at ``a * S + b``),
  ``pair_function(p, r) -> [M]`` (pair p at distances r [M]), and for eam/alloy
  ``density_function(a, r) -> [M]``, ``embedding_function(a, rho) -> [M]`` (species index a)
  and ``rho_max() -> float``.
"""

from typing import Dict, Iterable, List, Optional, Protocol, Tuple, cast, runtime_checkable

import torch

Batch = Dict[str, torch.Tensor]


@runtime_checkable
class EnergyModel(Protocol):
    """The required part of the contract (see the module docstring)."""

    species: List[int]
    cutoff: float

    def forward(self, batch: Batch) -> Batch: ...


#: optional hooks: name -> True for methods, False for plain attributes
OPTIONAL_HOOKS: Dict[str, bool] = {
    "receptive_field": False,
    "initialize_from_data": True,
    "l2_parameters": True,
    "smooth_functions": True,
    "identifiability_parameters": True,
    "lammps_style": True,
    "pair_names": False,
    "last_layer_parameters": True,
    "exchange_widths": True,
    "exchange_begin": True,
    "exchange_layer": True,
    "exchange_energies": True,
    "compile_inputs": True,
    "reads_paired_edges": False,
}

#: the hooks of layer-by-layer evaluation with feature exchange: a model has all or none
EXCHANGE_HOOKS: Tuple[str, ...] = ("exchange_widths", "exchange_begin", "exchange_layer", "exchange_energies")

#: the functions each LAMMPS-native form needs (``lammps_style()``)
LAMMPS_FUNCTIONS: Dict[str, Tuple[str, ...]] = {
    "table": ("pair_table", "pair_function"),
    "eam/alloy": ("pair_table", "pair_function", "density_function", "embedding_function", "rho_max"),
}


class ModelContractError(TypeError):
    """A model class that does not meet the contract (a bug in the model, not in a config)."""


def _problems(model: torch.nn.Module) -> List[str]:
    problems = []
    species = getattr(model, "species", None)
    if species is None:
        problems.append("no attribute species (List[int], atomic numbers)")
    elif not isinstance(species, list) or not all(isinstance(z, int) and not isinstance(z, bool) for z in species):
        problems.append(f"species={species!r} is not a List[int] of atomic numbers")
    cutoff = getattr(model, "cutoff", None)
    if cutoff is None:
        problems.append("no attribute cutoff (float, Å)")
    elif not isinstance(cutoff, float) or not cutoff > 0.0:
        problems.append(f"cutoff={cutoff!r} is not a float > 0 (Å)")
    if type(model).forward is torch.nn.Module.forward:
        problems.append("no forward(batch) -> batch adding atomic_energy and total_energy")
    for name, is_method in OPTIONAL_HOOKS.items():
        if hasattr(model, name) and is_method and not callable(getattr(model, name)):
            problems.append(f"{name} is not a method")
    field = getattr(model, "receptive_field", None)
    if field is not None and isinstance(cutoff, float) and not (isinstance(field, (int, float)) and field >= cutoff):
        problems.append(f"receptive_field={field!r} is not a number >= the cutoff {cutoff} (Å)")
    present = [h for h in EXCHANGE_HOOKS if hasattr(model, h)]
    if present and len(present) != len(EXCHANGE_HOOKS):
        problems.append(f"has {', '.join(present)} but not {', '.join(h for h in EXCHANGE_HOOKS if h not in present)} "
                        "(feature exchange needs all four)")
    style_hook = getattr(model, "lammps_style", None)
    if callable(style_hook):
        style = style_hook()
        if style not in LAMMPS_FUNCTIONS:
            problems.append(f"lammps_style() returns {style!r}, not one of {sorted(LAMMPS_FUNCTIONS)}")
        else:
            missing = [f for f in LAMMPS_FUNCTIONS[style] if getattr(model, f, None) is None]
            if missing:
                problems.append(f"lammps_style() is {style!r} but {', '.join(missing)} missing")
    return problems


def check_energy_model(model: torch.nn.Module, name: str = "") -> None:
    """``ModelContractError`` naming everything the built ``model`` lacks of the contract."""
    problems = _problems(model)
    if problems:
        label = f"model={name} ({type(model).__name__})" if name else type(model).__name__
        raise ModelContractError(f"{label} does not meet the energy-model contract (mlip/models/contract.py): "
                                 + "; ".join(problems))


# ---------------------------------------------------------------------------- reading hooks
def energy_model_of(model: torch.nn.Module) -> torch.nn.Module:
    """The registry model inside a ``ForcesAndStress`` wrapper (``model.energy_model``), or
    ``model`` itself."""
    inner = getattr(model, "energy_model", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def species_of(model: torch.nn.Module) -> List[int]:
    """The model's ``species`` (atomic numbers, in species-index order)."""
    return [int(z) for z in cast(EnergyModel, energy_model_of(model)).species]


def cutoff_of(model: torch.nn.Module) -> float:
    """The model's ``cutoff`` (Å)."""
    return float(cast(EnergyModel, energy_model_of(model)).cutoff)


def receptive_field(model: torch.nn.Module) -> float:
    """Å over which an atom's energy depends on others: the hook, else the cutoff."""
    model = energy_model_of(model)
    return float(getattr(model, "receptive_field", cutoff_of(model)))


def has_feature_exchange(model: torch.nn.Module) -> bool:
    """Whether the model can run layer by layer with node features exchanged between domains
    (the ``exchange_*`` hooks), so MD engines need ghost atoms only one cutoff deep."""
    inner = energy_model_of(model)
    return all(callable(getattr(inner, h, None)) for h in EXCHANGE_HOOKS)


def initialize_from_data(model: torch.nn.Module, batches: Iterable[Batch]) -> None:
    """Call the model's data-dependent initialisation, if it has one."""
    hook = getattr(energy_model_of(model), "initialize_from_data", None)
    if hook is not None:
        hook(batches)


def compile_inputs(model: torch.nn.Module, batch: Batch) -> Batch:
    """The model's ``compile_inputs(batch)``, or ``batch`` without the hook."""
    hook = getattr(energy_model_of(model), "compile_inputs", None)
    return hook(batch) if hook is not None else batch


def reads_paired_edges(model: torch.nn.Module) -> bool:
    """Whether the model exploits ``keys.PAIRED_EDGES`` (the hook; default False)."""
    return bool(getattr(energy_model_of(model), "reads_paired_edges", False))


def l2_parameters(model: torch.nn.Module) -> Optional[List[torch.Tensor]]:
    """The model's ``l2_parameters()``, or None without the hook (the caller's default applies)."""
    hook = getattr(energy_model_of(model), "l2_parameters", None)
    return list(hook()) if hook is not None else None


def smooth_functions(model: torch.nn.Module) -> Optional[List[torch.Tensor]]:
    """The model's ``smooth_functions()``, or None without the hook."""
    hook = getattr(energy_model_of(model), "smooth_functions", None)
    return list(hook()) if hook is not None else None


def has_smooth_functions(model: torch.nn.Module) -> bool:
    return hasattr(energy_model_of(model), "smooth_functions")


def identifiability_parameters(model: torch.nn.Module) -> Optional[List[str]]:
    """The model's default tensor names for the Fisher analysis, or None without the hook."""
    hook = getattr(energy_model_of(model), "identifiability_parameters", None)
    return list(hook()) if hook is not None else None


def pair_names(model: torch.nn.Module) -> List[str]:
    """Names of the species pairs of per-pair parameters (``["Si-Si", "Si-Ge", ...]``), or []."""
    return [str(p) for p in getattr(energy_model_of(model), "pair_names", None) or []]


def lammps_style(model: torch.nn.Module) -> Optional[str]:
    """``"table"`` or ``"eam/alloy"``: the model's LAMMPS-native form, or None without one."""
    hook = getattr(energy_model_of(model), "lammps_style", None)
    return hook() if hook is not None else None


def last_layer_parameters(model: torch.nn.Module) -> List[torch.Tensor]:
    """The model's ``last_layer_parameters()`` if it defines the hook, else the weight and bias of
    every ``Linear`` with one output; a ``ValueError`` when there is none."""
    inner = energy_model_of(model)
    hook = getattr(inner, "last_layer_parameters", None)
    if hook is not None:
        params = list(hook())
    else:
        params = [p for m in inner.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1
                  for p in m.parameters()]
    if not params:
        raise ValueError(f"{type(inner).__name__} has no last layer (no Linear with one output and no "
                         "last_layer_parameters hook): last-layer uncertainty needs one")
    return params


def energy_tail(model: torch.nn.Module):
    """The model's ``AtomicEnergies`` (every registered model ends in one, as ``energies``)."""
    from mlip.models.energy import AtomicEnergies

    tail = getattr(energy_model_of(model), "energies", None)
    if not isinstance(tail, AtomicEnergies):
        raise ModelContractError(f"{type(energy_model_of(model)).__name__} has no AtomicEnergies 'energies': "
                                 "model.zbl needs it")
    return tail
