"""Reading an on-disk dataset: ``FrameStore`` (its summaries, without the frames) and
``StoreGraphDataset`` (graphs built on demand, neighbour lists by vesin in the loader's workers).

Opening reads only the summaries (about 150 bytes per frame); a frame's arrays are read when a
loader asks for it. The LMDB environment is opened read-only and per process (after a DataLoader
or DDP fork the child opens its own, as LMDB requires), memory-mapped, without read-ahead: pages are
shared between processes and with the page cache, and a rank touches only the frames it reads.
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mlip.data.graph import frame_to_graph
from mlip.data.io import Frame, LabelKeys
from mlip.data.store import layout
from mlip.data.store.records import decode_frame, summary_from_row
from mlip.data.store.summary import FrameSummary
from mlip.errors import DataError

_ENVS: Dict[Any, Any] = {}  # (pid, path) -> lmdb environment of this process


def _env(path: str):
    """This process's read-only environment of the dataset at ``path``. An environment inherited
    from the parent through fork (a DataLoader worker) is closed first: LMDB forbids using it in
    the child, and py-lmdb refuses to open the same files twice while it is registered."""
    key = (os.getpid(), path)
    env = _ENVS.get(key)
    if env is None:
        import lmdb

        for other in [k for k in _ENVS if k[1] == path]:
            _ENVS.pop(other).close()  # read-only, lock-free: closing only unmaps the child's copy
        env = lmdb.open(str(Path(path) / layout.DB_DIR), readonly=True, lock=False, readahead=False,
                        meminit=False, subdir=True, max_readers=2048)
        _ENVS[key] = env
    return env


def close_readers(path: str) -> None:
    """Close this process's read-only environment of ``path`` (LMDB opens a path once per process;
    the writer needs it)."""
    env = _ENVS.pop((os.getpid(), str(Path(path).resolve())), None)
    if env is not None:
        env.close()


def read_manifest(path: str) -> Dict[str, Any]:
    """The manifest of the dataset at ``path``, checked: a ``DataError`` when it is not one mlip
    can read or when preprocessing did not finish."""
    try:
        manifest = json.loads((Path(path) / layout.MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"not a readable mlip dataset ({layout.MANIFEST}: {err})", path) from None
    if manifest.get("format") != layout.FORMAT:
        raise DataError(f"{layout.MANIFEST} is not an mlip dataset manifest", path)
    if manifest.get("version") != layout.VERSION:
        raise DataError(f"dataset format version {manifest.get('version')}; this mlip reads version {layout.VERSION}: "
                        "preprocess the files again with this mlip", path)
    if not manifest.get("complete"):
        raise DataError("preprocessing did not finish (killed or failed): run the same mlip preprocess command again "
                        "to resume it", path)
    return manifest


class FrameStore:
    """An on-disk dataset written by ``mlip preprocess``: ``summaries`` (one ``FrameSummary`` per
    frame, in file order: source by source, frame by frame), ``cutoff`` (Å, of the stored neighbour
    counts), ``label_keys``, ``statistics`` (of the whole set) and ``frame(summary)``."""

    def __init__(self, path: str):
        self.path = str(Path(path).resolve())
        self.manifest = read_manifest(path)
        self.cutoff = float(self.manifest["cutoff"])
        self.label_keys = LabelKeys(**self.manifest["keys"])
        self.statistics = self.manifest["statistics"]
        sources = self.manifest["sources"]
        self.summaries: List[FrameSummary] = []
        with _env(self.path).begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(b"m/"):
                for key, value in cursor:
                    if not key.startswith(b"m/"):
                        break
                    source_id = int(key[2:6])
                    chunk = json.loads(bytes(value))
                    names = tuple(chunk["label_names"])
                    self.summaries += [summary_from_row(row, sources[source_id]["path"], source_id, names)
                                       for row in chunk["rows"]]
        expected = sum(s["n_frames"] or 0 for s in sources)
        if len(self.summaries) != expected:
            raise DataError(f"holds {len(self.summaries)} frame summaries, the manifest says {expected}: run mlip "
                            "preprocess again to complete it", path)

    def __len__(self) -> int:
        return len(self.summaries)

    def frame(self, summary: FrameSummary) -> Frame:
        return read_frame(self.path, summary.source_id, summary.index, summary.source)


def read_frame(path: str, source_id: int, index: int, source: str) -> Frame:
    """Frame ``index`` of source ``source_id`` (the file ``source``) of the dataset at ``path``."""
    with _env(path).begin(buffers=False) as txn:
        record = txn.get(layout.frame_key(source_id, index))
    if record is None:
        raise DataError(f"no record of frame {index} of {source}: the dataset is incomplete", path)
    return decode_frame(record, source)


class StoreGraphDataset(Dataset):
    """Graphs of chosen frames of an on-disk dataset, built when asked for (vesin neighbour list
    within ``cutoff`` Å), so memory does not grow with the dataset. Picklable (for loader workers
    and spawned ranks): it holds the path and two index arrays, never an open environment."""

    def __init__(self, path: str, frames: Sequence[FrameSummary], cutoff: float, species_index: Mapping[int, int],
                 config_types: Sequence[str]):
        self.path = path
        self.sources = {f.source_id: f.source for f in frames}
        self.source_ids = np.array([f.source_id for f in frames], dtype=np.int32)
        self.indices = np.array([f.index for f in frames], dtype=np.int64)
        self.cutoff = float(cutoff)
        self.species_index = dict(species_index)
        self.config_type_ids = {name: k for k, name in enumerate(config_types)}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        source_id = int(self.source_ids[idx])
        frame = read_frame(self.path, source_id, int(self.indices[idx]), self.sources[source_id])
        return frame_to_graph(frame, self.cutoff, self.species_index, self.config_type_ids.get(frame.config_type, 0))

    def edge_counts(self) -> int:
        """Directed edges within ``cutoff`` over all frames (a pass over the data; used when the
        model's cutoff is not the one the dataset was preprocessed with)."""
        from mlip.nn.neighbors import vesin_neighbor_list

        total = 0
        for s, i in zip(self.source_ids, self.indices):
            f = read_frame(self.path, int(s), int(i), self.sources[int(s)])
            total += int(vesin_neighbor_list(f.positions, f.cell, f.pbc, self.cutoff)[0].shape[1])
        return total


def read_any(path: str, keys: Optional[LabelKeys] = None, format: Optional[str] = None) -> List[Frame]:
    """Every frame of a file (``read_frames``) or of an on-disk dataset, in memory: for analysis
    tools on sets that fit in memory (training reads on-disk datasets lazily instead)."""
    from mlip.data.io import read_frames

    if not layout.is_store(path):
        return read_frames(path, keys, format=format)
    store = FrameStore(path)
    return [store.frame(s) for s in store.summaries]
