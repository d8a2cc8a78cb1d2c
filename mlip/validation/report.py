"""The validation report: every property of the model beside the reference's with the relative
error, as ``validation.json``, ``validation.md`` and plots (E–V, phonons, g(r)), written atomically."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

#: (section, key, label, unit) of the scalar rows of the table
ROWS: List[Tuple[str, str, str, str]] = [
    ("relaxed", "lattice_a", "lattice constant a", "Å"),
    ("eos", "v0", "equilibrium volume", "Å³/atom"),
    ("eos", "bulk_modulus", "bulk modulus (E-V fit)", "GPa"),
    ("elastic", "C11", "C11", "GPa"), ("elastic", "C12", "C12", "GPa"), ("elastic", "C44", "C44", "GPa"),
    ("elastic", "cauchy_pressure", "Cauchy pressure C12 - C44", "GPa"),
    ("vacancy", "vacancy_formation_energy", "vacancy formation energy", "eV"),
    ("md", "first_peak_r", "g(r) first peak", "Å"),
    ("md", "diffusion_A2_per_ps", "self-diffusion D", "Å²/ps"),
    ("md", "failed_at_ps", "MD failed at (None: stable)", "ps"),
    ("md", "nve_drift_meV_per_atom_ps", "NVE drift of the total energy", "meV/atom/ps"),
    ("md", "nve_energy_std_meV_per_atom", "NVE total-energy fluctuation (std)", "meV/atom"),
]


#: quantities zero by symmetry, times of failure and NVE drifts: no meaningful relative error
NO_RELATIVE_ERROR = ("cauchy_pressure", "failed_at_ps", "nve_drift_meV_per_atom_ps", "nve_energy_std_meV_per_atom")


def _relative(model: Any, ref: Any) -> Optional[float]:
    if isinstance(model, (int, float)) and isinstance(ref, (int, float)) and ref:
        return (model - ref) / abs(ref)
    return None


def _dimer_rows(model: Dict[str, Any], ref: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    ref_pairs = (ref.get("dimer") or {}).get("pairs", {})
    for pair, entry in sorted(model.get("dimer", {}).get("pairs", {}).items()):
        r_entry = ref_pairs.get(pair, {})
        out.append({"property": f"{pair} dimer: bond length", "unit": "Å", "model": entry["minimum_r"],
                    "reference": r_entry.get("minimum_r"),
                    "relative_error": _relative(entry["minimum_r"], r_entry.get("minimum_r"))})
        for e, r in entry["closest_approach"].items():
            ref_r = (r_entry.get("closest_approach") or {}).get(e)
            out.append({"property": f"{pair} head-on collision at {e} eV: closest approach (None: pass through)",
                        "unit": "Å", "model": r, "reference": ref_r, "relative_error": _relative(r, ref_r)})
        out.append({"property": f"{pair} dimer: energy drops again below (None: repulsive all the way in)",
                    "unit": "Å", "model": entry["hole_below"], "reference": r_entry.get("hole_below"),
                    "relative_error": None})
    return out


def rows(results: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Scalar rows: property, unit, model, reference (or None), relative error (or None)."""
    model, ref = results["model"], results.get("reference") or {}
    out = []
    for section, key, label, unit in ROWS:
        if section in model and key in model[section]:
            m = model[section][key]
            r = (ref.get(section) or {}).get(key)
            rel = None if key in NO_RELATIVE_ERROR else _relative(m, r)
            out.append({"property": label, "unit": unit, "model": m, "reference": r, "relative_error": rel})
    for name, entry in sorted(model.get("surfaces", {}).items()):
        r = (ref.get("surfaces") or {}).get(name, {}).get("surface_energy_J_per_m2")
        m = entry["surface_energy_J_per_m2"]
        out.append({"property": f"surface energy ({name})", "unit": "J/m²", "model": m, "reference": r,
                    "relative_error": _relative(m, r)})
    out += _dimer_rows(model, ref)
    if "phonons" in model:
        ref_points = (ref.get("phonons") or {}).get("special_points", {})
        for label, freqs in model["phonons"]["special_points"].items():
            if label in ("G", "Γ"):
                continue  # acoustic zeros at Γ
            r = ref_points.get(label)
            m, rr = max(freqs), (max(r) if r else None)
            out.append({"property": f"highest phonon at {label}", "unit": "THz", "model": m, "reference": rr,
                        "relative_error": _relative(m, rr)})
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def markdown(results: Dict[str, Any], title: str) -> str:
    lines = [f"# Validation: {title}", "", f"Structure: {results['structure']}; model: {results['model_path']}; "
             f"reference: {results.get('reference_name') or 'none'}.", "",
             "| property | unit | model | reference | relative error |", "|---|---|---|---|---|"]
    for row in rows(results):
        rel = row["relative_error"]
        lines.append(f"| {row['property']} | {row['unit']} | {_fmt(row['model'])} | {_fmt(row['reference'])} | "
                     f"{'–' if rel is None else f'{100 * rel:+.1f} %'} |")
    return "\n".join(lines) + "\n"


def plots(results: Dict[str, Any], folder: Path) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlip.fileio import save_figure

    def finish(fig, name: str) -> str:
        """Lay out, write atomically into ``folder`` and close ``fig``; its file name."""
        fig.tight_layout()
        save_figure(fig, folder / name)
        plt.close(fig)
        return name

    written = []
    model, ref = results["model"], results.get("reference") or {}
    if "eos" in model:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for name, res, style in (("model", model, "o-"), ("reference", ref, "s--")):
            if "eos" in res:
                ax.plot(res["eos"]["volumes"], res["eos"]["energies"], style, label=name)
        ax.set_xlabel("volume (Å³/atom)")
        ax.set_ylabel("energy (eV/atom)")
        ax.legend()
        written.append(finish(fig, "eos.png"))
    if "phonons" in model:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for name, res, color in (("model", model, "C0"), ("reference", ref, "C1")):
            if "phonons" in res:
                ph = res["phonons"]
                for k, branch in enumerate(zip(*ph["frequencies"])):
                    ax.plot(ph["x"], branch, color=color, lw=1, label=name if k == 0 else None)
        ph = model["phonons"]
        ax.set_xticks(ph["special_x"], ["Γ" if lab == "G" else lab for lab in ph["labels"]])
        for x in ph["special_x"]:
            ax.axvline(x, color="k", lw=0.5)
        ax.set_ylabel("frequency (THz)")
        ax.legend()
        written.append(finish(fig, "phonons.png"))
    if "dimer" in model:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for name, res, style in (("model", model, "-"), ("reference", ref, "--")):
            for k, (pair, entry) in enumerate(sorted((res.get("dimer") or {}).get("pairs", {}).items())):
                ax.plot(res["dimer"]["r"], entry["energy"], style, color=f"C{k}", label=f"{pair} {name}")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("V(r) = E(r) - E(r_max) (eV)")
        ax.set_title("isolated dimers")
        ax.legend(fontsize=7)
        written.append(finish(fig, "dimers.png"))
    if "md" in model:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for name, res in (("model", model), ("reference", ref)):
            if "md" in res:
                ax.plot(res["md"]["r"], res["md"]["g"], label=name)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.set_title(f"NVT {model['md']['temperature']:g} K")
        ax.legend()
        written.append(finish(fig, "rdf.png"))
    return written
