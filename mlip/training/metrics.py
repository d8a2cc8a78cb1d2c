"""MAE and RMSE of energy (meV/atom), forces (meV/Å, per component) and stress (GPa, per
component), overall and per config_type, accumulated over batches and reducible across ranks."""

from typing import Dict, List, Sequence

import torch

from mlip import keys
from mlip.training.loss import residuals

EV_PER_A3_TO_GPA = 160.21766208
#: factor from mlip's units (eV/atom, eV/Å, eV/Å³) to the reported ones, and their names
REPORT_UNITS = {keys.ENERGY: (1000.0, "meV/atom"), keys.FORCES: (1000.0, "meV/Å"),
                keys.STRESS: (EV_PER_A3_TO_GPA, "GPa")}


class MetricAccumulator:
    """Sums of |r|, r^2 and counts per kind, per config type (last column: all)."""

    def __init__(self, config_types: Sequence[str], device=None):
        self.config_types = list(config_types)
        shape = (len(keys.LABEL_KINDS), len(self.config_types) + 1)
        self.abs_sum = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sq_sum = torch.zeros(shape, dtype=torch.float64, device=device)
        self.count = torch.zeros(shape, dtype=torch.float64, device=device)

    def update(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> None:
        ct_frame = batch[keys.CONFIG_TYPE]
        masks = {
            keys.ENERGY: (ct_frame[batch[keys.ENERGY_MASK]], 1),
            keys.FORCES: (ct_frame[batch[keys.BATCH]][batch[keys.FORCES_MASK][batch[keys.BATCH]]], 3),
            keys.STRESS: (ct_frame[batch[keys.STRESS_MASK]], 9),
        }
        for k, kind in enumerate(keys.LABEL_KINDS):
            pred_key = keys.PREDICTION_OF[kind]
            if pred_key not in out:
                continue
            r = residuals(out, batch, kind).detach().double()
            if r.numel() == 0:
                continue
            ct, per = masks[kind]
            ct = ct.repeat_interleave(per)
            n_ct = len(self.config_types)
            self.abs_sum[k].index_add_(0, ct, r.abs())
            self.sq_sum[k].index_add_(0, ct, r * r)
            self.count[k].index_add_(0, ct, torch.ones_like(r))
            self.abs_sum[k, n_ct] += r.abs().sum()
            self.sq_sum[k, n_ct] += (r * r).sum()
            self.count[k, n_ct] += r.numel()

    def tensors(self) -> List[torch.Tensor]:
        """The state, for summing across ranks in place."""
        return [self.abs_sum, self.sq_sum, self.count]

    def compute(self) -> Dict[str, float]:
        """{'energy_mae': meV/atom, 'forces_rmse': meV/Å, 'stress_mae': GPa, 'Vacancy/forces_mae': ...}."""
        out: Dict[str, float] = {}
        names = self.config_types + [None]
        for k, kind in enumerate(keys.LABEL_KINDS):
            factor, _ = REPORT_UNITS[kind]
            for c, name in enumerate(names):
                n = float(self.count[k, c])
                if n == 0:
                    continue
                prefix = "" if name is None else f"{name}/"
                out[f"{prefix}{kind}_mae"] = factor * float(self.abs_sum[k, c]) / n
                out[f"{prefix}{kind}_rmse"] = factor * (float(self.sq_sum[k, c]) / n) ** 0.5
        return out
