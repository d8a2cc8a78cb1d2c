"""Building training sets: generators tag and shape frames as documented, labels equal the oracle's,
labelling is cached (never recomputed) and resumes after a kill, a failing structure is reported
and skipped, recipes write a provenance-tagged extxyz that trains, real oracles (xTB, PySCF) give
forces that match finite differences, and the convergence study finds the energy error quadratic
and the force error linear in the density error."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlip.building import generators
from mlip.building import labelling as lab
from mlip.building.labelling import label_all
from mlip.building.oracles import build_oracle
from mlip.errors import ConfigError

EMT_CFG = {"name": "emt", "calculator": {"_target_": "ase.calculators.emt.EMT"}, "package": "ase"}


@pytest.fixture
def cuag():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
    atoms.numbers[:3] = 47
    return atoms


def test_generators_tag_and_shape(cuag):
    rng = np.random.default_rng(0)
    strained = generators.strain(cuag, {"count": 6, "max_strain": 0.05}, rng)
    assert [a.info["config_type"] for a in strained] == ["strain_iso"] * 3 + ["strain_shear"] * 3
    volumes = [a.get_volume() / cuag.get_volume() for a in strained[:3]]
    assert volumes == pytest.approx([0.95 ** 3, 1.0, 1.05 ** 3], rel=1e-9)
    assert len({a.info["group"] for a in strained}) == 6
    vac = generators.vacancy(cuag, {"count": 3}, rng)
    assert all(len(a) == len(cuag) - 1 for a in vac)
    inter = generators.interstitial(cuag, {"count": 2}, rng)
    assert all(len(a) == len(cuag) + 1 and a.get_all_distances(mic=True)[-1, :-1].min() > 1.0 for a in inter)
    dimers = generators.dimer(cuag, {"count": 4, "r_max": 5.0}, rng)
    assert {a.info["group"] for a in dimers} == {"dimer_CuCu", "dimer_CuAg", "dimer_AgAg"}
    assert all(not a.pbc.any() and len(a) == 2 for a in dimers)
    iso = generators.isolated(cuag, {}, rng)
    assert [a.get_chemical_symbols() for a in iso] == [["Cu"], ["Ag"]] and not iso[0].pbc.any()
    slabs = generators.surface(cuag, {"miller": [[1, 1, 1]], "layers": 3, "vacuum": 5.0, "count": 2}, rng)
    assert {a.info["group"] for a in slabs} == {"surface_111"} and slabs[0].cell[2, 2] > 10


def test_labels_cache_failures_and_resume(tmp_path, cuag, monkeypatch):
    rng = np.random.default_rng(1)
    structures = generators.rattle(cuag, {"count": 5, "stdev": 0.05}, rng)
    structures.append(structures[0].copy())  # a duplicate is labelled once
    frames, failures, counts = label_all(structures, EMT_CFG, str(tmp_path / "cache"), progress=False)
    assert counts == {"cached": 0, "computed": 5, "failed": 0} and not failures
    ref = structures[2].copy()
    ref.calc = EMT()
    assert frames[2].get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(frames[2].get_forces(), ref.get_forces(), atol=1e-12)
    np.testing.assert_allclose(frames[2].get_stress(), ref.get_stress(), atol=1e-12)
    assert frames[2].info["oracle"] == "emt" and frames[2].info["config_type"] == "rattle"
    # all cached now: nothing is computed again
    _, _, counts = label_all(structures, EMT_CFG, str(tmp_path / "cache"), progress=False)
    assert counts["computed"] == 0 and counts["cached"] == 6
    # a kill after two new labels; the rerun computes only the rest
    more = generators.rattle(cuag, {"count": 4, "stdev": 0.05}, rng)
    real = lab._label_one
    calls = []

    def dies_on_third(atoms):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(atoms)

    monkeypatch.setattr(lab, "_label_one", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        label_all(more, EMT_CFG, str(tmp_path / "cache"), progress=False)
    monkeypatch.setattr(lab, "_label_one", real)
    _, _, counts = label_all(more, EMT_CFG, str(tmp_path / "cache"), progress=False)
    assert counts == {"cached": 2, "computed": 2, "failed": 0}
    # a structure the oracle cannot do is reported and skipped (EMT has no parameters for Si)
    mixed = [structures[1], Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.3]])]
    frames, failures, counts = label_all(mixed, EMT_CFG, str(tmp_path / "cache"), progress=False)
    assert frames[0] is not None and frames[1] is None and counts["failed"] == 1
    assert failures[0]["index"] == 1 and "Si" in failures[0]["error"]


def test_parallel_labelling_equals_serial(tmp_path, cuag):
    structures = generators.rattle(cuag, {"count": 6, "stdev": 0.05}, np.random.default_rng(2))
    a, _, _ = label_all(structures, EMT_CFG, str(tmp_path / "c1"), workers=1, progress=False)
    b, _, _ = label_all(structures, EMT_CFG, str(tmp_path / "c2"), workers=2, progress=False)
    assert [f.get_potential_energy() for f in a] == pytest.approx([f.get_potential_energy() for f in b], rel=1e-12)


def test_missing_oracle_package_says_how_to_install():
    with pytest.raises(ConfigError, match="cannot be imported.*pip install nothere"):
        build_oracle({"name": "x", "calculator": {"_target_": "nothere.Calc"}, "install": "pip install nothere"})


def test_recipe_builds_grouped_provenance_tagged_set_that_trains(tmp_path):
    from mlip.building.recipe import build_dataset
    from mlip.cli.dataset import compose_recipe
    from mlip.training.datamodule import FrameDataModule

    out = tmp_path / "cu.extxyz"
    cfg = compose_recipe("cu_emt", ["scale=0.1", f"output={out}", "md.steps=60", "md.equilibration=10",
                                    "md.interval=10", "store=true", "store_cutoff=4.5"])
    prov = build_dataset(cfg, progress=False)
    assert prov["n_frames"] > 20 and not prov["failures"]
    assert {"strain_iso", "vacancy", "interstitial", "surface_100", "phase_bcc", "dimer", "isolated_atom",
            "md_300K", "md_1200K"} <= set(prov["frames_by_config_type"])
    saved = json.loads((tmp_path / "cu.extxyz.provenance.json").read_text())
    assert saved["oracle"]["name"] == "emt" and saved["recipe"]["seed"] == 0 and saved["versions"]["mlip"]
    dm = FrameDataModule(train=str(out), cutoff=4.5, group_by="group", e0="isolated")
    dm.prepare()
    assert dm.e0_source == "isolated-atom frames"
    groups = dm.split_indices["groups"]
    md_groups = [g for g in groups if g.startswith("md_")]
    assert len(md_groups) == 2 and all(groups[g] in ("train", "val", "test") for g in md_groups)
    disk = FrameDataModule(train=prov["store"], cutoff=4.5, group_by="group", e0="isolated")
    disk.prepare()
    assert disk.split_indices["groups"] == groups


def test_xtb_labels_molecules_and_odd_electron_atoms(tmp_path):
    pytest.importorskip("tblite")
    from mlip.cli.dataset import compose_recipe

    cfg = compose_recipe(None, ["oracle=xtb"])["oracle"]
    water = molecule("H2O")
    water.positions[1] += [0.02, 0.05, -0.03]
    frames, failures, _ = label_all([water, Atoms("H", pbc=False)], cfg, str(tmp_path / "c"), progress=False)
    assert not failures
    d, k = 1e-4, (1, 1)
    plus, minus = water.copy(), water.copy()
    plus.positions[k] += d
    minus.positions[k] -= d
    (p, m), _, _ = label_all([plus, minus], cfg, str(tmp_path / "c"), progress=False)
    fd = -(p.get_potential_energy() - m.get_potential_energy()) / (2 * d)
    assert frames[0].get_forces()[k] == pytest.approx(fd, abs=2e-3)
    assert np.isfinite(frames[1].get_potential_energy())


def test_pyscf_forces_match_finite_differences_and_unconverged_scf_is_skipped(tmp_path):
    pytest.importorskip("pyscf")
    from mlip.building.pyscf_calculator import PySCFCalculator

    water = molecule("H2O")
    water.positions[1] += [0.03, 0.04, -0.02]
    calc = dict(basis="sto-3g", grid_level=1, conv_tol=1e-11)
    water.calc = PySCFCalculator(**calc)
    forces = water.get_forces()
    d = 1e-4
    shifted = []
    for sign in (1, -1):
        a = water.copy()
        a.positions[1, 2] += sign * d
        a.calc = PySCFCalculator(**calc)
        shifted.append(a.get_potential_energy())
    assert forces[1, 2] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * d), abs=1e-4)
    cfg = {"name": "pyscf", "calculator": {"_target_": "mlip.building.pyscf_calculator.PySCFCalculator",
                                           "basis": "sto-3g", "max_cycle": 1, "conv_tol": 1e-12}}
    frames, failures, _ = label_all([water], cfg, str(tmp_path / "c"), progress=False)
    assert frames == [None] and "did not converge" in failures[0]["error"]


@pytest.mark.slow
def test_convergence_energy_quadratic_forces_linear_in_density_error(tmp_path):
    pytest.importorskip("pyscf")
    from ase.io import write

    from mlip.building.convergence import converge

    water = molecule("H2O")
    water.positions[1] += [0.03, 0.04, -0.02]
    write(tmp_path / "w.xyz", [water])
    cfg = {"name": "pyscf", "calculator": {"_target_": "mlip.building.pyscf_calculator.PySCFCalculator",
                                           "basis": "6-31g", "grid_level": 1}}
    result = converge(cfg, str(tmp_path / "w.xyz"), {"conv_tol": [1e-3, 1e-4, 1e-6, 1e-8, 1e-12]},
                      output=str(tmp_path / "conv"))
    entry = result["settings"]["conv_tol"]
    assert 1.6 < entry["energy_vs_density_slope"] < 2.4  # variational energy: quadratic
    assert 0.7 < entry["forces_vs_density_slope"] < 1.3  # forces: linear
    assert (tmp_path / "conv" / "convergence_conv_tol.png").is_file()
    rec = result["recommended"]["conv_tol"]
    assert rec["energy_error"] <= rec["target_energy"] and rec["force_error"] <= rec["target_forces"]
