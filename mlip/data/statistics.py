"""Training-set statistics that set a model's normalisation (computed on the training split only),
from per-frame summaries, so that frames in memory (``Frame``) and frames on disk
(``FrameSummary`` of ``mlip.data.store``) give the same numbers."""

from typing import Dict, Sequence

import numpy as np


def dataset_statistics(frames: Sequence, n_edges: int, e0: Dict[int, float]) -> Dict[str, float]:
    """Statistics of ``frames`` (``Frame`` or ``FrameSummary``: ``n_atoms``, ``composition``,
    ``energy``, ``force_sq_sum``, ``force_count``) with ``n_edges`` directed edges in total.

    Returns ``avg_num_neighbors`` (edges per atom), ``force_rms`` (eV/Å, over labelled
    components), ``energy_shift`` (eV/atom, mean of (E - sum E0) / N) and ``energy_std``."""
    n_atoms = sum(f.n_atoms for f in frames)
    force_count = sum(f.force_count for f in frames)
    force_rms = float(np.sqrt(sum(f.force_sq_sum for f in frames) / force_count)) if force_count else 1.0
    residual = [(f.energy - sum(n * e0[z] for z, n in f.composition.items())) / f.n_atoms
                for f in frames if f.energy is not None]
    return {
        "avg_num_neighbors": n_edges / max(n_atoms, 1),
        "force_rms": force_rms if force_rms > 0 else 1.0,
        "energy_shift": float(np.mean(residual)) if residual else 0.0,
        "energy_std": float(np.std(residual)) if len(residual) > 1 else 1.0,
    }


def output_normalization(statistics: Dict[str, float], forces_in_loss: bool) -> Dict[str, float]:
    """``scale`` (eV) and ``shift`` (eV/atom) of a model's per-atom output: the force RMS when forces
    are fitted (so predicted forces start at the right magnitude), else the spread of the energy per
    atom after E0; the shift is the mean energy per atom after E0."""
    scale = statistics["force_rms"] if forces_in_loss else statistics["energy_std"]
    return {"scale": scale, "shift": statistics["energy_shift"]}
