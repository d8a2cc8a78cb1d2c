"""Composite energy / force / stress loss from a Gaussian likelihood.

Fixed sigma (``loss.sigma.<kind>=<value>``):

    L = sum_k (1 / n_k) sum_{i in k} rho(r_i / sigma_k),   rho(x) = x^2 (or Huber)

over kinds k whose sigma is set, among the kinds of ``mlip.targets`` (energy, forces, stress and
any registered kind). Residuals r (each kind's ``residual`` hook): energy per atom
(E_pred - E_ref) / N in eV/atom; every force component in eV/Å; every stress component (3x3) in
eV/Å³; by default prediction - label of every component of labelled entries. n_k counts only
labelled entries (frames whose mask is True), so unlabelled frames are left out of a term, and
no kind dominates by sheer number. Up to constants this is twice the negative
log-likelihood of independent Gaussian errors with standard deviations sigma_k, each kind's sum
divided by its count.

Learned sigma (``loss.sigma=learned`` for every labelled kind, or ``loss.sigma.<kind>=learned``):
sigma_k = exp(s_k) with a trainable log-sigma s_k, and the kind's term gains the normalisation
of the Gaussian,

    L_k = mean_k rho(r / sigma_k) + 2 log sigma_k  =  2 [mean_k(r^2) / (2 sigma_k^2) + log sigma_k],

i.e. twice the count-normalised negative log-likelihood, the same factor as the fixed terms.
Without the log term sigma would grow without bound. For given residuals the optimum is
sigma_k^2 = mean_k(r^2), exactly the maximum-likelihood sigma of the full (un-normalised)
likelihood sum_i r_i^2 / (2 sigma_k^2) + N_k log sigma_k, because each sigma_k appears in its own
kind's term only and dividing a term by N_k does not move its minimum. For the model parameters
the count normalisation weighs each kind by 1 / sigma_k^2 instead of N_k / sigma_k^2, the mlip
convention above: at the joint optimum every kind is weighted by the inverse of its own mean squared
residual. (With ``huber_delta`` the same log term is kept; the learned sigma is then a robust
scale rather than the exact maximum-likelihood value.) The initial values are ``loss.sigma_init``
(eV/atom, eV/Å, eV/Å³); they are also the fixed sigmas of the validation loss (``validation_loss``),
so ``val/loss`` keeps one scale across epochs and model selection does not depend on the current sigma.
"""

import math
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import torch

from mlip import keys, targets
from mlip.errors import ConfigError

LEARNED = "learned"


def default_sigma_init() -> Dict[str, float]:
    """Initial (and validation-loss) sigma of each registered kind when loss.sigma_init does not
    give one (energy 0.005 eV/atom, forces 0.05 eV/Å, stress 0.003 eV/Å³)."""
    return {t.name: t.sigma_init for t in targets.all_targets()}


def __getattr__(name: str):
    if name == "DEFAULT_SIGMA_INIT":  # compatibility: a live view of the registry
        return default_sigma_init()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def residuals(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """Flat residuals (prediction - label) of ``kind`` over labelled entries only, by the kind's
    ``residual`` hook (``mlip.targets``): energy per atom (eV/atom), force components (eV/Å),
    stress components (eV/Å³). Empty when no frame of the batch carries the label or the
    prediction was not computed (e.g. no stress asked for a batch of molecules), so such a batch
    contributes nothing to that term. ``KeyError`` for a kind not registered."""
    target = targets.get(kind)
    mask = batch.get(target.mask_key)
    if target.prediction_key not in out or mask is None or not bool(mask.any()):
        return out[keys.TOTAL_ENERGY].new_zeros((0,))
    return target.residuals(out, batch)


def resolve_sigma(sigma: Union[str, Dict[str, object], None], labelled_kinds: Iterable[str]) -> Dict[str, object]:
    """``loss.sigma`` as a mapping kind -> float | "learned" | None. The string ``learned`` becomes
    ``learned`` for every kind in ``labelled_kinds`` (the kinds the training data carries)."""
    if isinstance(sigma, str):
        if sigma != LEARNED:
            raise ConfigError(f"loss.sigma={sigma!r}: use 'learned' or a mapping such as loss.sigma.forces=0.05")
        return {kind: LEARNED for kind in targets.names() if kind in set(labelled_kinds)}
    return dict(sigma or {})


def loss_kinds(sigma: Union[str, Dict[str, object], None]) -> Tuple[str, ...]:
    """Kinds a ``loss.sigma`` setting puts in the loss for sure (``learned`` alone: none yet known)."""
    if isinstance(sigma, str):
        return ()
    return tuple(k for k, v in dict(sigma or {}).items() if v is not None and k in targets.names())


class WeightedLoss(torch.nn.Module):
    """``sigma``: {kind: sigma, "learned" or None}; None leaves the kind out. ``huber_delta``:
    None for squared errors, else the Huber threshold in units of sigma. ``sigma_init``: initial
    sigma of learned kinds (default: each kind's ``sigma_init`` in ``mlip.targets``)."""

    def __init__(self, sigma: Dict[str, object], huber_delta: Optional[float] = None,
                 sigma_init: Optional[Dict[str, float]] = None):
        super().__init__()
        if isinstance(sigma, str):
            raise ConfigError(f"loss.sigma={sigma!r} must be resolved to kinds first (resolve_sigma)")
        init = default_sigma_init()
        init.update({k: v for k, v in dict(sigma_init or {}).items() if v is not None})
        self.sigma: Dict[str, float] = {}  # fixed sigma of each kind (initial value when learned)
        self.log_sigma = torch.nn.ParameterDict()
        value: Any  # a number, "learned" or None, as the config gives it
        for kind, value in dict(sigma).items():
            if kind not in targets.names():
                raise ConfigError(f"loss.sigma.{kind}: unknown kind; use {', '.join(targets.names())}")
            if value is None:
                continue
            if value == LEARNED:
                value = init[kind]
                if not float(value) > 0:
                    raise ConfigError(f"loss.sigma_init.{kind}={value} must be > 0")
                self.log_sigma[kind] = torch.nn.Parameter(torch.tensor(math.log(float(value))))
            elif isinstance(value, str) or not float(value) > 0:
                raise ConfigError(f"loss.sigma.{kind}={value} must be > 0, 'learned', or null to leave "
                                  f"{kind} out of the loss")
            self.sigma[kind] = float(value)
        if not self.sigma:
            raise ConfigError("loss.sigma leaves every kind out: set at least one of energy, forces, stress "
                              "(or the training data carries no labels)")
        if huber_delta is not None and not float(huber_delta) > 0:
            raise ConfigError(f"loss.huber_delta={huber_delta} must be > 0 or null")
        self.huber_delta = None if huber_delta is None else float(huber_delta)

    @property
    def kinds(self):
        return tuple(self.sigma)

    @property
    def learned_kinds(self):
        return tuple(self.log_sigma.keys())

    def learned_sigma(self) -> Dict[str, float]:
        """Current learned sigma of each learned kind (in its ``residual_unit``: eV/atom, eV/Å, eV/Å³)."""
        return {kind: float(s.detach().exp()) for kind, s in self.log_sigma.items()}

    def _rho(self, x: torch.Tensor) -> torch.Tensor:
        if self.huber_delta is None:
            return x * x
        d = self.huber_delta
        a = x.abs()
        return torch.where(a <= d, x * x, 2.0 * d * a - d * d)

    def forward(self, out: Dict[str, torch.Tensor],
                batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The training loss and each kind's term (zero when the batch has no such label)."""
        return self._loss(out, batch, fixed=False)

    def validation_loss(self, out: Dict[str, torch.Tensor],
                        batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The loss with fixed sigmas (the initial ones of learned kinds) and no log terms, so that it
        keeps one scale across epochs; equal to ``forward`` when no sigma is learned."""
        return self._loss(out, batch, fixed=True)

    def _loss(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor],
              fixed: bool) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        terms: Dict[str, torch.Tensor] = {}
        total = out[keys.TOTAL_ENERGY].new_zeros(())
        for kind, sigma in self.sigma.items():
            r = residuals(out, batch, kind)
            if r.numel() == 0:
                # a learned sigma still gets a (zero) gradient, so DDP sees every parameter used
                term = 0.0 * self.log_sigma[kind] if kind in self.log_sigma and not fixed else total.new_zeros(())
            elif kind in self.log_sigma and not fixed:
                log_sigma = self.log_sigma[kind].to(r.dtype)
                term = self._rho(r * torch.exp(-log_sigma)).mean() + 2.0 * log_sigma
            else:
                term = self._rho(r / sigma).mean()
            terms[kind] = term
            total = total + term
        return total, terms
