"""Evaluating a model on a whole split: metrics and the arrays behind parity plots."""

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch

from mlip import keys
from mlip.training.metrics import MetricAccumulator

PARITY_KEYS = ("energy_ref", "energy_pred", "energy_config_type", "forces_ref", "forces_pred",
               "forces_config_type", "stress_ref", "stress_pred", "stress_config_type")


def evaluate(model: torch.nn.Module, loader: Iterable[Dict[str, torch.Tensor]], config_types: Sequence[str],
             device: torch.device = torch.device("cpu"), e0: Optional[Sequence[float]] = None
             ) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    """Run ``model`` (a ``ForcesAndStress``) over ``loader``.

    Returns metrics (see ``MetricAccumulator.compute``) and parity arrays over labelled entries:
    ``energy_ref``, ``energy_pred`` [F] (eV/atom, relative to ``e0``: (E - sum_i E0[Z_i]) / N,
    with ``e0`` [S] eV per species index, zero if None), ``forces_ref``, ``forces_pred`` [3 N] (eV/Å,
    components), ``stress_ref``, ``stress_pred`` [6 F'] (eV/Å³, Voigt components of periodic frames),
    and ``<kind>_config_type``: the config-type index of each entry.
    """
    acc = MetricAccumulator(config_types, device=device)
    parity = {k: [] for k in PARITY_KEYS}
    e0_table = torch.zeros(0) if e0 is None else torch.as_tensor(list(e0), dtype=torch.float64)
    voigt = (torch.tensor([0, 1, 2, 1, 0, 0]), torch.tensor([0, 1, 2, 2, 2, 1]))
    was_training = model.training
    model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch, compute_forces=True, compute_stress=True, create_graph=False)
        acc.update(out, batch)
        ct = batch[keys.CONFIG_TYPE].cpu().numpy()
        n = batch[keys.N_ATOMS].to(torch.float64).cpu()
        frame_e0 = torch.zeros_like(n)
        if e0_table.numel():
            frame_e0.index_add_(0, batch[keys.BATCH].cpu(), e0_table[batch[keys.SPECIES].cpu()])
        em = batch[keys.ENERGY_MASK].cpu().numpy()
        for name, value in (("ref", batch[keys.ENERGY]), ("pred", out[keys.TOTAL_ENERGY])):
            parity[f"energy_{name}"].append(((value.detach().cpu().double() - frame_e0) / n).numpy()[em])
        parity["energy_config_type"].append(ct[em])
        fm = batch[keys.FORCES_MASK][batch[keys.BATCH]].cpu().numpy()
        parity["forces_ref"].append(batch[keys.FORCES].detach().cpu().numpy()[fm].reshape(-1))
        parity["forces_pred"].append(out[keys.PRED_FORCES].detach().cpu().numpy()[fm].reshape(-1))
        parity["forces_config_type"].append(np.repeat(ct[batch[keys.BATCH].cpu().numpy()][fm], 3))
        sm = batch[keys.STRESS_MASK].cpu().numpy()
        parity["stress_ref"].append(batch[keys.STRESS].detach().cpu()[:, voigt[0], voigt[1]].numpy()[sm].reshape(-1))
        parity["stress_pred"].append(out[keys.PRED_STRESS].detach().cpu()[:, voigt[0], voigt[1]].numpy()[sm].reshape(-1))
        parity["stress_config_type"].append(np.repeat(ct[sm], 6))
    model.train(was_training)
    return acc.compute(), {k: np.concatenate(v) if v else np.zeros(0) for k, v in parity.items()}
