"""``preprocess``: stream ASE-readable files into an on-disk dataset (layout in ``layout.py``).

Frames are read, checked (every check of ``mlip.data.io.read_frames`` and the overlapping-atoms
check of ``mlip.data.graph``, with the same messages naming file and frame) and summarised in
chunks of ``chunk_frames`` frames by ``workers`` processes; the main process writes each finished
chunk, its summaries and the statistics accumulators in one LMDB transaction, so a killed run
loses at most the chunks in flight and the same command resumes where it stopped. Running it again
with new files appends them. Never more than about ``2 x workers`` chunks are in memory.

extxyz/xyz files are indexed by byte offset first (a line scan, no parsing), so workers parse
their own chunks; other formats are parsed by ``ase.io.iread`` in the main process and checked in
the workers.
"""

import json
import logging
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from mlip.data.io import LabelKeys, atoms_to_frame
from mlip.data.store import layout, statistics
from mlip.data.store.records import RECORD_VERSION, encode_frame, summary_row
from mlip.errors import ConfigError, DataError
from mlip.fileio import write_json

log = logging.getLogger(__name__)

#: files read by byte offset (workers parse their own chunks); other formats go through ase.io.iread
XYZ_FORMATS = ("extxyz", "xyz")


def _is_xyz(path: Path, fmt: Optional[str]) -> bool:
    return fmt in XYZ_FORMATS if fmt else path.suffix.lower() in (".xyz", ".extxyz")


def xyz_frame_offsets(path: Path) -> List[int]:
    """Byte offset of each frame of an (ext)xyz file, and the file size at the end: a line scan
    (atom count line, comment line, that many atom lines), no parsing of the atom lines."""
    offsets: List[int] = []
    with open(path, "rb") as fh:
        line_no = 0
        while True:
            start = fh.tell()
            line = fh.readline()
            if not line:
                break
            line_no += 1
            if not line.strip():
                continue  # blank lines between frames
            try:
                n = int(line.split()[0])
            except ValueError:
                raise DataError(f"line {line_no} should hold the atom count of frame {len(offsets)}, "
                                f"found {line[:60]!r}: not an (ext)xyz file?", str(path)) from None
            offsets.append(start)
            for _ in range(n + 1):
                if not fh.readline():
                    raise DataError(f"file ends inside frame {len(offsets) - 1} ({n} atoms announced)", str(path))
                line_no += 1
        offsets.append(fh.tell())
    if len(offsets) == 1:
        raise DataError("file holds no frames", str(path))
    return offsets


# ----------------------------------------------------------------------------- worker side
def _label_chunk(task: Dict[str, Any]) -> Dict[str, Any]:
    """Read (or take), check and encode one chunk; runs in a worker process. Returns the records,
    summary rows, label names and accumulators, or the error (file, frame, problem)."""
    import ase.io

    from mlip.data.graph import MIN_DISTANCE
    from mlip.nn.neighbors import vesin_neighbor_list

    path, start = task["path"], task["start"]
    keys = LabelKeys(**task["keys"])
    try:
        images = task.get("images")
        if images is None:
            import io

            with open(path, "rb") as fh:
                fh.seek(task["begin"])
                text = fh.read(task["end"] - task["begin"]).decode()
            try:
                images = ase.io.read(io.StringIO(text), index=":", format="extxyz")
            except Exception as err:  # ASE raises many types for unreadable text
                raise DataError(f"cannot read frames {start}-{start + task['count'] - 1} with ASE "
                                f"({type(err).__name__}: {err})", path) from None
        records, rows, names = [], [], set()  # type: ignore[var-annotated]
        state = statistics.empty()
        for i, atoms in enumerate(images):
            frame = atoms_to_frame(atoms, keys, path, start + i)
            edge_index, _, dist = vesin_neighbor_list(frame.positions, frame.cell, frame.pbc, task["cutoff"])
            if dist.size and dist.min() < MIN_DISTANCE:
                k = int(dist.argmin())
                raise DataError(f"atoms {edge_index[0, k]} and {edge_index[1, k]} are {dist[k]:.4f} Å apart (closer "
                                f"than {MIN_DISTANCE} Å): overlapping atoms", path, start + i)
            n_edges = int(edge_index.shape[1])
            records.append((layout.frame_key(task["source_id"], start + i), encode_frame(frame)))
            rows.append(summary_row(frame, n_edges))
            names.update(frame.label_names)
            statistics.accumulate(state, frame, n_edges)
        return {"task": _task_id(task), "records": records, "rows": rows, "names": sorted(names), "stats": state}
    except DataError as err:
        return {"task": _task_id(task), "error": (err.problem, err.path, err.frame)}


def _task_id(task: Dict[str, Any]) -> Tuple[int, int]:
    return task["source_id"], task["chunk"]


def _worker_init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


# ----------------------------------------------------------------------------- main side
def _fingerprint(path: Path) -> Dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _merge_stats(total: Dict[str, Any], part: Dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            table = total[key]
            for k, v in value.items():
                table[k] = v if key == "isolated" else table.get(k, 0) + v
        else:
            total[key] += value


class _Store:
    """The LMDB environment of an output directory, opened for writing."""

    def __init__(self, output: Path):
        import lmdb

        from mlip.data.store.reader import close_readers

        output.mkdir(parents=True, exist_ok=True)
        close_readers(str(output))
        self.output = output
        self.env = lmdb.open(str(output / layout.DB_DIR), map_size=layout.MAP_SIZE, subdir=True, meminit=False)

    def get_json(self, key: bytes) -> Any:
        with self.env.begin() as txn:
            value = txn.get(key)
        return None if value is None else json.loads(bytes(value))

    def done_chunks(self, source_id: int) -> set:
        prefix = f"m/{source_id:04d}/".encode()
        done = set()
        with self.env.begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key in cursor.iternext(values=False):
                    if not key.startswith(prefix):
                        break
                    done.add(int(key[len(prefix):]))
        return done

    def put_json(self, items: Dict[bytes, Any]) -> None:
        with self.env.begin(write=True) as txn:
            for key, value in items.items():
                txn.put(key, json.dumps(value).encode())


def preprocess(inputs: Sequence[str], output: str, cutoff: float, keys: Optional[Dict[str, str]] = None,
               format: Optional[str] = None, workers: int = 1, chunk_frames: int = 256,
               progress: Optional[bool] = None) -> Dict[str, Any]:
    """Write (or resume, or append to) the on-disk dataset ``output`` from ``inputs``; returns the
    manifest. ``cutoff`` (Å): the radius of the stored neighbour counts (``avg_num_neighbors``) and
    of the overlapping-atoms check; training with another ``model.cutoff`` recounts them.
    ``keys``: ``data.keys`` (where labels live in the files). Raises ``DataError`` naming the file and
    frame of the first bad frame, ``ConfigError`` when the settings differ from those ``output`` was
    written with."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {output}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / layout.DB_DIR).is_dir():
        raise ConfigError(f"--output {output}: a directory that is not an mlip dataset and not empty; give a new "
                          "directory")
    if not inputs:
        raise ConfigError("no input files given")
    if int(chunk_frames) < 1 or int(workers) < 1:
        raise ConfigError("--chunk-frames and --workers must be at least 1")
    label_keys = LabelKeys(**dict(keys or {})).as_dict()
    paths = []
    for name in inputs:
        p = Path(name)
        if not p.is_file():
            raise DataError("file not found", name)
        paths.append(p)

    store = _Store(out)
    try:
        return _preprocess(store, paths, output, cutoff, label_keys, format, workers, chunk_frames, progress)
    finally:
        store.env.close()


def _preprocess(store: "_Store", paths: List[Path], output: str, cutoff: float, label_keys: Dict[str, str],
                format: Optional[str], workers: int, chunk_frames: int, progress: Optional[bool]) -> Dict[str, Any]:
    config = {"cutoff": float(cutoff), "keys": label_keys, "chunk_frames": int(chunk_frames),
              "record_version": RECORD_VERSION}
    saved = store.get_json(b"config")
    if saved is None:
        store.put_json({b"config": config, b"sources": [], b"stats": statistics.empty()})
    else:
        for key in ("cutoff", "keys", "chunk_frames"):
            if saved[key] != config[key]:
                raise ConfigError(f"{output} was preprocessed with {key}={saved[key]!r}, this command gives "
                                  f"{config[key]!r}: use the same settings to resume or append, or a new --output")
    sources: List[Dict[str, Any]] = store.get_json(b"sources")
    by_path = {s["path"]: k for k, s in enumerate(sources)}
    todo: List[int] = []
    for p in paths:
        fp = _fingerprint(p)
        if fp["path"] in by_path:
            k = by_path[fp["path"]]
            if (sources[k]["size"], sources[k]["mtime_ns"]) != (fp["size"], fp["mtime_ns"]):
                raise DataError(f"changed since it was added to {output} (size or modification time differ): "
                                "preprocess into a new --output", str(p))
        else:
            k = len(sources)
            sources.append({**fp, "format": format, "n_frames": None})
            by_path[fp["path"]] = k
        if k not in todo:
            todo.append(k)
    store.put_json({b"sources": sources})
    _write_manifest(store, sources, complete=False)

    bar = _progress_bar(progress)
    try:
        _run_sources(store, sources, todo, label_keys, config, workers, bar)
        store.put_json({b"sources": sources})
    finally:
        bar.close()
    return _write_manifest(store, sources, complete=True)


def _progress_bar(progress: Optional[bool]):
    from tqdm import tqdm

    return tqdm(desc="preprocess", unit="frame", disable=None if progress is None else not progress,
                dynamic_ncols=True)


def _tasks(source: Dict[str, Any], source_id: int, keys: Dict[str, str], config: Dict[str, Any],
           done: set) -> Iterator[Dict[str, Any]]:
    """The chunks of one source still to do (``images`` set for non-xyz formats, read here)."""
    path = Path(source["path"])
    size = config["chunk_frames"]
    base = {"path": source["path"], "source_id": source_id, "keys": keys, "cutoff": config["cutoff"]}
    if _is_xyz(path, source["format"]):
        offsets = xyz_frame_offsets(path)
        source["n_frames"] = len(offsets) - 1
        for chunk, start in enumerate(range(0, source["n_frames"], size)):
            if chunk in done:
                continue
            stop = min(start + size, source["n_frames"])
            yield {**base, "chunk": chunk, "start": start, "count": stop - start, "begin": offsets[start],
                   "end": offsets[stop]}
        return
    import ase.io

    try:
        images = ase.io.iread(str(path), index=":", format=source["format"])
        chunk, batch, n = 0, [], 0
        for atoms in images:
            batch.append(atoms)
            n += 1
            if len(batch) == size:
                if chunk not in done:
                    yield {**base, "chunk": chunk, "start": n - size, "count": size, "images": batch}
                chunk, batch = chunk + 1, []
        if batch and chunk not in done:
            yield {**base, "chunk": chunk, "start": n - len(batch), "count": len(batch), "images": batch}
    except DataError:
        raise
    except Exception as err:  # ASE raises many types for unreadable files
        raise DataError(f"cannot read the file with ASE ({type(err).__name__}: {err})", str(path)) from None
    if n == 0:
        raise DataError("file holds no frames", str(path))
    source["n_frames"] = n


def _run_sources(store: _Store, sources: List[Dict[str, Any]], todo: List[int], keys: Dict[str, str],
                 config: Dict[str, Any], workers: int, bar) -> None:
    """The chunks still to do of every source in ``todo``, through one pool of ``workers`` processes
    (one pool for all files: many small files do not start a pool each)."""
    tasks = (task for k in todo for task in _tasks(sources[k], k, keys, config, store.done_chunks(k)))
    if workers == 1:
        for task in tasks:
            _commit(store, _label_chunk(task), bar)
        return
    import multiprocessing

    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        pending: set = set()
        try:
            for task in tasks:
                pending.add(pool.submit(_label_chunk, task))
                if len(pending) >= 2 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _commit_all(store, finished, bar)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                _commit_all(store, finished, bar)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _commit_all(store: _Store, finished: set, bar) -> None:
    errors = []
    for future in sorted(finished, key=lambda f: f.result()["task"]):
        result = future.result()
        if "error" in result:
            errors.append(result)
        else:
            _commit(store, result, bar)
    if errors:
        _commit(store, errors[0], bar)  # raises the first error in file order


def _commit(store: _Store, result: Dict[str, Any], bar) -> None:
    """Write one chunk's records, summaries and statistics in one transaction (all or nothing)."""
    if "error" in result:
        problem, path, frame = result["error"]
        raise DataError(problem, path, frame)
    source_id, chunk = result["task"]
    with store.env.begin(write=True) as txn:
        for key, record in result["records"]:
            txn.put(key, record)
        state = json.loads(bytes(txn.get(b"stats") or b"{}")) or statistics.empty()
        _merge_stats(state, result["stats"])
        txn.put(b"stats", json.dumps(state).encode())
        txn.put(layout.chunk_key(source_id, chunk),
                json.dumps({"rows": result["rows"], "label_names": result["names"]}).encode())
    bar.update(len(result["rows"]))


def _write_manifest(store: _Store, sources: List[Dict[str, Any]], complete: bool) -> Dict[str, Any]:
    from mlip import __version__

    config = store.get_json(b"config")
    manifest = {"format": layout.FORMAT, "version": layout.VERSION, "complete": complete,
                "mlip_version": __version__, **config, "sources": sources,
                "statistics": statistics.finalize(store.get_json(b"stats"), config["cutoff"])}
    write_json(store.output / layout.MANIFEST, manifest, indent=1)
    return manifest
