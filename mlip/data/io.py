"""Reading DFT frames from any ASE-readable file, with checks that name file, frame and problem.

Label lookup for each kind (energy, forces, stress, virial) with a configured key ``k``:
``atoms.info[k]`` / ``atoms.arrays[k]`` first; then, when ``k`` is ASE's standard name
(``energy``, ``forces``, ``stress``), the value stored by ASE's calculator (extxyz, OUTCAR, ...).

Stress is stored as a 3x3 tensor in eV/Å³ with ASE's sign (positive = tensile), from 9 values,
a 3x3 array, or 6 Voigt values (xx, yy, zz, yz, xz, xy). A virial W (eV) becomes
stress = -W / V, V the cell volume in Å³. Molecules (``pbc`` all false, even with a Lattice) carry
no stress.
"""

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import ase.io
import numpy as np
from ase import Atoms

from mlip.errors import DataError

#: A stress above this (eV/Å³, = 800 GPa) is taken as a unit mix-up (GPa or kbar read as eV/Å³).
MAX_PLAUSIBLE_STRESS = 5.0
#: A one-atom frame in a periodic box at least this wide (Å) along every periodic direction is an
#: isolated atom (E0), as plane-wave codes compute it; a 1-atom bulk cell is a few Å wide.
ISOLATED_BOX_WIDTH = 8.0
#: A force component above this (eV/Å) is taken as a unit mix-up or a broken calculation.
MAX_PLAUSIBLE_FORCE = 1.0e3


@dataclass
class LabelKeys:
    """Where labels live in the file: info/arrays keys for each kind."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    virial: str = "virial"


@dataclass
class Frame:
    """One configuration with its labels. Arrays in eV, Å, eV/Å, eV/Å³."""

    numbers: np.ndarray  # [N] atomic numbers
    positions: np.ndarray  # [N, 3] Å
    cell: np.ndarray  # [3, 3] Å, rows are lattice vectors
    pbc: np.ndarray  # [3] bool
    energy: Optional[float]  # eV
    forces: Optional[np.ndarray]  # [N, 3] eV/Å
    stress: Optional[np.ndarray]  # [3, 3] eV/Å³
    config_type: str
    source: str  # file the frame came from
    index: int  # position of the frame in that file
    info: Dict = field(default_factory=dict)
    label_names: Tuple[str, ...] = ()  # names of the info / arrays / calculator entries (for hints)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

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


def _calc_result(atoms: Atoms, name: str):
    calc = atoms.calc
    if calc is None:
        return None
    return getattr(calc, "results", {}).get(name)


def _lookup(atoms: Atoms, key: str, standard: str, per_atom: bool):
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if key in atoms.info:
        return atoms.info[key]
    if key == standard:
        return _calc_result(atoms, standard)
    return None


def _as_stress_tensor(value, what: str, path: str, frame: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 9:
        return arr.reshape(3, 3)
    if arr.size == 6:
        xx, yy, zz, yz, xz, xy = arr.reshape(6)
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise DataError(f"{what} has {arr.size} values; expected 9 (3x3) or 6 (Voigt)", path, frame)


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
        k = int(np.flatnonzero(bad)[0])
        symbol = atoms.get_chemical_symbols()[k] if 0 <= numbers[k] <= 118 else "?"
        raise DataError(f"atom {k} has atomic number {int(numbers[k])} ({symbol!r}), not a real element "
                        "(ASE reads an unknown species name as X, Z=0): fix the species column of the file",
                        path, index)
    energy = forces = stress = None
    if keys is not None:
        energy, forces, stress = _read_labels(atoms, keys, path, index, pbc, volume)
    info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, np.integer, np.floating))}
    return Frame(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=pbc,
        energy=energy,
        forces=forces,
        stress=stress,
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


def _read_labels(atoms: Atoms, keys: LabelKeys, path: str, index: int, pbc: np.ndarray, volume: float):
    """Energy (eV), forces [N, 3] (eV/Å) and stress [3, 3] (eV/Å³) of one frame, each None if absent."""
    n = len(atoms)
    energy = _lookup(atoms, keys.energy, "energy", per_atom=False)
    if energy is not None:
        try:
            energy = float(np.asarray(energy, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise DataError(f"energy '{keys.energy}' is not a single number: {energy!r}", path, index) from None
        _check_finite(np.asarray(energy), f"energy '{keys.energy}'", path, index)

    forces = _lookup(atoms, keys.forces, "forces", per_atom=True)
    if forces is not None:
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (n, 3):
            raise DataError(f"forces '{keys.forces}' have shape {forces.shape}; expected ({n}, 3)", path, index)
        _check_finite(forces, f"forces '{keys.forces}'", path, index)
        if np.abs(forces).max() > MAX_PLAUSIBLE_FORCE:
            raise DataError(
                f"a force component of {np.abs(forces).max():.3g} eV/Å is implausible; check units of "
                f"'{keys.forces}' (expected eV/Å)", path, index)

    stress = None
    if pbc.all():
        raw = _lookup(atoms, keys.stress, "stress", per_atom=False)
        if raw is not None:
            stress = _as_stress_tensor(raw, f"stress '{keys.stress}'", path, index)
            _check_finite(stress, f"stress '{keys.stress}'", path, index)
        else:
            virial = _lookup(atoms, keys.virial, "virial", per_atom=False)
            if virial is not None:
                virial = _as_stress_tensor(virial, f"virial '{keys.virial}'", path, index)
                _check_finite(virial, f"virial '{keys.virial}'", path, index)
                stress = -virial / volume
        if stress is not None and np.abs(stress).max() > MAX_PLAUSIBLE_STRESS:
            raise DataError(
                f"a stress component of {np.abs(stress).max():.3g} eV/Å³ ({np.abs(stress).max() * 160.2:.3g} GPa) "
                "is implausible; stress must be in eV/Å³ (1 GPa = 0.00624 eV/Å³, 1 kbar = 0.000624 eV/Å³)",
                path, index)
    return energy, forces, stress


def read_frames(path: str, keys: Optional[LabelKeys] = None, index: str = ":", format: Optional[str] = None) -> List[Frame]:
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
        for f in frames:
            if kind == "stress" and not f.pbc.all():
                continue  # molecules carry no stress; they are masked out of that term
            if getattr(f, kind) is None:
                raise DataError(
                    f"no {kind} label, but {kind} is in the loss (set data.keys.{kind} to the right key, "
                    f"or add {kind} to data.allow_missing to leave such frames out of that term)",
                    f.source, f.index)
