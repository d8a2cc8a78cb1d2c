"""Physics every energy model must obey (float64): symmetries, periodic images, forces and stress
against finite differences, smoothness at the cutoff, batch equals single."""

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from mlip.models import MODEL_REGISTRY
from mlip.testing.systems import energy_of, ethanol, make_model, predict, sicgeo_cell, triclinic_si

MODELS = sorted(MODEL_REGISTRY)


@pytest.fixture(params=MODELS)
def si_model(request):
    return make_model(request.param, [14], cutoff=4.0, calibrate_on=[triclinic_si()])


@pytest.fixture(params=MODELS)
def mixed_model(request):
    return make_model(request.param, [1, 6, 8, 14], cutoff=4.0, calibrate_on=[ethanol(), sicgeo_cell()])


def _rotation(seed=0):
    return Rotation.random(random_state=seed).as_matrix()


@pytest.mark.parametrize("make", [triclinic_si, sicgeo_cell, ethanol])
def test_rotation_and_translation(mixed_model, make):
    atoms = make()
    ref = predict(mixed_model, [atoms])
    moved = atoms.copy()
    R = _rotation(3)
    moved.set_positions(atoms.get_positions() @ R.T + np.array([0.3, -1.2, 2.5]))
    moved.set_cell(atoms.get_cell()[:] @ R.T)
    out = predict(mixed_model, [moved])
    assert abs(float(out["total_energy"][0] - ref["total_energy"][0])) < 1e-9
    Rt = torch.tensor(R)
    torch.testing.assert_close(out["pred_forces"], ref["pred_forces"] @ Rt.T, atol=1e-9, rtol=0)
    if atoms.pbc.all():
        torch.testing.assert_close(out["pred_stress"][0], Rt @ ref["pred_stress"][0] @ Rt.T, atol=1e-10, rtol=0)
    # energies must not be trivially constant
    assert ref["pred_forces"].abs().max() > 1e-3


def test_permutation(mixed_model):
    atoms = sicgeo_cell()
    perm = np.random.default_rng(0).permutation(len(atoms))
    ref = predict(mixed_model, [atoms])
    out = predict(mixed_model, [atoms[perm]])
    assert abs(float(out["total_energy"][0] - ref["total_energy"][0])) < 1e-9
    torch.testing.assert_close(out["pred_forces"], ref["pred_forces"][perm], atol=1e-9, rtol=0)


def test_supercell_has_extensive_energy(si_model):
    atoms = triclinic_si()
    ref = predict(si_model, [atoms])
    sc = atoms.repeat((2, 2, 2))
    out = predict(si_model, [sc])
    assert abs(float(out["total_energy"][0] - 8 * ref["total_energy"][0])) < 1e-8
    torch.testing.assert_close(out["pred_forces"][: len(atoms)], ref["pred_forces"], atol=1e-9, rtol=0)
    torch.testing.assert_close(out["pred_stress"][0], ref["pred_stress"][0], atol=1e-10, rtol=0)
    # wrapping atoms into the cell changes nothing either
    shifted = atoms.copy()
    shifted.positions += atoms.cell[0] * 1.0 + atoms.cell[2] * -1.0
    assert abs(energy_of(si_model, shifted) - float(ref["total_energy"][0])) < 1e-9


@pytest.mark.parametrize("make", [triclinic_si, ethanol])
def test_forces_equal_finite_differences(mixed_model, make):
    atoms = make()
    out = predict(mixed_model, [atoms])
    h = 1e-5
    rng = np.random.default_rng(1)
    for a in rng.choice(len(atoms), size=4, replace=False):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            fd = -(energy_of(mixed_model, plus) - energy_of(mixed_model, minus)) / (2 * h)
            assert abs(fd - float(out["pred_forces"][a, c])) < 1e-6, (a, c)


def test_stress_equals_strain_derivative(mixed_model):
    atoms = sicgeo_cell()
    atoms.set_cell(triclinic_si().cell, scale_atoms=True)
    out = predict(mixed_model, [atoms])
    stress = out["pred_stress"][0].numpy()
    assert np.abs(stress).max() > 1e-4
    h = 1e-6
    volume = atoms.get_volume()
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[i, j] += sign * h / 2
                eps[j, i] += sign * h / 2
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
                energies.append(energy_of(mixed_model, strained))
            fd = (energies[0] - energies[1]) / (2 * h) / volume
            assert abs(fd - stress[i, j]) < 1e-7, (i, j, fd, stress[i, j])


def test_smooth_at_cutoff(si_model):
    """A dimer across r_c: E, dE/dr and d2E/dr2 go to zero continuously at the cutoff."""
    rc = si_model.energy_model.cutoff

    def dimer(r):
        return Atoms("Si2", positions=[[0, 0, 0], [r, 0, 0]])

    e_far = energy_of(si_model, dimer(rc + 0.5))
    rs = np.linspace(rc - 0.05, rc + 0.05, 41)
    e = np.array([energy_of(si_model, dimer(r)) - e_far for r in rs])
    forces = np.array([float(predict(si_model, [dimer(r)])["pred_forces"][1, 0]) for r in rs])
    inside = rs < rc
    assert np.all(np.abs(e[~inside]) < 1e-12) and np.all(np.abs(forces[~inside]) < 1e-12)
    # near r_c the energy vanishes like (r_c - r)^3, forces like (r_c - r)^2
    d = rc - rs[inside]
    assert np.all(np.abs(e[inside]) <= 50 * d ** 3 + 1e-12)
    assert np.all(np.abs(forces[inside]) <= 500 * d ** 2 + 1e-12)
    # and it is not trivially zero further in
    assert abs(energy_of(si_model, dimer(rc - 1.0)) - e_far) > 1e-4


def test_batch_equals_single(mixed_model):
    frames = [triclinic_si(seed=2), ethanol(), sicgeo_cell(), ethanol(seed=5)]
    batch = predict(mixed_model, frames)
    offset = 0
    for k, atoms in enumerate(frames):
        single = predict(mixed_model, [atoms])
        n = len(atoms)
        assert abs(float(batch["total_energy"][k] - single["total_energy"][0])) < 1e-10
        torch.testing.assert_close(batch["pred_forces"][offset:offset + n], single["pred_forces"], atol=1e-10, rtol=0)
        torch.testing.assert_close(batch["pred_stress"][k], single["pred_stress"][0], atol=1e-12, rtol=0)
        offset += n


def test_isolated_atom_energy_is_e0(mixed_model):
    e0 = mixed_model.energy_model.energies
    atom = Atoms("C", positions=[[0, 0, 0]])
    k = mixed_model.energy_model.species.index(6)
    y0 = energy_of(mixed_model, atom) - float(e0.e0[k])
    # an atom without neighbours sees the same constant features regardless of element position
    moved = Atoms("C", positions=[[3, -1, 2]])
    assert abs(energy_of(mixed_model, moved) - float(e0.e0[k]) - y0) < 1e-12


def test_float32_total_energy_of_a_large_structure_is_summed_in_float64():
    """The per-frame total of float32 per-atom energies: adding 64,000 of about -5.4 eV one after the
    other in float32 drifts by eV (the total of a 64,000-atom Si cell was 3.7 eV off); the total is
    summed in float64 and is the float32 value nearest the exact sum. Two frames in one batch."""
    from mlip import keys
    from mlip.models.energy import AtomicEnergies

    torch.manual_seed(0)
    n = (64_000, 1_000)
    head = AtomicEnergies([-5.4], scale=0.1).float()
    y = torch.randn(sum(n), dtype=torch.float32)
    data = {keys.SPECIES: torch.zeros(sum(n), dtype=torch.long),
            keys.BATCH: torch.repeat_interleave(torch.arange(2), torch.tensor(n)),
            keys.N_ATOMS: torch.tensor(n)}
    out = head(y, data)
    atomic = out[keys.ATOMIC_ENERGY]
    assert atomic.dtype == out[keys.TOTAL_ENERGY].dtype == torch.float32
    exact = [float(atomic[:n[0]].double().sum()), float(atomic[n[0]:].double().sum())]
    assert out[keys.TOTAL_ENERGY].tolist() == [float(torch.tensor(e, dtype=torch.float32)) for e in exact]
    sequential = torch.zeros(1).index_add_(0, torch.zeros(n[0], dtype=torch.long), atomic[:n[0]])
    assert abs(float(sequential) - exact[0]) > 0.1  # eV: what a float32 sum gives here
