"""Per-element reference energies E0 (eV per atom of each element)."""

from typing import Dict, List, Sequence

import numpy as np

from mlip.errors import DataError
from mlip.data.io import Frame


def e0_from_isolated_atoms(frames: Sequence[Frame]) -> Dict[int, float]:
    """E0 from single-atom, non-periodic frames with an energy: {Z: energy}."""
    out: Dict[int, float] = {}
    for f in frames:
        if f.is_isolated_atom and f.energy is not None:
            out[int(f.numbers[0])] = float(f.energy)
    return out


def e0_least_squares(frames: Sequence[Frame], species: Sequence[int]) -> Dict[int, float]:
    """E0 minimising sum_frames (E - sum_Z n_Z E0_Z)^2 over frames with an energy.

    With one element this is the mean energy per atom. Uses the minimum-norm solution when some
    elements always appear in the same ratio (the problem is then rank deficient).
    """
    labelled = [f for f in frames if f.energy is not None]
    if not labelled:
        raise DataError("cannot fit E0 by least squares: no training frame has an energy")
    col = {z: k for k, z in enumerate(species)}
    counts = np.zeros((len(labelled), len(species)))
    for r, f in enumerate(labelled):
        for z in f.numbers:
            counts[r, col[int(z)]] += 1
    energies = np.array([f.energy for f in labelled])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {int(z): float(solution[col[z]]) for z in species}


def resolve_e0(spec, frames: Sequence[Frame], species: List[int], isolated: Sequence[Frame] = ()) -> Dict[int, float]:
    """E0 as configured by ``data.e0``:

    ``"auto"``: isolated-atom frames when they cover every species, else least squares;
    ``"isolated"``: isolated-atom frames (error if a species lacks one);
    ``"least_squares"``; ``"zero"``; or a mapping {symbol or Z: eV}.
    """
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(spec, str):
        mode = spec
        if mode == "zero":
            return {z: 0.0 for z in species}
        if mode in ("auto", "isolated"):
            found = e0_from_isolated_atoms(isolated)
            missing = [chemical_symbols[z] for z in species if z not in found]
            if not missing:
                return {z: found[z] for z in species}
            if mode == "isolated":
                raise DataError(f"data.e0=isolated, but there is no isolated-atom frame for {', '.join(missing)}")
            return e0_least_squares(frames, species)
        if mode == "least_squares":
            return e0_least_squares(frames, species)
        raise DataError(f"data.e0={mode!r}: expected auto, isolated, least_squares, zero or a mapping")
    out: Dict[int, float] = {}
    for key, value in dict(spec).items():
        z = int(key) if str(key).isdigit() else atomic_numbers.get(str(key))
        if z is None:
            raise DataError(f"data.e0 names an unknown element {key!r}")
        out[z] = float(value)
    missing = [chemical_symbols[z] for z in species if z not in out]
    if missing:
        raise DataError(f"data.e0 gives no value for {', '.join(missing)}")
    return {z: out[z] for z in species}
