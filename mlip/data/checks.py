"""Plausibility checks of labelled frames before training: energies in another unit, and E0 that
does not fit the data. Each raises a ``DataError`` naming file, frame and problem, and how to
proceed; ``data.checks.<name>=warn`` logs instead, ``off`` skips (``CHECKS`` lists the names).

Energy outliers use robust statistics of the energy per atom after E0, r_f = (E_f - sum_Z n_Z E0_Z)
/ N_f, with E0 from least squares (minimum norm, so r is defined for any set of compositions). A
frame is an outlier when |r_f - median| > ``OUTLIER_Z`` x 1.4826 MAD and > ``OUTLIER_MIN_EV`` eV/atom,
where median and MAD are those of the frames that are not outliers (refitted until stable). On the
real DFT sets in ``shared/data`` the largest such deviation of a frame is 13 MADs (ethanol dimers,
8.6 eV/atom) or 0.5 eV/atom (H removal, 334 MADs): neither is flagged. An outlier that a unit
factor (kcal/mol, kJ/mol, Hartree, Rydberg, meV, or an energy given per atom) brings back within
the rest is an error that names the factor; an outlier that no factor explains (a dimer at short
range, a strongly compressed cell) is logged as a warning only, and so is any outlier of one or two
atoms (a dimer's energy per atom spans electronvolts, so some factor always seems to explain it).
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mlip.data.io import Frame
from mlip.data.reference import composition_matrix
from mlip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: the checks ``data.checks`` configures, each "error" | "warn" | "off"
CHECKS = ("energy_outliers", "e0_underdetermined", "e0_consistency")
DEFAULT_CHECKS = {name: "error" for name in CHECKS}
#: robust z-score (in units of 1.4826 MAD) and absolute deviation (eV/atom) beyond which a frame is an outlier
OUTLIER_Z = 30.0
OUTLIER_MIN_EV = 1.0
#: a frame brought within this many MADs (and at least this many eV/atom) by a unit factor is explained by it
FIT_Z = 10.0
FIT_MIN_EV = 0.3
#: unit factors to eV tried on an outlier: (name, factor); "per atom" multiplies by the atom count
UNIT_FACTORS = (("kcal/mol", 0.0433641), ("kJ/mol", 0.0103643), ("Hartree", 27.211386),
                ("Rydberg", 13.605693), ("meV", 0.001))
#: |median energy per atom after E0| (eV/atom) above which E0 and the data disagree (cohesive
#: energies are below 10 eV/atom)
MAX_MEDIAN_RESIDUAL = 20.0


def check_settings(checks: Optional[Dict[str, str]]) -> Dict[str, str]:
    """``data.checks`` completed with the defaults; an unknown name or action is a ``ConfigError``."""
    out = dict(DEFAULT_CHECKS)
    for name, action in dict(checks or {}).items():
        if name not in CHECKS:
            raise ConfigError(f"data.checks.{name}: unknown check; the checks are {', '.join(CHECKS)}")
        if action not in ("error", "warn", "off"):
            raise ConfigError(f"data.checks.{name}={action!r}: use error, warn or off")
        out[name] = action
    return out


def _report(action: str, err: DataError) -> None:
    if action == "error":
        raise err
    if action == "warn":
        log.warning("%s", err)


def _per_atom_residuals(frames: Sequence[Frame], energies: np.ndarray, species: Sequence[int],
                        use: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Energy per atom after a least-squares E0 fitted on the frames where ``use`` is True:
    residuals [F] eV/atom and E0 [S] eV."""
    counts = composition_matrix(frames, species)
    e0, *_ = np.linalg.lstsq(counts[use], energies[use], rcond=None)
    n = counts.sum(axis=1)
    return (energies - counts @ e0) / n, e0


def _robust_centre(r: np.ndarray) -> Tuple[float, float]:
    """Median and 1.4826 x MAD (eV/atom), the MAD floored at 1 meV/atom."""
    med = float(np.median(r))
    return med, max(1.4826 * float(np.median(np.abs(r - med))), 1e-3)


def _unit_factor_fit(frame: Frame, energy: float, counts: np.ndarray, e0: np.ndarray, med: float,
                     mad: float) -> Optional[Tuple[str, float, float]]:
    """The first unit factor that brings ``frame``'s energy per atom within the rest:
    (phrase, converted energy in eV, its deviation from the median in eV/atom)."""
    n = frame.n_atoms
    tolerance = max(FIT_Z * mad, FIT_MIN_EV)
    candidates = [(f"{name} (x {factor:g}", factor) for name, factor in UNIT_FACTORS]
    candidates.append((f"an energy per atom (x {n} atoms", float(n)))
    for phrase, factor in candidates:
        r = (energy * factor - counts @ e0) / n
        if abs(r - med) <= tolerance:
            return phrase, energy * factor, r - med
    return None


def check_energy_outliers(frames: Sequence[Frame], species: Sequence[int], action: str = "error") -> List[Frame]:
    """Find frames whose energy per atom after E0 lies far outside the rest (module docstring);
    raise (``action="error"``) for the first one that a unit factor explains. Returns the outliers."""
    labelled = [f for f in frames if f.energy is not None and not f.is_isolated_atom]
    if action == "off" or len(labelled) < 4:
        return []
    energies = np.array([f.energy for f in labelled])
    use = np.ones(len(labelled), dtype=bool)
    for _ in range(5):  # refit without the outliers until the set is stable
        r, e0 = _per_atom_residuals(labelled, energies, species, use)
        med, mad = _robust_centre(r[use])
        dev = np.abs(r - med)
        outlier = (dev > OUTLIER_Z * mad) & (dev > OUTLIER_MIN_EV)
        if np.array_equal(~outlier, use) or outlier.all():
            break
        use = ~outlier
    counts = composition_matrix(labelled, species)
    found = [labelled[i] for i in np.flatnonzero(outlier)]
    unexplained = []
    for i in np.flatnonzero(outlier):
        f = labelled[i]
        # a dimer's energy per atom spans eV along its curve: some unit factor always "fits" one
        fit = _unit_factor_fit(f, float(energies[i]), counts[i], e0, med, mad) if f.n_atoms > 2 else None
        if fit is None:
            unexplained.append(f"{f.source} frame {f.index} ({r[i]:+.3g} eV/atom)")
            continue
        phrase, converted, fitted_dev = fit
        _report(action, DataError(
            f"energy {energies[i]:.6g} eV lies {r[i] - med:+.4g} eV/atom from the other frames after E0 (their "
            f"spread {mad:.3g} eV/atom): it looks like {phrase} = {converted:.6g} eV, then {fitted_dev:+.3g} "
            "eV/atom from the rest). Convert it to eV, drop the frame, or set data.checks.energy_outliers=warn if it "
            "is right",
            f.source, f.index))
    if unexplained:
        shown = ", ".join(unexplained[:5]) + (f" and {len(unexplained) - 5} more" if len(unexplained) > 5 else "")
        log.warning("%d frame(s) have an energy per atom far from the rest after E0 (median %.4g, spread %.3g "
                    "eV/atom), not explained by a unit factor: %s. Fine for dimers or compressed cells; "
                    "otherwise check them", len(unexplained), med, mad, shown)
    return found


def check_e0_consistency(frames: Sequence[Frame], e0: Dict[int, float], source: str, action: str = "error") -> None:
    """E0 from isolated atoms or ``data.e0`` in another unit or from another code than the training
    energies leaves a huge energy per atom after E0; refuse it (field notes: errors of 1000s of eV/atom)."""
    r = [(f.energy - sum(n * e0[z] for z, n in f.composition.items())) / f.n_atoms
         for f in frames if f.energy is not None]
    if action == "off" or not r:
        return
    med = float(np.median(r))
    if abs(med) > MAX_MEDIAN_RESIDUAL:
        _report(action, DataError(
            f"E0 from {source} leaves a median energy of {med:+.4g} eV/atom in the training frames (cohesive "
            f"energies are below 10 eV/atom): E0 and the training energies come from different units, codes "
            "or pseudopotentials. Compute the isolated atoms with the same settings, or set data.e0=least_squares "
            "(data.checks.e0_consistency=warn to go on)", frames[0].source))
