"""Where things live in an on-disk dataset directory (``mlip preprocess --output DIR``).

    DIR/mlip_dataset.json    manifest: format, version, settings, sources, statistics, complete
    DIR/frames.lmdb/         LMDB environment (data.mdb, lock.mdb) holding
        config               JSON: cutoff (Å), label keys, chunk size, record version
        sources              JSON: [{path, size, mtime_ns, format, n_frames}] in the order added
        stats                JSON: one-pass accumulators of the statistics (``statistics.py``)
        f/SSSS/IIIIIIIIII    record of frame I of source S (``records.py``)
        m/SSSS/CCCCCCCC      summaries of chunk C of source S; its presence marks the chunk done

Keys sort as (source, frame) / (source, chunk), so a cursor walks frames in file order.
"""

from pathlib import Path
from typing import Union

PathLike = Union[str, Path]

FORMAT = "mlip-dataset"
VERSION = 1
MANIFEST = "mlip_dataset.json"
DB_DIR = "frames.lmdb"
#: virtual size of the memory map (bytes); the file on disk grows with the data, not to this size
MAP_SIZE = 1 << 40


def frame_key(source_id: int, index: int) -> bytes:
    return f"f/{source_id:04d}/{index:010d}".encode()


def chunk_key(source_id: int, chunk: int) -> bytes:
    return f"m/{source_id:04d}/{chunk:08d}".encode()


def is_store(path: PathLike) -> bool:
    """True when ``path`` is a directory written by ``mlip preprocess`` (it holds the manifest)."""
    p = Path(str(path))
    return p.is_dir() and (p / MANIFEST).is_file()
