"""Natural cubic splines on a uniform grid, evaluated in torch (differentiable in the knot values
and in x, TorchScript-compatible).

The spline through values y_0..y_{K-1} at knots x_k = x_0 + k h has second derivatives M_k that
solve the tridiagonal system M_{k-1} + 4 M_k + M_{k+1} = 6 (y_{k-1} - 2 y_k + y_{k+1}) / h^2 with
M_0 = M_{K-1} = 0 (natural ends). The system matrix and the second-difference matrix are stored as
buffers; their entries (1, 4, -2) are exact in every dtype, so a model built in float32 and cast to
float64 is still exactly C2. Solving the (K-2)-dimensional system in ``forward`` costs microseconds
for the 10-100 knots used here.

Outside [x_0, x_{K-1}] the spline continues as the straight line with its end value and slope;
with M = 0 at both ends the continuation is C2 (energy, force and force derivative continuous).
"""

import torch

from mlip.errors import ConfigError


def tridiagonal_system(n_knots: int) -> torch.Tensor:
    """The (K-2) x (K-2) matrix tridiag(1, 4, 1) of the natural-spline equations (float64)."""
    m = n_knots - 2
    a = 4.0 * torch.eye(m, dtype=torch.float64)
    if m > 1:
        off = torch.ones(m - 1, dtype=torch.float64)
        a = a + torch.diag(off, 1) + torch.diag(off, -1)
    return a


def second_differences(n_knots: int) -> torch.Tensor:
    """The (K-2) x K matrix D with (D y)_k = y_k - 2 y_{k+1} + y_{k+2} (float64)."""
    d = torch.zeros(n_knots - 2, n_knots, dtype=torch.float64)
    for k in range(n_knots - 2):
        d[k, k] = 1.0
        d[k, k + 1] = -2.0
        d[k, k + 2] = 1.0
    return d


class UniformCubicSpline(torch.nn.Module):
    """A family of natural cubic splines sharing ``n_knots`` uniform knots from ``start`` to ``stop``.

    ``forward(values, which, x)``: ``values`` [F, K] knot values of F functions, ``which`` [E]
    long (function of each point), ``x`` [E] -> [E] the spline of function ``which[e]`` at
    ``x[e]``. The grid is fixed at construction (plain floats, exact in every dtype).
    """
    system: torch.Tensor
    differences: torch.Tensor

    def __init__(self, start: float, stop: float, n_knots: int):
        super().__init__()
        if n_knots < 4:
            raise ConfigError(f"a cubic spline needs at least 4 knots, got {n_knots} (model.n_knots)")
        if not stop > start:
            raise ValueError(f"spline grid [{start}, {stop}] is empty")
        self.n_knots = int(n_knots)
        self.start = float(start)
        self.stop = float(stop)
        self.step = (self.stop - self.start) / (n_knots - 1)
        dtype = torch.get_default_dtype()
        self.register_buffer("system", tridiagonal_system(n_knots).to(dtype))
        self.register_buffer("differences", second_differences(n_knots).to(dtype))

    def knots(self) -> torch.Tensor:
        """Knot positions [K] (float64)."""
        return self.start + self.step * torch.arange(self.n_knots, dtype=torch.float64)

    def second_derivatives(self, values: torch.Tensor) -> torch.Tensor:
        """M [F, K] of the natural splines through ``values`` [F, K]."""
        h = self.step
        rhs = self.differences @ values.transpose(0, 1) * (6.0 / (h * h))  # [K-2, F]
        inner = torch.linalg.solve(self.system, rhs).transpose(0, 1)  # [F, K-2]
        zero = torch.zeros_like(values[:, :1])
        return torch.cat([zero, inner, zero], dim=1)

    def forward(self, values: torch.Tensor, which: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        n = self.n_knots
        h = self.step
        m = self.second_derivatives(values)
        u = (x - self.start) / h
        k = torch.clamp(torch.floor(u.detach()), 0.0, float(n - 2)).to(torch.long)
        t = u - k.to(u.dtype)
        s = 1.0 - t
        flat = which * n + k
        y_flat = values.reshape(-1)
        m_flat = m.reshape(-1)
        y0 = y_flat.index_select(0, flat)
        y1 = y_flat.index_select(0, flat + 1)
        m0 = m_flat.index_select(0, flat)
        m1 = m_flat.index_select(0, flat + 1)
        inside = s * y0 + t * y1 + ((s * s * s - s) * m0 + (t * t * t - t) * m1) * (h * h / 6.0)
        # straight continuations with the end values and slopes (M = 0 at both ends)
        slope_lo = (values[:, 1] - values[:, 0]) / h - h * m[:, 1] / 6.0
        slope_hi = (values[:, n - 1] - values[:, n - 2]) / h + h * m[:, n - 2] / 6.0
        below = values[:, 0].index_select(0, which) + slope_lo.index_select(0, which) * (x - self.start)
        above = values[:, n - 1].index_select(0, which) + slope_hi.index_select(0, which) * (x - self.stop)
        return torch.where(u < 0.0, below, torch.where(u > float(n - 1), above, inside))
