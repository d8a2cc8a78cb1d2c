"""Plausibility checks before training: energies in another unit, unreal elements, E0 that the data
cannot determine or that does not fit (each names file and frame, and can be turned into a warning)."""

import logging

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from mlip.data.checks import check_e0_consistency, check_energy_outliers, check_settings
from mlip.data.io import read_frames
from mlip.data.reference import e0_least_squares, reference_energies
from mlip.errors import ConfigError, DataError

KCAL = 0.0433641  # eV per kcal/mol
HARTREE = 27.211386


def _si_frames(n=30, seed=0):
    """Rattled 8-atom Si cells of a few sizes with a plausible energy (-5.4 eV/atom + noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((1, 1, 1 + k % 3))
        atoms.rattle(0.05, seed=k)
        e = len(atoms) * (-5.4 + 0.05 * rng.standard_normal())
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((len(atoms), 3)))
        out.append(atoms)
    return out


def _write(tmp_path, images, name="data.extxyz"):
    import ase.io

    path = tmp_path / name
    ase.io.write(path, images)
    return read_frames(str(path))


@pytest.mark.parametrize("factor, unit", [(1 / KCAL, "kcal/mol"), (1 / HARTREE, "Hartree")])
def test_energy_in_another_unit_is_named_with_frame_and_factor(tmp_path, factor, unit):
    images = _si_frames()
    e = images[7].get_potential_energy()
    images[7].calc.results["energy"] = e * factor
    frames = _write(tmp_path, images)
    with pytest.raises(DataError, match=rf"data.extxyz, frame 7: .* looks like {unit}"):
        check_energy_outliers(frames, [14])


def test_energy_given_per_atom_is_named(tmp_path):
    images = _si_frames()
    images[3].calc.results["energy"] = images[3].get_potential_energy() / len(images[3])
    with pytest.raises(DataError, match=r"frame 3: .* looks like an energy per atom"):
        check_energy_outliers(_write(tmp_path, images), [14])


def test_outlier_check_can_be_a_warning_and_clean_data_passes(tmp_path, caplog):
    images = _si_frames()
    assert check_energy_outliers(_write(tmp_path, images), [14]) == []
    images[7].calc.results["energy"] = images[7].get_potential_energy() / KCAL
    frames = _write(tmp_path, images)
    with caplog.at_level(logging.WARNING):
        found = check_energy_outliers(frames, [14], action="warn")
    assert [f.index for f in found] == [7]
    assert "frame 7" in caplog.text
    assert check_energy_outliers(frames, [14], action="off") == []


def test_high_energy_dimers_are_a_warning_not_an_error(tmp_path, caplog):
    """Legitimately high energies (a dimer at short range) fit no unit factor: warned, not refused."""
    images = _si_frames()
    dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 1.6]], cell=[10, 10, 10], pbc=True)
    dimer.calc = SinglePointCalculator(dimer, energy=2 * (-5.4 + 7.0), forces=np.zeros((2, 3)))
    with caplog.at_level(logging.WARNING):
        found = check_energy_outliers(_write(tmp_path, images + [dimer]), [14])
    assert len(found) == 1 and "not explained by a unit factor" in caplog.text


def test_unreal_element_is_refused_with_frame(tmp_path):
    path = tmp_path / "x.extxyz"
    path.write_text("2\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc=\"F F F\"\n"
                    "H 0 0 0\nX 0 0 0.9\n")
    with pytest.raises(DataError, match=r"x.extxyz, frame 0: atom 1 has atomic number 0 \('X'\), not a real element"):
        read_frames(str(path))


def _molecules(formulas_energies):
    from mlip.data.io import LabelKeys, atoms_to_frame

    out = []
    for k, (formula, energy) in enumerate(formulas_energies):
        atoms = Atoms(formula)
        atoms.positions = np.arange(3 * len(atoms)).reshape(-1, 3) * 0.7
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        out.append(atoms_to_frame(atoms, LabelKeys(), "mols.xyz", k))
    return out


def test_least_squares_e0_of_one_composition_is_refused():
    frames = _molecules([("CH4", -24.0), ("CH4", -24.1), ("CH4", -23.9)])
    with pytest.raises(DataError, match=r"mols.xyz: E0 by least squares is not determined: every training frame "
                                        r"has the composition CH4.*isolated-atom frames.*data.e0"):
        e0_least_squares(frames, [1, 6])
    # collinear compositions (C2H8 = 2 x CH4) cannot separate the elements either
    with pytest.raises(DataError, match="are collinear"):
        e0_least_squares(_molecules([("CH4", -24.0), ("C2H8", -48.1)]), [1, 6])
    # as a warning: the minimum-norm solution, which reproduces the energies
    e0 = e0_least_squares(frames, [1, 6], underdetermined="warn")
    assert 4 * e0[1] + e0[6] == pytest.approx(-24.0)


def test_e0_source_is_reported():
    frames = _molecules([("CH4", -24.0), ("C2H6", -40.0), ("C2H4", -31.0)])
    assert reference_energies("auto", frames, [1, 6]).source == "least squares on the training split"
    assert reference_energies("zero", frames, [1, 6]).source.startswith("zero")
    assert reference_energies({"H": -1, "C": -2}, frames, [1, 6]).source.startswith("data.e0")


def test_isolated_atoms_in_another_unit_are_refused():
    frames = _molecules([("CH4", -1101.5), ("C2H6", -2165.0)])  # all-electron energies, eV
    e0_hartree = {1: -0.5, 6: -37.8}  # isolated atoms in Hartree
    with pytest.raises(DataError, match="different units, codes or pseudopotentials"):
        check_e0_consistency(frames, e0_hartree, "isolated-atom frames")
    check_e0_consistency(frames, e0_hartree, "isolated-atom frames", action="off")
    check_e0_consistency(frames, {1: -13.6, 6: -1027.5}, "isolated-atom frames")  # -4 eV/atom: fine


def test_check_settings_name_the_key():
    assert check_settings({"energy_outliers": "warn"})["energy_outliers"] == "warn"
    with pytest.raises(ConfigError, match=r"data.checks.energy_outlier: unknown check"):
        check_settings({"energy_outlier": "warn"})
    with pytest.raises(ConfigError, match=r"data.checks.e0_consistency='maybe'"):
        check_settings({"e0_consistency": "maybe"})


def test_one_atom_in_a_big_periodic_box_is_an_isolated_atom():
    """Plane-wave codes compute E0 of an atom in a large periodic box; a 1-atom bulk cell is not one."""
    from mlip.data.io import LabelKeys, atoms_to_frame

    def frame(atoms):
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
        return atoms_to_frame(atoms, LabelKeys(), "mem", 0)

    assert frame(Atoms("Si", cell=[12, 12, 12], pbc=True)).is_isolated_atom
    assert frame(Atoms("Si", cell=[12, 12, 3], pbc=[True, True, False])).is_isolated_atom  # c not periodic
    assert not frame(bulk("Cu", "fcc", a=3.6)).is_isolated_atom
    assert not frame(Atoms("Si", cell=[12, 12, 4], pbc=True)).is_isolated_atom


def test_e0_file_without_isolated_atoms_is_refused(tmp_path):
    from mlip.training.datamodule import FrameDataModule

    images = _si_frames(8)
    import ase.io

    ase.io.write(tmp_path / "train.xyz", images)
    ase.io.write(tmp_path / "not_isolated.xyz", images[:2])
    dm = FrameDataModule(train=str(tmp_path / "train.xyz"), cutoff=4.0, e0_file=str(tmp_path / "not_isolated.xyz"))
    with pytest.raises(DataError, match=r"not_isolated.xyz: data.e0_file holds no isolated-atom frame"):
        dm.prepare()
