"""What a run tells its user: the banner at the start and the summary table at the end
(printed, and saved as ``summary.md`` in the run directory). One column per registered kind
(``mlip.targets``) in its report unit: energy meV/atom, forces meV/Å (per component), stress GPa
(per component), as in ``metrics.json``. ``columns()``, ``metric_units()`` and ``sigma_units()``
read the registry."""

from typing import Any, Dict, List, Optional, Sequence

from mlip import targets

#: units of metrics.json entries that are not per kind
_OTHER_UNITS = {"e0_eV": "eV", "energy_shift": "eV/atom", "energy_std": "eV/atom", "force_rms": "eV/Å",
                "avg_num_neighbors": "edges per atom", "fit_time_s": "s", "wall_time_s": "s"}


def columns() -> tuple:
    """(metric kind, column title with unit, format) of every registered kind."""
    return tuple((t.name, f"{t.name} MAE / RMSE ({t.report_unit})", t.table_format) for t in targets.all_targets())


def sigma_units() -> Dict[str, str]:
    """Unit of each kind's loss sigma (its residual's unit)."""
    return {t.name: t.residual_unit for t in targets.all_targets()}


def metric_units() -> Dict[str, Any]:
    """Units of metrics.json entries, written beside them."""
    units: Dict[str, Any] = {}
    for t in targets.all_targets():
        units[f"{t.name}_mae"] = units[f"{t.name}_rmse"] = t.report_unit
    return {**units, **_OTHER_UNITS, "learned_sigma": sigma_units()}


def banner(run_dir: str, model_name: str, n_parameters: int, cutoff: float, data: Dict[str, Any],
           loss_sigma: Dict[str, Any], device: str, dtype: str, resumed_from: Optional[str] = None) -> str:
    """Lines printed before training: run directory, model, frames per split, labels, species,
    E0 and its source, loss sigmas, device and dtype."""
    frames = ", ".join(f"{k} {v}" for k, v in data["n_frames"].items())
    labels = "; ".join(f"{split}: " + ", ".join(f"{k} {n}" for k, n in counts.items())
                       for split, counts in data["labels"].items() if split in ("train", "val"))
    e0 = ", ".join(f"{k} {v:.6g}" for k, v in data["e0_eV"].items())
    units = sigma_units()
    sigma = ", ".join(f"{k} {v} {units[k]}" if not isinstance(v, str) else f"{k} {v}"
                      for k, v in loss_sigma.items() if v is not None)
    lines = [f"mlip: run directory {run_dir}",
             f"  model: {model_name}, {n_parameters:,} parameters, cutoff {cutoff:g} Å; {dtype} on {device}",
             f"  frames: {frames}",
             f"  labelled frames: {labels}",
             f"  species: {', '.join(data['species'])}; E0 (eV): {e0} ({data['e0_source']})",
             f"  loss sigma: {sigma}"]
    if resumed_from:
        lines.append(f"  resuming from {resumed_from}")
    return "\n".join(lines)


def _row(name: str, metrics: Dict[str, float], prefix: str = "") -> str:
    cells = []
    for kind, _, fmt in columns():
        mae, rmse = metrics.get(f"{prefix}{kind}_mae"), metrics.get(f"{prefix}{kind}_rmse")
        cells.append(fmt.format(mae, rmse) if mae is not None else "–")
    return f"| {name} | " + " | ".join(cells) + " |"


def summary_table(results: Dict[str, Any], config_types: Sequence[str]) -> str:
    """Markdown table of every evaluated split, overall and per config_type, with units."""
    cols = columns()
    lines: List[str] = ["| split | " + " | ".join(title for _, title, _ in cols) + " |",
                        "|---|" + "---|" * len(cols)]
    for split in ("val", "cv", "test"):
        metrics = results.get(split)
        if not metrics:
            continue
        label = f"cv (fold {results['split']['fold']})" if split == "cv" and "split" in results else split
        lines.append(_row(f"**{label}**", metrics))
        for ct in config_types:
            if any(k.startswith(ct + "/") for k in metrics) and len(config_types) > 1:
                lines.append(_row(f"{label} · {ct}", metrics, ct + "/"))
    return "\n".join(lines)


def _best_epoch_note(results: Dict[str, Any]) -> str:
    """The sentence naming the epoch that was evaluated and exported, when the run recorded it."""
    best = results.get("best_epoch")
    return f" The model is epoch {best}'s (lowest val/loss)." if best else ""


def summary_markdown(results: Dict[str, Any], config_types: Sequence[str], run_dir: str) -> str:
    """``summary.md``: the table, E0, learned sigmas and the files of the run."""
    data = results["data"]
    parts = [f"# mlip run {run_dir}", "",
             f"{results.get('epochs')} epochs, {results.get('fit_time_s', 0):.0f} s of training, "
             f"{results.get('n_parameters', 0):,} parameters." + _best_epoch_note(results), "",
             summary_table(results, config_types), "",
             "E0 (eV): " + ", ".join(f"{k} {v:.6g}" for k, v in data["e0_eV"].items()) + f" ({data['e0_source']}).",
             "MAE and RMSE of the energy per atom, of each force component and of each stress component."]
    if results.get("learned_sigma"):
        parts.append("Learned sigma: " + ", ".join(f"{k} {v:.4g} {sigma_units().get(k, '')}"
                                                   for k, v in results["learned_sigma"].items()) + ".")
    if results.get("exported_model"):
        parts.append(f"Exported model: `{results['exported_model']}`.")
    return "\n".join(parts) + "\n"
