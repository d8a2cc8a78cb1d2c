"""Parity plots (predicted vs reference) written as PNG, coloured by config_type."""

from typing import Optional, Sequence

import numpy as np

from mlip.fileio import save_figure

#: more config types than this share one colour (a legend would not fit)
MAX_LEGEND = 12


def parity_plot(ref: np.ndarray, pred: np.ndarray, path: str, quantity: str, unit: str, scale: float = 1.0,
                groups: Optional[np.ndarray] = None, group_names: Optional[Sequence[str]] = None,
                split: str = "test") -> None:
    """Scatter of ``pred`` against ``ref`` [M] with the diagonal; the title names the split and
    gives MAE and RMSE. ``scale`` converts the arrays to the displayed ``unit``. ``groups`` [M]
    (indices into ``group_names``) colours the points by config type. Ticks are few and without
    an offset, so values like -4.215 stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    ref = np.asarray(ref, dtype=np.float64) * scale
    pred = np.asarray(pred, dtype=np.float64) * scale
    fig, ax = plt.subplots(figsize=(5.0, 5.0), dpi=120)
    title = f"{split}: {quantity}"
    if ref.size:
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, zorder=0)
        used = np.unique(groups) if groups is not None and group_names else np.array([], dtype=int)
        if group_names and 1 < len(used) <= MAX_LEGEND:
            cmap = plt.get_cmap("tab10" if len(used) <= 10 else "tab20")
            for c, g in enumerate(used):
                sel = groups == g
                ax.scatter(ref[sel], pred[sel], s=5, alpha=0.6, edgecolors="none", color=cmap(c),
                           label=f"{group_names[int(g)]} ({int(sel.sum())})")
            ax.legend(fontsize=7, markerscale=2, loc="upper left", frameon=False)
        else:
            ax.scatter(ref, pred, s=5, alpha=0.5, edgecolors="none")
        err = pred - ref
        title += f"\nMAE {np.abs(err).mean():.3g} {unit}, RMSE {np.sqrt((err ** 2).mean()):.3g} {unit}, n = {ref.size}"
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    else:
        ax.text(0.5, 0.5, "no labelled entries", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"reference {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=5))
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)
    ax.tick_params(labelsize=8)
    ax.set_aspect("equal", adjustable="box")
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
