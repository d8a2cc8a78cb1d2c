"""Binary records of the on-disk dataset: one ``Frame`` <-> bytes, and one frame's summary <-> a
JSON-able list.

A record is ``[4-byte little-endian header length][JSON header][raw arrays]``; the header names each
array with its dtype and shape, in the order the raw bytes follow, plus the frame's config_type
and index in its file. No pickle: a dataset shared by someone else cannot run code.
"""

import json
import struct
from typing import Any, Dict, List, Tuple

import numpy as np

from mlip.data.io import Frame
from mlip.data.store.summary import FrameSummary

#: bumped when the record layout changes; readers refuse records of another version
RECORD_VERSION = 1
_LEN = struct.Struct("<I")


def encode_frame(frame: Frame) -> bytes:
    """The record of ``frame``: numbers (int16), positions, cell (float64, Å), pbc (bool) and every
    label (float64, in the kind's unit)."""
    arrays: List[Tuple[str, np.ndarray]] = [
        ("numbers", frame.numbers.astype(np.int16)), ("positions", frame.positions.astype(np.float64)),
        ("cell", frame.cell.astype(np.float64)), ("pbc", frame.pbc.astype(np.bool_)),
    ]
    arrays += [(f"label:{kind}", np.asarray(value, dtype=np.float64)) for kind, value in frame.labels.items()]
    header = {"v": RECORD_VERSION, "config_type": frame.config_type, "index": frame.index,
              "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in arrays]}
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_LEN.pack(len(head)), head] + [np.ascontiguousarray(a).tobytes() for _, a in arrays])


def decode_frame(record: bytes, source: str) -> Frame:
    """The ``Frame`` of a record of the file ``source`` (arrays copied: writable, independent of the
    database's memory)."""
    (n,) = _LEN.unpack_from(record, 0)
    header = json.loads(bytes(record[_LEN.size:_LEN.size + n]))
    if header.get("v") != RECORD_VERSION:
        raise ValueError(f"record version {header.get('v')} is not {RECORD_VERSION}")
    offset = _LEN.size + n
    arrays: Dict[str, np.ndarray] = {}
    for name, dtype, shape in header["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        arrays[name] = np.frombuffer(record, dtype=dt, count=count, offset=offset).reshape(shape).copy()
        offset += count * dt.itemsize
    labels = {name[6:]: a for name, a in arrays.items() if name.startswith("label:")}
    return Frame(numbers=arrays["numbers"].astype(np.int64), positions=arrays["positions"], cell=arrays["cell"],
                 pbc=arrays["pbc"], labels=labels, config_type=header["config_type"], source=source,
                 index=int(header["index"]))


def summary_row(frame: Frame, n_edges: int) -> List[Any]:
    """What the dataset keeps in memory about ``frame`` (see ``FrameSummary``), as a JSON-able row."""
    energy = frame.energy
    return [frame.index, frame.n_atoms, {str(z): n for z, n in frame.composition.items()},
            None if energy is None else float(energy), sorted(frame.kinds), frame.pbc.astype(int).tolist(),
            bool(frame.is_isolated_atom), frame.config_type, frame.info, n_edges, frame.force_sq_sum,
            frame.force_count]


def summary_from_row(row: List[Any], source: str, source_id: int, label_names: Tuple[str, ...]) -> FrameSummary:
    (index, n_atoms, composition, energy, kinds, pbc, isolated, config_type, info, n_edges, force_sq,
     force_count) = row
    return FrameSummary(source=source, index=index, source_id=source_id, n_atoms=n_atoms,
                        composition={int(z): n for z, n in composition.items()}, energy=energy,
                        kinds=frozenset(kinds), pbc=np.array(pbc, dtype=bool), is_isolated_atom=isolated,
                        config_type=config_type, info=info, n_edges=n_edges, force_sq_sum=force_sq,
                        force_count=force_count, label_names=label_names)
