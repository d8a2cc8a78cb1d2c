"""Predictions with uncertainty over labelled frames, and their calibration report.

``predict(potential, frames)`` calls ``potential.compute`` (a ``CommitteePotential``, or any module
with that interface returning ``energy_std`` / ``forces_std``) on each frame with a vesin
neighbour list and collects, per frame, the energy per atom (prediction, reference, standard
deviation; eV/atom) and, per force component, the same in eV/Å.
"""

from typing import Dict, List, Sequence

import numpy as np
import torch

from mlip.nn.neighbors import vesin_neighbor_list
from mlip.uncertainty import calibration


def predict(potential, frames: Sequence) -> Dict[str, np.ndarray]:
    """Arrays ``energy_{pred,ref,std}`` [F'] (eV/atom; frames with an energy) and
    ``forces_{pred,ref,std}`` [C] (eV/Å; every component of frames with forces), plus
    ``energy_frame`` (index into ``frames``) and ``config_type`` per energy entry."""
    dtype = potential.dtype_probe.dtype
    out: Dict[str, List] = {k: [] for k in ("energy_pred", "energy_ref", "energy_std", "energy_frame",
                                            "config_type", "forces_pred", "forces_ref", "forces_std")}
    for i, f in enumerate(frames):
        edge_index, shifts, _ = vesin_neighbor_list(f.positions, f.cell, f.pbc, float(potential.cutoff))
        r = potential.compute(torch.tensor(f.positions, dtype=dtype), torch.tensor(f.numbers, dtype=torch.long),
                              torch.tensor(f.cell, dtype=dtype), torch.tensor(f.pbc),
                              torch.from_numpy(edge_index), torch.from_numpy(shifts).to(dtype))
        n = f.n_atoms
        if f.energy is not None:
            out["energy_pred"].append(float(r["energy"]) / n)
            out["energy_std"].append(float(r["energy_std"]) / n)
            out["energy_ref"].append(f.energy / n)
            out["energy_frame"].append(i)
            out["config_type"].append(f.config_type)
        if f.forces is not None and "forces_std" in r:
            out["forces_pred"].append(r["forces"].detach().double().numpy().ravel())
            out["forces_std"].append(r["forces_std"].detach().double().numpy().ravel())
            out["forces_ref"].append(np.asarray(f.forces).ravel())
    arrays = {}
    for k, v in out.items():
        if k.startswith("forces"):
            arrays[k] = np.concatenate(v) if v else np.zeros(0)
        else:
            arrays[k] = np.asarray(v)
    return arrays


def report(val: Dict[str, np.ndarray], test: Dict[str, np.ndarray]) -> Dict[str, Dict]:
    """Per kind (energy, forces): the scale fitted on ``val`` and the calibration measures on
    ``test`` before (``raw``) and after (``calibrated``) applying it."""
    result = {}
    for kind in ("energy", "forces"):
        if not len(test[f"{kind}_std"]) or not len(val[f"{kind}_std"]):
            continue
        scale = calibration.fit_scale(val[f"{kind}_pred"] - val[f"{kind}_ref"], val[f"{kind}_std"])
        error = test[f"{kind}_pred"] - test[f"{kind}_ref"]
        result[kind] = {"unit": "eV/atom" if kind == "energy" else "eV/Å", "scale_fitted_on_val": scale,
                        "raw": calibration.summary(error, test[f"{kind}_std"]),
                        "calibrated": calibration.summary(error, test[f"{kind}_std"], scale)}
    return result
