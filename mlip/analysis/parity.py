"""Parity plots (predicted vs reference) written as PNG."""

import numpy as np

from mlip.fileio import save_figure


def parity_plot(ref: np.ndarray, pred: np.ndarray, path: str, quantity: str, unit: str, scale: float = 1.0) -> None:
    """Scatter of ``pred`` against ``ref`` with the diagonal, MAE and RMSE in the title.
    ``scale`` converts the arrays to the displayed ``unit``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = np.asarray(ref) * scale
    pred = np.asarray(pred) * scale
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    if ref.size:
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.05 * (hi - lo + 1e-12)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.scatter(ref, pred, s=4, alpha=0.5, edgecolors="none")
        err = pred - ref
        ax.set_title(f"{quantity}: MAE {np.abs(err).mean():.3g}, RMSE {np.sqrt((err ** 2).mean()):.3g} {unit}",
                     fontsize=9)
    ax.set_xlabel(f"reference {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
