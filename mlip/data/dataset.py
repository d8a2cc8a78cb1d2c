"""A map-style dataset of precomputed single-frame graphs."""

from typing import Dict, List, Sequence

import torch
from torch.utils.data import Dataset

from mlip.data.graph import frame_to_graph
from mlip.data.io import Frame


class GraphDataset(Dataset):
    """Frames turned into graphs once (neighbour lists included), kept in memory."""

    def __init__(self, frames: Sequence[Frame], cutoff: float, species_index: Dict[int, int],
                 config_types: Sequence[str]):
        ct = {name: k for k, name in enumerate(config_types)}
        self.graphs: List[Dict[str, torch.Tensor]] = [
            frame_to_graph(f, cutoff, species_index, ct.get(f.config_type, 0)) for f in frames
        ]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        return self.graphs[idx]
