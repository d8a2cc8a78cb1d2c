"""D3(BJ) dispersion (``model.d3=<functional>``): per-atom energies equal tad-dftd3 on molecules and
s-dftd3 on periodic cells (two-body, no ATM), forces and stress equal finite differences, a batch
equals its frames, ``model.pt`` carries the term (also when it was off in training,
``model.d3_in_labels=false``), engines with ghost atoms get it left out, and bad settings name
``model.d3``."""
import importlib.util

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from mlip import keys
from mlip.errors import ConfigError
from mlip.models.registry import check_model_settings
from mlip.testing.systems import batch_of, make_model, predict

pytest.importorskip("tad_dftd3", reason="model.d3 needs tad-dftd3 (pip install 'mlip[dispersion]')")
from mlip.nn.dispersion import BOHR, HARTREE, D3Dispersion  # noqa: E402


def _graph(frames, species):
    """The batch dict D3Dispersion reads (positions, species, cell, pbc, n_atoms), float64."""
    return {keys.POSITIONS: torch.tensor(np.concatenate([a.positions for a in frames])),
            keys.SPECIES: torch.tensor([species.index(int(z)) for a in frames for z in a.numbers]),
            keys.CELL: torch.tensor(np.array([a.cell[:] for a in frames])),
            keys.PBC: torch.tensor(np.array([a.pbc for a in frames])),
            keys.N_ATOMS: torch.tensor([len(a) for a in frames])}


def _dimer_of_molecules():
    """Ethanol and a water molecule 3 Å away: intra- and intermolecular pairs, three elements."""
    atoms = molecule("CH3CH2OH")
    water = molecule("H2O")
    water.positions += [3.0, 1.0, 0.5]
    return atoms + water


@pytest.mark.parametrize("functional", ["pbe", "b3lyp", "r2scan"])
def test_per_atom_energies_equal_tad_dftd3(functional):
    import tad_dftd3

    atoms = _dimer_of_molecules()
    ours = D3Dispersion([1, 6, 8], functional).double()(_graph([atoms], [1, 6, 8]))
    param = tad_dftd3.param.get_functional_params(functional, damping="bj", dtype=torch.float64)
    param["s9"] = torch.tensor(0.0, dtype=torch.float64)  # two-body only, as LAMMPS' dispersion/d3
    ref = tad_dftd3.dftd3(torch.tensor(atoms.numbers), torch.tensor(atoms.positions) / BOHR, param) * HARTREE
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10, atol=1e-14)
    assert float(ours.sum()) < -0.02  # eV: a real dispersion energy, not zeros compared with zeros


def test_batch_equals_single_frames():
    a = _dimer_of_molecules()
    b = bulk("Si", "diamond", 5.43, cubic=True)
    b.rattle(0.05, seed=0)
    species = [1, 6, 8, 14]
    term = D3Dispersion(species, "pbe").double()
    both = term(_graph([a, b], species))
    np.testing.assert_allclose(both[:len(a)].numpy(), term(_graph([a], species)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(both[len(a):].numpy(), term(_graph([b], species)).numpy(), rtol=1e-12)
    # TorchScript (model.pt) builds its own pair list: the same energies
    np.testing.assert_allclose(torch.jit.script(term)(_graph([a, b], species)).numpy(), both.numpy(), rtol=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("dftd3") is None, reason="s-dftd3 (pip install dftd3) not installed")
def test_periodic_energy_and_stress_equal_s_dftd3():
    from dftd3.ase import DFTD3

    atoms = bulk("Cu", "fcc", 3.6).repeat((2, 1, 1))
    atoms.set_cell(atoms.cell[:] @ np.array([[1.0, 0.03, 0.0], [0.0, 1.0, 0.02], [0.01, 0.0, 1.0]]),
                   scale_atoms=True)  # triclinic
    atoms.rattle(0.05, seed=3)
    ref = atoms.copy()
    ref.calc = DFTD3(method="pbe", damping="d3bj")
    model = make_model("lj", [29], cutoff=4.0, d3="pbe")
    no_d3 = make_model("lj", [29], cutoff=4.0)
    out, base = predict(model, [atoms]), predict(no_d3, [atoms])
    energy = float((out["total_energy"][0] - base["total_energy"][0]).detach())
    assert energy == pytest.approx(ref.get_potential_energy(), rel=1e-8)
    forces = (out[keys.PRED_FORCES] - base[keys.PRED_FORCES]).detach().numpy()
    np.testing.assert_allclose(forces, ref.get_forces(), atol=1e-8)
    stress = (out[keys.PRED_STRESS] - base[keys.PRED_STRESS])[0].detach().numpy()
    np.testing.assert_allclose(stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], ref.get_stress(), atol=1e-9)


def test_forces_and_stress_equal_finite_differences():
    """Of the whole model (invariant + D3) on a rattled periodic Si-C cell with a short D3 cutoff."""
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.numbers[[1, 5]] = 6
    atoms.rattle(0.06, seed=2)
    model = make_model("invariant", [6, 14], cutoff=3.5, calibrate_on=[atoms], d3="pbe", d3_cutoff=9.0)

    def energy(a):
        return float(predict(model, [a])["total_energy"][0])

    out = predict(model, [atoms])
    h = 1e-5
    for atom, axis in [(0, 0), (1, 2), (5, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        fd = -(energy(plus) - energy(minus)) / (2 * h)
        assert float(out[keys.PRED_FORCES][atom, axis]) == pytest.approx(fd, abs=1e-7)
    volume = atoms.get_volume()
    for a, b in [(0, 0), (1, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h
        strained = []
        for sign in (1, -1):
            s = atoms.copy()
            s.set_cell(atoms.cell[:] @ (np.eye(3) + sign * eps), scale_atoms=True)
            strained.append(energy(s))
        fd = (strained[0] - strained[1]) / (2 * h) / volume / (1 if a == b else 2)
        assert float(out[keys.PRED_STRESS][0, a, b]) == pytest.approx(fd, abs=1e-8)


def test_labels_without_dispersion_train_without_it_and_export_with_it(tmp_path):
    """``d3_in_labels=false``: the term is off in the model that trains and on in ``model.pt``."""
    from mlip.calculator import MLIPCalculator
    from mlip.export.torchscript import export_torchscript

    atoms = _dimer_of_molecules()
    with_term = make_model("invariant", [1, 6, 8], cutoff=4.0, calibrate_on=[atoms], d3="pbe")
    off = make_model("invariant", [1, 6, 8], cutoff=4.0, calibrate_on=[atoms], d3="pbe", d3_in_labels=False)
    plain = make_model("invariant", [1, 6, 8], cutoff=4.0, calibrate_on=[atoms])
    e_plain = float(predict(plain, [atoms])["total_energy"][0])
    assert float(predict(off, [atoms])["total_energy"][0]) == pytest.approx(e_plain, abs=1e-12)
    d3 = float(D3Dispersion([1, 6, 8], "pbe").double()(_graph([atoms], [1, 6, 8])).sum())
    assert float(predict(with_term, [atoms])["total_energy"][0]) == pytest.approx(e_plain + d3, abs=1e-10)
    export_torchscript(off, str(tmp_path / "model.pt"))
    atoms.calc = MLIPCalculator(str(tmp_path / "model.pt"))
    assert atoms.get_potential_energy() == pytest.approx(e_plain + d3, abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), predict(with_term, [atoms])[keys.PRED_FORCES].detach().numpy(),
                               atol=1e-10)


def test_engines_with_ghost_atoms_get_the_term_left_out(tmp_path):
    """``compute_local`` (LAMMPS) has no cell for D3's lattice sums: the model leaves the term out and
    says in its metadata what the engine must add (``pair_style ... dispersion/d3 bj pbe ...``)."""
    from mlip.export.torchscript import export_torchscript, load_exported

    atoms = _dimer_of_molecules()
    model = make_model("invariant", [1, 6, 8], cutoff=4.0, calibrate_on=[atoms], d3="pbe")
    plain = make_model("invariant", [1, 6, 8], cutoff=4.0, calibrate_on=[atoms])
    export_torchscript(model, str(tmp_path / "model.pt"))
    module, meta = load_exported(str(tmp_path / "model.pt"))
    assert meta["dispersion"]["functional"] == "pbe" and float(meta["dispersion"]["cutoff"]) == pytest.approx(
        60 * BOHR)
    graph = batch_of([atoms], plain)
    local = module.compute_local(torch.tensor(atoms.positions), torch.tensor(atoms.numbers),
                                 graph[keys.EDGE_INDEX], len(atoms))
    assert float(local["energy"]) == pytest.approx(float(predict(plain, [atoms])["total_energy"][0]), abs=1e-10)


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match=r"model.d3='pbe-d9'.*functional"):
        check_model_settings("invariant", {"d3": "pbe-d9"})
    with pytest.raises(ConfigError, match="model.d3_cutoff"):
        check_model_settings("invariant", {"d3": "pbe", "d3_cutoff": -1.0})
    with pytest.raises(ConfigError, match="model.d3_in_labels"):
        check_model_settings("invariant", {"d3": "pbe", "d3_in_labels": "no"})


def test_model_pt2_refuses_the_term(tmp_path):
    from mlip.export.aoti import export_aoti

    model = make_model("lj", [29], cutoff=4.0, d3="pbe")
    with pytest.raises(ConfigError, match="model.d3.*model.pt"):
        export_aoti(model, str(tmp_path / "model.pt2"))
