"""Scoring of the predictions written by peer_eval.py, identical for every tool, and the table.

Energy MAE: mean over test frames of |E_pred - E_ref| / n_atoms (meV/atom), and of |E_pred -
E_ref| (meV per frame, reported per molecule for rMD17). Force MAE: mean over all Cartesian
components of all atoms (meV/Å). Stress MAE: mean over the 9 components of the 3x3 tensor of the
periodic labelled frames (GPa; the off-diagonal ones count twice, as in mlip's own metrics).
"""

from typing import Dict, List, Optional

import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

EV_PER_A3_TO_GPA = 160.21766208


def _voigt_to_full(v) -> np.ndarray:
    """3x3 from Voigt (xx, yy, zz, yz, xz, xy), by ASE."""
    return voigt_6_to_full_3x3_stress(np.asarray(v, dtype=float))


def score(ref: dict, pred: dict) -> Dict[str, float]:
    """MAE and RMSE of energy, forces and stress of ``pred`` against ``ref`` (see module doc)."""
    n = np.asarray(ref["n_atoms"], dtype=float)
    if len(pred["energy"]) != len(n):
        raise ValueError(f"{len(pred['energy'])} predicted frames for {len(n)} test frames")
    de = np.asarray(pred["energy"], dtype=float) - np.asarray(ref["energy"], dtype=float)
    df = np.concatenate([np.asarray(p, dtype=float).ravel() - np.asarray(r, dtype=float).ravel()
                         for p, r in zip(pred["forces"], ref["forces"])])
    out = {"energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(de / n))),
           "energy_rmse_mev_per_atom": 1000 * float(np.sqrt(np.mean((de / n) ** 2))),
           "energy_mae_mev_per_frame": 1000 * float(np.mean(np.abs(de))),
           "forces_mae_mev_per_a": 1000 * float(np.mean(np.abs(df))),
           "forces_rmse_mev_per_a": 1000 * float(np.sqrt(np.mean(df ** 2)))}
    ds = [(_voigt_to_full(p) - _voigt_to_full(r)).ravel() for p, r in zip(pred["stress"], ref["stress"])
          if r is not None and p is not None]
    if ds:
        ds = np.concatenate(ds)
        out["stress_mae_gpa"] = EV_PER_A3_TO_GPA * float(np.mean(np.abs(ds)))
        out["stress_rmse_gpa"] = EV_PER_A3_TO_GPA * float(np.sqrt(np.mean(ds ** 2)))
    return out


def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: List[dict]) -> List[str]:
    """Markdown rows: one per (dataset, tool)."""
    lines = ["| dataset | model | params | epochs | train time (s) | train frames/s | E MAE (meV/atom) "
             "| E MAE (meV/molecule) | F MAE (meV/Å) | F RMSE (meV/Å) | stress MAE (GPa) | inference (µs/atom/call) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['dataset']} | {r['label']} | failed: {r['error'][:80]} |" + " |" * 9)
            continue
        s = r["scores"]
        per_mol = _fmt(s["energy_mae_mev_per_frame"], ".2f") if r["molecule"] else "-"
        lines.append(
            f"| {r['dataset']} | {r['label']} | {_fmt(r.get('n_params'), 'd')} | {r['epochs']} | {r['fit_time_s']:.0f} "
            f"| {r['frames_per_s']:.1f} | {s['energy_mae_mev_per_atom']:.2f} | {per_mol} "
            f"| {s['forces_mae_mev_per_a']:.1f} | {s['forces_rmse_mev_per_a']:.1f} "
            f"| {_fmt(s.get('stress_mae_gpa'), '.3f')} | {_fmt(r.get('us_per_atom'), '.0f')} |")
    return lines


def seed_summary(runs: Dict[int, List[dict]]) -> List[str]:
    """Markdown table over seeds: ``runs`` maps seed -> the rows of one ``bench_peers.py`` run
    (its results.json). Per dataset and tool: force and energy MAE as mean ± sample standard
    deviation over the seeds that tool finished, and epochs; per dataset, mlip's force MAE over
    the best peer's of the same seed (the split and initialisation change with the seed), as the
    mean of those per-seed ratios and as the ratio of the means."""
    by: Dict[tuple, Dict[int, dict]] = {}
    for seed, rows in runs.items():
        for r in rows:
            if not r.get("error"):
                by.setdefault((r["dataset"], r["tool"]), {})[seed] = r
    lines = ["| dataset | model | seeds | F MAE (meV/Å) | E MAE (meV/atom) | epochs | F MAE per seed |",
             "|---|---|---|---|---|---|---|"]

    def ms(values: List[float], spec: str) -> str:
        v = np.asarray(values, dtype=float)
        return format(v.mean(), spec) + ("" if len(v) < 2 else " ± " + format(v.std(ddof=1), spec))

    for (dataset, _tool), per_seed in sorted(by.items()):
        rows = [per_seed[s] for s in sorted(per_seed)]
        f = [r["scores"]["forces_mae_mev_per_a"] for r in rows]
        e = [r["scores"]["energy_mae_mev_per_atom"] for r in rows]
        lines.append(f"| {dataset} | {rows[0]['label']} | {','.join(map(str, sorted(per_seed)))} | {ms(f, '.1f')} "
                     f"| {ms(e, '.2f')} | {ms([r['epochs'] for r in rows], '.0f')} "
                     f"| {' / '.join(format(x, '.1f') for x in f)} |")
    lines += ["", "| dataset | seeds | mlip F / best peer F, mean of per-seed ratios | ratio of means |",
              "|---|---|---|---|"]
    for dataset in sorted({d for d, _ in by}):
        ratios, mine, best = [], [], []
        for seed in sorted(runs):
            f = {t: per[seed]["scores"]["forces_mae_mev_per_a"] for (d, t), per in by.items()
                 if d == dataset and seed in per}
            peers = [v for t, v in f.items() if t != "mlip"]
            if "mlip" in f and peers:
                ratios.append(f["mlip"] / min(peers))
                mine.append(f["mlip"])
                best.append(min(peers))
        if ratios:
            lines.append(f"| {dataset} | {len(ratios)} | {ms(ratios, '.2f')} | {np.mean(mine) / np.mean(best):.2f} |")
    return lines
