"""``PySCFCalculator``: DFT on molecules with PySCF as an ASE calculator (``oracle=pyscf``).

Restricted Kohn-Sham for even electron counts, unrestricted for odd (spin 1/2), from PySCF's
``gto``/``dft`` modules; energy in eV and forces in eV/Å (PySCF works in Hartree and Bohr), with
the integration grid's response, so forces are the exact derivative of the energy. An SCF
that does not converge raises, so the labeller reports and skips the structure instead of storing
an unconverged energy. Molecules only (pbc must be False): periodic PySCF needs k-points and its
ASE stress is known to be wrong (field notes).
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree


class PySCFCalculator(Calculator):
    implemented_properties = ["energy", "forces"]
    default_parameters: Dict[str, Any] = {"xc": "pbe", "basis": "def2-svp", "grid_level": 3, "conv_tol": 1e-9,
                                          "conv_tol_grad": None, "max_cycle": 100, "charge": 0, "verbose": 0}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.density_matrix: Optional[np.ndarray] = None  # of the last calculation (for convergence studies)
        self.scf_cycles: Optional[int] = None

    def calculate(self, atoms=None, properties: Sequence[str] = ("energy",), system_changes=all_changes) -> None:
        try:
            from pyscf import dft, gto
        except ImportError:
            raise ImportError("oracle=pyscf needs PySCF: pip install pyscf") from None
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if atoms.pbc.any():
            raise ValueError("PySCFCalculator handles molecules only (pbc=False)")
        p = self.parameters
        mol = gto.M(atom=[(s, tuple(x)) for s, x in zip(atoms.get_chemical_symbols(), atoms.positions)],
                    unit="Angstrom", basis=p["basis"], charge=int(p["charge"]),
                    spin=int((atoms.get_atomic_numbers().sum() - int(p["charge"])) % 2), verbose=int(p["verbose"]))
        mf = (dft.UKS(mol) if mol.spin else dft.RKS(mol))
        mf.xc = p["xc"]
        mf.grids.level = int(p["grid_level"])
        mf.conv_tol = float(p["conv_tol"])
        if p["conv_tol_grad"] is not None:
            mf.conv_tol_grad = float(p["conv_tol_grad"])
        mf.max_cycle = int(p["max_cycle"])
        cycles = []
        mf.callback = lambda env: cycles.append(env.get("cycle"))
        energy = mf.kernel()
        if not mf.converged:
            raise RuntimeError(f"SCF did not converge in {mf.max_cycle} cycles (conv_tol={mf.conv_tol:g})")
        self.density_matrix = np.asarray(mf.make_rdm1())
        self.scf_cycles = len(cycles)
        self.results["energy"] = float(energy) * Hartree
        if "forces" in properties:
            grad = mf.nuc_grad_method()
            grad.grid_response = True  # forces that are the derivative of this energy, grid included
            self.results["forces"] = -np.asarray(grad.kernel()) * Hartree / Bohr
