"""A single-model uncertainty: last-layer prediction rigidity (LLPR; Bigi et al., 2024).

With ``g(x) = dE(x)/dθ`` the gradient of a frame's energy per atom with respect to the model's
last-layer parameters θ (for a linear last layer: the summed last-layer features), the variance of
the prediction is

    σ²(x) = α² g(x)ᵀ (Gᵀ G + ς² I)⁻¹ g(x),

G stacking g over the training frames: the uncertainty is large where the training set constrains
the last layer little. ``ς²`` regularises (a fraction of the mean eigenvalue of GᵀG, chosen on the
validation split by likelihood) and ``α`` calibrates (fitted on the validation split). The
parameters are those ``contract.last_layer_parameters`` names (the readout output layers); no
retraining and one backward pass per frame. Energies only: per-atom forces would need one pass per
atom.
"""

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from mlip import keys
from mlip.data.graph import frame_to_graph
from mlip.models.contract import last_layer_parameters
from mlip.nn.batch import collate
from mlip.uncertainty import calibration

#: candidate ς² as fractions of the mean eigenvalue of GᵀG
REGULARISERS = (1e-6, 1e-4, 1e-2, 1e-1, 1.0)


def energy_gradients(model, frames: Sequence) -> Tuple[np.ndarray, np.ndarray]:
    """[F, P]: d(E/N)/dθ of each frame for the last-layer parameters θ of ``model`` (a
    ``ForcesAndStress`` or energy model), and [F] the energies per atom (eV/atom)."""
    energy_model = getattr(model, "energy_model", model)
    params = last_layer_parameters(energy_model)
    dtype = params[0].dtype
    species_index = {z: k for k, z in enumerate(energy_model.species)}
    rows, energies = [], []
    for f in frames:
        batch = collate([frame_to_graph(f, float(energy_model.cutoff), species_index)], dtype)
        out = energy_model(batch)
        e = out[keys.TOTAL_ENERGY][0] / f.n_atoms
        grads = torch.autograd.grad([e], params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).detach().double().numpy())
        energies.append(float(e.detach()))
    return np.stack(rows), np.array(energies)


class LastLayerUncertainty:
    """Fit on training frames (``fit``), choose ς² and α on validation frames (``calibrate``),
    then ``std(gradients)`` gives σ of the energy per atom (eV/atom)."""

    def fit(self, train_gradients: np.ndarray) -> "LastLayerUncertainty":
        self.gtg = train_gradients.T @ train_gradients
        self.mean_eigenvalue = float(np.trace(self.gtg)) / len(self.gtg)
        self.set_regulariser(REGULARISERS[0])
        self.alpha = 1.0
        return self

    def set_regulariser(self, fraction: float) -> None:
        self.regulariser = fraction
        reg = fraction * self.mean_eigenvalue * np.eye(len(self.gtg))
        self.inverse = np.linalg.inv(self.gtg + reg)

    def std(self, gradients: np.ndarray) -> np.ndarray:
        var = np.einsum("fp,pq,fq->f", gradients, self.inverse, gradients)
        return self.alpha * np.sqrt(np.maximum(var, 0.0))

    def calibrate(self, gradients: np.ndarray, errors: np.ndarray) -> Dict[str, float]:
        """ς² by the lowest validation NLL (after fitting α for each), then α: returns both."""
        best = None
        for fraction in REGULARISERS:
            self.set_regulariser(fraction)
            self.alpha = 1.0
            raw = self.std(gradients)
            alpha = calibration.fit_scale(errors, raw)
            score = calibration.nll(errors, alpha * raw)
            if best is None or score < best[0]:
                best = (score, fraction, alpha)
        assert best is not None
        self.set_regulariser(best[1])
        self.alpha = best[2]
        return {"regulariser_fraction": best[1], "alpha": best[2], "val_nll": best[0]}


def llpr_report(model, train: Sequence, val: Sequence, test: Sequence) -> Dict[str, Any]:
    """Fit on ``train``, calibrate on ``val``, report on ``test`` (frames with energies): the
    calibration measures of σ of the energy per atom, and the arrays for plots."""
    frames = {name: [f for f in fs if f.energy is not None] for name, fs in
              (("train", train), ("val", val), ("test", test))}
    grads: Dict[str, np.ndarray] = {}
    errors: Dict[str, np.ndarray] = {}
    for name, fs in frames.items():
        grads[name], pred = energy_gradients(model, fs)
        errors[name] = pred - np.array([f.energy / f.n_atoms for f in fs])
    llpr = LastLayerUncertainty().fit(grads["train"])
    chosen = llpr.calibrate(grads["val"], errors["val"])
    std: List[float] = llpr.std(grads["test"]).tolist()
    return {"method": "llpr", "kind": "energy", "unit": "eV/atom", **chosen,
            "n_parameters": int(grads["train"].shape[1]),
            "test": calibration.summary(errors["test"], np.array(std)),
            "test_error": errors["test"].tolist(), "test_std": std,
            "config_type": [f.config_type for f in frames["test"]]}
