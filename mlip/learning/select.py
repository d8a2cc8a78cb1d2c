"""Selecting frames to label: the most uncertain, kept diverse by farthest-point sampling in a
descriptor space (per element pair, a Gaussian-smeared histogram of interatomic distances per
atom, so structures with different local environments are far apart)."""

from typing import List, Sequence

import numpy as np
from ase import Atoms


def descriptor(atoms: Atoms, species: Sequence[int], r_max: float = 6.0, bins: int = 24) -> np.ndarray:
    """[P * bins]: for each unordered element pair, the distance histogram (smeared) per atom."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, r_max)
    z = atoms.numbers
    grid = np.linspace(0.5, r_max, bins)
    pairs = [(a, b) for k, a in enumerate(species) for b in species[k:]]
    out = np.zeros((len(pairs), bins))
    index = {p: k for k, p in enumerate(pairs)}
    width = grid[1] - grid[0]
    for a, b, r in zip(z[i], z[j], d):
        key = (a, b) if (a, b) in index else (b, a)
        out[index[key]] += np.exp(-0.5 * ((grid - r) / width) ** 2)
    return (out / max(len(atoms), 1)).ravel()


def select(candidates: Sequence[Atoms], n: int, min_std: float, species: Sequence[int],
           pool_factor: int = 3) -> List[int]:
    """Indices of up to ``n`` candidates: those with ``info["max_force_std"]`` >= ``min_std``,
    the ``pool_factor * n`` most uncertain of them, then farthest-point sampling in descriptor space
    starting from the most uncertain."""
    std = np.array([a.info["max_force_std"] for a in candidates])
    eligible = [k for k in np.argsort(-std) if std[k] >= min_std][: pool_factor * n]
    if not eligible:
        return []
    x = np.stack([descriptor(candidates[k], species) for k in eligible])
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    while len(chosen) < min(n, len(eligible)):
        k = int(dist.argmax())
        if dist[k] <= 0:
            break
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(x - x[k], axis=1))
    return [int(eligible[k]) for k in chosen]
