"""DFT-D3(BJ) two-body dispersion (Grimme et al. 2010, Becke-Johnson damping 2011) as per-atom
energies, so that any model can carry it (``model.d3=<functional>``) into ``model.pt``.

The reference data (C6 of the reference systems, their coordination numbers, covalent radii,
<r^4>/<r^2>) and the damping parameters of each functional come from ``tad-dftd3`` when the model
is built, restricted to the model's elements; the evaluation below is TorchScript so the exported
file needs no extra package. ``tests/test_dispersion.py`` holds it equal to ``tad_dftd3.dftd3`` on
molecules and to s-dftd3 (``dftd3``) on periodic cells.

    CN_i   = sum_j 1 / (1 + exp(-16 (R_cov,i + R_cov,j) / r_ij + 16))            r_ij < cn_cutoff
    w_ia   = exp(-4 (CN_i - CN_a^ref)^2) / sum_b exp(-4 (CN_i - CN_b^ref)^2)
    C6_ij  = sum_ab w_ia w_jb C6_ab^ref,      C8_ij = 3 C6_ij Q_i Q_j  (Q = <r^4>/<r^2> ** 1/2)
    E_i    = -1/2 sum_j [s6 C6_ij / (r^6 + R0^6) + s8 C8_ij / (r^8 + R0^8)],  R0 = a1 sqrt(3 Q_i Q_j) + a2

over all pairs and periodic images with r_ij < ``cutoff``, hard cutoffs as in s-dftd3. Computed in
Bohr and Hartree, returned in eV. Not included: the three-body (ATM, s9) term, which LAMMPS'
``pair_style dispersion/d3`` leaves out too, so the model and LAMMPS give the same energy.
"""

from typing import Dict, List, Optional, Tuple

import torch

from mlip import keys
from mlip.errors import ConfigError
from mlip.nn.neighbors import torch_neighbor_list
from mlip.nn.scatter import scatter_sum

BOHR = 0.52917721067  # Å (CODATA 2014, as tad-mctc and s-dftd3)
HARTREE = 27.21138602  # eV (CODATA 2014)
#: s-dftd3's default real-space cutoffs (Bohr): two-body energy, coordination number
DEFAULT_CUTOFF_BOHR = 60.0
DEFAULT_CN_CUTOFF_BOHR = 40.0


def d3_parameters(functional: str) -> Dict[str, float]:
    """BJ damping parameters ``s6, s8, a1, a2`` (a2 in Bohr) of ``functional`` from tad-dftd3's table;
    ConfigError naming ``model.d3`` for an unknown functional or a missing package."""
    try:
        from tad_dftd3.param import get_functional_params
    except ImportError as exc:
        raise ConfigError("model.d3 needs the package tad-dftd3 (D3 reference data): "
                          "pip install 'mlip[dispersion]'") from exc
    try:
        params = get_functional_params(functional, damping="bj", dtype=torch.float64)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"model.d3={functional!r}: no D3(BJ) parameters for this functional in tad-dftd3 "
                          "(use its name as in s-dftd3, e.g. pbe, pbe0, b3lyp, r2scan, tpss, revpbe)") from exc
    return {k: float(params.get(k, 1.0 if k == "s6" else 0.0)) for k in ("s6", "s8", "a1", "a2")}


class D3Dispersion(torch.nn.Module):
    """Per-atom D3(BJ) energies [N] (eV) of a batch whose ``species`` index ``atomic_numbers``.

    ``cutoff`` and ``cn_cutoff`` in Å (defaults: s-dftd3's 60 and 40 Bohr). ``active=False`` keeps
    the term in the model but returns zeros: training on labels without dispersion
    (``model.d3_in_labels=false``), switched on when exported."""
    ref_c6: torch.Tensor
    ref_cn: torch.Tensor
    rcov: torch.Tensor
    r4r2: torch.Tensor

    def __init__(self, atomic_numbers: List[int], functional: str = "pbe", cutoff: Optional[float] = None,
                 cn_cutoff: Optional[float] = None, active: bool = True):
        super().__init__()
        params = d3_parameters(functional)
        from tad_dftd3.data import R4R2
        from tad_dftd3.reference import Reference
        from tad_mctc.data.radii import COV_D3

        z = torch.tensor([int(a) for a in atomic_numbers], dtype=torch.long)
        ref = Reference(dtype=torch.float64)
        self.register_buffer("ref_c6", ref.c6[z][:, z].clone())  # [S, S, R, R] Hartree Bohr^6
        self.register_buffer("ref_cn", ref.cn[z].clone())  # [S, R], -1 where element has fewer references
        self.register_buffer("rcov", COV_D3(dtype=torch.float64)[z].clone())  # [S] Bohr
        self.register_buffer("r4r2", R4R2(dtype=torch.float64)[z].clone())  # [S] sqrt(<r^4>/<r^2>)
        self.functional = str(functional)
        self.s6, self.s8, self.a1, self.a2 = params["s6"], params["s8"], params["a1"], params["a2"]
        self.cutoff = float(cutoff) if cutoff is not None else DEFAULT_CUTOFF_BOHR * BOHR
        self.cn_cutoff = min(float(cn_cutoff) if cn_cutoff is not None else DEFAULT_CN_CUTOFF_BOHR * BOHR,
                             self.cutoff)
        self.active = bool(active)
        self.bohr = BOHR
        self.hartree = HARTREE

    def _pairs(self, data: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every ordered pair (i, j, image) of each frame with r_ij < cutoff: edge_index [2, P] into
        the batch, the pair vectors [P, 3] (Å), differentiable in positions and cell, and each pair's
        index [P] into the frames' n x n atom-pair blocks laid end to end. vesin when run eagerly
        (training), the pure-torch O(N^2) list in TorchScript (``model.pt``)."""
        pos = data[keys.POSITIONS]
        cell = data[keys.CELL]
        pbc = data[keys.PBC]
        counts: List[int] = data[keys.N_ATOMS].tolist()
        edges: List[torch.Tensor] = []
        vectors: List[torch.Tensor] = []
        blocks: List[torch.Tensor] = []
        start = 0
        block_start = 0
        for b, n in enumerate(counts):
            p = pos[start:start + n]
            if torch.jit.is_scripting():
                e, s = torch_neighbor_list(p.detach(), cell[b].detach(), pbc[b], self.cutoff)
            else:
                e, s = self._vesin_pairs(p, cell[b], pbc[b])
            vectors.append(p.index_select(0, e[1]) - p.index_select(0, e[0]) + s.to(p.dtype) @ cell[b])
            edges.append(e + start)
            blocks.append(e[0] * n + e[1] + block_start)
            start += n
            block_start += n * n
        return torch.cat(edges, dim=1), torch.cat(vectors, dim=0), torch.cat(blocks)

    @torch.jit.unused
    def _vesin_pairs(self, positions: torch.Tensor, cell: torch.Tensor,
                     pbc: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        from mlip.nn.neighbors import vesin_neighbor_list

        e, s, _ = vesin_neighbor_list(positions.detach().cpu().double().numpy(), cell.detach().cpu().double().numpy(),
                                      pbc.cpu().numpy(), self.cutoff)
        return (torch.as_tensor(e, dtype=torch.long, device=positions.device),
                torch.as_tensor(s, device=positions.device))

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        species = data[keys.SPECIES]
        n_atoms = species.shape[0]
        if not self.active or keys.ENGINE_ADDS_LONG_RANGE in data:
            return torch.zeros(n_atoms, dtype=data[keys.POSITIONS].dtype, device=species.device)
        edge_index, vec, pair_id = self._pairs(data)
        i, j = edge_index[0], edge_index[1]
        si, sj = species.index_select(0, i), species.index_select(0, j)
        r = torch.linalg.norm(vec, dim=1) / self.bohr  # Bohr
        # coordination numbers
        rc = self.rcov.index_select(0, si) + self.rcov.index_select(0, sj)
        count = 1.0 / (1.0 + torch.exp(-16.0 * (rc / r - 1.0)))
        count = torch.where(r < self.cn_cutoff / self.bohr, count, torch.zeros_like(count))
        cn = scatter_sum(count, i, n_atoms)
        # Gaussian weights of the reference systems
        ref_cn = self.ref_cn.index_select(0, species)  # [N, R]
        valid = ref_cn >= 0
        dcn = (ref_cn - cn.unsqueeze(1).to(ref_cn.dtype))
        w = torch.where(valid, torch.exp(-4.0 * dcn * dcn), torch.zeros_like(dcn))
        norm = w.sum(dim=1, keepdim=True)
        top = ref_cn == ref_cn.max(dim=1, keepdim=True)[0]
        fallback = top.to(w.dtype)  # all weights underflowed: the reference with the largest CN
        w = torch.where(norm > 0, w / torch.where(norm > 0, norm, torch.ones_like(norm)), fallback)
        # per atom pair (not per image): C6_ij = sum_ab w_ia w_jb C6ref[s_i, s_j, a, b], factored as
        # g_i[u, b] = sum_a w_ia C6ref[s_i, u, a, b], C6_ij = sum_b g_i[s_j, b] w_jb; C8 / C6 and R0
        g = torch.einsum("ia,iuab->iub", w, self.ref_c6.index_select(0, species))  # [N, S, R]
        c6_blocks: List[torch.Tensor] = []
        qq_blocks: List[torch.Tensor] = []
        counts: List[int] = data[keys.N_ATOMS].tolist()
        start = 0
        for n in counts:
            sp = species[start:start + n]
            c6_blocks.append((g[start:start + n].index_select(1, sp) * w[start:start + n].unsqueeze(0)).sum(2)
                             .reshape(-1))
            q = self.r4r2.index_select(0, sp)
            qq_blocks.append((3.0 * q.unsqueeze(1) * q.unsqueeze(0)).reshape(-1))
            start += n
        c6 = torch.cat(c6_blocks).index_select(0, pair_id).to(r.dtype)
        qq = torch.cat(qq_blocks).index_select(0, pair_id).to(r.dtype)
        r0 = self.a1 * torch.sqrt(qq) + self.a2
        r0_2 = r0 * r0
        r0_6 = r0_2 * r0_2 * r0_2
        r2 = r * r
        r6 = r2 * r2 * r2
        pair = -c6 * (self.s6 / (r6 + r0_6) + self.s8 * qq / (r6 * r2 + r0_6 * r0_2))
        return 0.5 * self.hartree * scatter_sum(pair, i, n_atoms)
