"""One equivariant message-passing layer (NequIP / MACE family).

For centre i, neighbours j, edge r_ij = r_j - r_i:

    A_i    = Linear( 1/<n> sum_j  TP_uvu( W h_j , Y(r_ij) ; R(r_ij) ) )     (two-body atomic basis)
    B_i    = ProductBasis(A_i, Z_i)                                          (body order up to nu + 1)
    h_i'   = Linear(B_i) + SelfConnection(h_i, Z_i)

Y are real spherical harmonics (e3nn, component normalisation), R the per-edge tensor-product
weights from a radial network (computed for all layers at once by the model), <n> the mean
number of neighbours in the training data. Each message path keeps channel u of h_j (``uvu``),
so the edge cost is linear in the number of channels.
"""

from typing import List, Tuple

import torch
from e3nn import o3

from mlip.models.product import ProductBasis
from mlip.nn.scatter import scatter_sum


def message_irreps(irreps_h: o3.Irreps, irreps_sh: o3.Irreps, irreps_keep: o3.Irreps
                   ) -> Tuple[o3.Irreps, List[tuple]]:
    """Output irreps and ``uvu`` instructions of h (x) Y, keeping outputs whose irrep is in
    ``irreps_keep`` (one block per path, mixed afterwards by a linear layer)."""
    keep = [ir for _, ir in irreps_keep]
    out = []
    instructions = []
    for i1, (mul, ir1) in enumerate(irreps_h):
        for i2, (_, ir2) in enumerate(irreps_sh):
            for ir in ir1 * ir2:
                if ir in keep:
                    instructions.append((i1, i2, len(out), "uvu", True))
                    out.append((mul, ir))
    return o3.Irreps(out), instructions


class Interaction(torch.nn.Module):
    """``h`` [N, irreps_in.dim], ``sh`` [E, irreps_sh.dim], ``edge_weight`` [E, weight_numel]
    -> [N, irreps_out.dim]."""

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_a: o3.Irreps, irreps_out: o3.Irreps,
                 num_species: int, correlation: int, l_mid: int, avg_num_neighbors: float):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.linear_up = o3.Linear(self.irreps_in, self.irreps_in)
        irreps_msg, instructions = message_irreps(self.irreps_in, irreps_sh, irreps_a)
        self.tp = o3.TensorProduct(self.irreps_in, irreps_sh, irreps_msg, instructions, shared_weights=False,
                                   internal_weights=False)
        self.weight_numel = self.tp.weight_numel
        self.linear_a = o3.Linear(irreps_msg, irreps_a)
        self.inv_avg_neighbors = 1.0 / max(float(avg_num_neighbors), 1e-6)
        self.product = ProductBasis(irreps_a, self.irreps_out, correlation, num_species, l_mid)
        self.linear_out = o3.Linear(self.irreps_out, self.irreps_out)
        self.self_connection = o3.FullyConnectedTensorProduct(self.irreps_in, o3.Irreps(f"{num_species}x0e"),
                                                              self.irreps_out)

    def forward(self, h: torch.Tensor, species_onehot: torch.Tensor, species: torch.Tensor, sh: torch.Tensor,
                edge_weight: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        i = edge_index[0]
        j = edge_index[1]
        up = self.linear_up(h)
        msg = self.tp(up.index_select(0, j), sh, edge_weight)
        a = scatter_sum(msg, i, h.shape[0]) * self.inv_avg_neighbors
        a = self.linear_a(a)
        b = self.product(a, species)
        return self.linear_out(b) + self.self_connection(h, species_onehot)
