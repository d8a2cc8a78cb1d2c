"""Smooth cutoff envelopes."""

import torch


class PolynomialCutoff(torch.nn.Module):
    """Polynomial envelope f(r) of Klicpera et al. (DimeNet), as used by NequIP.

    f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = r / r_c, and 0 for x >= 1.
    f, f' and f'' vanish at r_c, so energies, forces and force derivatives are continuous there.
    ``r`` [E] in Å; returns [E], dimensionless.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        out = (
            1.0
            - 0.5 * (p + 1.0) * (p + 2.0) * x.pow(p)
            + p * (p + 2.0) * x.pow(p + 1.0)
            - 0.5 * p * (p + 1.0) * x.pow(p + 2.0)
        )
        return out * (x < 1.0).to(out.dtype)
