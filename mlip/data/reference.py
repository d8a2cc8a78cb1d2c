"""Per-element reference energies E0 (eV per atom of each element)."""

import logging
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from mlip.data.io import Frame
from mlip.errors import DataError

log = logging.getLogger(__name__)


def e0_from_isolated_atoms(frames: Sequence[Frame]) -> Dict[int, float]:
    """E0 from single-atom, non-periodic frames with an energy: {Z: energy}."""
    out: Dict[int, float] = {}
    for f in frames:
        if f.is_isolated_atom and f.energy is not None:
            out[next(iter(f.composition))] = float(f.energy)
    return out


#: how a check of the data reacts: raise a DataError, log a warning, or do nothing (``data.checks``)
CHECK_ACTIONS = ("error", "warn", "off")


def composition_matrix(frames: Sequence[Frame], species: Sequence[int]) -> np.ndarray:
    """Counts [F, S]: atoms of each species (columns in the order of ``species``) in each frame
    (a ``Frame`` or a ``FrameSummary``: anything with a ``composition``)."""
    col = {z: k for k, z in enumerate(species)}
    counts = np.zeros((len(frames), len(species)))
    for r, f in enumerate(frames):
        for z, n in f.composition.items():
            counts[r, col[z]] = n
    return counts


def _formula(counts: np.ndarray, species: Sequence[int]) -> str:
    from ase.data import chemical_symbols
    from ase.formula import Formula

    return Formula.from_dict({chemical_symbols[z]: int(n) for z, n in zip(species, counts) if n}).format("hill")


def e0_least_squares(frames: Sequence[Frame], species: Sequence[int],
                     underdetermined: str = "error", fixed: Optional[Dict[int, float]] = None) -> Dict[int, float]:
    """E0 minimising sum_frames (E - sum_Z n_Z E0_Z)^2 over frames with an energy.

    With one element this is the mean energy per atom. When the compositions cannot separate the
    elements (every frame has the same composition, or the compositions are collinear: the
    problem is rank deficient), only sums of E0 are determined: ``underdetermined="error"`` raises a
    ``DataError`` that says so and how to proceed; ``"warn"``/``"off"`` take the minimum-norm
    solution (one of infinitely many, logged as such with ``"warn"``).

    ``fixed``: E0 of some species kept as given (fine-tuning keeps the pretrained model's); only the
    others are fitted, to the energies minus the fixed species' share.
    """
    labelled = [f for f in frames if f.energy is not None]
    if not labelled:
        raise DataError("cannot fit E0 by least squares: no training frame has an energy")
    fixed = {int(z): float(v) for z, v in (fixed or {}).items() if int(z) in species}
    if fixed:
        free = [z for z in species if z not in fixed]
        if not free:
            return {int(z): fixed[int(z)] for z in species}
        rest = [float(f.energy or 0.0) - sum(n * fixed.get(z, 0.0) for z, n in f.composition.items()) for f in labelled]
        return {**fixed, **e0_least_squares(_Shifted.of(labelled, rest, free), free, underdetermined)}
    counts = composition_matrix(labelled, species)
    energies = np.array([f.energy for f in labelled])
    solution, _, rank, _ = np.linalg.lstsq(counts, energies, rcond=None)
    if rank < len(species) and underdetermined != "off":
        from ase.data import chemical_symbols

        formulas = sorted({_formula(c, species) for c in counts})
        what = (f"every training frame has the composition {formulas[0]}" if len(formulas) == 1 else
                f"the {len(formulas)} compositions ({', '.join(formulas[:4])}{', ...' if len(formulas) > 4 else ''}) "
                f"are collinear (rank {rank} < {len(species)} elements)")
        names = ", ".join(chemical_symbols[z] for z in species)
        message = (f"E0 by least squares is not determined: {what}, so the energy cannot be split among "
                   f"{names}. Add isolated-atom frames (one atom, pbc=F, with its energy) to data.train or "
                   "data.e0_file, or give the values: data.e0='{" + ", ".join(f"{chemical_symbols[z]}: ..."
                                                                          for z in species) + "}' (eV), "
                   "or data.e0=zero to fit total energies (an isolated atom then has no meaningful energy). "
                   "data.checks.e0_underdetermined=warn takes the minimum-norm solution instead.")
        if underdetermined == "error":
            raise DataError(message, labelled[0].source)
        log.warning("%s (taking the minimum-norm solution: only sums of E0 over each composition mean anything)",
                    message.split(". Add")[0])
    col = {z: k for k, z in enumerate(species)}
    return {int(z): float(solution[col[z]]) for z in species}


class _Shifted:
    """A frame's composition with another energy (the energy left after the fixed species' E0)."""

    def __init__(self, frame, energy: float, species: Sequence[int]):
        self.composition = {z: n for z, n in frame.composition.items() if z in species}
        self.energy = energy
        self.source = frame.source

    @classmethod
    def of(cls, frames, energies, species: Sequence[int]) -> list:
        return [cls(f, float(e), species) for f, e in zip(frames, energies)]


class E0Result(NamedTuple):
    """Reference energies {Z: eV} and a phrase saying where they came from (for logs and metrics)."""

    values: Dict[int, float]
    source: str


def reference_energies(spec, frames: Sequence[Frame], species: List[int], isolated: Sequence[Frame] = (),
                       underdetermined: str = "error", fixed: Optional[Dict[int, float]] = None) -> E0Result:
    """E0 as configured by ``data.e0`` (see ``resolve_e0``), with where it came from. ``fixed``
    (fine-tuning): E0 of the pretrained model's species, kept; the other species from isolated-atom
    frames where there are some, else by least squares on what the fixed ones leave."""
    from ase.data import atomic_numbers, chemical_symbols

    if fixed:
        found = e0_from_isolated_atoms(isolated)
        known = {**{z: found[z] for z in species if z in found}, **{int(z): float(v) for z, v in fixed.items()}}
        free = [chemical_symbols[z] for z in species if z not in known]
        values = e0_least_squares(frames, species, underdetermined, fixed=known) if free else known
        from_isolated = [chemical_symbols[z] for z in species if z in found and z not in {int(k) for k in fixed}]
        how = "the pretrained model's"
        if from_isolated:
            how += f"; {', '.join(from_isolated)} from isolated-atom frames"
        if free:
            how += f"; {', '.join(free)} by least squares on the training split"
        return E0Result({z: values[z] for z in species}, how)

    if isinstance(spec, str):
        mode = spec
        if mode == "zero":
            return E0Result({z: 0.0 for z in species}, "zero (data.e0=zero)")
        if mode in ("auto", "isolated"):
            found = e0_from_isolated_atoms(isolated)
            missing = [chemical_symbols[z] for z in species if z not in found]
            if not missing:
                return E0Result({z: found[z] for z in species}, "isolated-atom frames")
            if mode == "isolated":
                raise DataError(f"data.e0=isolated, but there is no isolated-atom frame for {', '.join(missing)}")
            if not any(f.energy is not None for f in frames):
                log.warning("no training frame has an energy: E0 = 0 for every element; predicted energies "
                            "are defined only up to a constant")
                return E0Result({z: 0.0 for z in species}, "zero (no energy labels)")
            how = "least squares on the training split"
            if found:
                how += f" (isolated-atom frames lack {', '.join(missing)})"
            return E0Result(e0_least_squares(frames, species, underdetermined), how)
        if mode == "least_squares":
            return E0Result(e0_least_squares(frames, species, underdetermined), "least squares on the training split")
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
    return E0Result({z: out[z] for z in species}, "data.e0 (given)")


def resolve_e0(spec, frames: Sequence[Frame], species: List[int], isolated: Sequence[Frame] = (),
               underdetermined: str = "error") -> Dict[int, float]:
    """E0 as configured by ``data.e0``:

    ``"auto"``: isolated-atom frames when they cover every species, else least squares (zero
    when no training frame has an energy);
    ``"isolated"``: isolated-atom frames (error if a species lacks one);
    ``"least_squares"``; ``"zero"``; or a mapping {symbol or Z: eV}.
    """
    return reference_energies(spec, frames, species, isolated, underdetermined).values
