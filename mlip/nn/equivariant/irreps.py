"""Lists of O(3) irreps and the layout of one channel's feature vector.

An irrep is ``(l, p)``: angular momentum l >= 0 and parity p = +1 (even) or -1 (odd). A channel
holding the irreps ``ls`` = [(l1, p1), (l2, p2), ...] stores them one after the other in a vector
of D = sum(2l + 1) components (e3nn's real basis, component normalisation); a node holds [C, D].
"""

from typing import List, Tuple

Irrep = Tuple[int, int]  # (l, parity)


def irreps_up_to(l_max: int, parity: bool) -> List[Irrep]:
    """0e + 1o + 2e + ... up to ``l_max`` with parity (spherical-harmonic parities), 0e + 1e + 2e +
    ... without (every irrep even: SO(3) only)."""
    return [(l, (-1) ** l if parity else 1) for l in range(l_max + 1)]


def irreps_dim(ls: List[Irrep]) -> int:
    """D, the number of components of one channel."""
    return sum(2 * l + 1 for l, _ in ls)


def offsets(ls: List[Irrep]) -> List[int]:
    """First component of each irrep of ``ls``."""
    out, total = [], 0
    for l, _ in ls:
        out.append(total)
        total += 2 * l + 1
    return out


def irrep_of_component(ls: List[Irrep]) -> List[int]:
    """Index into ``ls`` of each of the D components."""
    return [k for k, (l, _) in enumerate(ls) for _ in range(2 * l + 1)]
