"""scripts/bench_peers.py without the peers: the shared split and label files, E0, the scoring
and the command line (no virtual environment is created, nothing is trained)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

from bench_peers_lib import report  # noqa: E402
from bench_peers_lib.data import prepare, read_references  # noqa: E402

E0_SI = -4.5  # eV/atom used to make the synthetic energies


def _frames(n, rng, symbol="Si", e0=E0_SI):
    frames = []
    for i in range(n):
        n_atoms = int(rng.integers(2, 6))
        atoms = Atoms(symbol * n_atoms, positions=rng.uniform(0, 5, (n_atoms, 3)), cell=np.eye(3) * 6, pbc=True)
        atoms.info["config_type"] = "synthetic"
        stress = rng.normal(scale=0.01, size=6)
        atoms.calc = SinglePointCalculator(atoms, energy=e0 * n_atoms + 0.01 * i,
                                           forces=rng.normal(size=(n_atoms, 3)), stress=stress)
        frames.append(atoms)
    return frames


@pytest.fixture()
def data_root(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "mlearn").mkdir()
    write(str(tmp_path / "mlearn" / "Si_training.extxyz"), _frames(30, rng))
    write(str(tmp_path / "mlearn" / "Si_test.extxyz"), _frames(5, rng))
    return tmp_path


def test_prepare_split_labels_and_e0(data_root, tmp_path):
    d = prepare("si", data_root, tmp_path / "out", seed=3, val_fraction=0.2)
    assert (d.n_train, d.n_val, d.n_test) == (24, 6, 5)
    src = read(str(data_root / "mlearn" / "Si_training.extxyz"), index=":")
    train, val = read(d.train, index=":"), read(d.val, index=":")
    key = {round(a.get_potential_energy(), 6) for a in src}
    got_train = {round(a.get_potential_energy(), 6) for a in train}
    got_val = {round(a.get_potential_energy(), 6) for a in val}
    assert got_train.isdisjoint(got_val) and got_train | got_val == key  # a partition of the training file
    assert prepare("si", data_root, tmp_path / "again", seed=3, val_fraction=0.2).to_dict()["n_val"] == 6
    assert [a.get_potential_energy() for a in read(str(tmp_path / "again" / "val.extxyz"), index=":")] == \
        [a.get_potential_energy() for a in val]  # same seed, same validation frames
    # both spellings of every label hold the same numbers (MACE reads REF_*, mlip and NequIP the calculator)
    for a in train:
        assert a.info["REF_energy"] == pytest.approx(a.get_potential_energy())
        np.testing.assert_allclose(a.arrays["REF_forces"], a.get_forces())
        np.testing.assert_allclose(a.info["REF_stress"], a.get_stress(voigt=True))
    # energies are E0 * n + a small ramp: least squares recovers E0 to within the ramp
    assert d.e0_source.startswith("least squares") and d.e0["Si"] == pytest.approx(E0_SI, abs=0.1)
    assert d.has_stress and d.periodic


@pytest.mark.parametrize("name, symbol, e0", [("ge", "Ge", -4.6), ("li", "Li", -1.9)])
def test_prepare_reads_each_mlearn_element(tmp_path, name, symbol, e0):
    """--datasets ge / li read mlearn's own files of that element (not Si's), split them the same
    way and fit that element's E0."""
    rng = np.random.default_rng(2)
    root = tmp_path / "root"
    (root / "mlearn").mkdir(parents=True)
    write(str(root / "mlearn" / f"{symbol}_training.extxyz"), _frames(20, rng, symbol, e0))
    write(str(root / "mlearn" / f"{symbol}_test.extxyz"), _frames(4, rng, symbol, e0))
    d = prepare(name, root, tmp_path / "out", seed=0, val_fraction=0.1)
    assert (d.n_train, d.n_val, d.n_test) == (18, 2, 4)
    assert d.species == [symbol] and d.e0[symbol] == pytest.approx(e0, abs=0.1)
    assert d.has_stress and d.periodic and d.batch_size == 8
    assert {s for a in read(d.test, index=":") for s in a.get_chemical_symbols()} == {symbol}


def test_score_hand_computed():
    ref = {"energy": [-10.0, -20.0], "n_atoms": [2, 4],
           "forces": [np.zeros((2, 3)), np.zeros((4, 3))],
           "stress": [np.zeros(6), None]}
    forces_pred = [np.full((2, 3), 0.003), np.full((4, 3), -0.006)]
    pred = {"energy": [-10.002, -19.992], "forces": forces_pred,
            "stress": [[0.0, 0.0, 0.0, 0.0, 0.0, 0.001], None]}
    s = report.score(ref, pred)
    assert s["energy_mae_mev_per_atom"] == pytest.approx((1.0 + 2.0) / 2)  # 2 meV/2 atoms, 8 meV/4 atoms
    assert s["energy_mae_mev_per_frame"] == pytest.approx(5.0)
    assert s["forces_mae_mev_per_a"] == pytest.approx((6 * 3 + 12 * 6) / 18)
    # xy = 0.001 eV/Å³ appears twice among the 9 tensor components
    assert s["stress_mae_gpa"] == pytest.approx(2 * 0.001 * report.EV_PER_A3_TO_GPA / 9)


def test_references_match_prepared_file(data_root, tmp_path):
    d = prepare("si", data_root, tmp_path / "out")
    ref = read_references(d.test)
    assert ref["n_atoms"] == d.atoms_per_frame and all(s is not None for s in ref["stress"])
    assert report.score(ref, ref)["forces_mae_mev_per_a"] == 0.0


def test_command_line_dry_run(data_root, tmp_path, capsys):
    import bench_peers

    assert bench_peers.main(["--dry-run", "--datasets", "si", "--data-root", str(data_root),
                             "--workdir", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "si" / "data" / "val.extxyz").exists()
    with pytest.raises(SystemExit):
        bench_peers.parse_args(["--models", "schnet"])


def test_seed_summary_means_and_per_seed_ratios():
    def row(tool, f, e, epochs=10):
        return {"dataset": "mlearn Si", "tool": tool, "label": tool, "epochs": epochs,
                "scores": {"forces_mae_mev_per_a": f, "energy_mae_mev_per_atom": e}}

    runs = {0: [row("mlip", 60.0, 2.0), row("mace", 80.0, 30.0), row("nequip", 100.0, 20.0)],
            1: [row("mlip", 50.0, 4.0), row("mace", 100.0, 40.0), row("nequip", 90.0, 10.0)],
            2: [row("mlip", 70.0, 3.0), {"dataset": "mlearn Si", "tool": "mace", "label": "mace", "error": "boom"},
                row("nequip", 70.0, 10.0)]}
    lines = report.seed_summary(runs)
    mlip = next(line for line in lines if line.startswith("| mlearn Si | mlip |"))
    assert "| 0,1,2 | 60.0 ± 10.0 | 3.00 ± 1.00 |" in mlip  # sample std of 60, 50, 70
    mace = next(line for line in lines if line.startswith("| mlearn Si | mace |"))
    assert "| 0,1 | 90.0 ± 14.1 |" in mace  # the failed seed is left out
    # best peer per seed: 80 (mace), 90 (nequip), 70 (nequip) -> ratios 0.75, 0.5556, 1.0
    ratios = np.array([60 / 80, 50 / 90, 70 / 70])
    ratio_line = lines[-1]
    assert ratio_line.startswith("| mlearn Si | 3 |")
    assert f"{ratios.mean():.2f} ± {ratios.std(ddof=1):.2f}" in ratio_line
    assert ratio_line.endswith(f"| {60 / 80:.2f} |")  # mean 60 over mean of 80, 90, 70 = 80
