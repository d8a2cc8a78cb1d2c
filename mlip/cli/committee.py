"""``mlip committee``: train K models that differ in seed, combine them into ``committee.pt``
(mean and standard deviation of energy, forces and stress), calibrate the uncertainty on the
validation split and report it on the test split.

    mlip committee train 4 data=custom data.train=my.extxyz --output committee_runs
    mlip committee build runs/a runs/b runs/c --output committee_runs

``train`` runs ``python train.py <overrides> seed=<seed+k>`` for k = 0..K-1 into
``<output>/member_k`` with the split of the first seed (``split.seed`` fixed), so every member sees
the same validation and test frames; then it builds. ``build`` writes ``<output>/committee.pt``,
``committee_metrics.json`` and ``calibration_{energy,forces}.png``.
"""

import argparse
import sys
from pathlib import Path

from mlip.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="action", required=True)
    train = sub.add_parser("train", help="train K members (seeds differ), then build the committee")
    train.add_argument("size", type=int, help="number of members K (>= 2)")
    train.add_argument("overrides", nargs="*", help="train.py overrides shared by every member")
    train.add_argument("--output", required=True, help="directory for the members and the committee")
    build = sub.add_parser("build", help="combine trained runs into committee.pt and calibrate it")
    build.add_argument("runs", nargs="+", help="run directories (checkpoints/best.ckpt, config.yaml, split.json)")
    build.add_argument("--output", required=True, help="directory for committee.pt and its report")


def train_members(size: int, overrides, output: Path):
    from hydra import compose, initialize_config_dir

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run
    from mlip.errors import ConfigError

    if size < 2:
        raise ConfigError(f"a committee needs at least 2 members, not {size}")
    given = dict(o.split("=", 1) for o in overrides if "=" in o)
    seed = int(given.get("seed", 0))
    split_seed = given.get("split.seed", str(seed))
    base = [o for o in overrides if not o.startswith(("seed=", "split.seed="))]
    runs = []
    for k in range(size):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[*base, f"seed={seed + k}", f"split.seed={split_seed}", "export=false"])
        run_dir = output / f"member_{k}"
        print(f"mlip committee: training member {k + 1}/{size} (seed {seed + k}) in {run_dir}", flush=True)
        run(cfg, run_dir)
        runs.append(run_dir)
    return runs


def build(runs, output: Path) -> dict:
    """committee.pt, its calibration on member 0's validation split and report on its test split."""
    import json

    from omegaconf import OmegaConf

    import mlip.cli.config_path  # noqa: F401  (registers the mlip_data resolver)
    from mlip.data.io import LabelKeys
    from mlip.errors import ConfigError
    from mlip.fileio import write_json
    from mlip.training.run_frames import split_frames
    from mlip.uncertainty import calibration
    from mlip.uncertainty.committee import committee_from_checkpoints, export_committee
    from mlip.uncertainty.evaluate import predict, report

    runs = [Path(r) for r in runs]
    splits = [json.loads((r / "split.json").read_text()) for r in runs]
    if any({k: s.get(k) for k in ("val", "test")} != {k: splits[0].get(k) for k in ("val", "test")} for s in splits):
        raise ConfigError("the runs were trained on different validation/test splits: a committee is calibrated and "
                          "tested on frames none of its members trained on (train members with the same split.seed)")
    committee = committee_from_checkpoints([str(r / "checkpoints" / "best.ckpt") for r in runs])
    cfg = OmegaConf.load(runs[0] / "config.yaml")
    keys = LabelKeys(**dict(cfg.data["keys"]))
    fmt = cfg.data.get("format")
    val = predict(committee, split_frames(runs[0], cfg, "val", keys, fmt))
    test_name = "test" if splits[0].get("test") or splits[0].get("test_file") else "val"
    test = predict(committee, split_frames(runs[0], cfg, test_name, keys, fmt))
    result = report(val, test)
    committee.energy_scale = result.get("energy", {}).get("scale_fitted_on_val", 1.0)
    committee.forces_scale = result.get("forces", {}).get("scale_fitted_on_val", 1.0)
    output.mkdir(parents=True, exist_ok=True)
    export_committee(committee, str(output / "committee.pt"))
    for kind, entry in result.items():
        error = test[f"{kind}_pred"] - test[f"{kind}_ref"]
        calibration.calibration_plot({"committee spread": (error, test[f"{kind}_std"]),
                                      "calibrated on val": (error, entry["scale_fitted_on_val"] * test[f"{kind}_std"])},
                                     str(output / f"calibration_{kind}.png"), f"{kind} ({test_name} split)")
    metrics = {"members": [str(r) for r in runs], "committee_size": len(runs), "tested_on": test_name,
               "mae_of_mean": {"energy_eV_per_atom": float(abs(test["energy_pred"] - test["energy_ref"]).mean()),
                               "forces_eV_per_A": float(abs(test["forces_pred"] - test["forces_ref"]).mean())},
               "calibration": result, "model": str(output / "committee.pt")}
    write_json(output / "committee_metrics.json", metrics)
    return metrics


def main(args: argparse.Namespace) -> int:
    try:
        output = Path(args.output)
        runs = train_members(args.size, args.overrides, output) if args.action == "train" else args.runs
        metrics = build(runs, output)
    except USER_ERRORS as err:
        print(f"mlip committee: error: {err}", file=sys.stderr)
        return 1
    print(f"mlip committee: {metrics['model']} ({metrics['committee_size']} members); {metrics['tested_on']} split: "
          f"MAE of the mean {1000 * metrics['mae_of_mean']['energy_eV_per_atom']:.2f} meV/atom, "
          f"{1000 * metrics['mae_of_mean']['forces_eV_per_A']:.1f} meV/Å")
    for kind, entry in metrics["calibration"].items():
        raw, cal = entry["raw"], entry["calibrated"]
        print(f"  {kind}: Spearman(std, |error|) {raw['spearman']:.2f}; miscalibration area "
              f"{raw['miscalibration_area']:.3f} raw, {cal['miscalibration_area']:.3f} after the scale "
              f"{entry['scale_fitted_on_val']:.3g} fitted on val; NLL {raw['nll']:.3g} -> {cal['nll']:.3g}")
    print(f"  committee_metrics.json and calibration plots in {args.output}")
    return 0
