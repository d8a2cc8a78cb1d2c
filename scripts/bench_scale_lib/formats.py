"""Format and neighbour-list micro-benchmarks on one on-disk dataset (run as a subprocess, one
thread; prints one JSON line):

    python scripts/bench_scale_lib/formats.py STORE --h5 /tmp/x.h5 --frames 2000

Random-order per-frame reads (a) from the LMDB store (``read_frame``: record -> ``Frame``) and (b)
from an HDF5 file written here with h5py (flat per-atom arrays + per-frame offsets, the layout an
HDF5 store would use), and (c) the vesin neighbour list of a frame against reading a stored one
(edge index int32 + cell shifts int8, per frame in an LMDB of its own), with the bytes per atom a
stored list takes. h5py is optional: without it (b) is skipped with a message.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _time_per(fn, items) -> float:
    t = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - t) / len(items)


def write_h5(store, path: Path) -> dict:
    import h5py

    t = time.time()
    frames = [store.frame(s) for s in store.summaries]
    counts = np.array([f.n_atoms for f in frames])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    with h5py.File(path, "w") as h5:
        h5["offsets"] = offsets
        h5["numbers"] = np.concatenate([f.numbers for f in frames]).astype(np.int16)
        h5["positions"] = np.concatenate([f.positions for f in frames])
        h5["forces"] = np.concatenate([f.labels["forces"] for f in frames])
        h5["cell"] = np.stack([f.cell for f in frames])
        h5["pbc"] = np.stack([f.pbc for f in frames])
        h5["energy"] = np.array([f.labels["energy"] for f in frames], dtype=np.float64).reshape(-1)
        h5["stress"] = np.stack([np.asarray(f.labels["stress"]).reshape(-1) for f in frames])
    return {"h5_write_s": time.time() - t, "h5_bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--h5", required=True, help="HDF5 file to write (removed at the end)")
    parser.add_argument("--frames", type=int, default=2000, help="random frames read per variant")
    parser.add_argument("--cutoff", type=float, default=5.0)
    args = parser.parse_args()
    import lmdb
    import torch

    from mlip.data.graph import frame_to_graph
    from mlip.data.store import FrameStore
    from mlip.data.store.reader import read_frame
    from mlip.nn.neighbors import vesin_neighbor_list

    torch.set_num_threads(1)
    store = FrameStore(args.store)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(store), size=min(args.frames, len(store)), replace=False)
    summaries = [store.summaries[i] for i in pick]
    out = {"frames_total": len(store), "frames_read": len(pick), "cutoff": args.cutoff}
    out["store_bytes"] = sum(f.stat().st_size for f in Path(args.store).rglob("*") if f.is_file())
    out["store_bytes_per_atom"] = out["store_bytes"] / sum(s.n_atoms for s in store.summaries)

    read_frame(store.path, summaries[0].source_id, summaries[0].index, summaries[0].source)  # opens the env
    out["lmdb_read_us"] = 1e6 * _time_per(lambda s: read_frame(store.path, s.source_id, s.index, s.source), summaries)

    try:
        import h5py
    except ImportError:
        print("h5py is not installed: the HDF5 comparison is skipped (pip install h5py)", file=sys.stderr)
        h5py = None
    if h5py is not None:
        h5_path = Path(args.h5)
        out.update(write_h5(store, h5_path))
        with h5py.File(h5_path, "r") as h5:
            offsets = h5["offsets"][:]
            ds = {k: h5[k] for k in ("numbers", "positions", "forces", "cell", "pbc", "energy", "stress")}

            def read_h5(i):
                a, b = offsets[i], offsets[i + 1]
                return (ds["numbers"][a:b], ds["positions"][a:b], ds["forces"][a:b], ds["cell"][i], ds["pbc"][i],
                        ds["energy"][i], ds["stress"][i])

            # the frame's place in the flat arrays (index into store.summaries)
            out["h5_read_us"] = 1e6 * _time_per(read_h5, [int(i) for i in pick])
        h5_path.unlink()
        out["h5_bytes_per_atom"] = out["h5_bytes"] / sum(s.n_atoms for s in store.summaries)

    frames = [read_frame(store.path, s.source_id, s.index, s.source) for s in summaries]
    out["vesin_us"] = 1e6 * _time_per(lambda f: vesin_neighbor_list(f.positions, f.cell, f.pbc, args.cutoff), frames)
    species = {z: k for k, z in enumerate(sorted({int(z) for f in frames for z in f.numbers}))}
    out["graph_us"] = 1e6 * _time_per(lambda f: frame_to_graph(f, args.cutoff, species), frames)

    nl_dir = Path(args.h5).with_suffix(".nl.lmdb")
    shutil.rmtree(nl_dir, ignore_errors=True)
    env = lmdb.open(str(nl_dir), map_size=1 << 36, subdir=True)
    n_edges = n_atoms = 0
    with env.begin(write=True) as txn:
        for k, f in enumerate(frames):
            ei, sh, _ = vesin_neighbor_list(f.positions, f.cell, f.pbc, args.cutoff)
            n_edges += ei.shape[1]
            n_atoms += f.n_atoms
            txn.put(b"%08d" % k, ei.astype(np.int32).tobytes() + sh.astype(np.int8).tobytes())
    env.close()
    env = lmdb.open(str(nl_dir), readonly=True, lock=False, readahead=False, subdir=True)

    def read_nl(k):
        with env.begin(buffers=False) as txn:
            raw = txn.get(b"%08d" % k)
        e = len(raw) // 11
        ei = np.frombuffer(raw, np.int32, 2 * e).reshape(2, e).astype(np.int64)
        sh = np.frombuffer(raw, np.int8, 3 * e, offset=8 * e).reshape(e, 3).astype(np.int64)
        return ei, sh

    order = rng.permutation(len(frames))
    out["stored_nl_read_us"] = 1e6 * _time_per(read_nl, [int(k) for k in order])
    env.close()
    out["stored_nl_bytes"] = sum(f.stat().st_size for f in nl_dir.rglob("*") if f.is_file())
    shutil.rmtree(nl_dir)
    out["edges_per_atom"] = n_edges / n_atoms
    out["stored_nl_bytes_per_atom_raw"] = 11 * n_edges / n_atoms  # int32 pair + int8 shift per directed edge
    out["stored_nl_bytes_per_atom_lmdb"] = out["stored_nl_bytes"] / n_atoms
    out["mean_atoms"] = n_atoms / len(frames)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
