"""One equivariant message-passing layer (NequIP / MACE family), on channelwise features.

Features are [N, C, D]: C channels, each the same irreps (``mlip.models.coupling``). For centre
i and neighbours j:

    A_i  = Mix( 1/<n> sum_j  R(r_ij) * TP( Mix(h)_j , Y(r_ij) ) )      two-body atomic basis
    B_i  = SymmetricProduct(A_i, Z_i)                                   body order correlation + 1
    h_i' = Mix(B_i) + SelfConnection_{Z_i}(h_i)

``TP`` keeps the channel of h_j (MACE's / NequIP's ``uvu``) and each coupling path has its own
radial weight per channel and edge (R, from the model's radial network); with scalar h it reduces
to R_{c,l}(r) h_j[c] Y_lm. ``Mix`` mixes channels within each irrep; the self-connection does
so with weights of the centre's species. <n> is the training set's mean neighbour count.
"""

from typing import List

import torch

from mlip.models.coupling import Irrep, irrep_of_component, irreps_dim, offsets, pair_coupling
from mlip.models.product import SymmetricProduct
from mlip.nn.scatter import scatter_sum


class ChannelMix(torch.nn.Module):
    """Equivariant linear map [N, C, D] -> [N, C, D]: one C x C matrix per irrep (per species
    when ``num_species`` > 1, selected by ``species``)."""

    def __init__(self, ls: List[Irrep], channels: int, num_species: int = 1):
        super().__init__()
        self.num_species = num_species
        self.channels = channels
        self.weight = torch.nn.Parameter(torch.randn(num_species, len(ls), channels, channels) / channels ** 0.5)
        self.register_buffer("irrep_of_component", torch.tensor(irrep_of_component(ls), dtype=torch.long))

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        n, c, d = x.shape
        xt = x.permute(2, 0, 1)  # [D, N, C]
        if self.num_species == 1:
            w = self.weight[0].index_select(0, self.irrep_of_component)  # [D, C, C]
            return torch.bmm(xt, w).permute(1, 2, 0)
        w = self.weight.permute(1, 2, 0, 3).reshape(-1, c, self.num_species * c)
        y = torch.bmm(xt, w.index_select(0, self.irrep_of_component)).view(d, n, self.num_species, c)
        onehot = torch.nn.functional.one_hot(species, self.num_species).to(x.dtype)
        return (y * onehot.view(1, n, self.num_species, 1)).sum(2).permute(1, 2, 0)


class Interaction(torch.nn.Module):
    """``h`` [N, C, D_in], ``sh`` [E, D_sh], ``edge_weight`` [E, weight_numel] -> [N, C, D_out]."""

    def __init__(self, ls_in: List[Irrep], ls_sh: List[Irrep], ls_a: List[Irrep], ls_out: List[Irrep],
                 channels: int, num_species: int, correlation: int, avg_num_neighbors: float):
        super().__init__()
        self.channels = channels
        self.scalar_input = len(ls_in) == 1 and ls_in[0] == (0, 1)
        self.d_a = irreps_dim(ls_a)
        self.inv_avg_neighbors = 1.0 / max(float(avg_num_neighbors), 1e-6)
        self.linear_up = ChannelMix(ls_in, channels)
        if self.scalar_input:
            if ls_a != ls_sh:
                raise ValueError("with scalar inputs the atomic basis has the irreps of the spherical harmonics")
            self.num_paths = len(ls_sh)
            path_of_k = irrep_of_component(ls_sh)
            u = torch.zeros(0, 0)
            p = torch.zeros(self.num_paths, len(path_of_k), dtype=torch.float64)  # repeats R_l over m
            p[torch.tensor(path_of_k), torch.arange(len(path_of_k))] = 1.0
        else:
            u, path_of_k, out_of_k = pair_coupling(ls_in, ls_sh, ls_a)
            self.num_paths = max(path_of_k) + 1
            # sum the paths into each output component, normalised by the number of paths into it
            p = torch.zeros(u.shape[1], self.d_a, dtype=torch.float64)
            p[torch.arange(u.shape[1]), torch.tensor(out_of_k)] = 1.0
            count = {}
            for k, a in enumerate(out_of_k):
                count.setdefault(a, set()).add(path_of_k[k])
            for a, paths in count.items():
                p[:, a] /= len(paths) ** 0.5
        self.register_buffer("u", u.to(torch.get_default_dtype()))
        self.register_buffer("p", p.to(torch.get_default_dtype()))
        self.register_buffer("path_of_k", torch.tensor(path_of_k, dtype=torch.long))
        # scalar inputs: entry (path l(d), component d) of the flattened [P, D] block product
        d_sh = irreps_dim(ls_sh)
        self.register_buffer("diagonal", torch.tensor([l * d_sh + d for d, l in enumerate(irrep_of_component(ls_sh))],
                                                      dtype=torch.long))
        self.weight_numel = channels * self.num_paths
        # per-component normalisation of A and B, set from training data by the model's
        # initialize_from_data (unit RMS per irrep), 1 until then
        self.register_buffer("a_norm", torch.ones(self.d_a))
        self.register_buffer("b_norm", torch.ones(irreps_dim(ls_out)))
        self.register_buffer("a_irrep", torch.tensor(irrep_of_component(ls_a), dtype=torch.long))
        self.register_buffer("b_irrep", torch.tensor(irrep_of_component(ls_out), dtype=torch.long))
        self.linear_a = ChannelMix(ls_a, channels)
        self.product = SymmetricProduct(ls_a, ls_out, correlation, num_species, channels)
        self.linear_out = ChannelMix(ls_out, channels)
        # self-connection: the irreps of h that the output also has, mixed per species
        o_in = offsets(ls_in)
        gather: List[int] = []
        for l, par in ls_out:
            if (l, par) in ls_in:
                start = o_in[ls_in.index((l, par))]
                gather += list(range(start, start + 2 * l + 1))
            else:
                gather += [irreps_dim(ls_in)] * (2 * l + 1)  # a zero column
        self.register_buffer("sc_gather", torch.tensor(gather, dtype=torch.long))
        self.self_connection = ChannelMix(ls_out, channels, num_species)

    def forward(self, h: torch.Tensor, species: torch.Tensor, sh: torch.Tensor, edge_weight: torch.Tensor,
                edge_index: torch.Tensor, slot: torch.Tensor, sh_padded: torch.Tensor) -> torch.Tensor:
        """``slot`` [E]: position of each edge in a [N * K] table of K neighbour slots per centre;
        ``sh_padded`` [N, K, D_sh]: the spherical harmonics in that table (zeros in empty slots)."""
        n = h.shape[0]
        e = sh.shape[0]
        c = self.channels
        i = edge_index[0]
        j = edge_index[1]
        xj = self.linear_up(h, species).index_select(0, j)  # [E, C, D_in]
        r = edge_weight.view(e, c, self.num_paths)
        if self.scalar_input:
            # A[i, c, lm] = sum_j R[ij, c, l] h_j[c] Y_lm(ij) as one batched matrix product per centre
            # over its neighbour slots, [C * P, K] @ [K, D], keeping the blocks with matching l:
            # several times fewer memory passes than forming the [E, C, D] messages and scattering
            g = (r * xj).reshape(e, c * self.num_paths)
            k = sh_padded.shape[1]
            gp = torch.zeros(n * k, c * self.num_paths, dtype=g.dtype, device=g.device).index_copy(0, slot, g)
            full = torch.bmm(gp.view(n, k, -1).transpose(1, 2), sh_padded)  # [N, C * P, D]
            a = full.view(n, c, -1).index_select(2, self.diagonal)
        else:
            outer = (xj.unsqueeze(3) * sh.unsqueeze(1).unsqueeze(1)).reshape(e, c, self.u.shape[0])
            msg = ((outer @ self.u) * r.index_select(2, self.path_of_k)) @ self.p  # [E, C, D_a]
            a = scatter_sum(msg, i, n)
        a = a * (self.a_norm * self.inv_avg_neighbors)
        a = self.linear_a(a, species)
        b = self.product(a, species) * self.b_norm
        hp = torch.cat([h, h.new_zeros(n, c, 1)], dim=2).index_select(2, self.sc_gather)
        return self.linear_out(b, species) + self.self_connection(hp, species)
