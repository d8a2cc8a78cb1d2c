"""The TorchScript cell-list neighbour list (inside model.pt) against vesin: the same edge set
(i, j, integer shift) on the cells that break cell lists: cells thinner than the cutoff, atoms
outside the cell, mixed and no periodicity, zero cell rows, flat and sparse structures."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from mlip.nn.neighbors import torch_neighbor_list, vesin_neighbor_list


def edge_set(edge_index, shifts):
    ei = np.asarray(edge_index)
    s = np.rint(np.asarray(shifts)).astype(int)
    return sorted(zip(ei[0].tolist(), ei[1].tolist(), *(s[:, k].tolist() for k in range(3))))


def _sheared_cu():
    a = bulk("Cu", "fcc", a=3.6)  # primitive cell, 1 atom, heights ~2.1 Å: many images of itself
    a.set_cell(a.cell[:] @ np.array([[1, 0.2, 0], [0, 1, 0.1], [0, 0, 1]]), scale_atoms=True)
    return a


def _shifted_si():
    a = bulk("Si", "diamond", a=5.43).repeat((2, 2, 2))
    a.rattle(0.1, seed=1)
    a.positions += [7.3, -11.0, 2.5]  # atoms outside the cell: wrapped, shifts compensate
    return a


def _slab():
    s = fcc111("Pt", size=(3, 3, 4), vacuum=8.0)
    s.positions[:, 2] -= 20.0  # below the cell along the non-periodic direction
    return s


def _wire():
    w = bulk("Si", "diamond", a=5.43)
    w.pbc = [True, False, False]
    w.cell[1] = 0.0  # a zero row where not periodic
    return w


def _flat_and_sparse():
    rng = np.random.default_rng(3)
    pos = np.c_[rng.uniform(0, 300, size=(40, 2)), np.zeros(40)]  # one plane, atoms far apart
    pos[:10] = pos[0] + rng.normal(scale=1.5, size=(10, 3)) * [1, 1, 0]  # and one dense cluster
    return Atoms("C40", positions=pos)


CASES = {
    "sheared_fcc_primitive": (_sheared_cu, 5.0),
    "si_atoms_outside_cell": (_shifted_si, 5.0),
    "ethanol_no_cell": (lambda: molecule("CH3CH2OH"), 5.0),
    "slab_mixed_pbc": (_slab, 4.5),
    "wire_zero_cell_row": (_wire, 6.0),
    "flat_sparse_cloud": (_flat_and_sparse, 4.0),
    "single_atom": (lambda: Atoms("Ar", positions=[[1.0, 2.0, 3.0]]), 5.0),
    "d3_cutoff_small_cell": (lambda: bulk("Si", "diamond", a=5.43, cubic=True), 31.75),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cell_list_equals_vesin(name):
    build, cutoff = CASES[name]
    atoms = build()
    ei, s = torch_neighbor_list(torch.tensor(atoms.positions), torch.tensor(atoms.cell[:]), torch.tensor(atoms.pbc),
                                cutoff)
    ref_ei, ref_s, ref_d = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    assert edge_set(ei, s) == edge_set(ref_ei, ref_s)
    vec = atoms.positions[ei[1].numpy()] - atoms.positions[ei[0].numpy()] + s.numpy() @ atoms.cell[:]
    assert np.all(np.linalg.norm(vec, axis=1) < cutoff)


def test_cell_list_scripted_float32_large_cell():
    """The scripted function (as in model.pt) in float32 on a 2,744-atom rattled cell: the same
    edges as vesin except pairs within rounding of the cutoff."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((7, 7, 7))
    atoms.rattle(0.05, seed=2)
    cutoff = 5.0
    scripted = torch.jit.script(torch_neighbor_list)
    ei, s = scripted(torch.tensor(atoms.positions, dtype=torch.float32),
                     torch.tensor(atoms.cell[:], dtype=torch.float32), torch.tensor(atoms.pbc), cutoff)
    ref_ei, ref_s, ref_d = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    got, ref = set(edge_set(ei, s)), set(edge_set(ref_ei, ref_s))
    close = np.abs(ref_d - cutoff) < 1e-4  # pairs float32 may put on either side of the cutoff
    near = set(edge_set(ref_ei[:, close], ref_s[close]))
    assert len(ref) > 50_000
    assert (got ^ ref) <= near
