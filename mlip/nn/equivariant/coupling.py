"""Clebsch-Gordan coupling tensors for channelwise features, as dense matrices.

Tensor products of features laid out as in ``mlip.nn.equivariant.irreps`` are dense contractions
with the constant matrices built here from e3nn's Wigner 3j symbols (in float64; component
normalisation: O(1) inputs give O(1) outputs), which is faster on CPU than many small per-path
kernels.

- ``pair_coupling``: x1 (x) x2 -> out, every allowed path (the message tensor product).
- ``symmetric_coupling``: nu copies of one feature -> one irrep, built recursively: the coupling
  of nu copies is that of nu - 1 copies (to every intermediate irrep that can still reach the
  output) coupled with one more copy through Clebsch-Gordan (MACE's generalised CG tensors).
"""

import itertools
from typing import List, Tuple

import torch
from e3nn import o3

from mlip.nn.equivariant.irreps import Irrep, irreps_dim, offsets

# einsum labels of the coupled copies ("m": intermediate irrep, "M": the new one)
_COPY_LABELS = "ijkabcdefgh"
#: a symmetrised path whose entries are all below this is dropped (it vanishes on symmetric inputs)
_VANISHING = 1e-10


def wigner_3j(l1: int, l2: int, l3: int) -> torch.Tensor:
    """[2l1+1, 2l2+1, 2l3+1] in float64, scaled so that O(1) inputs give O(1) outputs."""
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * (2 * l3 + 1) ** 0.5


def allowed(a: Irrep, b: Irrep, c: Irrep) -> bool:
    """Whether a (x) b contains c (triangle rule and parity)."""
    return abs(a[0] - b[0]) <= c[0] <= a[0] + b[0] and a[1] * b[1] == c[1]


def pair_coupling(ls1: List[Irrep], ls2: List[Irrep], ls_out: List[Irrep]
                  ) -> Tuple[torch.Tensor, List[int], List[int]]:
    """All paths (x1 in ls1) (x) (x2 in ls2) -> (out in ls_out).

    Returns U [D1 * D2, K] (K = sum over paths of 2L + 1), ``path_of_k`` [K] (path index of each
    column) and ``out_of_k`` [K] (component of the ls_out layout each column adds to)."""
    d1, d2 = irreps_dim(ls1), irreps_dim(ls2)
    o1, o2, oo = offsets(ls1), offsets(ls2), offsets(ls_out)
    cols: List[torch.Tensor] = []
    path_of_k: List[int] = []
    out_of_k: List[int] = []
    n_paths = 0
    for a, ir1 in enumerate(ls1):
        for b, ir2 in enumerate(ls2):
            for c, ir3 in enumerate(ls_out):
                if not allowed(ir1, ir2, ir3):
                    continue
                w = wigner_3j(ir1[0], ir2[0], ir3[0])
                block = torch.zeros(d1, d2, 2 * ir3[0] + 1, dtype=torch.float64)
                block[o1[a]:o1[a] + 2 * ir1[0] + 1, o2[b]:o2[b] + 2 * ir2[0] + 1] = w
                cols.append(block.reshape(d1 * d2, -1))
                path_of_k += [n_paths] * (2 * ir3[0] + 1)
                out_of_k += list(range(oo[c], oo[c] + 2 * ir3[0] + 1))
                n_paths += 1
    u = torch.cat(cols, dim=1) if cols else torch.zeros(d1 * d2, 0, dtype=torch.float64)
    return u, path_of_k, out_of_k


# a partial coupling of k copies: (irrep index of each copy, non-decreasing; the intermediate irrep;
# the tensor [2 l_a1 + 1, ..., 2 l_ak + 1, 2 l_mid + 1])
_Chain = Tuple[Tuple[int, ...], Irrep, torch.Tensor]


def _couple(w: torch.Tensor, cg: torch.Tensor, last: bool) -> torch.Tensor:
    """Couple a partial tensor [..., m] with one more copy through ``cg`` [m, k, M]: [..., k, M],
    or [M, ..., k] when ``last``."""
    idx = _COPY_LABELS[:w.dim() - 1]
    new = _COPY_LABELS[w.dim() - 1]
    out = f"M{idx}{new}" if last else f"{idx}{new}M"
    return torch.einsum(f"{idx}m,m{new}M->{out}", w, cg)


def _chains(ls: List[Irrep], k: int, out: Irrep, nu: int) -> List[_Chain]:
    """Couplings of k of the nu copies (irreps in non-decreasing order) to every intermediate
    irrep from which ``out`` is still reachable with the nu - k copies left."""
    l_top = max(l for l, _ in ls)
    chains: List[_Chain] = []
    if k == 1:
        chains = [((a,), ir, torch.eye(2 * ir[0] + 1, dtype=torch.float64)) for a, ir in enumerate(ls)]
    else:
        for blocks, mid, w in _chains(ls, k - 1, out, nu):
            for c in range(blocks[-1], len(ls)):
                lc, pc = ls[c]
                for l_new in range(abs(mid[0] - lc), mid[0] + lc + 1):
                    w_new = _couple(w, wigner_3j(mid[0], lc, l_new), False)
                    chains.append((blocks + (c,), (l_new, mid[1] * pc), w_new))
    return [ch for ch in chains if abs(ch[1][0] - out[0]) <= (nu - k) * l_top]


def _vanishes_on_symmetric_inputs(blocks: Tuple[int, ...], w: torch.Tensor, ls: List[Irrep]) -> bool:
    """Whether the path's tensor symmetrised over its nu copies is zero, computed on the irreps
    the path uses only (the same numbers as on the full layout)."""
    used = sorted(set(blocks))
    local = [ls[a] for a in used]
    off = offsets(local)
    t = torch.zeros((w.shape[0],) + (irreps_dim(local),) * len(blocks), dtype=torch.float64)
    t[(slice(None),) + tuple(slice(off[used.index(a)], off[used.index(a)] + 2 * ls[a][0] + 1) for a in blocks)] = w
    sym = torch.stack([t.permute(0, *[1 + q for q in perm])
                       for perm in itertools.permutations(range(len(blocks)))]).sum(0)
    return not bool(sym.abs().max() > _VANISHING)


def symmetric_coupling(ls: List[Irrep], out: Irrep, nu: int) -> torch.Tensor:
    """Coupling tensors of nu >= 1 copies of one feature (irreps ``ls``) to the irrep ``out``:
    U [2L+1, D, ..., D (nu times), K] in float64, one column per coupling path.

    Paths take the irreps in non-decreasing order (a1 <= a2 <= ... <= a_nu) with every chain of
    intermediate irreps ((a1 (x) a2) -> m2, (m2 (x) a3) -> m3, ..., (m_{nu-1} (x) a_nu) -> out),
    which spans the symmetric products; paths that vanish on symmetric inputs are dropped.
    The dense tensor has (2L+1) D^nu K entries: its size, not the recursion, limits nu."""
    if nu < 1:
        raise ValueError(f"correlation order {nu}: must be >= 1")
    d = irreps_dim(ls)
    off = offsets(ls)
    dim_out = 2 * out[0] + 1
    cols: List[torch.Tensor] = []
    if nu == 1:
        for a, ir in enumerate(ls):
            if ir == out:
                t = torch.zeros(dim_out, d, dtype=torch.float64)
                t[:, off[a]:off[a] + dim_out] = torch.eye(dim_out, dtype=torch.float64)
                cols.append(t)
    else:
        for blocks, mid, w in _chains(ls, nu - 1, out, nu):
            for c in range(blocks[-1], len(ls)):
                if not allowed(mid, ls[c], out):
                    continue
                path = blocks + (c,)
                full = _couple(w, wigner_3j(mid[0], ls[c][0], out[0]), True)  # [M, m_a1, ..., m_anu]
                if _vanishes_on_symmetric_inputs(path, full, ls):
                    continue
                t = torch.zeros((dim_out,) + (d,) * nu, dtype=torch.float64)
                t[(slice(None),) + tuple(slice(off[a], off[a] + 2 * ls[a][0] + 1) for a in path)] = full
                cols.append(t)
    if not cols:
        return torch.zeros((dim_out,) + (d,) * nu + (0,), dtype=torch.float64)
    return torch.stack(cols, dim=-1)
