"""TorchScript export equals the Python model, loads without mlip, and the ASE calculator agrees."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: F401

from mlip.export import export_torchscript, load_exported
from mlip.testing.isolation import WITHOUT_MLIP
from mlip.testing.systems import ethanol, make_model, predict, sicgeo_cell, triclinic_si


@pytest.fixture(scope="module")
def model():
    return make_model("invariant", [1, 6, 8, 14], cutoff=4.0, calibrate_on=[ethanol(), sicgeo_cell()])


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.pt"
    export_torchscript(model, str(path))
    return path


def _inputs(atoms):
    return (torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
            torch.tensor(atoms.pbc))


@pytest.mark.parametrize("make", [triclinic_si, ethanol, sicgeo_cell])
def test_exported_equals_python_model(model, exported, make):
    atoms = make()
    ref = predict(model, [atoms])
    scripted, meta = load_exported(str(exported))
    out = scripted(*_inputs(atoms))
    assert abs(float(out["energy"] - ref["total_energy"][0])) < 1e-6
    torch.testing.assert_close(out["forces"], ref["pred_forces"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["stress"], ref["pred_stress"][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["atomic_energies"].sum(), out["energy"])
    assert meta["atomic_numbers"] == [1, 6, 8, 14] and meta["cutoff"] == 4.0
    assert meta["units"]["energy"] == "eV" and meta["dtype"] == "float64"


def test_exported_rejects_unknown_element(exported):
    scripted, _ = load_exported(str(exported))
    atoms = triclinic_si()
    atoms.numbers[0] = 32
    with pytest.raises(Exception, match="atomic number 32 is not among the model's species"):
        scripted(*_inputs(atoms))


def test_exported_model_runs_where_mlip_cannot_be_imported(exported, model):
    atoms = sicgeo_cell()
    ref = float(predict(model, [atoms])["total_energy"][0])
    script = WITHOUT_MLIP + textwrap.dedent(f"""
        extra = {{"metadata.json": ""}}
        m = torch.jit.load({str(exported)!r}, _extra_files=extra)
        pos = torch.tensor({atoms.positions.tolist()}, dtype=torch.float64)
        out = m(pos, torch.tensor({atoms.numbers.tolist()}), torch.tensor({atoms.cell[:].tolist()},
                dtype=torch.float64), torch.tensor([True, True, True]))
        print(json.dumps({{"energy": float(out["energy"]), "cutoff": m.cutoff,
                          "meta": json.loads(extra["metadata.json"])}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(got["energy"] - ref) < 1e-6
    assert got["cutoff"] == 4.0 and got["meta"]["mlip_version"]


def test_calculator_matches_model_and_stress_convention(exported, model):
    from ase.calculators.calculator import Calculator  # noqa: F401

    from mlip.calculator import MLIPCalculator

    atoms = sicgeo_cell()
    atoms.calc = MLIPCalculator(str(exported))
    ref = predict(model, [atoms])
    assert atoms.get_potential_energy() == pytest.approx(float(ref["total_energy"][0]), abs=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), ref["pred_forces"].numpy(), atol=1e-6)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy())
    # ASE's own finite-difference stress agrees in sign and value (Voigt xx yy zz yz xz xy)
    numeric = atoms.calc.calculate_numerical_stress(atoms, d=1e-5, voigt=True)
    np.testing.assert_allclose(atoms.get_stress(), numeric, atol=1e-6)
