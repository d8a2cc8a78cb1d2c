"""Evaluating a model on a whole split: metrics and the arrays behind parity plots."""

from typing import Dict, Iterable, Sequence, Tuple

import numpy as np
import torch

from mlip import keys
from mlip.training.metrics import MetricAccumulator


def evaluate(model: torch.nn.Module, loader: Iterable[Dict[str, torch.Tensor]], config_types: Sequence[str],
             device: torch.device = torch.device("cpu")) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    """Run ``model`` (a ``ForcesAndStress``) over ``loader``.

    Returns metrics (see ``MetricAccumulator.compute``) and parity arrays: ``energy_ref``,
    ``energy_pred`` (eV/atom, labelled frames), ``forces_ref``, ``forces_pred`` (eV/Å, components).
    """
    acc = MetricAccumulator(config_types, device=device)
    parity = {k: [] for k in ("energy_ref", "energy_pred", "forces_ref", "forces_pred")}
    was_training = model.training
    model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch, compute_forces=True, compute_stress=True, create_graph=False)
        acc.update(out, batch)
        n = batch[keys.N_ATOMS].to(batch[keys.ENERGY].dtype)
        em = batch[keys.ENERGY_MASK]
        parity["energy_ref"].append((batch[keys.ENERGY] / n)[em].detach().cpu().numpy())
        parity["energy_pred"].append((out[keys.TOTAL_ENERGY] / n)[em].detach().cpu().numpy())
        fm = batch[keys.FORCES_MASK][batch[keys.BATCH]]
        parity["forces_ref"].append(batch[keys.FORCES][fm].reshape(-1).detach().cpu().numpy())
        parity["forces_pred"].append(out[keys.PRED_FORCES][fm].reshape(-1).detach().cpu().numpy())
    model.train(was_training)
    return acc.compute(), {k: np.concatenate(v) if v else np.zeros(0) for k, v in parity.items()}
