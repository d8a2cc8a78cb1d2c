"""Invariant atom-centred descriptors: a learnable species-resolved radial basis times real
spherical harmonics, summed over neighbours and contracted to rotation invariants.

For centre i with neighbours j (r_ij < r_c):

    A_i[c, l, m] = 1/<n> * sum_j R_{c,l}(r_ij; Z_i, Z_j) Y_lm(r_ij / |r_ij|)
    G_i[c]       = A_i[c, 0, 0]                                 (two-body, radial terms)
    P_i[c, c', l] = sum_m A_i[c, l, m] A_i[c', l, m],  c <= c'  (three-body, angular terms)

R_{c,l} = f_cut(r) * sum_k W[Z_i, Z_j, k, (c, l)] b_k(r), with Bessel b_k and a polynomial
envelope that vanishes with two derivatives at r_c. Because
sum_m Y_lm(u) Y_lm(v) = (2l+1) P_l(u.v), P carries the same information as Behler-Parrinello
angular symmetry functions (a Legendre expansion in cos theta_jik) at a cost linear in the
number of neighbours (the SOAP power spectrum with learned radial functions).
"""

from typing import Dict, List

import torch
from e3nn import o3

from mlip import keys
from mlip.nn.cutoff import PolynomialCutoff
from mlip.nn.geometry import edge_vectors
from mlip.nn.neighbor_slots import neighbour_slots, slot_products
from mlip.nn.radial import BesselBasis


class SphericalPowerDescriptor(torch.nn.Module):
    """Batch in, per-atom invariant features [N, num_features] out."""
    inv_avg_neighbors: torch.Tensor
    triu_flat: torch.Tensor
    l_of_m: torch.Tensor
    diagonal: torch.Tensor

    def __init__(self, num_species: int, cutoff: float, num_basis: int = 8, num_channels: int = 12,
                 l_max: int = 3, avg_num_neighbors: float = 1.0, cutoff_p: int = 6):
        super().__init__()
        self.num_species = num_species
        self.num_channels = num_channels
        self.l_max = l_max
        self.basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)
        self.sh = o3.SphericalHarmonics(o3.Irreps.spherical_harmonics(l_max), normalize=True,
                                        normalization="component")
        n_pairs = num_species * num_species
        self.radial_weights = torch.nn.Parameter(
            torch.randn(n_pairs, num_basis, num_channels * (l_max + 1)) / num_basis ** 0.5)
        self.register_buffer("inv_avg_neighbors", torch.tensor(1.0 / max(avg_num_neighbors, 1e-6)))
        iu = torch.triu_indices(num_channels, num_channels)
        self.register_buffer("triu_flat", iu[0] * num_channels + iu[1])
        # m-range of each l in the flattened spherical-harmonic axis, and which column of the
        # radial output feeds each (l, m) entry
        self.l_slices: List[List[int]] = [[l * l, (l + 1) * (l + 1)] for l in range(l_max + 1)]
        l_of_m = torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(l_max + 1)])
        self.register_buffer("l_of_m", l_of_m)
        # entry (l(m), m) of the flattened [L+1, (L+1)^2] block product in ``forward``; rebuilt, not saved
        d = (l_max + 1) ** 2
        self.register_buffer("diagonal", l_of_m * d + torch.arange(d), persistent=False)
        self.num_features = num_channels + (l_max + 1) * len(iu[0])

    def radial_functions(self, r: torch.Tensor) -> torch.Tensor:
        """Learned radial functions R_{c,l}(r; Z_i, Z_j) at distances ``r`` [G] (Å):
        [num_species^2, num_channels, l_max + 1, G], pair index Z_i-index * num_species + Z_j-index."""
        basis = self.basis(r) * self.envelope(r).unsqueeze(-1)  # [G, K]
        radial = torch.einsum("gk,pkf->pfg", basis, self.radial_weights)
        return radial.reshape(radial.shape[0], self.num_channels, self.l_max + 1, r.shape[0])

    def forward(self, data: Dict[str, torch.Tensor], n_centres: int = -1) -> torch.Tensor:
        """Features [M, num_features] of the first M = ``n_centres`` atoms (every edge centred on
        one of them; -1: all atoms)."""
        vec = edge_vectors(data)
        r = torch.linalg.norm(vec, dim=1)
        i = data[keys.EDGE_INDEX][0]
        j = data[keys.EDGE_INDEX][1]
        species = data[keys.SPECIES]
        n_atoms = species.shape[0] if n_centres < 0 else n_centres
        pair = species[i] * self.num_species + species[j]
        basis = self.basis(r) * self.envelope(r).unsqueeze(-1)  # [E, K]
        if self.num_species == 1:
            radial = basis @ self.radial_weights[0]
        else:
            radial = torch.bmm(basis.unsqueeze(1), self.radial_weights.index_select(0, pair)).squeeze(1)
        y = self.sh(vec)  # [E, (L+1)^2]
        # A as one batched matrix product per centre over its neighbour slots, [C (L+1), K] @ [K, D],
        # keeping the entries whose l matches: 3x faster forward and backward on CPU than forming
        # the [E, C, D] edge products and scattering them (and no [E, C, D] tensor in the graph)
        slot, y_padded = neighbour_slots(i, n_atoms, y)  # [N, K, D]
        full = slot_products(radial, slot, y_padded)  # [N, C (L+1), D]
        a = full.reshape(n_atoms, self.num_channels, -1).index_select(2, self.diagonal) * self.inv_avg_neighbors
        feats = [a[:, :, 0]]
        for lm in self.l_slices:
            al = a[:, :, lm[0]:lm[1]]
            p = torch.bmm(al, al.transpose(1, 2)).reshape(n_atoms, -1)  # [N, C*C]
            feats.append(p.index_select(1, self.triu_flat))
        return torch.cat(feats, dim=1)
