"""model=equivariant: internal features rotate with Wigner D matrices, parity setting, presets,
hooks, TorchScript export, and a short training run through train.py (float64, small systems;
the general physics suite in test_model_physics.py covers it too)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read, write
from e3nn import o3
from scipy.spatial.transform import Rotation

from mlip import keys
from mlip.errors import ConfigError
from mlip.export.torchscript import export_torchscript
from mlip.models.equivariant import PRESETS, EquivariantModel, upgrade_state_dict
from mlip.physics import ForcesAndStress
from mlip.testing.systems import batch_of, ethanol, predict, sicgeo_cell

REPO = Path(__file__).resolve().parents[1]
SPECIES = [1, 6, 8, 14]


def _model(**kw) -> ForcesAndStress:
    torch.manual_seed(0)
    cfg = dict(num_channels=3, l_max=2, sh_l_max=3, num_interactions=2, correlation=3, num_basis=6,
               radial_hidden=[8], readout_hidden=8)
    cfg.update(kw)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = EquivariantModel(SPECIES, 4.0, [-1.0, -2.0, -3.0, -4.0], scale=0.5, avg_num_neighbors=10.0, **cfg)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 1:
                module.weight.mul_(100.0)
    return ForcesAndStress(model.double()).eval()


def _features(model: ForcesAndStress, atoms):
    """Atomic basis A of every layer and hidden features h after each layer but the last,
    each [N, C, D], recorded by hooks."""
    got = []
    hooks = []
    for layer in model.energy_model.layers:
        hooks.append(layer.product.register_forward_hook(lambda m, inp, out: got.append(("A", inp[0]))))
        hooks.append(layer.register_forward_hook(lambda m, inp, out: got.append(("h", out))))
    model(batch_of([atoms], model), compute_forces=False, compute_stress=False)
    for h in hooks:
        h.remove()
    return got


def _irreps(model, kind, t):
    layer = model.energy_model.layers[t]
    mix = layer.linear_a if kind == "A" else layer.linear_out
    counts = torch.bincount(mix.irrep_of_component)
    parity = model.energy_model.hparams["parity"] == "True"
    return o3.Irreps([(1, (int(c - 1) // 2, (-1) ** (int(c - 1) // 2) if parity else 1)) for c in counts])


def _wigner_d(irreps, R):
    """e3nn's D(R) in float64 throughout (it builds intermediate tensors in the default dtype)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return irreps.D_from_matrix(torch.tensor(R))
    finally:
        torch.set_default_dtype(default)


def _transformed(atoms, R):
    moved = atoms.copy()
    moved.set_positions(atoms.get_positions() @ R.T + np.array([0.4, -0.2, 1.0]))
    if atoms.pbc.any():
        moved.set_cell(atoms.get_cell()[:] @ R.T)
    return moved


@pytest.mark.parametrize("parity", [True, False])
def test_internal_features_rotate_with_wigner_d(parity):
    model = _model(parity=parity)
    atoms = sicgeo_cell()
    R = Rotation.random(random_state=5).as_matrix()
    if parity:
        R = -R  # an improper rotation: O(3) features transform with their parity too
    ref = _features(model, atoms)
    out = _features(model, _transformed(atoms, R))
    n_l_positive = 0
    for k, ((kind, a), (_, b)) in enumerate(zip(ref, out)):
        irreps = _irreps(model, kind, k // 2)
        D = _wigner_d(irreps, R)
        torch.testing.assert_close(b, a @ D.T, atol=1e-10, rtol=0)
        n_l_positive += int(irreps.lmax > 0 and a[:, :, 1:].abs().max() > 1e-3)
    assert n_l_positive == 3  # A of both layers and h of the first carry l > 0


def test_parity_setting_decides_mirror_symmetry():
    atoms = ethanol()  # chiral once rattled
    mirrored = _transformed(atoms, np.diag([1.0, 1.0, -1.0]))
    for parity, symmetric in ((True, True), (False, False)):
        model = _model(parity=parity)
        e = predict(model, [atoms])["total_energy"][0]
        e_mirror = predict(model, [mirrored])["total_energy"][0]
        assert (abs(float(e - e_mirror)) < 1e-10) == symmetric, parity
    # both are invariant under proper rotations
    model = _model(parity=False)
    rotated = _transformed(atoms, Rotation.random(random_state=1).as_matrix())
    assert abs(float(predict(model, [atoms])["total_energy"][0] - predict(model, [rotated])["total_energy"][0])) < 1e-10


@pytest.mark.parametrize("correlation", [1, 2])
def test_lower_correlation_and_scalar_features(correlation):
    model = _model(correlation=correlation, l_max=0, num_interactions=1)
    atoms = sicgeo_cell()
    R = Rotation.random(random_state=2).as_matrix()
    ref, out = predict(model, [atoms]), predict(model, [_transformed(atoms, R)])
    assert abs(float(ref["total_energy"][0] - out["total_energy"][0])) < 1e-10
    torch.testing.assert_close(out["pred_forces"], ref["pred_forces"] @ torch.tensor(R).T, atol=1e-10, rtol=0)
    assert ref["pred_forces"].abs().max() > 1e-3


@pytest.mark.parametrize("parity", [True, False])
def test_correlation_4_model_is_equivariant(parity):
    """A full model at correlation 4 (body order 5): A and h rotate with Wigner D, energies are
    invariant and forces rotate, under an improper rotation when parity is on."""
    model = _model(correlation=4, l_max=1, sh_l_max=2, num_channels=2)
    atoms = sicgeo_cell()
    R = Rotation.random(random_state=7).as_matrix()
    if parity:
        R = -R
    ref_feat, out_feat = _features(model, atoms), _features(model, _transformed(atoms, R))
    for k, ((kind, a), (_, b)) in enumerate(zip(ref_feat, out_feat)):
        torch.testing.assert_close(b, a @ _wigner_d(_irreps(model, kind, k // 2), R).T, atol=1e-10, rtol=0)
    ref, out = predict(model, [atoms]), predict(model, [_transformed(atoms, R)])
    assert abs(float(ref["total_energy"][0] - out["total_energy"][0])) < 1e-10
    torch.testing.assert_close(out["pred_forces"], ref["pred_forces"] @ torch.tensor(R).T, atol=1e-10, rtol=0)
    assert ref["pred_forces"].abs().max() > 1e-3
    assert len(model.energy_model.layers[0].product.blocks[0].orders) == 4


def test_state_dict_from_before_the_layer_split_loads():
    """A state dict saved by the earlier layout (one Interaction class, weights w1..w3 with empty
    placeholders above the correlation) loads strictly and gives the same energy and forces."""
    saved = torch.load(REPO / "tests" / "data" / "equivariant_state_dict_before_nn_layers.pt")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = EquivariantModel([6, 8, 14], 4.0, [-1.0, -2.0, -3.0], scale=0.5, avg_num_neighbors=10.0,
                                 **saved["config"]).double()
    finally:
        torch.set_default_dtype(default)
    assert "layers.0.product.blocks.0.w1" in saved["state_dict"]
    model.load_state_dict(saved["state_dict"])  # strict
    physics = ForcesAndStress(model)
    out = predict(physics, [sicgeo_cell()])
    torch.testing.assert_close(out["total_energy"], saved["energy"], atol=1e-12, rtol=0)
    torch.testing.assert_close(out["pred_forces"], saved["forces"], atol=1e-12, rtol=0)
    upgraded = upgrade_state_dict(saved["state_dict"])
    assert set(upgraded) == set(model.state_dict())
    assert upgrade_state_dict(upgraded).keys() == upgraded.keys()  # current names pass unchanged


def test_exported_torchscript_equals_eager(tmp_path):
    model = _model()
    scripted = export_torchscript(model, str(tmp_path / "model.pt"))
    for atoms in (sicgeo_cell(), ethanol()):
        eager = predict(model, [atoms])
        res = scripted(torch.tensor(atoms.get_positions()), torch.tensor(atoms.get_atomic_numbers()),
                       torch.tensor(atoms.get_cell()[:]), torch.tensor(atoms.get_pbc()))
        assert abs(float(res["energy"] - eager["total_energy"][0])) < 1e-10
        torch.testing.assert_close(res["forces"], eager["pred_forces"], atol=1e-10, rtol=0)
        if atoms.pbc.all():
            torch.testing.assert_close(res["stress"], eager["pred_stress"][0], atol=1e-12, rtol=0)


def test_presets_fill_unset_knobs_and_check_ranges():
    small = EquivariantModel([14], 5.0, [0.0], size="small")
    assert small.num_channels == PRESETS["small"]["num_channels"]
    assert small.num_interactions == PRESETS["small"]["num_interactions"]
    wide = EquivariantModel([14], 5.0, [0.0], size="small", num_channels=7, num_interactions=3)
    assert wide.num_channels == 7 and wide.num_interactions == 3 and len(wide.layers) == 3
    sizes = [sum(p.numel() for p in EquivariantModel([14], 5.0, [0.0], size=s).parameters())
             for s in ("small", "medium", "large")]
    assert sizes[0] < sizes[1] < sizes[2]
    with pytest.raises(ConfigError, match="model.size='huge'"):
        EquivariantModel([14], 5.0, [0.0], size="huge")
    with pytest.raises(ConfigError, match="model.l_max=5"):
        EquivariantModel([14], 5.0, [0.0], l_max=5)
    with pytest.raises(ConfigError, match="model.correlation=7: must be between 1 and 6"):
        EquivariantModel([14], 5.0, [0.0], correlation=7)
    with pytest.raises(ConfigError, match="model.correlation=5 with model.sh_l_max=3"):
        EquivariantModel([14], 5.0, [0.0], correlation=5)  # 16^5 entries per channel and atom


@pytest.mark.parametrize("hidden", [[32, 32], [16, 24, 8]])
def test_radial_network_with_folded_scales_equals_e3nn(hidden):
    """The model runs its e3nn FullyConnectedNet with the constant scales folded into the weights
    (``folded_weight_scales``) and its columns in the layers' order (``radial_order``): the same
    function of the same parameters as e3nn's own forward, and the same parameter gradients."""
    torch.manual_seed(0)
    model = EquivariantModel([1, 8], 4.0, [0.0, 0.0], radial_hidden=hidden).double()
    r = torch.linspace(0.3, 4.0, 40, dtype=torch.float64)
    x = model.basis(r) * model.envelope(r).unsqueeze(-1)
    ours, e3nn_ = model.radial_features(r), model.radial(x).index_select(1, model.radial_order)
    assert e3nn_.abs().max() > 0.1
    torch.testing.assert_close(ours, e3nn_, rtol=1e-12, atol=1e-12)
    weights = [layer.weight for layer in model.radial]
    g_ours = torch.autograd.grad(ours.pow(2).sum(), weights)
    g_e3nn = torch.autograd.grad(e3nn_.pow(2).sum(), weights)
    for a, b in zip(g_ours, g_e3nn):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_optional_hooks():
    model = _model().energy_model
    (radial,) = model.smooth_functions(n_points=50)
    assert radial.shape == (sum(model.weight_sizes), 50)
    assert radial[:, -1].abs().max() < 1e-12 and radial[:, :-1].abs().max() > 1e-3  # zero at r_c only
    assert radial.requires_grad
    names = dict(model.named_parameters())
    names.update(dict(model.named_buffers()))
    for name in model.identifiability_parameters():
        assert name in names, name


def test_two_epoch_training_run(tmp_path):
    frames = read(REPO / "mlip" / "datasets" / "mlearn_si" / "Si_training.extxyz", index=":")
    write(tmp_path / "train.extxyz", frames[::12][:16])
    write(tmp_path / "test.extxyz", frames[5::40][:4])
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "model=equivariant", "model.size=small", "model.num_channels=4",
         f"data.train={tmp_path / 'train.extxyz'}", f"data.test={tmp_path / 'test.extxyz'}", "data.batch_size=4",
         "trainer.max_epochs=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert metrics["test"]["forces_mae"] < 1500  # meV/Å; finite and not absurd after two epochs
    exported = torch.jit.load(str(run_dir / "model.pt"))
    assert exported.atomic_numbers == [14]


def test_radial_network_once_per_reverse_pair_changes_nothing():
    """``radial_per_pair`` evaluates the radial network once per pair i <-> j and gathers it to both
    edges: energies, forces, stress and the parameter gradients of a force loss (double backward)
    equal those of the network on every edge, on a triclinic 4-element cell and a molecule in one
    batch (float64)."""
    model = _model()
    batch = batch_of([sicgeo_cell(), ethanol()], model)
    core = model.energy_model

    def run(per_pair):
        core.radial_per_pair = per_pair
        out = model(batch, compute_forces=True, compute_stress=True, create_graph=True)
        loss = out["total_energy"].sum() + out["pred_forces"].pow(2).sum() + out["pred_stress"].pow(2).sum()
        grads = torch.autograd.grad(loss, list(core.parameters()), allow_unused=True)
        return [out["total_energy"], out["pred_forces"], out["pred_stress"]] + [g for g in grads if g is not None]

    shared, every = run(True), run(False)
    assert len(shared) == len(every)
    for x, y in zip(shared, every):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-10)


def test_reverse_pair_groups_pair_each_edge_with_its_reverse():
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    from mlip.nn.geometry import reverse_pair_groups

    small = bulk("Si", "diamond", a=5.43)  # 2 atoms: edges to periodic images of the atom itself
    small.rattle(0.05, seed=1)
    for atoms in (sicgeo_cell(), small):
        i, j, shifts = neighbor_list("ijS", atoms, 4.0)
        edge_index = torch.tensor(np.stack([i, j]))
        first, group = reverse_pair_groups(edge_index, torch.tensor(shifts, dtype=torch.float64))
        assert first.shape[0] * 2 == len(i)  # a full list: every edge has exactly one reverse
        assert bool((group.index_select(0, first) == torch.arange(first.shape[0])).all())
        by_edge = {(a, b, tuple(s)): g for a, b, s, g in zip(i, j, shifts.tolist(), group.tolist())}
        for (a, b, s), g in by_edge.items():
            assert by_edge[(b, a, tuple(-x for x in s))] == g
    assert (i == j).any()  # the small cell's self-image edges were among them
    # an edge without its reverse (an engine's edge to a ghost atom) is a pair of its own
    first, group = reverse_pair_groups(edge_index[:, :-1], torch.tensor(shifts[:-1], dtype=torch.float64))
    assert first.shape[0] * 2 == len(i)


def test_half_edge_list_keeps_each_pair_once_and_refuses_lists_that_are_not_full():
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    from mlip.nn.geometry import half_edge_list

    small = bulk("Si", "diamond", a=5.43)  # 2 atoms: self-image edges i -> i with S and -S
    small.rattle(0.05, seed=1)
    for atoms in (sicgeo_cell(), small, ethanol()):
        i, j, shifts = neighbor_list("ijS", atoms, 4.0)
        edge_index, cell_shifts = torch.tensor(np.stack([i, j])), torch.tensor(shifts, dtype=torch.float64)
        half, half_shifts = half_edge_list(edge_index, cell_shifts)
        assert half.shape[1] * 2 == len(i)
        full = {(a, b, tuple(s)) for a, b, s in zip(i.tolist(), j.tolist(), shifts.tolist())}
        kept = [(a, b, tuple(s)) for a, b, s in zip(*half.tolist(), half_shifts.long().tolist())]
        reverses = [(b, a, tuple(-x for x in s)) for a, b, s in kept]
        assert set(kept) | set(reverses) == full and not set(kept) & set(reverses)
    assert half_edge_list(edge_index[:, :-1], cell_shifts[:-1]) is None  # one edge lacks its reverse
    assert half_edge_list(half, half_shifts) is None  # a half list is not a full one
    assert half_edge_list(edge_index[:, :0], cell_shifts[:0]) is None


def test_paired_edges_give_the_same_outputs_with_the_radial_network_on_half_the_edges(monkeypatch):
    """``keys.PAIRED_EDGES`` (an engine's half list doubled, the exporters' graph ``paired``): energy,
    forces, stress and their parameter gradients equal the full list's (float64, a triclinic
    4-element cell with self-image edges), and the radial network sees G = E/2 distances."""
    from mlip.nn.geometry import doubled_edge_list, half_edge_list

    model = _model()
    core = model.energy_model
    core.radial_per_pair = False  # the reference: every edge
    atoms = sicgeo_cell()
    full = batch_of([atoms], model)
    half, half_shifts = half_edge_list(full[keys.EDGE_INDEX], full[keys.CELL_SHIFTS])
    edge_index, cell_shifts = doubled_edge_list(half, half_shifts)
    paired = dict(full, **{keys.EDGE_INDEX: edge_index, keys.CELL_SHIFTS: cell_shifts,
                           keys.PAIRED_EDGES: torch.zeros(0)})
    seen = []
    radial = type(core).radial_weights
    monkeypatch.setattr(type(core), "radial_weights", lambda self, r: seen.append(r.shape[0]) or radial(self, r))

    def run(batch):
        out = model(batch, compute_forces=True, compute_stress=True, create_graph=True)
        loss = out["total_energy"].sum() + out["pred_forces"].pow(2).sum() + out["pred_stress"].pow(2).sum()
        grads = torch.autograd.grad(loss, list(core.parameters()), allow_unused=True)
        return [out["total_energy"], out["pred_forces"], out["pred_stress"]] + [g for g in grads if g is not None]

    every, halved = run(full), run(paired)
    n_edges = full[keys.EDGE_INDEX].shape[1]
    assert seen == [n_edges, n_edges // 2]
    for x, y in zip(every, halved):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-10)


def test_model_pt_paired_methods_equal_the_full_list_methods(tmp_path):
    """``model.pt``'s methods for a half list (LAMMPS on one rank with ghosts folded; the ASE
    calculator) give ``compute_engine``'s and ``compute``'s outputs on the full list (float64); the
    file says the model reads pairs."""
    from mlip.nn.geometry import half_edge_list

    model = _model()
    scripted = export_torchscript(model, str(tmp_path / "model.pt"))
    assert scripted.paired_route
    atoms = sicgeo_cell()
    batch = batch_of([atoms], model)
    inputs = (batch[keys.POSITIONS], batch[keys.ATOMIC_NUMBERS], batch[keys.CELL][0], batch[keys.PBC][0])
    ref = scripted.compute_engine(*inputs, batch[keys.EDGE_INDEX], batch[keys.CELL_SHIFTS])
    half = half_edge_list(batch[keys.EDGE_INDEX], batch[keys.CELL_SHIFTS])
    out = scripted.compute_engine_paired(*inputs, *half)
    for name in ("energy", "atomic_energies", "forces", "stress", "virial"):
        torch.testing.assert_close(out[name], ref[name], atol=1e-12, rtol=1e-10)
    # compute_paired, which the ASE calculator takes for such a file
    ref = scripted.compute(*inputs, batch[keys.EDGE_INDEX], batch[keys.CELL_SHIFTS])
    out = scripted.compute_paired(*inputs, *half)
    for name in ("energy", "atomic_energies", "forces", "stress", "virial"):
        torch.testing.assert_close(out[name], ref[name], atol=1e-12, rtol=1e-10)
