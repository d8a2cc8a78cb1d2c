"""Reading, labels, units, E0, splits and the neighbour list; every bad input gives an error that
names the file, the frame and the problem."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from mlip.data.graph import frame_to_graph
from mlip.data.io import LabelKeys, read_frames, require_labels
from mlip.data.reference import e0_least_squares, resolve_e0
from mlip.data.split import random_split
from mlip.errors import DataError
from mlip.nn.neighbors import torch_neighbor_list, vesin_neighbor_list
from mlip.testing.systems import triclinic_si


def labelled(atoms, energy=-1.0, forces=None, stress=None):
    atoms = atoms.copy()
    forces = np.zeros((len(atoms), 3)) if forces is None else forces
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    return atoms


def test_shipped_data_reads_with_labels_and_config_types(shipped_train):
    frames = read_frames(shipped_train)
    assert len(frames) == 214
    f = frames[0]
    assert f.energy == pytest.approx(-295.49753016)
    assert f.forces.shape == (f.n_atoms, 3) and f.stress.shape == (3, 3)
    assert f.stress[0, 0] == pytest.approx(0.004107503988364278)
    assert {fr.config_type for fr in frames} == {"Elastic", "AIMD-NVT", "Surface", "Vacancy"}


def test_custom_keys_virial_and_molecules(tmp_path):
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.info["REF_energy"] = -40.0
    si.arrays["REF_forces"] = np.full((8, 3), 0.1)
    virial = np.diag([1.0, 2.0, 3.0])
    si.info["REF_virial"] = virial.reshape(-1)
    mol = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=[50, 50, 50], pbc=False)
    mol.info["REF_energy"] = -1.0
    mol.arrays["REF_forces"] = np.zeros((2, 3))
    mol.info["REF_stress"] = np.ones(9)  # a molecule carries no stress, whatever the file says
    path = tmp_path / "custom.extxyz"
    write(path, [si, mol])
    frames = read_frames(str(path), LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress",
                                              virial="REF_virial"))
    assert frames[0].energy == -40.0
    np.testing.assert_allclose(frames[0].stress, -virial / si.get_volume())  # stress = -virial / V
    assert frames[1].stress is None and not frames[1].pbc.any()
    # a molecule with a Lattice has no periodic neighbours
    edge_index, shifts, _ = vesin_neighbor_list(frames[1].positions, frames[1].cell, frames[1].pbc, 5.0)
    assert edge_index.shape[1] == 2 and not shifts.any()


def test_voigt_stress_from_ase_calculator(tmp_path):
    si = labelled(bulk("Si", "diamond", a=5.43, cubic=True), stress=np.array([1, 2, 3, 4, 5, 6]) * 1e-3)
    path = tmp_path / "voigt.extxyz"
    write(path, si)
    (f,) = read_frames(str(path))
    np.testing.assert_allclose(f.stress, 1e-3 * np.array([[1, 6, 5], [6, 2, 4], [5, 4, 3]]))


def test_vesin_and_torch_neighbor_lists_agree_on_small_triclinic_cell():
    atoms = triclinic_si()
    cutoff = 6.0  # more than the cell heights: several images of each neighbour
    ei, s, d = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    ei_t, s_t = torch_neighbor_list(torch.tensor(atoms.positions), torch.tensor(atoms.cell[:]),
                                    torch.tensor(atoms.pbc), cutoff)
    a = {(int(i), int(j), *map(int, sh)) for (i, j), sh in zip(ei.T, s)}
    b = {(int(i), int(j), *map(int, sh)) for (i, j), sh in zip(ei_t.T.tolist(), s_t.tolist())}
    assert a == b and len(a) == ei.shape[1]
    vec = atoms.positions[ei[1]] - atoms.positions[ei[0]] + s @ atoms.cell[:]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), d)
    # compare with ASE's own count of neighbours
    from ase.neighborlist import neighbor_list
    assert len(neighbor_list("i", atoms, cutoff)) == len(a)


def test_e0_least_squares_recovers_known_values():
    rng = np.random.default_rng(0)
    e0 = {1: -13.6, 8: -432.1, 6: -1027.0}
    frames = []
    for _ in range(12):
        numbers = rng.choice([1, 6, 8], size=rng.integers(3, 9))
        atoms = Atoms(numbers=numbers, positions=rng.normal(size=(len(numbers), 3)) * 3)
        energy = sum(e0[z] for z in numbers) + rng.normal() * 1e-9
        frames.append(labelled(atoms, energy=energy))
    from mlip.data.io import atoms_to_frame
    fr = [atoms_to_frame(a, LabelKeys(), "mem", i) for i, a in enumerate(frames)]
    fit = e0_least_squares(fr, [1, 6, 8])
    for z, v in e0.items():
        assert fit[z] == pytest.approx(v, abs=1e-6)
    assert resolve_e0({"H": 1.0, "C": 2.0, "O": 3.0}, fr, [1, 6, 8]) == {1: 1.0, 6: 2.0, 8: 3.0}
    with pytest.raises(DataError, match="no value for O"):
        resolve_e0({"H": 1.0, "C": 2.0}, fr, [1, 6, 8])


def test_split_holds_out_whole_frames_and_is_seeded():
    a = random_split(100, 0.1, 0.2, seed=3)
    b = random_split(100, 0.1, 0.2, seed=3)
    assert a == b
    assert sorted(a["train"] + a["val"] + a["test"]) == list(range(100))
    assert len(a["val"]) == 10 and len(a["test"]) == 20
    assert random_split(100, 0.1, 0.2, seed=4) != a


# ---------------------------------------------------------------- bad input
def _write(tmp_path, frames, name="bad.extxyz"):
    path = tmp_path / name
    write(path, frames)
    return str(path)


def _good(n=2):
    return [labelled(bulk("Si", "diamond", a=5.43, cubic=True), energy=-40.0 - k) for k in range(n)]


def test_missing_file():
    with pytest.raises(DataError, match=r"nothere.extxyz: file not found"):
        read_frames("nothere.extxyz")


def test_unreadable_format(tmp_path):
    path = tmp_path / "garbage.extxyz"
    path.write_text("this is not\nan xyz file at all\n")
    with pytest.raises(DataError, match=r"garbage.extxyz: cannot read the file with ASE"):
        read_frames(str(path))


def test_missing_energy_named_by_frame(tmp_path):
    frames = _good(3)
    frames[2].calc = SinglePointCalculator(frames[2], forces=np.zeros((8, 3)))
    fr = read_frames(_write(tmp_path, frames))
    with pytest.raises(DataError, match=r"bad.extxyz, frame 2: no energy label, but energy is in the loss"):
        require_labels(fr, ["energy", "forces"])


@pytest.mark.parametrize("kind", ["energy", "forces", "stress"])
def test_nan_or_inf_label(tmp_path, kind):
    frames = _good(2)
    atoms = frames[1]
    values = dict(energy=-40.0, forces=np.zeros((8, 3)), stress=np.zeros(6))
    if kind == "energy":
        values["energy"] = float("nan")
    elif kind == "forces":
        values["forces"][3, 1] = float("inf")
    else:
        values["stress"][2] = float("nan")
    atoms.calc = SinglePointCalculator(atoms, **values)
    with pytest.raises(DataError, match=rf"bad.extxyz, frame 1: {kind} '{kind}' contains NaN or inf"):
        read_frames(_write(tmp_path, frames))


def test_forces_of_wrong_shape(tmp_path):
    frames = _good(1)
    frames[0].info["my_forces"] = np.zeros(5)
    path = tmp_path / "shape.extxyz"
    write(path, frames)
    msg = r"shape.extxyz, frame 0: forces 'my_forces' have shape \(5,\); expected \(8, 3\)"
    with pytest.raises(DataError, match=msg):
        read_frames(str(path), LabelKeys(forces="my_forces"))


def test_unknown_element_at_test_time(tmp_path):
    frames = _good(1)
    ge = frames[0].copy()
    ge.numbers[3] = 32
    ge.calc = SinglePointCalculator(ge, energy=-1.0, forces=np.zeros((8, 3)))
    (f,) = read_frames(_write(tmp_path, [ge], "test.extxyz"))
    with pytest.raises(DataError, match=r"test.extxyz, frame 0: element\(s\) Ge not among the species .*\(Si\)"):
        frame_to_graph(f, 5.0, {14: 0})


def test_overlapping_atoms(tmp_path):
    frames = _good(2)
    frames[1].positions[5] = frames[1].positions[2] + [0.05, 0, 0]
    fr = read_frames(_write(tmp_path, frames))
    frame_to_graph(fr[0], 5.0, {14: 0})
    with pytest.raises(DataError, match=r"bad.extxyz, frame 1: atoms .* are 0.0500 Å apart .*overlapping"):
        frame_to_graph(fr[1], 5.0, {14: 0})


def test_stress_in_wrong_units(tmp_path):
    frames = _good(1)
    frames[0].calc = SinglePointCalculator(frames[0], energy=-1.0, forces=np.zeros((8, 3)),
                                           stress=np.array([120.0, 110, 130, 0, 0, 0]))  # GPa, not eV/Å³
    with pytest.raises(DataError, match=r"frame 0: a stress component of 130 eV/Å³ .* is implausible"):
        read_frames(_write(tmp_path, frames))


def test_empty_split():
    with pytest.raises(DataError, match="empty training split"):
        random_split(2, 0.5, 0.5)


def test_e0_from_isolated_atoms_and_auto_fallback(tmp_path):
    from mlip.data.io import atoms_to_frame

    def frame(symbols, energy, pbc=False):
        atoms = Atoms(symbols, pbc=pbc, cell=[10, 10, 10] if pbc else None)
        atoms.positions = np.arange(3 * len(atoms)).reshape(-1, 3) * 1.0
        return atoms_to_frame(labelled(atoms, energy=energy), LabelKeys(), "mem", 0)

    isolated = [frame("H", -0.5), frame("O", -75.0)]
    train = [frame("H2O", -76.4), frame("H2O2", -151.5)]
    assert isolated[0].is_isolated_atom and not train[0].is_isolated_atom
    assert resolve_e0("auto", train, [1, 8], isolated) == {1: -0.5, 8: -75.0}
    assert resolve_e0("isolated", train, [1, 8], isolated) == {1: -0.5, 8: -75.0}
    # without an isolated O, auto falls back to least squares and isolated refuses
    fit = resolve_e0("auto", train, [1, 8], isolated[:1])
    assert fit == e0_least_squares(train, [1, 8])
    with pytest.raises(DataError, match="no isolated-atom frame for O"):
        resolve_e0("isolated", train, [1, 8], isolated[:1])
    with pytest.raises(DataError, match="data.e0='median'"):
        resolve_e0("median", train, [1, 8])
