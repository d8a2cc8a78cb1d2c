"""``mlip cv <multirun dir>``: mean and standard deviation of every metric over the folds of a
Hydra multirun, grouped by the other overrides; the best ``regularization.alpha`` and its CV
curve when the sweep varies alpha. Writes ``cv_summary.json`` (and ``cv_curve.png``) into the
multirun directory."""

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="Hydra multirun directory, e.g. multirun/2026-01-31/12-00-00")
    parser.add_argument("--metric", default=None,
                        help="metric that picks the best alpha: <section>/<name> with section cv, val, test "
                             "(default cv/forces_mae, or val/forces_mae without k-fold); a bare name takes "
                             "the default section")


def main(args: argparse.Namespace) -> int:
    from mlip.analysis.cross_validation import (
        best_alpha,
        common_overrides,
        cv_curve,
        format_table,
        load_jobs,
        resolve_metric,
        summarise,
        warnings_for,
        write_summary,
    )

    try:
        groups = summarise(load_jobs(args.sweep_dir))
        metric = resolve_metric(groups, args.metric)
    except (FileNotFoundError, KeyError) as err:
        print(f"mlip cv: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 1
    out = Path(args.sweep_dir)
    print(format_table(groups))
    for warning in warnings_for(groups):
        print(f"warning: incomplete or repeated folds in {warning}")
    best = best_alpha(groups, metric)
    if best is not None:
        std = "" if best["std"] is None else f" ± {best['std']:.4g}"
        common = set(common_overrides(groups))
        own = " ".join(o for o in best["group"].split() if o not in common)
        print(f"best regularization.alpha = {best['alpha']:g} ({metric} = {best['mean']:.4g}{std}; {own})")
        if cv_curve(groups, metric, str(out / "cv_curve.png")):
            print(f"CV curve: {out / 'cv_curve.png'}")
    write_summary(groups, metric, str(out / "cv_summary.json"))
    print(f"summary: {out / 'cv_summary.json'}")
    return 0
