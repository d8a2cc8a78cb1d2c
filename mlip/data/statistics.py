"""Training-set statistics that set a model's normalisation (computed on the training split only)."""

from typing import Dict, Sequence

import numpy as np

from mlip.data.io import Frame


def dataset_statistics(frames: Sequence[Frame], graphs: Sequence[dict], e0: Dict[int, float]) -> Dict[str, float]:
    """Returns ``avg_num_neighbors`` (edges per atom), ``force_rms`` (eV/Å, over labelled
    components), ``energy_shift`` (eV/atom, mean of (E - sum E0) / N) and ``energy_std``."""
    n_atoms = sum(f.n_atoms for f in frames)
    n_edges = sum(int(g["edge_index"].shape[1]) for g in graphs)
    forces = [f.forces for f in frames if f.forces is not None]
    force_rms = float(np.sqrt(np.mean(np.concatenate([x.reshape(-1) for x in forces]) ** 2))) if forces else 1.0
    residual = [
        (f.energy - sum(e0[int(z)] for z in f.numbers)) / f.n_atoms for f in frames if f.energy is not None
    ]
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
