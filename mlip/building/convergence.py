"""Convergence of an oracle's settings (``mlip dataset converge``): energies and forces of a few
representative structures against each setting, errors relative to the tightest value, plots, and
the cheapest value whose errors are below a fraction of the loss sigmas.

When the calculator exposes its density matrix (``PySCFCalculator.density_matrix``) and the
setting keeps the basis (SCF tolerance, grid), the density error ||D - D_ref|| is recorded too, and
the slopes of log(energy error) and log(force error) against log(density error) are fitted: the
energy is variational, so its error is quadratic in the density error (slope 2), while the forces
are not, so their error is linear (slope 1). Forces therefore need a tighter SCF tolerance than
energies for the same relative accuracy.
"""

import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from mlip.building.oracles import build_oracle, label
from mlip.errors import ConfigError, DataError
from mlip.fileio import save_figure, write_json


def _evaluate(oracle_cfg: Dict[str, Any], structures: Sequence, name: str, value: Any) -> Dict[str, Any]:
    cfg = {**oracle_cfg, "calculator": {**oracle_cfg["calculator"], name: value}}
    calc = build_oracle(cfg)
    t0 = time.perf_counter()
    energies, forces, densities = [], [], []
    for atoms in structures:
        out = label(calc, atoms, cfg)
        energies.append(out["energy"] / len(atoms))
        forces.append(np.asarray(out["forces"]))
        dm = getattr(calc, "density_matrix", None)
        densities.append(None if dm is None else np.array(dm))
    return {"value": value, "seconds": time.perf_counter() - t0, "energies": energies, "forces": forces,
            "densities": densities}


def _slope(x: List[float], y: List[float]) -> Optional[float]:
    ok = [(a, b) for a, b in zip(x, y) if a > 0 and b > 0]
    if len(ok) < 2:
        return None
    lx, ly = np.log10([a for a, _ in ok]), np.log10([b for _, b in ok])
    return float(np.polyfit(lx, ly, 1)[0])


def converge(oracle_cfg: Dict[str, Any], structures_file: str, params: Mapping[str, List[Any]],
             sigma_energy: float = 0.02, sigma_forces: float = 0.1, fraction: float = 0.1,
             output: str = "convergence") -> Dict[str, Any]:
    """For each setting in ``params`` (values loosest to tightest; the last is the reference), the
    energy error (mean |ΔE|/N, eV/atom) and force error (RMS of ΔF, eV/Å) of the structures in
    ``structures_file``, the time, and the recommended value. Writes ``convergence.json`` and
    ``convergence_<setting>.png`` into ``output``."""
    import ase.io
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        structures = list(ase.io.iread(structures_file, index=":"))
    except Exception as err:  # ASE raises many types
        raise DataError(f"cannot read the structures with ASE ({type(err).__name__}: {err})", structures_file) \
            from None
    if not structures:
        raise DataError("no structures", structures_file)
    result: Dict[str, Any] = {"oracle": oracle_cfg.get("name"), "structures": structures_file,
                              "targets": {"energy_eV_per_atom": fraction * sigma_energy,
                                          "forces_eV_per_A": fraction * sigma_forces},
                              "settings": {}, "recommended": {}}
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, values in params.items():
        if len(values) < 2:
            raise ConfigError(f"--param {name}: give at least two values, loosest to tightest (the last is the "
                              "reference)")
        runs = [_evaluate(oracle_cfg, structures, name, v) for v in values]
        ref = runs[-1]
        rows = []
        for run in runs:
            e_err = float(np.mean(np.abs(np.array(run["energies"]) - np.array(ref["energies"]))))
            f_err = float(np.sqrt(np.mean(np.concatenate([(a - b).ravel() ** 2 for a, b in
                                                          zip(run["forces"], ref["forces"])]))))
            d_err = None
            if all(d is not None and r is not None and np.shape(d) == np.shape(r)
                   for d, r in zip(run["densities"], ref["densities"])):
                d_err = float(np.mean([np.linalg.norm(d - r) for d, r in zip(run["densities"], ref["densities"])]))
            rows.append({"value": run["value"], "energy_error": e_err, "force_error": f_err, "density_error": d_err,
                         "seconds": run["seconds"]})
        entry: Dict[str, Any] = {"rows": rows}
        tested = rows[:-1]
        d = [r["density_error"] for r in tested]
        if all(x is not None for x in d):
            entry["energy_vs_density_slope"] = _slope(d, [r["energy_error"] for r in tested])
            entry["forces_vs_density_slope"] = _slope(d, [r["force_error"] for r in tested])
        passing = [r for r in tested if r["energy_error"] <= fraction * sigma_energy
                   and r["force_error"] <= fraction * sigma_forces]
        chosen = passing[0] if passing else rows[-1]
        result["recommended"][name] = {**chosen, "target_energy": fraction * sigma_energy,
                                       "target_forces": fraction * sigma_forces,
                                       "note": "" if passing else "no looser value meets the targets: the reference"}
        result["settings"][name] = entry

        fig, ax = plt.subplots(figsize=(5.5, 4))
        x = np.arange(len(tested))
        ax.semilogy(x, [max(r["energy_error"], 1e-16) for r in tested], "o-", label="energy (eV/atom)")
        ax.semilogy(x, [max(r["force_error"], 1e-16) for r in tested], "s-", label="forces (eV/Å)")
        ax.axhline(fraction * sigma_energy, color="C0", ls="--", lw=0.8)
        ax.axhline(fraction * sigma_forces, color="C1", ls="--", lw=0.8)
        ax.set_xticks(x, [str(r["value"]) for r in tested])
        ax.set_xlabel(f"{name} (reference {values[-1]})")
        ax.set_ylabel("error against the reference")
        ax.set_title(f"{oracle_cfg.get('name')}: {name} (dashed: {fraction:g} x loss sigma)")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, out_dir / f"convergence_{name}.png")
        plt.close(fig)
    write_json(out_dir / "convergence.json", result)
    return result
