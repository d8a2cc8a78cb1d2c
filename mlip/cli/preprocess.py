"""``mlip preprocess <files...> --output DIR``: write an on-disk dataset for data larger than memory.

    mlip preprocess train_*.extxyz --output data/train.mlipdata --workers 8
    mlip preprocess more.extxyz --output data/train.mlipdata          # appends (or resumes) later
    python train.py data=custom data.train=data/train.mlipdata

Frames are streamed (never all in memory), checked as ``python train.py`` checks files (same
messages naming file and frame), and written in chunks; a killed run resumes when the same command
runs again. The directory holds ``mlip_dataset.json`` (sources, settings and statistics of the whole
set: E0 by least squares, force RMS, neighbours per atom, element counts) and the LMDB database.
"""

import argparse
import sys
import time
from pathlib import Path

from mlip.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="ASE-readable files (extxyz fastest: parsed in parallel)")
    parser.add_argument("--output", "-o", required=True, help="dataset directory (created; resumed or appended to "
                        "when it exists)")
    parser.add_argument("--cutoff", type=float, default=5.0,
                        help="radius (Å) of the stored neighbour counts and overlapping-atoms check; use your "
                        "model.cutoff (training with another cutoff recounts neighbours in one pass). Default 5.0")
    parser.add_argument("--workers", "-j", type=int, default=1, help="processes that parse and check (default 1)")
    parser.add_argument("--chunk-frames", type=int, default=256,
                        help="frames per chunk: the unit of parallel work and of resuming (default 256)")
    parser.add_argument("--format", default=None, help="ASE format name when the suffix does not tell")
    parser.add_argument("--key", action="append", default=[], metavar="KIND=NAME",
                        help="where a label lives, as data.keys: --key energy=REF_energy --key forces=REF_forces")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _keys(pairs):
    from mlip.errors import ConfigError

    out = {}
    for pair in pairs:
        kind, sep, name = pair.partition("=")
        if not sep or not kind or not name:
            raise ConfigError(f"--key {pair!r}: expected KIND=NAME, e.g. --key energy=REF_energy")
        out[kind] = name
    return out


def main(args: argparse.Namespace) -> int:
    from mlip.data.store import preprocess

    t0 = time.time()
    try:
        manifest = preprocess(args.inputs, args.output, cutoff=args.cutoff, keys=_keys(args.key), format=args.format,
                              workers=args.workers, chunk_frames=args.chunk_frames,
                              progress=False if args.no_progress else None)
    except USER_ERRORS as err:
        print(f"mlip preprocess: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mlip preprocess: interrupted; finished chunks are kept: run the same command to resume into "
              f"{args.output}", file=sys.stderr)
        return 130
    stats = manifest["statistics"]
    size = sum(f.stat().st_size for f in Path(args.output).rglob("*") if f.is_file())
    e0 = stats.get("e0_least_squares") or {}
    print(f"mlip preprocess: {args.output}: {stats['n_frames']} frames, {stats['n_atoms']} atoms "
          f"({', '.join(f'{k} {v}' for k, v in stats['elements'].items())}), {size / 2**20:.1f} MiB, "
          f"{time.time() - t0:.1f} s")
    print(f"  neighbours per atom within {stats['cutoff']:g} Å: {stats['avg_num_neighbors']:.2f}; force RMS: "
          + (f"{stats['force_rms']:.4g} eV/Å" if stats["force_rms"] is not None else "no forces"))
    if e0 and stats["e0_rank"] < len(e0):
        print(f"  E0 by least squares is not determined (compositions of rank {stats['e0_rank']} for {len(e0)} "
              "elements): training needs isolated atoms (in the data or data.e0_file) or data.e0")
    elif e0:
        print("  E0 by least squares (eV): " + ", ".join(f"{k} {v:.6g}" for k, v in e0.items())
              + f"; energy per atom after E0: {stats['energy_per_atom_mean']:+.4g} ± "
              f"{stats['energy_per_atom_std']:.4g} eV/atom")
    if stats["isolated_atom_energies"]:
        print("  isolated atoms (eV): " + ", ".join(f"{k} {v:.6g}" for k, v in stats["isolated_atom_energies"].items()))
    print(f"  train on it: python train.py data=custom data.train={args.output}")
    return 0
