"""Inference guards: overlapping atoms raise an error naming them (not NaN) in the ASE calculator,
the TorchScript file and the AOTInductor loader; inputs in another float dtype are converted."""

import math

import numpy as np
import pytest
import torch

from mlip.calculator import MLIPCalculator
from mlip.export import export_torchscript, load_exported
from mlip.export.aoti import AOTIPotential
from mlip.export.torchscript import ExportedPotential
from mlip.nn.neighbors import vesin_neighbor_list
from mlip.testing.systems import SMALL_MODEL_CONFIGS, ethanol, make_model, sicgeo_cell, triclinic_si

SPECIES = [1, 6, 8, 14]
#: what the TorchScript file raises (torch.jit.Error carries the RuntimeError's message)
SCRIPT_ERROR = (RuntimeError, torch.jit.Error)
OVERLAP = r"atoms (0 and 1|1 and 0) are 0.0000 Å apart \(closer than 0.1 Å\): overlapping atoms"


@pytest.fixture(scope="module")
def model32():
    """An untrained float32 model (random but O(1) outputs)."""
    return make_model("invariant", SPECIES, cutoff=4.0, calibrate_on=[ethanol(), sicgeo_cell()]).float()


@pytest.fixture(scope="module")
def files(model32, tmp_path_factory):
    """``model.pt`` and a ``.ckpt`` (written without training) of float32 models."""
    from mlip.training.module import PotentialModule

    folder = tmp_path_factory.mktemp("guards")
    export_torchscript(model32, str(folder / "model.pt"))
    model_config = dict(name="invariant", species=SPECIES, cutoff=4.0, e0=[-1.0] * 4, scale=0.5, shift=0.0,
                        avg_num_neighbors=10.0, **SMALL_MODEL_CONFIGS["invariant"])
    module = PotentialModule(model_config, {"sigma": {"forces": 0.05}}, {"lr": 1e-3})
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, folder / "model.ckpt")
    return {"pt": str(folder / "model.pt"), "ckpt": str(folder / "model.ckpt")}


@pytest.fixture(scope="module")
def scripted(files):
    return load_exported(files["pt"])[0]


@pytest.fixture(scope="module")
def calculators(files):
    return {kind: MLIPCalculator(path) for kind, path in files.items()}


def _overlapping(image: bool = False):
    """Si cell with atom 1 on atom 0, or on a periodic image of atom 0."""
    atoms = triclinic_si()
    atoms.positions[1] = atoms.positions[0] + (atoms.cell[0] if image else 0.0)
    return atoms


def _inputs(atoms, dtype=torch.float64):
    return (torch.tensor(atoms.positions, dtype=dtype), torch.tensor(atoms.numbers),
            torch.tensor(atoms.cell[:], dtype=dtype), torch.tensor(atoms.pbc))


def _with_list(atoms, dtype=torch.float64):
    edge_index, shifts, _ = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, 4.0)
    return _inputs(atoms, dtype) + (torch.from_numpy(edge_index), torch.tensor(shifts, dtype=dtype))


@pytest.mark.parametrize("kind", ["pt", "ckpt"])
@pytest.mark.parametrize("image", [False, True], ids=["same-position", "periodic-image"])
def test_calculator_refuses_overlapping_atoms(calculators, kind, image):
    atoms = _overlapping(image)
    atoms.calc = calculators[kind]
    with pytest.raises(ValueError, match=OVERLAP):
        atoms.get_potential_energy()


def test_exported_file_refuses_overlapping_atoms(files, scripted):
    assert load_exported(files["pt"])[1]["min_distance"] == scripted.min_distance == 0.1
    atoms = _overlapping()
    with pytest.raises(SCRIPT_ERROR, match=OVERLAP):
        scripted(*_inputs(atoms))
    with pytest.raises(SCRIPT_ERROR, match=OVERLAP):
        scripted.compute(*_with_list(_overlapping(image=True)))
    pos, numbers = torch.tensor(atoms.positions), torch.tensor(atoms.numbers)
    with pytest.raises(SCRIPT_ERROR, match=OVERLAP):  # LAMMPS's entry point (no cell, ghosts as atoms)
        scripted.compute_local(pos, numbers, torch.tensor([[0, 1], [1, 0]]), 8)
    scripted.min_distance = 0.0  # off: what the check prevents
    try:
        assert math.isnan(float(scripted(*_inputs(atoms))["energy"]))
    finally:
        scripted.min_distance = 0.1


def test_threshold_is_the_calculators_and_the_models(files):
    atoms = triclinic_si()  # nearest neighbours about 2.35 Å
    atoms.calc = MLIPCalculator(files["pt"], min_distance=3.0)
    with pytest.raises(ValueError, match=r"Å apart \(closer than 3 Å\)"):
        atoms.get_potential_energy()
    assert atoms.calc.potential.min_distance == 3.0


@pytest.mark.parametrize("make", [triclinic_si, ethanol, sicgeo_cell])
def test_guard_is_silent_on_normal_structures(scripted, calculators, make):
    atoms = make()
    out = scripted(*_inputs(atoms))
    assert torch.isfinite(out["energy"]) and torch.isfinite(out["forces"]).all()
    for calc in calculators.values():
        atoms.calc = calc
        assert math.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()
    single = ethanol()[:1]  # one atom: no edges, nothing to check
    assert math.isfinite(float(scripted(*_inputs(single))["energy"]))


def test_float32_file_accepts_float64_inputs(scripted):
    atoms = sicgeo_cell()
    ref = scripted(*_inputs(atoms, torch.float32))
    for out in (scripted(*_inputs(atoms, torch.float64)), scripted.compute(*_with_list(atoms, torch.float64))):
        assert out["energy"].dtype == torch.float32  # the model's dtype
        torch.testing.assert_close(out["energy"], ref["energy"])
        torch.testing.assert_close(out["forces"], ref["forces"])
        torch.testing.assert_close(out["stress"], ref["stress"])


def test_float64_model_accepts_float32_inputs():
    model64 = make_model("invariant", SPECIES, cutoff=4.0, calibrate_on=[ethanol(), sicgeo_cell()])
    potential = ExportedPotential(model64, SPECIES, 4.0)
    atoms = sicgeo_cell()
    ref = potential(*_inputs(atoms, torch.float64))
    out = potential(*_inputs(atoms, torch.float32))
    assert out["energy"].dtype == torch.float64
    assert float(out["energy"]) == pytest.approx(float(ref["energy"]), rel=1e-5)


class _FakeCompiled:
    """Stands in for a compiled package: records the dtype of its inputs."""

    def __call__(self, positions, *args):
        self.dtype = positions.dtype
        self.edges = args[3].shape[1]  # edge_index [2, E]
        return {"energy": torch.zeros((), dtype=positions.dtype)}


def test_aoti_loader_checks_overlaps_and_converts_dtype():
    potential = AOTIPotential.__new__(AOTIPotential)  # the Python side only (compiling takes minutes)
    potential.compiled, potential.device, potential.dtype = _FakeCompiled(), torch.device("cpu"), torch.float32
    potential.atomic_numbers, potential.min_distance, potential.path = [14], 0.1, "model.pt2"
    potential.paired = potential.local = None
    potential.compute(*_with_list(triclinic_si(), torch.float64))
    assert potential.compiled.dtype == torch.float32
    with pytest.raises(RuntimeError, match=OVERLAP):
        potential.compute(*_with_list(_overlapping(image=True), torch.float64))
    # a package with the graph "paired": a full list goes to it, each pair once; another list to "model"
    potential.paired, potential.compiled = _FakeCompiled(), _FakeCompiled()
    inputs = _with_list(triclinic_si(), torch.float64)
    potential.compute(*inputs)
    assert potential.paired.edges * 2 == inputs[4].shape[1] and not hasattr(potential.compiled, "edges")
    potential.compute(*inputs[:4], inputs[4][:, :-1], inputs[5][:-1])  # one edge lacks its reverse
    assert potential.compiled.edges == inputs[4].shape[1] - 1


def test_calculator_errors_are_one_line(tmp_path):
    """Unknown element through model.pt, a file that is not a model, an empty structure: ValueError
    with the useful line, not a TorchScript traceback."""
    import ase
    import torch

    from mlip.calculator import MLIPCalculator
    from mlip.export import export_torchscript
    from mlip.testing.systems import make_model

    path = tmp_path / "model.pt"
    export_torchscript(make_model("lj", species=[14]), str(path))
    calc = MLIPCalculator(str(path))
    atoms = ase.Atoms("SiAg", positions=[[0, 0, 0], [0, 0, 2.4]])
    atoms.calc = calc
    with pytest.raises(ValueError) as err:
        atoms.get_potential_energy()
    assert "atomic number 47 is not among the model's species" in str(err.value)
    assert "Traceback" not in str(err.value)
    empty = ase.Atoms()
    empty.calc = calc
    with pytest.raises(ValueError, match="no atoms"):
        empty.get_potential_energy()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="bad.pt: cannot load it as an mlip model.pt"):
        MLIPCalculator(str(bad))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            MLIPCalculator(str(path), device="cuda")
