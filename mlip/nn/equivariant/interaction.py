"""One equivariant message-passing layer (NequIP / MACE family), on channelwise features, in two
algorithms that differ in how the atomic basis A is formed.

Features are [N, C, D]: C channels, each the same irreps (``mlip.nn.equivariant.irreps``). For
centre i and neighbours j:

    A_i  = Mix( 1/<n> sum_j  R(r_ij) * TP( Mix(h)_j , Y(r_ij) ) )      two-body atomic basis
    B_i  = SymmetricContraction(A_i, Z_i)                               body order correlation + 1
    h_i' = Mix(B_i) + SelfConnection_{Z_i}(h_i)

``TP`` keeps the channel of h_j (MACE's / NequIP's ``uvu``) and each coupling path has its own
radial weight per channel and edge (R, from the model's radial network, dimensionless weights
of the edge length in Å); ``Mix`` mixes channels within each irrep; the self-connection does so
with weights of the centre's species. <n> is the training set's mean neighbour count.

- ``ScalarInputInteraction`` (h scalars, D_in = 1; every first layer, and all layers of
  ``l_max=0`` models): TP reduces to R_{c,l}(r) h_j[c] Y_lm, summed per centre as one batched
  matrix product over its neighbour slots.
- ``TensorInputInteraction`` (h with l >= 1): the same slot products with one row per (coupling
  path, input component), then one Clebsch-Gordan contraction per centre (not per edge).

The model builder picks the class; both take the same ``forward`` arguments.
"""

from typing import Dict, List, Optional, Tuple

import torch

from mlip.nn.equivariant.channel_mixing import ChannelMix
from mlip.nn.equivariant.coupling import pair_coupling
from mlip.nn.equivariant.irreps import Irrep, irrep_of_component, irreps_dim, offsets
from mlip.nn.equivariant.symmetric_contraction import SymmetricContraction
from mlip.nn.neighbor_slots import slot_products, to_slots
from mlip.nn.scatter import scatter_sum


class Interaction(torch.nn.Module):
    """What both algorithms share: channel mixing before and after, the normalisation of A and B,
    the symmetric contraction and the self-connection. Subclasses define ``atomic_basis`` and set
    ``weight_numel`` (radial weights per edge).

    ``h`` [N, C, D_in], ``species`` [N], ``sh`` [E, D_sh], ``edge_weight`` [E, weight_numel] (its
    columns in the layer's ``weight_order``: column j is column ``weight_order[j]`` of the
    channel-major (channel, path) layout the radial network's parameters are defined in),
    ``edge_index`` [2, E], ``slot`` [E] and ``sh_padded`` [M, K, D_sh] (``neighbour_slots`` of
    the first M <= N atoms, the centres: every edge is centred on one of them)
    -> h' [M, C, D_out], the new features of the centres. M = N in training; an MD engine with
    ghost atoms passes its local atoms first and M = their number (``mlip.export``).
    ``species_blocks`` (M = N only): the contraction's per-species atoms, computed beforehand
    (``SymmetricContraction.forward``)."""
    a_norm: torch.Tensor
    b_norm: torch.Tensor
    a_irrep: torch.Tensor
    b_irrep: torch.Tensor
    sc_gather: torch.Tensor

    def __init__(self, ls_in: List[Irrep], ls_a: List[Irrep], ls_out: List[Irrep], channels: int,
                 num_species: int, correlation: int, avg_num_neighbors: float):
        super().__init__()
        self.channels = channels
        self.d_a = irreps_dim(ls_a)
        self.weight_numel = 0
        #: the order the layer reads its radial weights in (see above); the model permutes the
        #: radial network's last weight matrix to it (free), so no per-edge copy is made
        self.weight_order: List[int] = []
        self.inv_avg_neighbors = 1.0 / max(float(avg_num_neighbors), 1e-6)
        self.linear_up = ChannelMix(ls_in, channels)
        # per-component normalisation of A and B, set from training data by the model's
        # initialize_from_data (unit RMS per irrep), 1 until then
        self.register_buffer("a_norm", torch.ones(self.d_a))
        self.register_buffer("b_norm", torch.ones(irreps_dim(ls_out)))
        self.register_buffer("a_irrep", torch.tensor(irrep_of_component(ls_a), dtype=torch.long))
        self.register_buffer("b_irrep", torch.tensor(irrep_of_component(ls_out), dtype=torch.long))
        self.linear_a = ChannelMix(ls_a, channels)
        self.product = SymmetricContraction(ls_a, ls_out, correlation, num_species, channels)
        self.linear_out = ChannelMix(ls_out, channels)
        self.register_buffer("sc_gather", torch.tensor(_self_connection_gather(ls_in, ls_out), dtype=torch.long))
        self.self_connection = ChannelMix(ls_out, channels, num_species)

    def atomic_basis(self, x: torch.Tensor, sh: torch.Tensor, edge_weight: torch.Tensor, edge_index: torch.Tensor,
                     slot: torch.Tensor, sh_padded: torch.Tensor) -> torch.Tensor:
        """sum_j R(r_ij) TP(x_j, Y(r_ij)) [M, C, D_a] of the M centres (``sh_padded.shape[0]``) from
        the mixed features ``x`` [N, C, D_in] of every atom."""
        raise NotImplementedError

    def forward(self, h: torch.Tensor, species: torch.Tensor, sh: torch.Tensor, edge_weight: torch.Tensor,
                edge_index: torch.Tensor, slot: torch.Tensor, sh_padded: torch.Tensor,
                species_blocks: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        m = sh_padded.shape[0]  # centres: the first m atoms
        a = self.atomic_basis(self.linear_up(h, species), sh, edge_weight, edge_index, slot, sh_padded)
        a = a * (self.a_norm * self.inv_avg_neighbors)
        centre_species = species[:m]
        a = self.linear_a(a, centre_species)
        b = self.product(a, centre_species, species_blocks) * self.b_norm
        hc = h[:m]
        hp = torch.cat([hc, hc.new_zeros(m, self.channels, 1)], dim=2).index_select(2, self.sc_gather)
        return self.linear_out(b, centre_species) + self.self_connection(hp, centre_species)


def _self_connection_gather(ls_in: List[Irrep], ls_out: List[Irrep]) -> List[int]:
    """Component of h (or D_in, a zero column) for each output component: the irreps of h that the
    output also has."""
    o_in = offsets(ls_in)
    gather: List[int] = []
    for l, par in ls_out:
        if (l, par) in ls_in:
            start = o_in[ls_in.index((l, par))]
            gather += list(range(start, start + 2 * l + 1))
        else:
            gather += [irreps_dim(ls_in)] * (2 * l + 1)
    return gather


class ScalarInputInteraction(Interaction):
    """Scalar ``h`` [N, C, 1]; A has the irreps of the spherical harmonics ``ls_sh``:
    A[i, c, lm] = sum_j R[ij, c, l] x_j[c] Y_lm(ij), one radial weight per channel and l."""
    diagonal: torch.Tensor
    channel_of_weight: torch.Tensor

    def __init__(self, ls_sh: List[Irrep], ls_out: List[Irrep], channels: int, num_species: int,
                 correlation: int, avg_num_neighbors: float):
        super().__init__([(0, 1)], ls_sh, ls_out, channels, num_species, correlation, avg_num_neighbors)
        self.num_paths = len(ls_sh)
        self.weight_numel = channels * self.num_paths
        # path-major weights (path l, then channel): each path's columns are one contiguous block
        self.weight_order = [c * self.num_paths + p for p in range(self.num_paths) for c in range(channels)]
        self.register_buffer("channel_of_weight", torch.arange(channels).repeat(self.num_paths), persistent=False)
        #: components 2l+1 of each spherical-harmonic irrep (path l reads those of irrep l)
        self.sh_sizes: List[int] = [2 * l + 1 for l, _ in ls_sh]

    def atomic_basis(self, x: torch.Tensor, sh: torch.Tensor, edge_weight: torch.Tensor, edge_index: torch.Tensor,
                     slot: torch.Tensor, sh_padded: torch.Tensor) -> torch.Tensor:
        # per path l, one batched matrix product per centre over its neighbour slots,
        # [2l+1, K] @ [K, C]: several times fewer memory passes than forming the [E, C, D] messages
        # and scattering, and only the (l, l) blocks (a [C P, K] @ [K, D] product would form all
        # P x P blocks, and picking the diagonal ones is an index_select along the last axis)
        n, c = x.shape[0], self.channels
        # x_j[c] repeated over the paths, then gathered per edge: a plain product with the
        # path-major [E, P * C] radial weights (a broadcast over P costs a reduction in every backward)
        g = edge_weight * x.view(n, c).index_select(1, self.channel_of_weight).index_select(0, edge_index[1])
        table = to_slots(g, slot, sh_padded.shape[0], sh_padded.shape[1])  # [M, K, P * C]
        # split (not slices): its backward is one concatenation, not one zero-filled tensor per path
        per_path = [torch.bmm(y.transpose(1, 2), w) for w, y in zip(table.split(c, dim=2),
                                                                    sh_padded.split(self.sh_sizes, dim=2))]
        return torch.cat(per_path, dim=1).transpose(1, 2)  # [M, C, D] (a view of [M, D, C])


class TensorInputInteraction(Interaction):
    """``h`` with irreps ``ls_in`` (l >= 1 among them): every allowed path ls_in (x) ls_sh -> ls_a,
    one radial weight per path and channel; paths into the same output component are summed and
    divided by sqrt(number of paths into it).

    Like the scalar layer, it sums over each centre's neighbour slots in one batched matrix
    product: rows r = (path p, input component m1) that a path reads, per channel,

        G[i, c, r, m2] = sum_j R[ij, c, p(r)] x_j[c, m1(r)] Y_m2(ij)      [M, C * R, D_sh]
        A[i, c, a]     = sum_{r, m2} G[i, c, r, m2] W[(r, m2), a]          W from U and P

    so no [E, C, D_in * D_sh] edge tensor is formed (``atomic_basis_dense``, the reference, forms
    it and contracts it with the Clebsch-Gordan matrix U on every edge)."""
    u: torch.Tensor
    p: torch.Tensor
    path_of_k: torch.Tensor
    row_m1: torch.Tensor
    path_to_rows: torch.Tensor
    w_rows: torch.Tensor

    def __init__(self, ls_in: List[Irrep], ls_sh: List[Irrep], ls_a: List[Irrep], ls_out: List[Irrep],
                 channels: int, num_species: int, correlation: int, avg_num_neighbors: float):
        super().__init__(ls_in, ls_a, ls_out, channels, num_species, correlation, avg_num_neighbors)
        u, path_of_k, out_of_k = pair_coupling(ls_in, ls_sh, ls_a)
        self.num_paths = max(path_of_k) + 1
        self.weight_numel = channels * self.num_paths
        p = torch.zeros(u.shape[1], self.d_a, dtype=torch.float64)
        p[torch.arange(u.shape[1]), torch.tensor(out_of_k)] = 1.0
        paths_into: Dict[int, set] = {}
        for k, a in enumerate(out_of_k):
            paths_into.setdefault(a, set()).add(path_of_k[k])
        for a, paths in paths_into.items():
            p[:, a] /= len(paths) ** 0.5
        self.register_buffer("u", u.to(torch.get_default_dtype()))  # [D_in * D_sh, K]
        self.register_buffer("p", p.to(torch.get_default_dtype()))  # [K, D_a]
        self.register_buffer("path_of_k", torch.tensor(path_of_k, dtype=torch.long))
        row_path, row_m1, w_rows = _slot_rows(u, p, path_of_k, irreps_dim(ls_in), irreps_dim(ls_sh))
        self.num_rows = len(row_path)
        # constants of the irreps, rebuilt with the layer (not saved: state dicts stay as before)
        # radial weight of each row's path, as a 0/1 matrix [P, R]: a matrix product is several times
        # faster on CPU than index_select along the last axis of the [E, C, P] weights
        self.register_buffer("path_to_rows", torch.nn.functional.one_hot(torch.tensor(row_path), self.num_paths).T
                             .to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("row_m1", torch.tensor(row_m1, dtype=torch.long), persistent=False)
        self.register_buffer("w_rows", w_rows.to(torch.get_default_dtype()), persistent=False)  # [R * D_sh, D_a]

    def atomic_basis(self, x: torch.Tensor, sh: torch.Tensor, edge_weight: torch.Tensor, edge_index: torch.Tensor,
                     slot: torch.Tensor, sh_padded: torch.Tensor) -> torch.Tensor:
        e, c, m = sh.shape[0], self.channels, sh_padded.shape[0]
        xj = x.index_select(2, self.row_m1).index_select(0, edge_index[1])  # [E, C, R]
        r = edge_weight.reshape(e * c, self.num_paths) @ self.path_to_rows  # [E * C, R]
        g = (xj.view(e * c, self.num_rows) * r).view(e, c * self.num_rows)
        full = slot_products(g, slot, sh_padded)  # [M, C * R, D_sh]
        return (full.reshape(m * c, self.w_rows.shape[0]) @ self.w_rows).view(m, c, self.d_a)

    def atomic_basis_dense(self, x: torch.Tensor, sh: torch.Tensor, edge_weight: torch.Tensor,
                           edge_index: torch.Tensor, n_centres: int) -> torch.Tensor:
        """The same sum formed edge by edge (the reference of the tests): [n_centres, C, D_a]."""
        e = sh.shape[0]
        c = self.channels
        xj = x.index_select(0, edge_index[1])  # [E, C, D_in]
        r = edge_weight.view(e, c, self.num_paths)
        outer = (xj.unsqueeze(3) * sh.unsqueeze(1).unsqueeze(1)).reshape(e, c, self.u.shape[0])
        msg = ((outer @ self.u) * r.index_select(2, self.path_of_k)) @ self.p  # [E, C, D_a]
        return scatter_sum(msg, edge_index[0], n_centres)


def _slot_rows(u: torch.Tensor, p: torch.Tensor, path_of_k: List[int], d_in: int, d_sh: int
               ) -> Tuple[List[int], List[int], torch.Tensor]:
    """Rows of ``TensorInputInteraction``'s slot products: the (path, input component) pairs some
    coupling column of the path reads, and W [R * D_sh, D_a] with
    W[(r, m2), a] = sum over the path's columns k of U[(m1(r), m2), k] P[k, a]."""
    u3 = u.view(d_in, d_sh, -1)
    row_path: List[int] = []
    row_m1: List[int] = []
    blocks: List[torch.Tensor] = []
    for path in range(max(path_of_k) + 1):
        cols = torch.tensor([k for k, q in enumerate(path_of_k) if q == path], dtype=torch.long)
        p_path = p.index_select(0, cols)  # [columns of the path, D_a]
        for m1 in range(d_in):
            block = u3[m1].index_select(1, cols)  # [D_sh, columns of the path]
            if bool((block != 0).any()):
                row_path.append(path)
                row_m1.append(m1)
                blocks.append(block @ p_path)  # [D_sh, D_a]
    return row_path, row_m1, torch.cat(blocks, dim=0)
