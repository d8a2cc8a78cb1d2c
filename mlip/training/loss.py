"""Composite energy / force / stress loss from a Gaussian likelihood.

    L = sum_k (1 / n_k) sum_{i in k} rho(r_i / sigma_k),   rho(x) = x^2 (or Huber)

over kinds k in {energy, forces, stress} whose sigma is set. Residuals r: energy per atom
(E_pred - E_ref) / N in eV/atom; every force component in eV/Å; every stress component (3x3) in
eV/Å³. n_k counts only labelled entries (frames whose mask is True), so unlabelled frames are left
out of a term, and no kind dominates by sheer number. Up to constants and a factor 1/2 this is the
negative log-likelihood of independent Gaussian errors with standard deviations sigma_k.
"""

from typing import Dict, Optional, Tuple

import torch

from mlip import keys
from mlip.errors import ConfigError


def residuals(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """Flat residuals (prediction - label) of ``kind`` over labelled entries only."""
    if kind == keys.ENERGY:
        mask = batch[keys.ENERGY_MASK]
        r = (out[keys.TOTAL_ENERGY] - batch[keys.ENERGY]) / batch[keys.N_ATOMS].to(batch[keys.ENERGY].dtype)
        return r[mask]
    if kind == keys.FORCES:
        mask = batch[keys.FORCES_MASK][batch[keys.BATCH]]
        return (out[keys.PRED_FORCES] - batch[keys.FORCES])[mask].reshape(-1)
    if kind == keys.STRESS:
        mask = batch[keys.STRESS_MASK]
        return (out[keys.PRED_STRESS] - batch[keys.STRESS])[mask].reshape(-1)
    raise KeyError(kind)


class WeightedLoss(torch.nn.Module):
    """``sigma``: {kind: sigma or None}; None leaves the kind out. ``huber_delta``: None for
    squared errors, else the Huber threshold in units of sigma."""

    def __init__(self, sigma: Dict[str, Optional[float]], huber_delta: Optional[float] = None):
        super().__init__()
        self.sigma: Dict[str, float] = {}
        for kind, value in dict(sigma).items():
            if kind not in keys.LABEL_KINDS:
                raise ConfigError(f"loss.sigma.{kind}: unknown kind; use {', '.join(keys.LABEL_KINDS)}")
            if value is None:
                continue
            if not float(value) > 0:
                raise ConfigError(f"loss.sigma.{kind}={value} must be > 0 (or null to leave {kind} out of the loss)")
            self.sigma[kind] = float(value)
        if not self.sigma:
            raise ConfigError("loss.sigma leaves every kind out: set at least one of energy, forces, stress")
        if huber_delta is not None and not float(huber_delta) > 0:
            raise ConfigError(f"loss.huber_delta={huber_delta} must be > 0 or null")
        self.huber_delta = None if huber_delta is None else float(huber_delta)

    @property
    def kinds(self):
        return tuple(self.sigma)

    def _rho(self, x: torch.Tensor) -> torch.Tensor:
        if self.huber_delta is None:
            return x * x
        d = self.huber_delta
        a = x.abs()
        return torch.where(a <= d, x * x, 2.0 * d * a - d * d)

    def forward(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Returns the total loss and each kind's term (zero when the batch has no such label)."""
        terms: Dict[str, torch.Tensor] = {}
        total = out[keys.TOTAL_ENERGY].new_zeros(())
        for kind, sigma in self.sigma.items():
            r = residuals(out, batch, kind)
            term = self._rho(r / sigma).mean() if r.numel() > 0 else total.new_zeros(())
            terms[kind] = term
            total = total + term
        return total, terms
