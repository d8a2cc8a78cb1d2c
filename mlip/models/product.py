"""Higher body order on each atom (the MACE product basis, written with e3nn tensor products).

From the atomic basis A_i (a sum over neighbours, so two-body; C channels of irreps up to l_A),
products within each channel build features of body order nu + 1:

    B^(1) = A,    B^(nu) = sum over coupling paths w_path[Z_i, c] (B^(nu-1) (x) A)_path    (nu >= 2)
    out_i[c, L] = sum_nu v_nu[Z_i, c, L] * B^(nu)_i[c, L]           (L in the target irreps)

Every coupling path of every product, and every order's contribution to each output irrep, has
its own weight per species and channel (the symmetric contraction of MACE, up to redundant paths).
"""

from typing import List

import torch
from e3nn import o3


def _target_index(irreps_from: o3.Irreps, irreps_to: o3.Irreps) -> List[int]:
    """Positions in a flat ``irreps_from`` vector of each component of ``irreps_to`` (both with
    the same multiplicity C, each irrep at most once in ``irreps_to``); -1 where absent."""
    slices = irreps_from.slices()
    found = {ir: (slices[k].start, mul) for k, (mul, ir) in enumerate(irreps_from)}
    out: List[int] = []
    for mul, ir in irreps_to:
        if ir in found:
            start, _ = found[ir]
            out.extend(range(start, start + mul * ir.dim))
        else:
            out.extend([-1] * (mul * ir.dim))
    return out


def _weight_index(irreps: o3.Irreps) -> List[int]:
    """For each component of ``irreps`` (C x (ir_1 + ir_2 + ...)), the index of its (irrep, channel)
    weight in a flat [num_irreps * C] vector."""
    out: List[int] = []
    for k, (mul, ir) in enumerate(irreps):
        for c in range(mul):
            out.extend([k * mul + c] * ir.dim)
    return out


class ProductBasis(torch.nn.Module):
    """``a`` [N, irreps_a.dim], ``species`` [N] -> [N, irreps_out.dim].

    ``irreps_a`` and ``irreps_out`` have the same multiplicity C for every irrep; products keep
    irreps with l <= ``l_mid`` in between (both parities, so pseudotensors can couple back to
    natural-parity outputs) and the irreps of ``irreps_out`` at the last order.
    """

    def __init__(self, irreps_a: o3.Irreps, irreps_out: o3.Irreps, correlation: int, num_species: int,
                 l_mid: int):
        super().__init__()
        self.irreps_a = o3.Irreps(irreps_a)
        self.irreps_out = o3.Irreps(irreps_out)
        self.correlation = int(correlation)
        channels = self.irreps_a[0].mul
        parities = sorted({ir.p for _, ir in self.irreps_a} | {ir.p for _, ir in self.irreps_out})
        mid = o3.Irreps([(channels, (l, p)) for l in range(l_mid + 1) for p in parities]).sort().irreps.simplify()
        self.tps = torch.nn.ModuleList()
        self.path_weights = torch.nn.ParameterList()
        orders = [self.irreps_a]
        for nu in range(2, self.correlation + 1):
            last = nu == self.correlation
            wanted = self.irreps_out if last else mid
            irreps_in = orders[-1]
            out_list = []
            instructions = []
            for i1, (_, ir1) in enumerate(irreps_in):
                for i2, (_, ir2) in enumerate(self.irreps_a):
                    for ir in ir1 * ir2:
                        if ir in [w.ir for w in wanted]:
                            if ir not in out_list:
                                out_list.append(ir)
                            instructions.append((i1, i2, out_list.index(ir), "uuu", True))
            irreps_nu = o3.Irreps([(channels, ir) for ir in out_list])
            tp = o3.TensorProduct(irreps_in, self.irreps_a, irreps_nu, instructions, shared_weights=False,
                                  internal_weights=False)
            self.tps.append(tp)
            self.path_weights.append(torch.nn.Parameter(torch.randn(num_species, tp.weight_numel)))
            orders.append(irreps_nu)
        self.orders_irreps = orders
        # contribution of each order to the output, one weight per (species, irrep, channel)
        n_w = len(self.irreps_out) * channels
        self.order_weights = torch.nn.Parameter(torch.ones(self.correlation, num_species, n_w)
                                                / self.correlation ** 0.5)
        self.register_buffer("weight_index", torch.tensor(_weight_index(self.irreps_out), dtype=torch.long))
        # gather index of the output irreps inside each order (absent irreps read a zero column)
        gathers = []
        for irreps_nu in orders:
            idx = torch.tensor(_target_index(irreps_nu, self.irreps_out), dtype=torch.long)
            gathers.append(torch.where(idx < 0, torch.full_like(idx, irreps_nu.dim), idx))
        self.register_buffer("gather", torch.stack(gathers))

    def forward(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        zero = a.new_zeros(a.shape[0], 1)
        w = self.order_weights.index_select(2, self.weight_index)  # [nu, S, out_dim]
        out = torch.cat([a, zero], 1).index_select(1, self.gather[0]) * w[0].index_select(0, species)
        b = a
        k = 1
        for tp, pw in zip(self.tps, self.path_weights):
            b = tp(b, a, pw.index_select(0, species))
            out = out + torch.cat([b, zero], 1).index_select(1, self.gather[k]) * w[k].index_select(0, species)
            k += 1
        return out
