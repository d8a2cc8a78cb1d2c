"""Labelling structures with an oracle: in parallel processes, cached by structure hash (a label
is never computed twice, and a killed run resumes where it stopped), failures recorded per
structure and skipped.

The cache is an LMDB database (one transaction per result, so a kill loses only the structures in
flight): key = hash of (oracle settings, atomic numbers, positions, cell, pbc), value = JSON of the
labels or of the failure.
"""

import hashlib
import json
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from mlip.building.oracles import OracleError, build_oracle, label, oracle_key

#: positions and cell are rounded to this many decimals (Å) before hashing
HASH_DECIMALS = 8


def structure_hash(atoms: Atoms, oracle: str) -> str:
    """A key for the labels of ``atoms`` by the oracle whose settings hash to ``oracle``."""
    h = hashlib.sha256(oracle.encode())
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(atoms.positions, dtype=float), HASH_DECIMALS).tobytes())
    h.update(np.round(np.asarray(atoms.cell[:], dtype=float), HASH_DECIMALS).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return h.hexdigest()


class LabelCache:
    """Labels by structure hash in an LMDB database at ``path`` (created if needed)."""

    def __init__(self, path: str):
        import lmdb

        Path(path).mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=1 << 36, subdir=True)

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        with self.env.begin() as txn:
            value = txn.get(key.encode())
        return None if value is None else json.loads(bytes(value))

    def put(self, key: str, value: Dict[str, Any]) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key.encode(), json.dumps(value).encode())

    def close(self) -> None:
        self.env.close()


_ORACLE: Dict[str, Any] = {}


def _init_worker(cfg: Dict[str, Any]) -> None:
    os.environ["OMP_NUM_THREADS"] = str(cfg.get("threads_per_worker", 1))
    _ORACLE["cfg"] = cfg
    _ORACLE["calc"] = build_oracle(cfg)


def _label_one(atoms: Atoms) -> Dict[str, Any]:
    try:
        return label(_ORACLE["calc"], atoms, _ORACLE["cfg"])
    except OracleError as err:
        return {"error": str(err)}


def attach(atoms: Atoms, labels: Mapping[str, Any], oracle_name: str, oracle: str) -> Atoms:
    """``atoms`` with the labels as its calculator results (so extxyz writes them as energy, forces,
    stress) and the oracle's name and settings hash in its info."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    results = {"energy": labels["energy"], "forces": np.asarray(labels["forces"])}
    if "stress" in labels:
        results["stress"] = np.asarray(labels["stress"])
    out.calc = SinglePointCalculator(out, **results)
    out.info["oracle"] = oracle_name
    out.info["oracle_settings"] = oracle
    return out


def label_all(structures: Sequence[Atoms], cfg: Dict[str, Any], cache_dir: str, workers: int = 1,
              progress: Optional[bool] = None) -> Tuple[List[Optional[Atoms]], List[Dict[str, Any]], Dict[str, int]]:
    """Label ``structures`` with the oracle ``cfg``: returns the labelled frames (None where the
    oracle failed), the failures ({index, config_type, group, error}) and counts
    ({cached, computed, failed})."""
    from tqdm import tqdm

    key = oracle_key(cfg)
    hashes = [structure_hash(a, key) for a in structures]
    cache = LabelCache(cache_dir)
    results: Dict[int, Dict[str, Any]] = {}
    todo: List[int] = []
    for i, h in enumerate(hashes):
        hit = cache.get(h)
        if hit is not None:
            results[i] = hit
        elif h not in {hashes[j] for j in todo}:
            todo.append(i)
    counts = {"cached": len(results), "computed": 0, "failed": 0}
    bar = tqdm(total=len(todo), desc=f"labelling ({cfg.get('name', 'oracle')})", unit="structure",
               disable=None if progress is None else not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            _init_worker(cfg)
            for i in todo:
                results[i] = _label_one(structures[i])
                cache.put(hashes[i], results[i])
                counts["computed"] += 1
                bar.update(1)
        else:
            import multiprocessing

            context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(cfg,)) as pool:
                pending: Dict[Any, int] = {}
                queue = list(todo)
                while queue or pending:
                    while queue and len(pending) < 2 * workers:
                        i = queue.pop(0)
                        pending[pool.submit(_label_one, structures[i])] = i
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for future in done:
                        i = pending.pop(future)
                        results[i] = future.result()
                        cache.put(hashes[i], results[i])
                        counts["computed"] += 1
                        bar.update(1)
    finally:
        bar.close()
        cache.close()
    by_hash = {hashes[i]: r for i, r in results.items()}
    frames: List[Optional[Atoms]] = []
    failures = []
    for i, (atoms, h) in enumerate(zip(structures, hashes)):
        r = by_hash[h]
        if "error" in r:
            failures.append({"index": i, "config_type": atoms.info.get("config_type"), "group": atoms.info.get("group"),
                             "error": r["error"]})
            frames.append(None)
        else:
            frames.append(attach(atoms, r, str(cfg.get("name", "oracle")), key))
    counts["failed"] = len(failures)
    return frames, failures, counts
