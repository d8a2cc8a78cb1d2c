"""Turning a checked ``Frame`` into a single-frame graph (``Dict[str, Tensor]``, float64)."""

from typing import Dict, Mapping

import numpy as np
import torch

from mlip import keys, targets
from mlip.data.io import Frame
from mlip.errors import DataError
from mlip.nn.neighbors import vesin_neighbor_list

#: Two atoms closer than this (Å) are taken as a broken frame.
MIN_DISTANCE = 0.1


def species_error(frame, species_index: Mapping[int, int]) -> None:
    """Raise a ``DataError`` if ``frame`` (a ``Frame`` or ``FrameSummary``) holds an element outside
    ``species_index``."""
    from ase.data import chemical_symbols

    unknown = sorted(set(frame.composition) - set(species_index))
    if unknown:
        known = ", ".join(chemical_symbols[z] for z in sorted(species_index))
        names = ", ".join(chemical_symbols[z] for z in unknown)
        raise DataError(f"element(s) {names} not among the species the model was trained on ({known})",
                        frame.source, frame.index)


def frame_to_graph(
    frame: Frame, cutoff: float, species_index: Mapping[int, int], config_type: int = 0
) -> Dict[str, torch.Tensor]:
    """Graph of one frame with its vesin neighbour list and the labels of every registered kind
    (``mlip.targets``). Labels missing from the frame are zero-filled and flagged False in their
    mask, so the loss leaves them out."""
    species_error(frame, species_index)
    edge_index, shifts, dist = vesin_neighbor_list(frame.positions, frame.cell, frame.pbc, cutoff)
    if dist.size and dist.min() < MIN_DISTANCE:
        k = int(np.argmin(dist))
        raise DataError(
            f"atoms {edge_index[0, k]} and {edge_index[1, k]} are {dist[k]:.4f} Å apart "
            f"(closer than {MIN_DISTANCE} Å): overlapping atoms", frame.source, frame.index)
    n = frame.n_atoms
    species = torch.tensor([species_index[int(z)] for z in frame.numbers], dtype=torch.long)
    g: Dict[str, torch.Tensor] = {
        keys.POSITIONS: torch.tensor(frame.positions, dtype=torch.float64),
        keys.ATOMIC_NUMBERS: torch.tensor(frame.numbers, dtype=torch.long),
        keys.SPECIES: species,
        keys.CELL: torch.tensor(frame.cell, dtype=torch.float64).unsqueeze(0),
        keys.PBC: torch.tensor(frame.pbc, dtype=torch.bool).unsqueeze(0),
        keys.N_ATOMS: torch.tensor([n], dtype=torch.long),
        keys.EDGE_INDEX: torch.from_numpy(edge_index),
        keys.CELL_SHIFTS: torch.from_numpy(shifts).to(torch.float64),
        keys.CONFIG_TYPE: torch.tensor([config_type], dtype=torch.long),
    }
    for target in targets.all_targets():  # label [n, *shape] or [1, *shape], zero-filled, and its mask [1]
        value = frame.labels.get(target.name)
        shape = ((n,) if target.per_atom else (1,)) + target.shape
        g[target.label_key] = (torch.zeros(shape, dtype=torch.float64) if value is None
                               else torch.as_tensor(value, dtype=torch.float64).reshape(shape).clone())
        g[target.mask_key] = torch.tensor([value is not None])
    return g


def atoms_to_graph(atoms, cutoff: float, species_index: Mapping[int, int]) -> Dict[str, torch.Tensor]:
    """Graph of an unlabelled ``ase.Atoms`` (for inference)."""
    from mlip.data.io import atoms_to_frame

    return frame_to_graph(atoms_to_frame(atoms, None, "<atoms>", 0), cutoff, species_index)
