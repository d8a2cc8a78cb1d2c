"""LAMMPS-native export of classical models (no plugin, no libtorch: any LAMMPS build runs them).

- pair models (``lj``, ``morse``, ``spline_pair``) -> a ``pair_style table spline N`` file with one
  section per species pair (keyword ``Si_Ge``), N points evenly spaced in r^2 from ``r_inner``
  to the cutoff (``N n RSQ r_inner r_c FPRIME ...``: with ``pair_style table spline N`` LAMMPS
  then uses the file's values directly and splines between them);
- ``eam`` -> an ``eam/alloy`` setfl file: F_a(rho) on Nrho points, f_a(r) and r phi_ab(r) on Nr
  points from r = 0 to the cutoff.

Tabulated values are the model's own functions, evaluated in float64, with forces by autograd.

E0: LAMMPS energies do not include the per-element reference energies E0 of the mlip model; the
mlip energy equals the LAMMPS energy plus sum_i E0[Z_i] (the files' headers and
``LammpsPotential.e0`` list them). Below ``r_inner`` a pair table does not reach: LAMMPS stops
with "Pair distance < table inner cutoff".

    files = write_lammps_files(model, "lammps/")    # a ForcesAndStress or a registry model
    print("\\n".join(files.commands()))             # pair_style / pair_coeff lines to paste
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from mlip.errors import ConfigError
from mlip.fileio import write_text
from mlip.models.contract import energy_model_of, lammps_style

#: numbers per line in setfl files
PER_LINE = 5


@dataclass
class LammpsPotential:
    """What to put in a LAMMPS input to use the written files. LAMMPS atom type k + 1 is
    ``elements[k]`` (the model's species order)."""

    pair_style: str
    pair_coeff: List[str]
    files: List[str]
    elements: List[str]
    e0: Dict[str, float] = field(default_factory=dict)

    def commands(self) -> List[str]:
        return ["units metal", f"pair_style {self.pair_style}"] + [f"pair_coeff {c}" for c in self.pair_coeff]


def _energy_model(model: torch.nn.Module) -> Any:
    """A float64 CPU copy of the registry model. Typed Any: the LAMMPS hooks it is read through
    (``pair_table``, ``pair_function``, ...) are duck-typed by the contract (mlip/models/contract.py)."""
    return copy.deepcopy(energy_model_of(model)).double().cpu().eval()


def _elements(em) -> List[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in em.species]


def _header(em, what: str) -> List[str]:
    e0 = ", ".join(f"{el} {float(v):.10f}" for el, v in zip(_elements(em), em.energies.e0.tolist()))
    return [f"# {what} written by mlip from a {type(em).__name__} model (metal units: eV, Angstrom)",
            f"# LAMMPS energies exclude E0 (eV/atom): {e0}; mlip energy = LAMMPS energy + sum_i E0[Z_i]"]


def _values_and_derivatives(fn, x: np.ndarray, order: int = 1):
    """fn(x) and its first ``order`` derivatives by autograd, float64 numpy arrays."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(xt)
    out = [y.detach().numpy()]
    g = y
    for _ in range(order):
        (g,) = torch.autograd.grad(g.sum(), xt, create_graph=True)
        out.append(g.detach().numpy())
    return out


def rsq_grid(r_inner: float, r_outer: float, n: int) -> np.ndarray:
    """Distances evenly spaced in r^2, as LAMMPS recomputes them for the RSQ keyword."""
    k = np.arange(n, dtype=np.float64)
    return np.sqrt(r_inner * r_inner + (r_outer * r_outer - r_inner * r_inner) * k / (n - 1))


def write_pair_table(model: torch.nn.Module, path: str, n_points: int = 5000,
                     r_inner: float = 0.5) -> LammpsPotential:
    """``pair_style table spline n_points`` file for a pair model. ``r_inner`` (Å): first
    tabulated distance."""
    em = _energy_model(model)
    if lammps_style(em) != "table":
        raise ConfigError(f"{type(em).__name__} is not a pair potential; "
                          "pair_style table needs lj, morse or spline_pair")
    if not 0.0 < r_inner < em.cutoff:
        raise ConfigError(f"r_inner={r_inner} must lie between 0 and the cutoff {em.cutoff}")
    elements = _elements(em)
    r = rsq_grid(r_inner, em.cutoff, n_points)
    lines = _header(em, "pair_style table spline " + str(n_points))
    coeffs = []
    pairs = [(a, b) for a in range(len(elements)) for b in range(a, len(elements))]
    for a, b in pairs:
        p = int(em.pair_table[a * len(elements) + b])
        keyword = f"{elements[a]}_{elements[b]}"
        energy, de, d2e = _values_and_derivatives(lambda x, p=p: em.pair_function(p, x), r, order=2)
        force = -de
        lines += ["", keyword,
                  f"N {n_points} RSQ {r_inner:.16g} {em.cutoff:.16g} FPRIME {-d2e[0]:.16e} {-d2e[-1]:.16e}", ""]
        lines += [f"{k + 1} {r[k]:.16e} {energy[k]:.16e} {force[k]:.16e}" for k in range(n_points)]
        coeffs.append(f"{a + 1} {b + 1} {path} {keyword}")
    write_text(path, "\n".join(lines) + "\n")
    return LammpsPotential(f"table spline {n_points}", coeffs, [str(path)], elements,
                           dict(zip(elements, em.energies.e0.tolist())))


def _block(values: np.ndarray) -> List[str]:
    return [" ".join(f"{v:.16e}" for v in values[k:k + PER_LINE]) for k in range(0, len(values), PER_LINE)]


def write_eam_alloy(model: torch.nn.Module, path: str, n_r: int = 10000, n_rho: int = 10000,
                    rho_max: Optional[float] = None) -> LammpsPotential:
    """``eam/alloy`` setfl file for an EAM model. The rho grid runs to ``rho_max`` (default
    twice the model's own grid end; F is linear beyond the model's grid, as in LAMMPS)."""
    from ase.data import atomic_masses

    em = _energy_model(model)
    if lammps_style(em) != "eam/alloy":
        raise ConfigError(f"{type(em).__name__} is not an EAM model; eam/alloy needs model=eam")
    elements = _elements(em)
    rho_hi = float(rho_max) if rho_max is not None else 2.0 * em.rho_max()
    rho = np.linspace(0.0, rho_hi, n_rho)
    r = np.linspace(0.0, em.cutoff, n_r)
    drho, dr = rho[1] - rho[0], r[1] - r[0]
    lines = _header(em, "eam/alloy setfl")[:2] + ["# F(rho), rho(r) per element; r*phi(r) per pair"]
    lines.append(f"{len(elements)} " + " ".join(elements))
    lines.append(f"{n_rho} {drho:.16e} {n_r} {dr:.16e} {em.cutoff:.16e}")
    with torch.no_grad():
        rt, rhot = torch.tensor(r, dtype=torch.float64), torch.tensor(rho, dtype=torch.float64)
        for a, z in enumerate(em.species):
            lines.append(f"{z} {atomic_masses[z]:.6f} 0.0 none")
            lines += _block(em.embedding_function(a, rhot).numpy())
            lines += _block(em.density_function(a, rt).numpy())
        for i in range(len(elements)):
            for j in range(i + 1):
                p = int(em.pair_table[i * len(elements) + j])
                lines += _block((rt * em.pair_function(p, rt)).numpy())
    write_text(path, "\n".join(lines) + "\n")
    return LammpsPotential("eam/alloy", [f"* * {path} " + " ".join(elements)], [str(path)], elements,
                           dict(zip(elements, em.energies.e0.tolist())))


def write_lammps_files(model: torch.nn.Module, directory: str, **options) -> LammpsPotential:
    """Write the LAMMPS-native files of a classical model into ``directory`` (``mlip.table`` for
    pair models, ``mlip.eam.alloy`` for EAM) and return the pair_style / pair_coeff lines.
    ``options`` go to ``write_pair_table`` or ``write_eam_alloy``. Other models raise
    ``ConfigError`` (use the TorchScript export). The form comes from the model's
    ``lammps_style()`` hook (``mlip.models.contract``)."""
    em = energy_model_of(model)
    style = lammps_style(em)
    tail = getattr(em, "energies", None)
    for key, term in (("model.zbl", getattr(tail, "zbl", None)), ("model.d3", getattr(tail, "d3", None))):
        if term is not None:  # the table / eam files hold the model's own functions only
            raise ConfigError(f"this model has {key}, which LAMMPS-native files cannot hold: export model.pt "
                              "(mlip export --format torchscript) and run it as pair_style mlip")
    if style in WRITERS:
        writer, filename = WRITERS[style]
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        return writer(model, str(out / filename), **options)
    raise ConfigError(f"{type(em).__name__} has no LAMMPS-native form (only lj, morse, spline_pair and eam do); "
                      "use the TorchScript export model.pt")


#: ``lammps_style()`` of a model -> (writer, file name)
WRITERS: Dict[str, Tuple[Callable[..., LammpsPotential], str]] = {
    "table": (write_pair_table, "mlip.table"), "eam/alloy": (write_eam_alloy, "mlip.eam.alloy")}
