"""Dataset statistics accumulated in one pass over the frames (while preprocessing streams them).

Sums are kept per element pair, so the state is small (no per-frame arrays) and merges by addition:
atom counts per element, edges, squared forces, and the normal equations of the least-squares E0,
A^T A and A^T E (A: the composition matrix, E: energies), plus the moments needed for the mean and
spread of the energy per atom after E0, r = E/N - (c/N)·E0:

    sum r   = sum E/N - E0·sum c/N
    sum r^2 = sum (E/N)^2 - 2 E0·sum E c/N^2 + E0^T (sum c c^T/N^2) E0

Isolated-atom frames (used for E0, never trained on) are counted in ``isolated`` only.
"""

from typing import Any, Dict, List

import numpy as np

from mlip.data.io import Frame


def empty() -> Dict[str, Any]:
    return {"n_frames": 0, "n_atoms": 0, "n_edges": 0, "force_sq_sum": 0.0, "force_count": 0, "n_energy": 0,
            "elements": {}, "AtA": {}, "AtE": {}, "sum_e_n": 0.0, "sum_e_n_sq": 0.0, "sum_c_n": {},
            "sum_e_c_n2": {}, "sum_cc_n2": {}, "isolated": {}}


def _add(table: Dict[str, float], key: str, value: float) -> None:
    table[key] = table.get(key, 0.0) + value


def accumulate(state: Dict[str, Any], frame: Frame, n_edges: int) -> None:
    """Add one frame (with ``n_edges`` directed edges within the store's cutoff) to ``state``."""
    comp = frame.composition
    if frame.is_isolated_atom:
        if frame.energy is not None:
            state["isolated"][str(next(iter(comp)))] = frame.energy
        return
    state["n_frames"] += 1
    state["n_atoms"] += frame.n_atoms
    state["n_edges"] += n_edges
    state["force_sq_sum"] += frame.force_sq_sum
    state["force_count"] += frame.force_count
    for z, n in comp.items():
        state["elements"][str(z)] = state["elements"].get(str(z), 0) + n
    energy = frame.energy
    if energy is None:
        return
    n_at = frame.n_atoms
    state["n_energy"] += 1
    state["sum_e_n"] += energy / n_at
    state["sum_e_n_sq"] += (energy / n_at) ** 2
    for z, n in comp.items():
        _add(state["AtE"], str(z), n * energy)
        _add(state["sum_c_n"], str(z), n / n_at)
        _add(state["sum_e_c_n2"], str(z), energy * n / n_at ** 2)
        for w, m in comp.items():
            _add(state["AtA"], f"{z},{w}", float(n * m))
            _add(state["sum_cc_n2"], f"{z},{w}", n * m / n_at ** 2)


def _vector(table: Dict[str, float], species: List[int]) -> np.ndarray:
    return np.array([table.get(str(z), 0.0) for z in species])


def _matrix(table: Dict[str, float], species: List[int]) -> np.ndarray:
    return np.array([[table.get(f"{z},{w}", 0.0) for w in species] for z in species])


def finalize(state: Dict[str, Any], cutoff: float) -> Dict[str, Any]:
    """The statistics of the whole dataset from ``state``: element counts, E0 by least squares
    (minimum-norm solution of the normal equations; eV), force RMS (eV/Å), average neighbours within
    ``cutoff`` (edges per atom), mean and standard deviation of the energy per atom after that E0
    (eV/atom), and the isolated-atom energies found (eV)."""
    from ase.data import chemical_symbols

    species = sorted(int(z) for z in state["elements"])
    out: Dict[str, Any] = {
        "n_frames": state["n_frames"], "n_atoms": state["n_atoms"],
        "elements": {chemical_symbols[z]: state["elements"][str(z)] for z in species},
        "cutoff": cutoff,
        "avg_num_neighbors": state["n_edges"] / max(state["n_atoms"], 1),
        "force_rms": float(np.sqrt(state["force_sq_sum"] / state["force_count"])) if state["force_count"] else None,
        "n_energy": state["n_energy"],
        "isolated_atom_energies": {chemical_symbols[int(z)]: e for z, e in sorted(state["isolated"].items())},
    }
    if state["n_energy"] and species:
        ata, ate = _matrix(state["AtA"], species), _vector(state["AtE"], species)
        e0 = np.linalg.pinv(ata) @ ate  # the minimum-norm least-squares solution
        k = state["n_energy"]
        mean = (state["sum_e_n"] - e0 @ _vector(state["sum_c_n"], species)) / k
        second = (state["sum_e_n_sq"] - 2 * e0 @ _vector(state["sum_e_c_n2"], species)
                  + e0 @ _matrix(state["sum_cc_n2"], species) @ e0) / k
        out["e0_least_squares"] = {chemical_symbols[z]: float(v) for z, v in zip(species, e0)}
        out["e0_rank"] = int(np.linalg.matrix_rank(ata))
        out["energy_per_atom_mean"] = float(mean)
        out["energy_per_atom_std"] = float(np.sqrt(max(second - mean ** 2, 0.0)))
    return out
