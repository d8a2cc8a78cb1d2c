"""``mlip export <run dir | checkpoint>``: write ``model.pt`` (TorchScript) or ``model.pt2``
(AOTInductor) from a trained model.

    mlip export outputs/2026-01-01/12-00-00                       # -> <run>/model.pt
    mlip export run/checkpoints/last.ckpt --dtype float64 --output si64.pt
    mlip export outputs/... --format aoti --device cuda            # -> <run>/model.pt2, for GPUs
    mlip export outputs/... --format lammps                        # classical models -> <run>/lammps/

A run directory means ``<dir>/checkpoints/best.ckpt``. The default dtype is the checkpoint's.
TorchScript files are written on the CPU and load on any device (``map_location``); an
AOTInductor package is compiled for the ``--device`` it will run on.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from mlip.errors import USER_ERRORS

SUFFIX = {"torchscript": ".pt", "aoti": ".pt2", "lammps": ""}  # lammps: a directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory (uses checkpoints/best.ckpt) or a .ckpt file")
    parser.add_argument("--format", choices=sorted(SUFFIX), default="torchscript",
                        help="torchscript (model.pt, default), aoti (AOTInductor package model.pt2) or lammps "
                        "(classical models: pair_style table / eam/alloy files in <run>/lammps/)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="precision of the exported model (default: the checkpoint's)")
    parser.add_argument("--output", default=None, help="output file (default: model.pt / model.pt2 in the run "
                        "directory, or beside the checkpoint's checkpoints/ folder)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="device an AOTInductor package is compiled for (TorchScript: export on CPU, "
                             "load anywhere)")


def resolve_checkpoint(source: str) -> Path:
    """A run directory -> its ``checkpoints/best.ckpt``; a file -> itself."""
    path = Path(source)
    if path.is_dir():
        ckpt = path / "checkpoints" / "best.ckpt"
        if not ckpt.exists():
            raise FileNotFoundError(f"{source}: a run directory needs checkpoints/best.ckpt, not found")
        return ckpt
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such run directory or checkpoint")
    return path


def default_output(source: str, ckpt: Path, fmt: str) -> Path:
    path = Path(source)
    run_dir = path if path.is_dir() else (ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent)
    return run_dir / ("lammps" if fmt == "lammps" else "model" + SUFFIX[fmt])


def main(args: argparse.Namespace) -> int:
    """Export as asked; a user error (missing or corrupt checkpoint, full disk, ...) is printed as
    ``mlip export: error: ...`` and returns 1."""
    try:
        return _export(args)
    except (*USER_ERRORS, FileNotFoundError) as err:
        print(f"mlip export: error: {err}", file=sys.stderr)
        return 1


def _export(args: argparse.Namespace) -> int:
    """``main`` without the error report: raises the ``USER_ERRORS`` it meets."""
    import torch

    from mlip.training.checkpoint_load import model_from_checkpoint

    ckpt = resolve_checkpoint(args.source)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("mlip export: error: --device cuda, but torch sees no CUDA device here", file=sys.stderr)
        return 1
    output = Path(args.output) if args.output else default_output(args.source, ckpt, args.format)
    if args.format != "lammps" and output.suffix != SUFFIX[args.format]:
        print(f"mlip export: error: --output {output}: a {args.format} file must end in {SUFFIX[args.format]}",
              file=sys.stderr)
        return 1
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model = model_from_checkpoint(str(ckpt))
    output.parent.mkdir(parents=True, exist_ok=True)
    replaced = output.exists()
    t0 = time.time()
    if args.format == "lammps":
        return _export_lammps(model, output)
    if args.format == "torchscript":
        from mlip.export import export_torchscript, load_exported

        export_torchscript(model, str(output), dtype=dtype)
        _, meta = load_exported(str(output))
    else:
        from mlip.export.aoti import export_aoti, load_aoti

        export_aoti(model, str(output), dtype=dtype, device=args.device)
        _, meta = load_aoti(str(output), device=args.device)
    print(f"mlip export: {ckpt} -> {output} ({args.format}, {meta['dtype']}, {time.time() - t0:.1f} s)"
          + (f"; replaced the existing {output.name}" if replaced else ""))
    print("  " + json.dumps({k: meta[k] for k in ("atomic_numbers", "cutoff", "dtype", "mlip_version")}))
    return 0


def _export_lammps(model, directory: Path) -> int:
    """LAMMPS-native files of a classical model, and the input lines that use them."""
    replaced = directory.is_dir() and any(directory.iterdir())
    from mlip.export.lammps_tables import write_lammps_files

    pot = write_lammps_files(model, str(directory))
    print(f"mlip export: LAMMPS files in {directory}: {', '.join(pot.files)}"
          + ("; replaced the files already there" if replaced else ""))
    print("  LAMMPS input lines (atom type k is element k of: " + " ".join(pot.elements) + "):")
    for line in pot.commands():
        print("    " + line)
    print("  LAMMPS energies exclude E0 (eV/atom): " + json.dumps(pot.e0))
    return 0
