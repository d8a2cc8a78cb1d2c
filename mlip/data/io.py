"""Reading DFT frames from any ASE-readable file, with checks that name file, frame and problem.

Labels are read for every kind of ``mlip.targets``' registry, each by its reader with its
configured key ``k`` (``data.keys.<kind>``): by default ``atoms.info[k]`` / ``atoms.arrays[k]``
first; then, when ``k`` is ASE's standard name (``energy``, ``forces``, ``stress``), the value
stored by ASE's calculator (extxyz, OUTCAR, ...). Each value is checked for its shape (per atom or
per frame), NaN/inf and the kind's plausibility hook.

Stress is stored as a 3x3 tensor in eV/Å³ with ASE's sign (positive = tensile), from 9 values,
a 3x3 array, or 6 Voigt values (xx, yy, zz, yz, xz, xy). A virial W (eV) becomes
stress = -W / V, V the cell volume in Å³. Molecules (``pbc`` all false, even with a Lattice) carry
no stress (a kind with ``periodic_only``).
"""

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import ase.io
import numpy as np
from ase import Atoms

from mlip import targets
from mlip.errors import ConfigError, DataError
from mlip.targets import MAX_PLAUSIBLE_FORCE, MAX_PLAUSIBLE_STRESS  # noqa: F401  (re-exported)

#: A one-atom frame in a periodic box at least this wide (Å) along every periodic direction is an
#: isolated atom (E0), as plane-wave codes compute it; a 1-atom bulk cell is a few Å wide.
ISOLATED_BOX_WIDTH = 8.0


class LabelKeys:
    """Where labels live in the file: the info/arrays key of each registered kind (default: the
    kind's name) and of the extra entries a reader uses (``virial``). ``LabelKeys(forces="REF_forces")``;
    attributes by kind name (``keys.forces``)."""

    def __init__(self, **given: str):
        defaults = targets.default_file_keys()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"data.keys.{unknown[0]}: no such label kind; known: {', '.join(defaults)}")
        for name, key in {**defaults, **given}.items():
            setattr(self, name, key)

    def as_dict(self) -> Dict[str, str]:
        return dict(vars(self))

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelKeys) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "LabelKeys(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


@dataclass
class Frame:
    """One configuration with its labels: ``labels[kind]`` for each kind of ``mlip.targets`` the
    frame carries, float64 arrays of shape ``[N, *shape]`` (per atom) or ``shape`` (per frame) in
    the kind's unit; ``energy`` (float, eV), ``forces`` ([N, 3] eV/Å) and ``stress`` ([3, 3]
    eV/Å³) read them (None when absent)."""

    numbers: np.ndarray  # [N] atomic numbers
    positions: np.ndarray  # [N, 3] Å
    cell: np.ndarray  # [3, 3] Å, rows are lattice vectors
    pbc: np.ndarray  # [3] bool
    labels: Dict[str, np.ndarray]
    config_type: str
    source: str  # file the frame came from
    index: int  # position of the frame in that file
    info: Dict = field(default_factory=dict)
    label_names: Tuple[str, ...] = ()  # names of the info / arrays / calculator entries (for hints)

    @property
    def energy(self) -> Optional[float]:
        value = self.labels.get("energy")
        return None if value is None else float(value)

    @property
    def forces(self) -> Optional[np.ndarray]:
        return self.labels.get("forces")

    @property
    def stress(self) -> Optional[np.ndarray]:
        return self.labels.get("stress")

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @cached_property
    def composition(self) -> Dict[int, int]:
        """{Z: number of atoms}, elements in increasing Z."""
        zs, counts = np.unique(self.numbers, return_counts=True)
        return {int(z): int(c) for z, c in zip(zs, counts)}

    @property
    def kinds(self) -> FrozenSet[str]:
        """The label kinds this frame carries."""
        return frozenset(self.labels)

    @property
    def force_sq_sum(self) -> float:
        """Sum of squared force components (eV²/Å²); 0 without forces."""
        return float(np.square(self.forces).sum()) if self.forces is not None else 0.0

    @property
    def force_count(self) -> int:
        """Number of labelled force components (3N, or 0 without forces)."""
        return int(self.forces.size) if self.forces is not None else 0

    @property
    def is_isolated_atom(self) -> bool:
        """One atom, not periodic, or periodic in a box whose every periodic width is at least
        ``ISOLATED_BOX_WIDTH`` (how plane-wave codes such as VASP compute an isolated atom)."""
        if self.n_atoms != 1:
            return False
        if not self.pbc.any():
            return True
        volume = abs(float(np.linalg.det(self.cell)))
        if volume <= 0:
            return False
        widths = [volume / np.linalg.norm(np.cross(self.cell[(k + 1) % 3], self.cell[(k + 2) % 3]))
                  for k in range(3) if self.pbc[k]]
        return min(widths) >= ISOLATED_BOX_WIDTH


def _check_finite(value: np.ndarray, what: str, path: str, frame: int) -> None:
    if not np.all(np.isfinite(value)):
        bad = np.argwhere(~np.isfinite(np.atleast_1d(value)))
        raise DataError(f"{what} contains NaN or inf (first at index {bad[0].tolist()})", path, frame)


def atoms_to_frame(atoms: Atoms, keys: Optional[LabelKeys], path: str, index: int) -> Frame:
    """Convert one ``ase.Atoms`` to a checked ``Frame``; ``keys=None`` reads no labels (inference)."""
    n = len(atoms)
    if n == 0:
        raise DataError("frame has no atoms", path, index)
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    _check_finite(positions, "positions", path, index)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    cell = np.asarray(atoms.get_cell()[:], dtype=np.float64)
    volume = abs(np.linalg.det(cell))
    if pbc.all() and volume < 1e-6:
        raise DataError("periodic frame has a cell of zero volume", path, index)
    if pbc.any() and not pbc.all():
        for k in np.flatnonzero(pbc):
            if np.linalg.norm(cell[k]) < 1e-6:
                raise DataError(f"frame is periodic along lattice vector {k}, which is zero", path, index)

    numbers = np.asarray(atoms.get_atomic_numbers(), dtype=np.int64)
    bad = (numbers < 1) | (numbers > 118)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        symbol = atoms.get_chemical_symbols()[first] if 0 <= numbers[first] <= 118 else "?"
        raise DataError(f"atom {first} has atomic number {int(numbers[first])} ({symbol!r}), not a real element "
                        "(ASE reads an unknown species name as X, Z=0): fix the species column of the file",
                        path, index)
    labels = _read_labels(atoms, keys, path, index, pbc) if keys is not None else {}
    info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, np.integer, np.floating))}
    return Frame(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=pbc,
        labels=labels,
        config_type=str(atoms.info.get("config_type", "default")),
        source=str(path),
        index=index,
        info=info,
        label_names=_label_names(atoms),
    )


def _label_names(atoms: Atoms) -> Tuple[str, ...]:
    """Names under which ``atoms`` holds values (info, arrays, calculator results), for hints."""
    skip = {"numbers", "positions", "config_type"}
    names = set(atoms.info) | set(atoms.arrays) | set(getattr(atoms.calc, "results", {}) or {})
    return tuple(sorted(n for n in names if n not in skip))


def _as_label(value, target: targets.Target, key: str, n: int, path: str, index: int) -> np.ndarray:
    """``value`` as a float64 array of the kind's shape ([N, *shape] per atom), or a ``DataError``."""
    what = f"{target.name} '{key}'"
    expected = ((n,) if target.per_atom else ()) + target.shape
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.shape == expected:
        return arr
    if not expected:
        if arr is not None and arr.size == 1:
            return arr.reshape(())
        raise DataError(f"{what} is not a single number: {value!r}", path, index)
    raise DataError(f"{what} have shape {np.shape(value) if arr is None else arr.shape}; expected {expected}",
                    path, index)


def _read_labels(atoms: Atoms, keys: LabelKeys, path: str, index: int, pbc: np.ndarray) -> Dict[str, np.ndarray]:
    """The labels of one frame, {kind: array} for each registered kind it carries (see ``Frame``)."""
    file_keys = keys.as_dict()
    labels: Dict[str, np.ndarray] = {}
    for target in targets.all_targets():
        if target.periodic_only and not pbc.all():
            continue
        key = file_keys[target.name]
        try:
            raw = target.read_value(atoms, file_keys)
        except targets.LabelError as err:
            raise DataError(str(err), path, index) from None
        if raw is None:
            continue
        value = _as_label(raw, target, key, len(atoms), path, index)
        _check_finite(value, f"{target.name} '{key}'", path, index)
        problem = target.check(value, key) if target.check is not None else None
        if problem:
            raise DataError(problem, path, index)
        labels[target.name] = value
    return labels


def read_frames(path: str, keys: Optional[LabelKeys] = None, index: str = ":",
                format: Optional[str] = None) -> List[Frame]:
    """Read and check all frames of ``path`` (any format ASE reads; extxyz first)."""
    keys = keys or LabelKeys()
    path = str(path)
    if not os.path.exists(path):
        raise DataError("file not found", path)
    try:
        images = ase.io.read(path, index=index, format=format)
    except Exception as err:  # ASE raises many types for unreadable files
        raise DataError(f"cannot read the file with ASE ({type(err).__name__}: {err})", path) from None
    if isinstance(images, Atoms):
        images = [images]
    if len(images) == 0:
        raise DataError("file holds no frames", path)
    return [atoms_to_frame(atoms, keys, path, i) for i, atoms in enumerate(images)]


def require_labels(frames: Sequence[Frame], kinds: Sequence[str]) -> None:
    """Raise a ``DataError`` for the first frame that lacks one of ``kinds``."""
    for kind in kinds:
        periodic_only = targets.get(kind).periodic_only
        for f in frames:
            if periodic_only and not f.pbc.all():
                continue  # molecules carry no stress; they are masked out of that term
            if kind not in f.kinds:
                raise DataError(
                    f"no {kind} label, but {kind} is in the loss (set data.keys.{kind} to the right key, "
                    f"or add {kind} to data.allow_missing to leave such frames out of that term)",
                    f.source, f.index)
