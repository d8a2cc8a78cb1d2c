"""Clebsch-Gordan coupling tensors for channelwise features, as dense matrices.

A feature of one channel is a list of irreps ``ls`` = [(l, p), ...] laid out one after the
other in a vector of size D = sum(2l + 1) (e3nn's real basis and component normalisation); a
node holds [C, D], C channels with the same irreps. Tensor products are then dense contractions
with constant matrices built here from e3nn's Wigner 3j symbols (in float64), which is faster on
CPU than many small per-path kernels.
"""

from typing import List, Tuple

import torch
from e3nn import o3

Irrep = Tuple[int, int]  # (l, parity)


def irreps_dim(ls: List[Irrep]) -> int:
    return sum(2 * l + 1 for l, _ in ls)


def offsets(ls: List[Irrep]) -> List[int]:
    out, total = [], 0
    for l, _ in ls:
        out.append(total)
        total += 2 * l + 1
    return out


def irrep_of_component(ls: List[Irrep]) -> List[int]:
    """Index into ``ls`` of each of the D components."""
    return [k for k, (l, _) in enumerate(ls) for _ in range(2 * l + 1)]


def _w3j(l1: int, l2: int, l3: int) -> torch.Tensor:
    # component normalisation: output components O(1) for O(1) inputs
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * (2 * l3 + 1) ** 0.5


def _allowed(a: Irrep, b: Irrep, c: Irrep) -> bool:
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
                if not _allowed(ir1, ir2, ir3):
                    continue
                w = _w3j(ir1[0], ir2[0], ir3[0])
                block = torch.zeros(d1, d2, 2 * ir3[0] + 1, dtype=torch.float64)
                block[o1[a]:o1[a] + 2 * ir1[0] + 1, o2[b]:o2[b] + 2 * ir2[0] + 1] = w
                cols.append(block.reshape(d1 * d2, -1))
                path_of_k += [n_paths] * (2 * ir3[0] + 1)
                out_of_k += list(range(oo[c], oo[c] + 2 * ir3[0] + 1))
                n_paths += 1
    u = torch.cat(cols, dim=1) if cols else torch.zeros(d1 * d2, 0, dtype=torch.float64)
    return u, path_of_k, out_of_k


def symmetric_coupling(ls: List[Irrep], out: Irrep, nu: int) -> torch.Tensor:
    """Coupling tensors of nu copies of one feature (irreps ``ls``) to the irrep ``out``:
    U [2L+1, D, ..., D (nu times), K], one column per coupling path; nu = 1, 2 or 3.

    Paths take the irreps in non-decreasing order (a1 <= a2 <= a3) with every intermediate l of
    (a1 (x) a2), which spans the symmetric products; paths that vanish on symmetric inputs are
    dropped."""
    d = irreps_dim(ls)
    off = offsets(ls)
    dim_out = 2 * out[0] + 1
    cols: List[torch.Tensor] = []
    n = len(ls)
    if nu == 1:
        for a, ir in enumerate(ls):
            if ir == out:
                t = torch.zeros(dim_out, d, dtype=torch.float64)
                t[:, off[a]:off[a] + dim_out] = torch.eye(dim_out, dtype=torch.float64)
                cols.append(t)
    elif nu == 2:
        for a in range(n):
            for b in range(a, n):
                if _allowed(ls[a], ls[b], out):
                    w = _w3j(ls[a][0], ls[b][0], out[0])  # [m1, m2, M]
                    t = torch.zeros(dim_out, d, d, dtype=torch.float64)
                    t[:, off[a]:off[a] + w.shape[0], off[b]:off[b] + w.shape[1]] = w.permute(2, 0, 1)
                    cols.append(t)
    elif nu == 3:
        for a in range(n):
            for b in range(a, n):
                l1, p1 = ls[a]
                l2, p2 = ls[b]
                for l12 in range(abs(l1 - l2), l1 + l2 + 1):
                    mid = (l12, p1 * p2)
                    w12 = _w3j(l1, l2, l12)
                    for c in range(b, n):
                        if not _allowed(mid, ls[c], out):
                            continue
                        w = torch.einsum("ijm,mkM->Mijk", w12, _w3j(l12, ls[c][0], out[0]))
                        t = torch.zeros(dim_out, d, d, d, dtype=torch.float64)
                        t[:, off[a]:off[a] + w.shape[1], off[b]:off[b] + w.shape[2], off[c]:off[c] + w.shape[3]] = w
                        cols.append(t)
    else:
        raise ValueError(f"correlation order {nu} is not supported (1, 2 or 3)")
    kept = []
    for t in cols:
        sym = t
        if nu == 2:
            sym = t + t.transpose(1, 2)
        elif nu == 3:
            sym = sum(t.permute(0, *[1 + q for q in perm]) for perm in
                      ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)))
        if sym.abs().max() > 1e-10:
            kept.append(t)
    if not kept:
        return torch.zeros((dim_out,) + (d,) * nu + (0,), dtype=torch.float64)
    return torch.stack(kept, dim=-1)
