"""NVE molecular dynamics through the ASE calculator conserves total energy (velocity Verlet,
1 fs, 216-atom Si at 1000 K), and the check notices non-conservative forces."""

import numpy as np
import pytest
import torch
from ase.calculators.calculator import Calculator, all_changes

from mlip.analysis.nve import nve_drift, silicon_cell
from mlip.calculator import MLIPCalculator
from mlip.export import export_torchscript
from mlip.testing.systems import make_model

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")


@pytest.fixture(scope="module")
def si_model_file(tmp_path_factory):
    """A smooth float64 Si model with forces of a few eV/Å at 1000 K (like DFT Si), exported as
    MD engines use it (TorchScript)."""
    model = make_model("invariant", [14], cutoff=4.0)
    with torch.no_grad():
        model.energy_model.energies.scale.mul_(5.0)
    path = tmp_path_factory.mktemp("nve") / "si.pt"
    export_torchscript(model, str(path))
    return str(path)


class ScaledForces(Calculator):
    """Forces multiplied by a constant: no longer minus the gradient of the reported energy."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner, factor):
        super().__init__()
        self.inner, self.factor = inner, factor

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.inner.calculate(atoms, ["energy", "forces"], system_changes)
        self.results = {"energy": self.inner.results["energy"], "forces": self.factor * self.inner.results["forces"]}


def test_nve_conserves_total_energy(si_model_file):
    atoms = silicon_cell(3)
    assert len(atoms) == 216
    result = nve_drift(atoms, MLIPCalculator(si_model_file), steps=250, timestep_fs=1.0, temperature_K=1000.0)
    assert result["max_force"] > 1.0  # a real test: atoms feel forces of DFT size
    assert result["mean_temperature_K"] > 500.0
    assert abs(result["drift_meV_per_atom"]) < 0.1, result["drift_meV_per_atom"]
    assert result["fluctuation_meV_per_atom"] < 0.2, result["fluctuation_meV_per_atom"]
    assert np.all(np.isfinite(result["total_energy"]))


def test_nve_check_detects_forces_that_are_not_the_energy_gradient(si_model_file):
    atoms = silicon_cell(3)
    result = nve_drift(atoms, ScaledForces(MLIPCalculator(si_model_file), 1.1), steps=100)
    assert abs(result["drift_meV_per_atom"]) > 1.0, result["drift_meV_per_atom"]
