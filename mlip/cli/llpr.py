"""``mlip llpr <run dir>``: a single model's uncertainty of the energy per atom by last-layer
prediction rigidity, fitted on the run's training split, calibrated (ς², α) on its validation split
and reported on its test split: ``llpr_metrics.json`` and ``calibration_llpr.png`` in the run
directory. For a member of ``mlip committee``, the committee's numbers on the same test frames are
put beside it.

    mlip llpr outputs/2026-12-02/10-00-00
    mlip llpr committee_runs/member_0          # compared with committee_runs/committee_metrics.json
"""

import argparse
import json
import sys
from pathlib import Path

from mlip.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (checkpoints/best.ckpt, config.yaml, split.json)")


def main(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    import mlip.cli.config_path  # noqa: F401  (registers the mlip_data resolver)
    from mlip.data.io import LabelKeys
    from mlip.fileio import write_json
    from mlip.training.checkpoint_load import model_from_checkpoint
    from mlip.training.run_frames import split_frames
    from mlip.uncertainty import calibration
    from mlip.uncertainty.llpr import llpr_report

    run = Path(args.run)
    try:
        cfg = OmegaConf.load(run / "config.yaml")
        keys = LabelKeys(**dict(cfg.data["keys"]))
        fmt = cfg.data.get("format")
        frames = {s: split_frames(run, cfg, s, keys, fmt) for s in ("train", "val", "test")}
        model = model_from_checkpoint(str(run / "checkpoints" / "best.ckpt"))
        result = llpr_report(model, frames["train"], frames["val"], frames["test"])
    except (*USER_ERRORS, FileNotFoundError, ValueError) as err:
        print(f"mlip llpr: error: {err}", file=sys.stderr)
        return 1
    import numpy as np

    calibration.calibration_plot({"LLPR (calibrated on val)": (np.array(result["test_error"]),
                                                               np.array(result["test_std"]))},
                                 str(run / "calibration_llpr.png"), "energy per atom (test split)")
    committee = run.parent / "committee_metrics.json"
    if committee.is_file():
        other = json.loads(committee.read_text())["calibration"].get("energy", {})
        result["committee_on_same_test"] = other.get("calibrated")
    write_json(run / "llpr_metrics.json", result)
    t = result["test"]
    print(f"mlip llpr: {run}: energy per atom, {t['n']} test frames: Spearman(std, |error|) {t['spearman']:.2f}, "
          f"miscalibration area {t['miscalibration_area']:.3f}, NLL {t['nll']:.3g}; last layer of "
          f"{result['n_parameters']} parameters, ς² {result['regulariser_fraction']:g} x mean eigenvalue, "
          f"α {result['alpha']:.3g} (from val)")
    if result.get("committee_on_same_test"):
        c = result["committee_on_same_test"]
        print(f"  committee on the same test frames: Spearman {c['spearman']:.2f}, miscalibration area "
              f"{c['miscalibration_area']:.3f}, NLL {c['nll']:.3g}")
    return 0
