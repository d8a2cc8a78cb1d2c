"""Oracles: the ASE calculators that label structures, built from the ``oracle`` config group.

    oracle:
      name: xtb
      calculator: {_target_: tblite.ase.TBLite, method: GFN2-xTB, accuracy: 1.0, verbosity: 0}
      package: tblite                        # whose version goes into the provenance
      install: pip install tblite            # said when the package is missing
      multiplicity_parameter: multiplicity   # set to 2 for structures with an odd electron count

Any ASE calculator works: ``oracle.calculator._target_=ase.calculators.vasp.Vasp`` plus its
arguments. Results are in ASE's units: energy eV, forces eV/Å, stress eV/Å³ (positive = tensile).
"""

import hashlib
import json
from typing import Any, Dict, Mapping

from mlip.errors import ConfigError


class OracleError(RuntimeError):
    """An oracle could not label one structure (SCF not converged, calculator failure)."""


def oracle_settings(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The calculator's settings as given (``_target_`` and its arguments)."""
    return dict(cfg.get("calculator") or {})


def oracle_key(cfg: Mapping[str, Any]) -> str:
    """A hash of the oracle's settings: labels are cached under it, so other settings never reuse them."""
    return hashlib.sha256(json.dumps(oracle_settings(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def package_version(cfg: Mapping[str, Any]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    package = cfg.get("package") or str(oracle_settings(cfg).get("_target_", "")).split(".")[0]
    try:
        return f"{package} {version(package)}"
    except (PackageNotFoundError, ValueError):
        return f"{package} (version unknown)"


def build_oracle(cfg: Mapping[str, Any]):
    """The ASE calculator of ``cfg``; a missing optional package is a ``ConfigError`` that says how
    to install it."""
    settings = oracle_settings(cfg)
    if "_target_" not in settings:
        raise ConfigError("oracle.calculator._target_ is not set: name an ASE calculator class, e.g. oracle=emt, "
                          "oracle=xtb, oracle=pyscf or oracle.calculator._target_=ase.calculators.vasp.Vasp")
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(settings)
    except (ImportError, InstantiationException) as err:
        import re

        cause = err.__cause__ or err
        missing = re.search(r"No module named '[^']+'", str(err))
        if isinstance(cause, ImportError) or missing or "Error locating target" in str(err):
            hint = cfg.get("install") or f"install the package that provides {settings['_target_']}"
            why = missing.group(0) if missing else " ".join(str(cause).split())
            raise ConfigError(f"oracle={cfg.get('name', '?')}: {settings['_target_']} cannot be imported "
                              f"({why}): {hint}") from None
        raise ConfigError(f"oracle.calculator: {settings['_target_']} could not be built with "
                          f"{ {k: v for k, v in settings.items() if k != '_target_'} }: "
                          f"{' '.join(str(cause).split())}") from None


def odd_electrons(atoms, charge: int = 0) -> bool:
    return (int(atoms.get_atomic_numbers().sum()) - charge) % 2 == 1


def label(calc, atoms, cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Energy (eV), forces (eV/Å) and, for periodic cells, stress (eV/Å³) of ``atoms`` by ``calc``.
    Sets the multiplicity to 2 for odd-electron structures when the oracle names its parameter.
    Raises ``OracleError`` with the calculator's message when it fails."""
    import numpy as np

    atoms = atoms.copy()
    parameter = cfg.get("multiplicity_parameter")
    if parameter:
        calc.parameters[parameter] = 2 if odd_electrons(atoms) else 1
        calc.reset()
    atoms.calc = calc
    try:
        out: Dict[str, Any] = {"energy": float(atoms.get_potential_energy()),
                               "forces": np.asarray(atoms.get_forces(), dtype=float).tolist()}
        if atoms.pbc.all():
            out["stress"] = np.asarray(atoms.get_stress(voigt=False), dtype=float).tolist()
    except Exception as err:  # any calculator failure is reported per structure, not fatal
        raise OracleError(f"{type(err).__name__}: {str(err).strip()[:300]}") from None
    values = [out["energy"]] + [x for row in out["forces"] for x in row]
    if not np.all(np.isfinite(values)):
        raise OracleError("non-finite energy or forces")
    return out
