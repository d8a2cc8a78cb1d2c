"""Evaluating a model on a whole split: metrics and the arrays behind parity plots."""

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mlip import keys, targets
from mlip.training.metrics import MetricAccumulator

_CPU = torch.device("cpu")


def parity_keys() -> Tuple[str, ...]:
    """``<kind>_ref``, ``<kind>_pred``, ``<kind>_config_type`` of every registered kind."""
    return tuple(f"{t.name}_{part}" for t in targets.all_targets() for part in ("ref", "pred", "config_type"))


def evaluate(model: torch.nn.Module, loader: Iterable[Dict[str, torch.Tensor]], config_types: Sequence[str],
             device: torch.device = _CPU, e0: Optional[Sequence[float]] = None
             ) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    """Run ``model`` (a ``ForcesAndStress``) over ``loader``.

    Returns metrics (see ``MetricAccumulator.compute``) and parity arrays over labelled entries,
    by each kind's ``parity`` hook (``mlip.targets``): ``energy_ref``, ``energy_pred`` [F]
    (eV/atom, relative to ``e0``: (E - sum_i E0[Z_i]) / N, with ``e0`` [S] eV per species index,
    zero if None), ``forces_ref``, ``forces_pred`` [3 N] (eV/Å, components), ``stress_ref``,
    ``stress_pred`` [6 F'] (eV/Å³, Voigt components of periodic frames), the components of any
    other kind, and ``<kind>_config_type``: the config-type index of each entry. A kind the model
    does not predict gets empty arrays.
    """
    acc = MetricAccumulator(config_types, device=device, sync_on_compute=False)
    kinds = acc.kinds
    parity: Dict[str, List[np.ndarray]] = {k: [] for k in parity_keys()}
    e0_table = torch.zeros(0) if e0 is None else torch.as_tensor(list(e0), dtype=torch.float64)
    was_training = model.training
    model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch, compute_forces=True, compute_stress=True, create_graph=False)
        acc.update(out, batch)
        ct = batch[keys.CONFIG_TYPE].cpu().numpy()
        frame_e0 = torch.zeros(batch[keys.N_ATOMS].shape[0], dtype=torch.float64)
        if e0_table.numel():
            frame_e0.index_add_(0, batch[keys.BATCH].cpu(), e0_table[batch[keys.SPECIES].cpu()])
        for target in kinds:
            if target.prediction_key not in out or target.mask_key not in batch:
                continue
            ref, pred, frame = target.parity_arrays(out, batch, frame_e0)
            parity[f"{target.name}_ref"].append(ref)
            parity[f"{target.name}_pred"].append(pred)
            parity[f"{target.name}_config_type"].append(ct[frame])
    model.train(was_training)
    return acc.compute(), {k: np.concatenate(v) if v else np.zeros(0) for k, v in parity.items()}
