"""Uncertainty: calibration measures against hand computations and known distributions; a committee's
outputs are the mean and spread of its members (eager, scripted, through the calculator and the
engine interface); ``mlip committee`` trains, combines and calibrates."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlip.testing.systems import ethanol, make_model, sicgeo_cell
from mlip.uncertainty import calibration
from mlip.uncertainty.committee import CommitteePotential


def test_calibration_measures():
    assert calibration.spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert calibration.spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    e, s = np.array([0.1, -0.2]), np.array([0.1, 0.4])
    hand = np.mean([0.5 * np.log(2 * np.pi * 0.01) + 0.5, 0.5 * np.log(2 * np.pi * 0.16) + 0.04 / 0.32])
    assert calibration.nll(e, s) == pytest.approx(hand)
    rng = np.random.default_rng(0)
    std = rng.uniform(0.1, 2.0, 20000)
    err = rng.normal(0.0, std)
    assert calibration.miscalibration_area(err, std) < 0.01  # Gaussian errors of the predicted size
    assert calibration.miscalibration_area(3 * err, std) > 0.2  # overconfident by 3x
    assert calibration.fit_scale(3 * err, std) == pytest.approx(3.0, rel=0.02)
    assert calibration.spearman(std, np.abs(err)) > 0.3


def _members(species, atoms, k=3):
    members = []
    for seed in range(k):
        m = make_model("invariant", species, calibrate_on=[atoms])
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        members.append(m)
    return members


def _compute(potential, atoms):
    from mlip.nn.neighbors import vesin_neighbor_list

    ei, sh, _ = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, potential.cutoff)
    return potential.compute(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
                             torch.tensor(atoms.pbc), torch.from_numpy(ei), torch.from_numpy(sh).double())


def test_committee_is_mean_and_spread_of_members(tmp_path):
    from mlip.calculator import MLIPCalculator
    from mlip.export import export_torchscript
    from mlip.export.torchscript import ExportedPotential
    from mlip.uncertainty.committee import export_committee

    atoms = sicgeo_cell()
    species = sorted(set(atoms.numbers.tolist()))
    members = _members(species, atoms)
    committee = CommitteePotential(members, energy_scale=2.0, forces_scale=0.5)
    out = _compute(committee, atoms)
    singles = [_compute(ExportedPotential(m, species, m.energy_model.cutoff), atoms) for m in members]
    energies = torch.stack([s["energy"] for s in singles])
    forces = torch.stack([s["forces"] for s in singles])
    torch.testing.assert_close(out["energy"], energies.mean(), rtol=0, atol=1e-10)
    torch.testing.assert_close(out["forces"], forces.mean(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(out["energy_std"], 2.0 * energies.std(), rtol=0, atol=1e-10)
    torch.testing.assert_close(out["forces_std"], 0.5 * forces.std(0), rtol=0, atol=1e-10)
    assert float(out["energy_std"]) > 1e-4  # the members differ
    path = tmp_path / "committee.pt"
    scripted = export_committee(committee, str(path))
    torch.testing.assert_close(_compute(scripted, atoms)["forces_std"], out["forces_std"])
    atoms.calc = MLIPCalculator(str(path))
    assert atoms.get_potential_energy() == pytest.approx(float(out["energy"]), abs=1e-8)
    assert atoms.calc.results["energy_std"] == pytest.approx(float(out["energy_std"]), abs=1e-8)
    assert atoms.calc.results["forces_std"].shape == (len(atoms), 3)
    # the engine interface (LAMMPS) gives the mean: a molecule with every atom local
    mol = ethanol()
    mol_members = _members([1, 6, 8], mol, 2)
    mol_committee = CommitteePotential(mol_members)
    full = _compute(mol_committee, mol)
    from mlip.nn.neighbors import vesin_neighbor_list

    ei, _, _ = vesin_neighbor_list(mol.positions, np.zeros((3, 3)), np.zeros(3, bool), mol_committee.cutoff)
    local = mol_committee.compute_local(torch.tensor(mol.positions), torch.tensor(mol.numbers), torch.from_numpy(ei),
                                        len(mol))
    torch.testing.assert_close(local["energy"], full["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(local["forces"], full["forces"], rtol=0, atol=1e-10)
    export_torchscript(members[0], str(tmp_path / "single.pt"))  # a single model keeps its plain outputs
    atoms.calc = MLIPCalculator(str(tmp_path / "single.pt"))
    atoms.get_potential_energy()
    assert "energy_std" not in atoms.calc.results


def test_members_must_agree():
    si = bulk("Si", "diamond", a=5.43)
    a = make_model("invariant", [14], calibrate_on=[si])
    b = make_model("invariant", [14], cutoff=3.5, calibrate_on=[si])
    with pytest.raises(ValueError, match="members must agree"):
        CommitteePotential([a, b])


@pytest.mark.slow
def test_committee_train_command(tmp_path):
    from mlip.cli.main import main

    out = tmp_path / "committee"
    assert main(["committee", "train", "2", "experiment=quick", "trainer.max_epochs=2", "model=invariant",
                 "--output", str(out)]) == 0
    metrics = json.loads((out / "committee_metrics.json").read_text())
    assert metrics["committee_size"] == 2 and metrics["tested_on"] == "test"
    forces = metrics["calibration"]["forces"]
    assert forces["calibrated"]["n"] > 1000 and np.isfinite(forces["raw"]["spearman"])
    assert (out / "committee.pt").is_file() and (out / "calibration_forces.png").is_file()
    split = [json.loads((out / f"member_{k}" / "split.json").read_text())["test"] for k in range(2)]
    assert split[0] == split[1]  # same test frames for every member
    assert main(["llpr", str(out / "member_0")]) == 0  # single-model estimate beside the committee
    llpr = json.loads((out / "member_0" / "llpr_metrics.json").read_text())
    assert llpr["test"]["n"] == llpr["committee_on_same_test"]["n"] == metrics["calibration"]["energy"]["raw"]["n"]


def test_llpr_variance_is_the_last_layer_formula_and_grows_off_the_training_set():
    """σ² = α² gᵀ(GᵀG + ς²I)⁻¹g by hand on random gradients; with a real model, frames unlike the
    training set (strongly compressed) get a larger σ than training-like frames."""
    from mlip.data.io import atoms_to_frame
    from mlip.uncertainty.llpr import LastLayerUncertainty, energy_gradients

    rng = np.random.default_rng(0)
    g_train, g_new = rng.normal(size=(50, 6)), rng.normal(size=(3, 6))
    llpr = LastLayerUncertainty().fit(g_train)
    llpr.set_regulariser(0.1)
    llpr.alpha = 2.0
    gtg = g_train.T @ g_train
    inv = np.linalg.inv(gtg + 0.1 * np.trace(gtg) / 6 * np.eye(6))
    hand = 2.0 * np.sqrt(np.einsum("fp,pq,fq->f", g_new, inv, g_new))
    np.testing.assert_allclose(llpr.std(g_new), hand, rtol=1e-10)

    si = bulk("Si", "diamond", a=5.43, cubic=True)
    model = make_model("invariant", [14], calibrate_on=[si])
    train = []
    for k in range(20):
        a = si.copy()
        a.rattle(0.05, seed=k)
        train.append(atoms_to_frame(a, None, "train", k))
    far = si.copy()
    far.set_cell(si.cell * 0.85, scale_atoms=True)
    far.rattle(0.05, seed=99)
    near = si.copy()
    near.rattle(0.05, seed=100)
    g_tr, _ = energy_gradients(model, train)
    g_test, _ = energy_gradients(model, [atoms_to_frame(near, None, "t", 0), atoms_to_frame(far, None, "t", 1)])
    llpr = LastLayerUncertainty().fit(g_tr)
    llpr.set_regulariser(1e-4)
    near_std, far_std = llpr.std(g_test)
    assert far_std > 3 * near_std
