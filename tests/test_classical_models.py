"""Classical potentials: splines against scipy, energies against hand computations, the optional
hooks of the model contract, TorchScript export, and recovery of known parameters by fitting."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.interpolate import CubicSpline

from mlip import keys
from mlip.export import export_torchscript
from mlip.models import build_model
from mlip.models.classical.spline import UniformCubicSpline
from mlip.nn.cutoff import PolynomialCutoff
from mlip.physics import ForcesAndStress
from mlip.testing.systems import batch_of, ethanol, make_model, predict, sicgeo_cell, triclinic_si
from mlip.training.loss import WeightedLoss

CLASSICAL = ["lj", "morse", "spline_pair", "eam"]


def _natural(x, y):
    return CubicSpline(x, y, bc_type="natural")


def test_spline_equals_scipy_natural_spline_and_continues_linearly():
    torch.manual_seed(0)
    spline = UniformCubicSpline(1.0, 4.0, 9).double()
    values = torch.randn(2, 9, dtype=torch.float64)
    knots = np.linspace(1.0, 4.0, 9)
    x = torch.linspace(1.0, 4.0, 301, dtype=torch.float64)
    for f in range(2):
        ref = _natural(knots, values[f].numpy())
        got = spline(values, torch.full_like(x, f, dtype=torch.long), x)
        np.testing.assert_allclose(got.numpy(), ref(x.numpy()), atol=1e-12)
        # outside the grid: the tangent line at the end
        out = torch.tensor([0.2, 0.9, 4.3, 5.0], dtype=torch.float64)
        got = spline(values, torch.full_like(out, f, dtype=torch.long), out).numpy()
        lo, hi = out.numpy()[:2], out.numpy()[2:]
        np.testing.assert_allclose(got[:2], ref(1.0) + ref(1.0, 1) * (lo - 1.0), atol=1e-12)
        np.testing.assert_allclose(got[2:], ref(4.0) + ref(4.0, 1) * (hi - 4.0), atol=1e-12)
    # differentiable in x (autograd equals scipy's derivative) and in the knot values (linear map)
    xs = torch.tensor([1.3, 2.0, 3.71], dtype=torch.float64, requires_grad=True)
    y = spline(values, torch.zeros(3, dtype=torch.long), xs)
    (g,) = torch.autograd.grad(y.sum(), xs)
    np.testing.assert_allclose(g.numpy(), _natural(knots, values[0].numpy())(xs.detach().numpy(), 1), atol=1e-10)


def test_spline_built_in_float32_is_exact_after_casting_to_float64():
    spline = UniformCubicSpline(0.0, 3.0, 12).double()
    values = torch.randn(1, 12, dtype=torch.float64)
    x = torch.linspace(0.0, 3.0, 97, dtype=torch.float64)
    ref = _natural(np.linspace(0.0, 3.0, 12), values[0].numpy())(x.numpy())
    np.testing.assert_allclose(spline(values, torch.zeros(97, dtype=torch.long), x).numpy(), ref, atol=1e-13)


def _dimer(z1, z2, r):
    return Atoms(numbers=[z1, z2], positions=[[0.0, 0.0, 0.0], [r, 0.3 * r, -0.2 * r]] / np.sqrt(1.13))


def test_lj_and_morse_dimers_equal_hand_formulas():
    envelope = PolynomialCutoff(5.0, 6)
    for name in ("lj", "morse"):
        model = ForcesAndStress(build_model(name, species=[1, 14], cutoff=5.0, e0=[-0.25, -0.75]).double())
        em = model.energy_model
        with torch.no_grad():
            for p in em.parameters():
                p.add_(torch.linspace(0.05, 0.25, p.numel(), dtype=torch.float64))
        assert em.pair_names == ["H-H", "H-Si", "Si-Si"]
        for r in (1.4, 2.2, 3.9):
            e = float(predict(model, [_dimer(1, 14, r)])["total_energy"][0])
            f = float(envelope(torch.tensor(r, dtype=torch.float64)))
            if name == "lj":
                eps, sig = float(em.epsilon[1]), float(em.sigma[1])
                v = 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)
            else:
                d, a, re = float(em.D_e[1]), float(em.a[1]), float(em.r_e[1])
                v = d * (np.exp(-2 * a * (r - re)) - 2 * np.exp(-a * (r - re)))
            assert e == pytest.approx(-1.0 + v * f, abs=1e-12), (name, r)


def test_eam_trimer_equals_hand_computation():
    model = ForcesAndStress(build_model("eam", species=[13, 29], cutoff=5.0, e0=[-0.125, -0.25], n_knots=8,
                                        r_min=1.0, n_rho_knots=6, rho_max_init=4.0).double())
    em = model.energy_model
    torch.manual_seed(1)
    with torch.no_grad():
        for p in em.parameters():
            p.add_(0.1 * torch.randn_like(p))
    atoms = Atoms(numbers=[13, 29, 29], positions=[[0, 0, 0], [2.4, 0, 0], [0.7, 2.9, 0.4]])
    e = float(predict(model, [atoms])["total_energy"][0])
    r_knots = np.linspace(1.0, 5.0, 8)
    rho_knots = np.linspace(0.0, 4.0, 6)
    env = lambda r: float(PolynomialCutoff(5.0, 6)(torch.tensor(r, dtype=torch.float64)))  # noqa: E731
    phi = [_natural(r_knots, v) for v in em.phi_values.detach().numpy()]  # Al-Al, Al-Cu, Cu-Cu
    dens = [_natural(r_knots, v) for v in em.density_values.detach().numpy()]
    emb = [_natural(rho_knots, np.concatenate([[0.0], v])) for v in em.embedding_values.detach().numpy()]
    kind = [0, 1, 1]
    d = atoms.get_all_distances()
    total = -0.125 - 0.25 - 0.25
    for i in range(3):
        rho = sum(dens[kind[j]](d[i, j]) * env(d[i, j]) for j in range(3) if j != i)
        total += emb[kind[i]](rho)
        for j in range(i + 1, 3):
            total += phi[kind[i] + kind[j]](d[i, j]) * env(d[i, j])
    assert e == pytest.approx(total, abs=1e-12)


@pytest.mark.parametrize("name", CLASSICAL)
def test_hooks_name_real_parameters_and_shapes(name):
    model = make_model(name, [1, 6, 8, 14], calibrate_on=[ethanol(), sicgeo_cell()]).energy_model
    named = dict(model.named_parameters())
    named.update(dict(model.named_buffers()))
    ids = model.identifiability_parameters()
    assert "energies.e0" in ids and all(n in named for n in ids)
    # every trainable parameter is physical and listed for the Fisher analysis; E0 is trained
    # only with fit_e0 (a parameter then, a buffer otherwise) and never under L2
    trainable = set(dict(model.named_parameters()))
    assert trainable - {"energies.e0"} == set(ids) - {"energies.e0"}
    assert ("energies.e0" in trainable) == model.energies.e0.requires_grad
    assert not any(p is model.energies.e0 for p in model.l2_parameters())
    assert float(model.energies.scale) == 1.0 and float(model.energies.shift) == 0.0
    for f in model.smooth_functions():
        assert f.shape[-1] >= 4 and f.requires_grad
    if name in ("spline_pair", "eam"):
        assert model.smooth_functions()
    for p in model.l2_parameters():
        assert any(p is q for q in model.parameters())


def test_initialisation_from_data_uses_shortest_pair_distance():
    si = triclinic_si()
    model = make_model("lj", [14], calibrate_on=[si]).energy_model
    shortest = min(d for d in si.get_all_distances(mic=True).reshape(-1) if d > 0)
    assert float(model.sigma[0]) * 2 ** (1 / 6) == pytest.approx(shortest, rel=1e-9)
    eam = make_model("eam", [14], calibrate_on=[si]).energy_model
    rho = eam.densities(batch_of([si], eam))[0]
    assert eam.rho_max() == pytest.approx(2.0 * float(rho.max()), rel=1e-9)


def test_bad_hyperparameters_name_the_config_key():
    from mlip.errors import ConfigError

    with pytest.raises(ConfigError, match="model.r_min"):
        build_model("spline_pair", species=[14], cutoff=4.0, e0=[0.0], r_min=4.5)
    with pytest.raises(ConfigError, match="model.n_knots"):
        build_model("eam", species=[14], cutoff=4.0, e0=[0.0], n_knots=3)


@pytest.mark.parametrize("name", CLASSICAL)
def test_torchscript_export_equals_eager(name, tmp_path):
    model = make_model(name, [1, 6, 8, 14], calibrate_on=[ethanol(), sicgeo_cell()])
    scripted = export_torchscript(model, str(tmp_path / "model.pt"))
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    for atoms in (sicgeo_cell(), ethanol(), triclinic_si()):
        ref = predict(model, [atoms])
        for module in (scripted, loaded):
            out = module(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
                         torch.tensor(atoms.pbc))
            assert abs(float(out["energy"] - ref["total_energy"][0])) < 1e-8
            torch.testing.assert_close(out["forces"], ref["pred_forces"], atol=1e-8, rtol=0)
            torch.testing.assert_close(out["stress"], ref["pred_stress"][0], atol=1e-8, rtol=0)


# ---------------------------------------------------------------------- recovery of known parameters
def _lj_frames(n=6, seed=0):
    """Rattled, strained periodic fcc cells near the LJ minimum (sigma 2.5 Å)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk("Ar", "fcc", a=2.5 * 2 ** (1 / 6) * np.sqrt(2) * (0.97 + 0.02 * k), cubic=True)
        strain = np.eye(3) + 0.02 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.positions += 0.08 * rng.standard_normal(atoms.positions.shape)
        frames.append(atoms)
    frames.append(Atoms("Ar3", positions=[[0, 0, 0], [2.7, 0, 0], [1.2, 2.5, 0.3]]))  # a cluster
    return frames


def _labelled_batch(true_model, frames):
    batch = batch_of(frames, true_model)
    out = true_model(batch, compute_forces=True, compute_stress=False)
    batch[keys.ENERGY] = out[keys.TOTAL_ENERGY].detach()
    batch[keys.FORCES] = out[keys.PRED_FORCES].detach()
    for kind in (keys.ENERGY_MASK, keys.FORCES_MASK):
        batch[kind] = torch.ones(len(frames), dtype=torch.bool)
    batch[keys.STRESS_MASK] = torch.zeros(len(frames), dtype=torch.bool)
    batch[keys.STRESS] = torch.zeros(len(frames), 3, 3, dtype=torch.float64)
    return batch


def _fit(model, batch, steps=60):
    loss_fn = WeightedLoss({"energy": 0.001, "forces": 0.01})
    params = [p for p in model.parameters()]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        out = model(batch, compute_forces=True, compute_stress=False, create_graph=True)
        loss, _ = loss_fn(out, batch)
        loss.backward()
        return loss

    opt.step(closure)
    return float(closure())


def _lj(epsilon, sigma, e0=-0.05):
    model = build_model("lj", species=[18], cutoff=6.0, e0=[e0], fit_e0=True).double()
    with torch.no_grad():
        model.epsilon.fill_(epsilon)
        model.sigma.fill_(sigma)
    return ForcesAndStress(model)


def test_lj_fit_recovers_true_epsilon_and_sigma():
    frames = _lj_frames()
    batch = _labelled_batch(_lj(0.3, 2.5), frames)
    model = _lj(0.36, 2.35, e0=-0.25)  # 20 % and 6 % off, E0 off by 0.2 eV
    loss = _fit(model, batch)
    assert loss < 1e-10
    assert float(model.energy_model.epsilon[0]) == pytest.approx(0.3, rel=1e-2)
    assert float(model.energy_model.sigma[0]) == pytest.approx(2.5, rel=1e-2)
    assert float(model.energy_model.energies.e0[0]) == pytest.approx(-0.05, abs=1e-3)


def test_spline_pair_fit_reproduces_lj_forces():
    frames = _lj_frames(seed=1)
    batch = _labelled_batch(_lj(0.3, 2.5), frames)
    model = ForcesAndStress(build_model("spline_pair", species=[18], cutoff=6.0, e0=[-0.05], n_knots=16,
                                        r_min=2.0).double())
    start = model(batch, compute_forces=True, compute_stress=False)
    before = float((start[keys.PRED_FORCES] - batch[keys.FORCES]).pow(2).mean().sqrt())
    _fit(model, batch, steps=100)
    out = model(batch, compute_forces=True, compute_stress=False)
    rmse = float((out[keys.PRED_FORCES] - batch[keys.FORCES]).pow(2).mean().sqrt())
    scale = float(batch[keys.FORCES].pow(2).mean().sqrt())
    assert rmse < 0.02 * scale and rmse < 0.1 * before


@pytest.mark.slow
def test_eam_trains_on_the_shipped_data_and_exports(tmp_path, capsys):
    """``python train.py model=eam trainer.max_epochs=2``: the trainer fits it like any model; the
    checkpoint rebuilds it, model.pt reproduces it, and its LAMMPS file can be written."""
    from hydra import compose, initialize_config_dir

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run
    from mlip.export import load_exported, write_lammps_files
    from mlip.training.module import PotentialModule

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model=eam", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                                          "dtype=float64"])
    metrics = run(cfg, tmp_path)
    assert metrics["epochs"] == 2 and metrics["test"]["forces_mae"] < 2000
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    module = PotentialModule(**ckpt["hyper_parameters"]).double()  # rebuilt from the checkpoint alone
    module.load_state_dict(ckpt["state_dict"])
    em = module.energy_model
    assert float(em.energies.scale) == 1.0 and float(em.energies.shift) == 0.0
    # E0 is fitted along (fit_e0: true in configs/model/eam.yaml), starting from the data's E0
    assert em.energies.e0.requires_grad and float(em.energies.e0[0]) != metrics["data"]["e0_eV"]["Si"]
    assert em.rho_max() != pytest.approx(24.0)  # the rho grid was set from the data and restored
    atoms = triclinic_si()
    ref = predict(module.model.double(), [atoms])
    scripted, _ = load_exported(str(tmp_path / "model.pt"))
    out = scripted(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
                   torch.tensor(atoms.pbc))
    assert abs(float(out["energy"] - ref["total_energy"][0])) < 1e-8
    assert write_lammps_files(module.model, str(tmp_path / "direct")).pair_style == "eam/alloy"
    # the same files through the command line, with the LAMMPS lines to paste
    from mlip.cli.main import main as mlip_main

    assert mlip_main(["export", str(tmp_path), "--format", "lammps"]) == 0
    printed = capsys.readouterr().out
    assert "pair_style eam/alloy" in printed and "pair_coeff * * " in printed and "Si" in printed
    direct = (tmp_path / "direct" / "mlip.eam.alloy").read_bytes()
    assert (tmp_path / "lammps" / "mlip.eam.alloy").read_bytes() == direct


def test_smoothness_penalty_acts_on_every_tabulated_function():
    from mlip.training.regularization import Regularizer

    em = make_model("eam", [14, 32], calibrate_on=[triclinic_si()]).energy_model
    penalty = Regularizer({"name": "smoothness", "alpha": 0.5}, em)(em)
    f_full = torch.cat([torch.zeros(2, 1, dtype=torch.float64), em.embedding_values], dim=1)  # F(0) = 0 included
    hand = sum(float(((v[:, :-2] - 2 * v[:, 1:-1] + v[:, 2:]) ** 2).sum())
               for v in (em.phi_values, em.density_values, f_full))
    assert float(penalty) == pytest.approx(0.5 * hand, rel=1e-12)
    penalty.backward()
    assert em.phi_values.grad.abs().sum() > 0 and em.embedding_values.grad.abs().sum() > 0
    assert em.energies.e0.grad is None  # E0 is never penalised


def test_boltzmann_inversion_start_recovers_the_potential(tmp_path):
    """g(r) = exp(-V/kT) of a known Morse pair inverts to V at the knots (model.init_rdf)."""
    import numpy as np

    from mlip.models import build_model
    from mlip.models.classical.pair import morse

    T = 500.0
    kT = 8.617333262e-5 * T
    r = np.linspace(0.5, 5.0, 400)
    v = morse(torch.tensor(r), torch.tensor(0.3), torch.tensor(1.4), torch.tensor(2.6)).numpy()
    np.savetxt(tmp_path / "rdf.dat", np.stack([r, np.exp(-v / kT)], axis=1))
    model = build_model("spline_pair", species=[18], cutoff=5.0, e0=[0.0], n_knots=12, r_min=2.0,
                        init_rdf=str(tmp_path / "rdf.dat"), init_temperature=T)
    knots = model.spline.knots().double()
    expected = morse(knots, torch.tensor(0.3), torch.tensor(1.4), torch.tensor(2.6))
    torch.testing.assert_close(model.knot_values[0].double(), expected, atol=2e-4, rtol=0)
    model.initialize_from_data([])  # the inverted start is kept, not reset to the Morse default
    torch.testing.assert_close(model.knot_values[0].double(), expected, atol=2e-4, rtol=0)
