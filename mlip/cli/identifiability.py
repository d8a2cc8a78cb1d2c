"""``mlip identifiability <run dir or .ckpt>``: Fisher information of a fitted model's parameters.

Loads ``checkpoints/best.ckpt`` of a run directory (or the given checkpoint), rebuilds the frames of
the run's training split from ``config.yaml`` and ``split.json`` (or reads ``--data FILE``),
computes F = sum_k J_k^T J_k / (n_k sigma_k^2) with the loss's kinds and sigmas (learned ones
included), and writes to ``--out`` (default ``<run dir>/identifiability``):

- ``identifiability.json``: eigenvalues, condition number, zero count and tolerance, stiffest and
  sloppiest combinations, parameters with no information, standard errors;
- ``identifiability.png``: the eigenvalue spectrum;
- ``fisher.npz``: ``names``, ``values``, ``fisher`` (loss weights), ``fisher_<kind>`` blocks
  J_k^T J_k, ``counts``, ``sigma``;

and prints the table. See ``mlip.analysis.identifiability`` for the definitions.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlip.errors import USER_ERRORS, ConfigError, DataError
from mlip.training.run_frames import resolve_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory (uses checkpoints/best.ckpt) or a .ckpt file")
    parser.add_argument("--params", nargs="+", metavar="PATTERN",
                        help="glob patterns over parameter and buffer names (e.g. 'energies.*' "
                             "'readout.nets.*.2.*'); default: the model's identifiability_parameters()")
    parser.add_argument("--data", metavar="FILE", help="frames to analyse instead of the run's split")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="split of the run to analyse (default train)")
    parser.add_argument("--kinds", nargs="+", choices=("energy", "forces", "stress"),
                        help="restrict to these kinds of the loss (default: all kinds of the loss)")
    parser.add_argument("--max-frames", type=int, metavar="N",
                        help="analyse a seeded random subset of N frames")
    parser.add_argument("--out", metavar="DIR", help="output folder (default <run dir>/identifiability)")
    parser.add_argument("--rtol", type=float, default=None,
                        help="eigenvalues <= RTOL x largest count as zero (default 1e-12)")
    parser.add_argument("--relative", action="store_true",
                        help="analyse log-parameters (F_ij theta_i theta_j): unit-free spectrum")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per batch (default 4)")
    parser.add_argument("--vectors", type=int, default=3, help="stiffest / sloppiest combinations shown")


def load_frames(args: argparse.Namespace, run_dir: Optional[Path]) -> Tuple[List[Any], str]:
    """Frames to analyse and a description of where they came from."""
    import numpy as np

    from mlip.data.io import LabelKeys
    from mlip.data.store import read_any as read_frames
    from mlip.training.run_frames import split_frames

    cfg = None
    if run_dir is not None:
        from omegaconf import OmegaConf

        import mlip.cli.config_path  # noqa: F401  (registers the mlip_data resolver)
        cfg = OmegaConf.load(run_dir / "config.yaml")
    label_keys = LabelKeys(**dict(cfg.data["keys"])) if cfg is not None else LabelKeys()
    fmt = cfg.data.get("format") if cfg is not None else None
    if args.data:
        frames = [f for f in read_frames(args.data, label_keys, format=fmt) if not f.is_isolated_atom]
        where = args.data
    else:
        if run_dir is None:
            raise ConfigError(f"{args.source}: no config.yaml beside the checkpoint; give the frames with --data FILE")
        frames = split_frames(run_dir, cfg, args.split, label_keys, fmt)
        where = f"{args.split} split of {run_dir}"
    if not frames:
        raise DataError(f"no frames to analyse in the {where}")
    if args.max_frames is not None and args.max_frames < len(frames):
        if args.max_frames < 1:
            raise ConfigError(f"--max-frames={args.max_frames} must be >= 1")
        keep = sorted(np.random.default_rng(0).choice(len(frames), args.max_frames, replace=False).tolist())
        frames = [frames[i] for i in keep]
        where += f" (random {args.max_frames})"
    return frames, where


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Analyse and write the outputs; returns the report."""
    from functools import partial

    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from mlip.analysis.identifiability import DEFAULT_RTOL, analyse, fisher_information, format_report, spectrum_plot
    from mlip.data.dataset import GraphDataset
    from mlip.fileio import atomic_open, write_json
    from mlip.models.contract import cutoff_of, species_of
    from mlip.nn.batch import collate
    from mlip.training.checkpoint_load import module_from_checkpoint

    ckpt, run_dir = resolve_source(args.source)
    module = module_from_checkpoint(str(ckpt))  # in the saved dtype; corrupt files refused
    model = module.model
    frames, where = load_frames(args, run_dir)
    species_index = {z: k for k, z in enumerate(species_of(model))}
    dataset = GraphDataset(frames, cutoff_of(model), species_index, ["default"])
    loader = DataLoader(dataset, batch_size=max(1, args.batch_size), shuffle=False,
                        collate_fn=partial(collate, dtype=torch.float64))
    info = fisher_information(model, loader, module.loss_fn, args.params, kinds=args.kinds)
    rtol = DEFAULT_RTOL if args.rtol is None else args.rtol
    report = analyse(info, rtol=rtol, n_vectors=args.vectors, relative=args.relative)
    report["checkpoint"] = str(ckpt)
    report["data"] = where

    out = Path(args.out) if args.out else (run_dir if run_dir is not None else ckpt.parent) / "identifiability"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "identifiability.json", report, allow_nan=True)
    spectrum_plot(report, str(out / "identifiability.png"))
    with atomic_open(out / "fisher.npz", "wb") as fh:
        arrays: Dict[str, Any] = {"names": np.array(info.names), "values": info.values,
                                  "fisher": info.matrix("loss", args.kinds), "counts": json.dumps(info.counts),
                                  "sigma": json.dumps(info.sigma)}
        arrays.update({f"fisher_{k}": v for k, v in info.blocks.items()})
        np.savez(fh, **arrays)
    print(f"mlip identifiability: {ckpt} on the {where}")
    print(format_report(report))
    print(f"wrote {out / 'identifiability.json'}, {out / 'identifiability.png'}, {out / 'fisher.npz'}")
    return report


def main(args: argparse.Namespace) -> int:
    try:
        run(args)
    except (*USER_ERRORS, FileNotFoundError) as err:
        print(f"mlip identifiability: error: {err}", file=sys.stderr)
        return 1
    return 0
