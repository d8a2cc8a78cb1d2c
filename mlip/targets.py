"""The registry of label kinds ("targets"): energy, forces, stress, and any kind registered later.

A ``Target`` says everything the trainer needs to know about one kind of label: where it lives in
a file and in a batch, its shape and unit, how to read and check it, its residual for the loss and
the metrics, and how to show it in reports and parity plots. Reading (``mlip.data.io``), graphs
(``mlip.data.graph``), batching (``mlip.nn.batch``), the loss, the metrics, evaluation, the report
tables and the parity plots iterate over ``all_targets()``; adding a kind is one ``register`` call.

Shapes: an entry is one atom (``per_atom``) or one frame; ``shape`` is the shape of one entry, so a
batch holds ``[N, *shape]`` (per atom) or ``[B, *shape]`` (per frame) under ``label_key``, with a
``[B]`` bool mask under ``mask_key`` (True where the frame carries the label; missing labels are
zero-filled). A model gives its prediction under ``prediction_key`` in the same shape.

This module is layer 0: it imports numpy and torch only (ASE lazily, inside the stress reader).
"""

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from mlip import keys

EV_PER_A3_TO_GPA = 160.21766208
#: A stress above this (eV/Å³, = 800 GPa) is taken as a unit mix-up (GPa or kbar read as eV/Å³).
MAX_PLAUSIBLE_STRESS = 5.0
#: A force component above this (eV/Å) is taken as a unit mix-up or a broken calculation.
MAX_PLAUSIBLE_FORCE = 1.0e3


class LabelError(ValueError):
    """A label that cannot be used; ``mlip.data.io`` adds the file and frame to the message."""


Batch = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class Target:
    """One kind of label. Units are mlip's internal ones (eV, Å); ``report_factor`` converts a
    residual to ``report_unit`` for metrics (e.g. eV/Å x 1000 = meV/Å).

    Hooks (``None``: the default, see the functions of the same name in this module):
    ``read(atoms, target, file_keys) -> value | None`` (raise ``LabelError`` for a bad value);
    ``check(value, file_key) -> problem | None`` (plausibility, after shape and finiteness checks);
    ``residual(target, out, batch) -> [M]`` flat residuals over labelled entries, ``prod(shape)``
    values per entry in order (energy: one per frame, per atom);
    ``parity(target, out, batch, frame_e0) -> (ref, pred, frame)`` numpy arrays [M'] of the values
    plotted and the batch frame index of each.
    """

    name: str
    prediction_key: str
    per_atom: bool
    shape: Tuple[int, ...]
    unit: str  # of the label, e.g. eV/Å
    residual_unit: str  # of the residual and of sigma, e.g. eV/atom for energy
    report_unit: str  # of MAE / RMSE in metrics.json and tables, e.g. meV/Å
    report_factor: float  # residual_unit -> report_unit
    sigma_init: float  # initial (and validation-loss) sigma when learned, residual_unit
    label_key: str = ""  # batch key of the label; default: name
    mask_key: str = ""  # batch key of the [B] mask; default: <name>_mask
    file_key: str = ""  # default info / arrays key in files (data.keys.<name>); default: name
    extra_file_keys: Mapping[str, str] = field(default_factory=dict)  # more keys the reader uses
    periodic_only: bool = False  # only fully periodic frames carry it (stress)
    read: Optional[Callable] = None
    check: Optional[Callable] = None
    residual: Optional[Callable] = None
    parity: Optional[Callable] = None
    parity_quantity: str = ""  # axis label; default: name
    parity_unit: str = ""  # default: residual_unit
    parity_scale: float = 1.0  # parity arrays -> parity_unit
    plot_unlabelled: bool = False  # write the parity plot even when no entry is labelled
    table_format: str = "{:.3g} / {:.3g}"  # MAE / RMSE cell of the summary table

    def __post_init__(self):
        for attr, default in (("label_key", self.name), ("mask_key", f"{self.name}_mask"),
                              ("file_key", self.name), ("parity_quantity", self.name),
                              ("parity_unit", self.residual_unit)):
            if not getattr(self, attr):
                object.__setattr__(self, attr, default)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def size(self) -> int:
        """Values per entry (1 for a scalar)."""
        return int(math.prod(self.shape))

    def read_value(self, atoms, file_keys: Mapping[str, str]):
        return (self.read or read_default)(atoms, self, file_keys)

    def residuals(self, out: Batch, batch: Batch) -> torch.Tensor:
        return (self.residual or residual_default)(self, out, batch)

    def parity_arrays(self, out: Batch, batch: Batch, frame_e0: torch.Tensor):
        return (self.parity or parity_default)(self, out, batch, frame_e0)


# ------------------------------------------------------------------------------------ default hooks
def lookup(atoms, key: str, standard: str, per_atom: bool):
    """``atoms.arrays[key]`` (per atom) or ``atoms.info[key]``; when ``key`` is ASE's standard name
    ``standard``, the value stored by ASE's calculator; None if absent."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if key in atoms.info:
        return atoms.info[key]
    if key == standard and atoms.calc is not None:
        return (getattr(atoms.calc, "results", {}) or {}).get(standard)
    return None


def read_default(atoms, target: Target, file_keys: Mapping[str, str]):
    """The value under ``file_keys[target.name]`` (see ``lookup``), or None."""
    return lookup(atoms, file_keys[target.name], target.name, target.per_atom)


def residual_default(target: Target, out: Batch, batch: Batch) -> torch.Tensor:
    """prediction - label over the entries of labelled frames, flattened [M]."""
    mask = batch[target.mask_key]
    if target.per_atom:
        mask = mask[batch[keys.BATCH]]
    return (out[target.prediction_key] - batch[target.label_key])[mask].reshape(-1)


def parity_default(target: Target, out: Batch, batch: Batch, frame_e0: torch.Tensor):
    """Reference and predicted values (every component) of labelled entries, with their frame."""
    mask = batch[target.mask_key].cpu().numpy()
    frame = np.arange(len(mask))
    if target.per_atom:
        frame = batch[keys.BATCH].cpu().numpy()
        mask = mask[frame]
    ref = batch[target.label_key].detach().cpu().numpy()[mask].reshape(-1)
    pred = out[target.prediction_key].detach().cpu().numpy()[mask].reshape(-1)
    return ref, pred, np.repeat(frame[mask], target.size)


# ------------------------------------------------------------------------- energy, forces, stress
def _energy_residual(target: Target, out: Batch, batch: Batch) -> torch.Tensor:
    """(E_pred - E_ref) / N over labelled frames, eV/atom [F]."""
    r = (out[keys.TOTAL_ENERGY] - batch[keys.ENERGY]) / batch[keys.N_ATOMS].to(batch[keys.ENERGY].dtype)
    return r[batch[keys.ENERGY_MASK]]


def _energy_parity(target: Target, out: Batch, batch: Batch, frame_e0: torch.Tensor):
    """Energy per atom relative to E0, (E - sum_i E0[Z_i]) / N in eV/atom, of labelled frames."""
    n = batch[keys.N_ATOMS].to(torch.float64).cpu()
    mask = batch[keys.ENERGY_MASK].cpu().numpy()
    ref, pred = (((v.detach().cpu().double() - frame_e0) / n).numpy()[mask]
                 for v in (batch[keys.ENERGY], out[keys.TOTAL_ENERGY]))
    return ref, pred, np.flatnonzero(mask)


def _check_forces(value: np.ndarray, file_key: str) -> Optional[str]:
    biggest = np.abs(value).max() if value.size else 0.0
    if biggest > MAX_PLAUSIBLE_FORCE:
        return (f"a force component of {biggest:.3g} eV/Å is implausible; check units of "
                f"'{file_key}' (expected eV/Å)")
    return None


def _as_stress_tensor(value, what: str) -> np.ndarray:
    """3x3 from 9 values or from 6 Voigt values (xx, yy, zz, yz, xz, xy; ASE's order)."""
    from ase.stress import voigt_6_to_full_3x3_stress

    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 9:
        return arr.reshape(3, 3)
    if arr.size == 6:
        return np.asarray(voigt_6_to_full_3x3_stress(arr.reshape(6)), dtype=np.float64)
    raise LabelError(f"{what} has {arr.size} values; expected 9 (3x3) or 6 (Voigt)")


def _finite(value: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(value)):
        bad = np.argwhere(~np.isfinite(np.atleast_1d(value)))
        raise LabelError(f"{what} contains NaN or inf (first at index {bad[0].tolist()})")


def _read_stress(atoms, target: Target, file_keys: Mapping[str, str]):
    """Stress [3, 3] eV/Å³ (ASE sign) from the stress key, else from a virial W (eV): -W / V."""
    key = file_keys["stress"]
    raw = lookup(atoms, key, "stress", per_atom=False)
    if raw is not None:
        return _as_stress_tensor(raw, f"stress '{key}'")
    vkey = file_keys["virial"]
    virial = lookup(atoms, vkey, "virial", per_atom=False)
    if virial is None:
        return None
    virial = _as_stress_tensor(virial, f"virial '{vkey}'")
    _finite(virial, f"virial '{vkey}'")
    return -virial / abs(np.linalg.det(np.asarray(atoms.get_cell()[:], dtype=np.float64)))


def _check_stress(value: np.ndarray, file_key: str) -> Optional[str]:
    biggest = np.abs(value).max()
    if biggest > MAX_PLAUSIBLE_STRESS:
        return (f"a stress component of {biggest:.3g} eV/Å³ ({biggest * 160.2:.3g} GPa) is implausible; "
                "stress must be in eV/Å³ (1 GPa = 0.00624 eV/Å³, 1 kbar = 0.000624 eV/Å³)")
    return None


def _stress_parity(target: Target, out: Batch, batch: Batch, frame_e0: torch.Tensor):
    """Voigt components (xx, yy, zz, yz, xz, xy) of labelled frames, eV/Å³ (ASE's conversion)."""
    from ase.stress import full_3x3_to_voigt_6_stress

    mask = batch[keys.STRESS_MASK].cpu().numpy()
    ref, pred = (np.asarray(full_3x3_to_voigt_6_stress(v.detach().cpu().numpy()[mask])).reshape(-1)
                 for v in (batch[keys.STRESS], out[keys.PRED_STRESS]))
    return ref, pred, np.repeat(np.flatnonzero(mask), 6)


ENERGY = Target(keys.ENERGY, keys.TOTAL_ENERGY, per_atom=False, shape=(), unit="eV", residual_unit="eV/atom",
                report_unit="meV/atom", report_factor=1000.0, sigma_init=0.005, mask_key=keys.ENERGY_MASK,
                residual=_energy_residual, parity=_energy_parity, parity_quantity="energy per atom - E0",
                plot_unlabelled=True, table_format="{:.2f} / {:.2f}")
FORCES = Target(keys.FORCES, keys.PRED_FORCES, per_atom=True, shape=(3,), unit="eV/Å", residual_unit="eV/Å",
                report_unit="meV/Å", report_factor=1000.0, sigma_init=0.05, mask_key=keys.FORCES_MASK,
                check=_check_forces, parity_quantity="force component", plot_unlabelled=True,
                table_format="{:.1f} / {:.1f}")
STRESS = Target(keys.STRESS, keys.PRED_STRESS, per_atom=False, shape=(3, 3), unit="eV/Å³",
                residual_unit="eV/Å³", report_unit="GPa", report_factor=EV_PER_A3_TO_GPA, sigma_init=0.003,
                mask_key=keys.STRESS_MASK, extra_file_keys={"virial": "virial"}, periodic_only=True,
                read=_read_stress, check=_check_stress, parity=_stress_parity,
                parity_quantity="stress component", parity_unit="GPa", parity_scale=EV_PER_A3_TO_GPA,
                table_format="{:.3f} / {:.3f}")

# ------------------------------------------------------------------------------------- the registry
_REGISTRY: Dict[str, Target] = {}


def register(target: Target, replace: bool = False) -> Target:
    """Add ``target`` to the registry (after the kinds already there). Its name, label key and
    mask key must not clash with another kind's, nor with an input key of a batch."""
    if target.name in _REGISTRY and not replace:
        raise ValueError(f"target kind {target.name!r} is already registered")
    taken = {k for t in _REGISTRY.values() if t.name != target.name for k in (t.label_key, t.mask_key)}
    inputs = {keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.SPECIES, keys.BATCH, keys.CELL, keys.PBC, keys.N_ATOMS,
              keys.EDGE_INDEX, keys.CELL_SHIFTS, keys.CONFIG_TYPE}
    clash = {target.label_key, target.mask_key} & (taken | inputs)
    if clash:
        raise ValueError(f"target kind {target.name!r}: batch key(s) {sorted(clash)} already in use")
    _REGISTRY[target.name] = target
    return target


def unregister(name: str) -> None:
    """Remove a kind (tests; the built-in kinds stay registered in normal use)."""
    _REGISTRY.pop(name)


def get(name: str) -> Target:
    """The registered kind ``name`` (``KeyError`` if none)."""
    return _REGISTRY[name]


def all_targets() -> Tuple[Target, ...]:
    """Every registered kind, in registration order (energy, forces, stress first)."""
    return tuple(_REGISTRY.values())


def names() -> Tuple[str, ...]:
    return tuple(_REGISTRY)


def default_file_keys() -> Dict[str, str]:
    """Default ``data.keys``: each kind's file key and the extra keys its reader uses (virial)."""
    out: Dict[str, str] = {}
    for t in _REGISTRY.values():
        out[t.name] = t.file_key
        out.update(t.extra_file_keys)
    return out


for _target in (ENERGY, FORCES, STRESS):
    register(_target)
