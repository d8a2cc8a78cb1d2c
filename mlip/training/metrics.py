"""MAE and RMSE of every registered kind (``mlip.targets``: energy meV/atom, forces meV/Å per
component, stress GPa per component, ...), overall and per config_type, accumulated over batches.

The accumulators are ``torchmetrics.Metric`` objects: their states are sums, reduced across ranks
(``dist_reduce_fx="sum"``) when ``compute()`` runs inside a distributed job.
"""

from typing import Dict, Optional, Sequence

import torch
from torchmetrics import Metric

from mlip import keys, targets
from mlip.targets import EV_PER_A3_TO_GPA  # noqa: F401  (re-exported)
from mlip.training.loss import residuals


def report_units() -> Dict[str, tuple]:
    """{kind: (factor from the residual's unit to the reported one, reported unit)}."""
    return {t.name: (t.report_factor, t.report_unit) for t in targets.all_targets()}


def __getattr__(name: str):
    if name == "REPORT_UNITS":  # compatibility: a live view of the registry
        return report_units()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MetricAccumulator(Metric):
    """Sums of |r|, r^2 and counts per kind, per config type (last column: all), float64 states
    [K, C + 1] for the kinds registered when it is built. ``compute()`` gives the metrics;
    ``sync_on_compute=False`` keeps them to this process (final evaluation on rank 0 only)."""
    abs_sum: torch.Tensor  # metric states (add_state)
    sq_sum: torch.Tensor
    count: torch.Tensor

    full_state_update = False

    def __init__(self, config_types: Sequence[str], device=None, sync_on_compute: bool = True):
        super().__init__(sync_on_compute=sync_on_compute)
        self.config_types = list(config_types)
        self.kinds = targets.all_targets()
        shape = (len(self.kinds), len(self.config_types) + 1)
        for name in ("abs_sum", "sq_sum", "count"):
            self.add_state(name, default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        if device is not None:
            self.to(device)

    def update(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> None:
        ct_frame = batch[keys.CONFIG_TYPE]
        n_ct = len(self.config_types)
        for k, target in enumerate(self.kinds):
            if target.prediction_key not in out:
                continue
            r = residuals(out, batch, target.name).detach().double()
            if r.numel() == 0:
                continue
            mask = batch[target.mask_key]
            ct = ct_frame[batch[keys.BATCH]][mask[batch[keys.BATCH]]] if target.per_atom else ct_frame[mask]
            ct = ct.repeat_interleave(target.size)  # values per labelled entry
            self.abs_sum[k].index_add_(0, ct, r.abs())
            self.sq_sum[k].index_add_(0, ct, r * r)
            self.count[k].index_add_(0, ct, torch.ones_like(r))
            self.abs_sum[k, n_ct] += r.abs().sum()
            self.sq_sum[k, n_ct] += (r * r).sum()
            self.count[k, n_ct] += r.numel()

    def compute(self) -> Dict[str, float]:
        """{'energy_mae': meV/atom, 'forces_rmse': meV/Å, 'stress_mae': GPa, 'Vacancy/forces_mae': ...}."""
        out: Dict[str, float] = {}
        names = self.config_types + [None]
        for k, target in enumerate(self.kinds):
            factor = target.report_factor
            for c, name in enumerate(names):
                n = float(self.count[k, c])
                if n == 0:
                    continue
                prefix = "" if name is None else f"{name}/"
                out[f"{prefix}{target.name}_mae"] = factor * float(self.abs_sum[k, c]) / n
                out[f"{prefix}{target.name}_rmse"] = factor * (float(self.sq_sum[k, c]) / n) ** 0.5
        return out


class WeightedMean(Metric):
    """sum(w * x) / sum(w) in float64 across batches (and ranks); 0 with no weight."""
    weighted_sum: torch.Tensor  # metric states (add_state)
    weight: torch.Tensor

    full_state_update = False

    def __init__(self, device: Optional[torch.device] = None):
        super().__init__()
        self.add_state("weighted_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if device is not None:
            self.to(device)

    def update(self, value: torch.Tensor, weight: float) -> None:
        self.weighted_sum += value.detach().double() * weight
        self.weight += weight

    def compute(self) -> torch.Tensor:
        return self.weighted_sum / self.weight.clamp_min(1.0)
