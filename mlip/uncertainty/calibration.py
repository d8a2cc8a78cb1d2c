"""Calibration of predicted uncertainties against actual errors.

For predictions with errors ``e`` (prediction - reference) and predicted standard deviations ``s``:

- ``spearman``: rank correlation of ``s`` with ``|e|`` (does a larger uncertainty mean a larger error?);
- ``nll``: mean Gaussian negative log-likelihood, 0.5 log(2 pi s^2) + e^2 / (2 s^2);
- ``miscalibration_area``: the mean, over confidence levels p in (0, 1), of |observed - p|, where
  observed is the fraction of errors inside the central interval +- z_p s of a Gaussian
  (0: calibrated; 0.5 at most);
- ``fit_scale``: the factor k that makes ``k s`` calibrated, k = median(|e| / s) / 0.6745 (the
  median of |z| for a standard normal z); fit it on a validation split, apply it to the test split.
  The median, not the likelihood's k^2 = mean(e^2 / s^2): with a committee of 2-3 members the
  spread s of some components is tiny by chance and the mean's expected value is infinite (the
  likelihood fit came out 16-160x too large with 2 members, 2-3x with 3, in simulation).
"""

from statistics import NormalDist
from typing import Dict, Optional

import numpy as np

#: confidence levels of the calibration curve and the miscalibration area
LEVELS = np.linspace(0.01, 0.99, 99)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    values, inverse = np.unique(x, return_inverse=True)
    if len(values) < len(x):
        sums = np.bincount(inverse, ranks)
        ranks = (sums / np.bincount(inverse))[inverse]
    return ranks


def spearman(std: np.ndarray, abs_error: np.ndarray) -> float:
    if len(std) < 3:
        return float("nan")
    a, b = _ranks(np.asarray(std, float)), _ranks(np.asarray(abs_error, float))
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _safe(std: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(std, float), 1e-12)


def nll(error: np.ndarray, std: np.ndarray) -> float:
    s = _safe(std)
    return float(np.mean(0.5 * np.log(2 * np.pi * s ** 2) + np.asarray(error) ** 2 / (2 * s ** 2)))


def observed_fractions(error: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Fraction of errors inside the central Gaussian interval of each level in ``LEVELS``."""
    z = np.array([NormalDist().inv_cdf(0.5 + p / 2) for p in LEVELS])
    ratio = np.abs(np.asarray(error)) / _safe(std)
    return (ratio[None, :] <= z[:, None]).mean(axis=1)


def miscalibration_area(error: np.ndarray, std: np.ndarray) -> float:
    return float(np.mean(np.abs(observed_fractions(error, std) - LEVELS)))


def fit_scale(error: np.ndarray, std: np.ndarray) -> float:
    return float(np.median(np.abs(np.asarray(error)) / _safe(std)) / 0.6744897501960817)


def summary(error: np.ndarray, std: np.ndarray, scale: float = 1.0) -> Dict[str, float]:
    """Every measure above for ``scale * std``, plus the RMSE and the RMS predicted uncertainty."""
    s = scale * np.asarray(std, float)
    e = np.asarray(error, float)
    return {"n": int(len(e)), "spearman": spearman(s, np.abs(e)), "nll": nll(e, s),
            "miscalibration_area": miscalibration_area(e, s), "rmse": float(np.sqrt(np.mean(e ** 2))),
            "rms_std": float(np.sqrt(np.mean(s ** 2)))}


def calibration_plot(curves: Dict[str, tuple], path: str, title: Optional[str] = None) -> None:
    """Observed against expected fraction inside the interval, one line per ``name: (error, std)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlip.fileio import save_figure

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    for name, (error, std) in curves.items():
        ax.plot(LEVELS, observed_fractions(error, std), label=f"{name} (area {miscalibration_area(error, std):.3f})")
    ax.set_xlabel("expected fraction inside the interval")
    ax.set_ylabel("observed fraction")
    ax.set_title(title or "calibration")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
