"""Fisher information (mlip.analysis.identifiability) and ``mlip identifiability``."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlip import keys
from mlip.analysis.identifiability import analyse, fisher_information, jacobian, select_parameters
from mlip.errors import ConfigError
from mlip.models.energy import AtomicEnergies
from mlip.nn.cutoff import PolynomialCutoff
from mlip.nn.geometry import edge_vectors
from mlip.nn.radial import BesselBasis
from mlip.nn.scatter import scatter_sum
from mlip.physics import ForcesAndStress
from mlip.testing.systems import batch_of, make_model, triclinic_si

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

REPO = Path(__file__).resolve().parents[1]
SIGMA = {"energy": 0.005, "forces": 0.05, "stress": 0.003}


def labelled_batch(model, frames, seed=0, energy_mask=None):
    """Frames labelled with the model's own predictions plus noise (residuals non-zero)."""
    batch = batch_of(frames, model)
    out = model(batch, compute_forces=True, compute_stress=True)
    g = torch.Generator().manual_seed(seed)
    noise_e = torch.randn(len(frames), generator=g, dtype=torch.float64)
    noise_f = torch.randn(out[keys.PRED_FORCES].shape, generator=g, dtype=torch.float64)
    batch[keys.ENERGY] = out[keys.TOTAL_ENERGY].detach() + 0.01 * noise_e
    batch[keys.FORCES] = out[keys.PRED_FORCES].detach() + 0.05 * noise_f
    batch[keys.STRESS] = out[keys.PRED_STRESS].detach()
    n = len(frames)
    batch[keys.ENERGY_MASK] = torch.ones(n, dtype=torch.bool) if energy_mask is None else torch.tensor(energy_mask)
    batch[keys.FORCES_MASK] = torch.ones(n, dtype=torch.bool)
    batch[keys.STRESS_MASK] = torch.ones(n, dtype=torch.bool)
    return batch


@pytest.fixture(scope="module")
def si_model_and_batch():
    frames = [triclinic_si(seed=s) for s in range(3)]
    model = make_model("invariant", [14], calibrate_on=frames)
    return model, labelled_batch(model, frames)


# ---------------------------------------------------------------------------- E0 and degeneracies
def test_e0_has_no_information_from_forces_only(si_model_and_batch):
    model, batch = si_model_and_batch
    params = ["energies.e0", "readout.nets.0.2.weight"]
    forces_only = fisher_information(model, [batch], {"forces": 0.05}, params)
    rep = analyse(forces_only)
    assert forces_only.names[0] == "energies.e0[Si]"
    assert rep["uninformative"] == ["energies.e0[Si]"]
    assert rep["n_zero"] == 1
    zero = rep["sloppiest"][0]
    assert zero["zero"] and zero["components"][0][0] == "energies.e0[Si]"
    assert zero["components"][0][1] == pytest.approx(1.0, abs=1e-9)
    assert math.isinf(rep["parameters"][0]["marginal_se"]) and math.isinf(rep["parameters"][0]["conditional_se"])
    # with energies E0 is determined: no zero eigenvalue, finite standard error
    both = analyse(fisher_information(model, [batch], {"energy": 0.005, "forces": 0.05}, params))
    assert both["n_zero"] == 0 and both["uninformative"] == []
    assert both["condition_number"] < 1e12
    assert math.isfinite(both["parameters"][0]["marginal_se"])


def test_shift_and_e0_of_one_element_are_collinear_under_energies(si_model_and_batch):
    model, batch = si_model_and_batch
    info = fisher_information(model, [batch], {"energy": 0.005}, ["energies.e0", "energies.shift"])
    rep = analyse(info)
    assert rep["n_zero"] == 1 and rep["uninformative"] == []
    comps = dict(rep["sloppiest"][0]["components"])
    assert comps["energies.e0[Si]"] == pytest.approx(-comps["energies.shift"], abs=1e-9)
    assert abs(comps["energies.shift"]) == pytest.approx(2 ** -0.5, abs=1e-9)
    # dE/dE0 = dE/dshift = N per frame: the per-atom residual moves by 1 for either, so
    # F = [[1, 1], [1, 1]] * n_frames / (n_frames sigma^2) and the stiff eigenvalue is 2 / sigma^2
    assert rep["eigenvalues"][0] == pytest.approx(2 / 0.005 ** 2, rel=1e-10)


def test_default_neural_parameters_show_the_three_structural_degeneracies(si_model_and_batch):
    """Output layer (w, b), E0, scale, shift of one element: E_i = scale (w.h_i + b) + shift + E0.
    Null directions: b vs E0, shift vs E0, scale vs (w, b); with forces only, b, E0 and shift
    carry no information at all."""
    model, batch = si_model_and_batch
    names = select_parameters(model.energy_model)
    assert names == ["readout.nets.0.2.weight", "readout.nets.0.2.bias", "energies.e0", "energies.scale",
                     "energies.shift"]
    info = fisher_information(model, [batch], SIGMA)
    assert len(info.names) == 16 + 4
    rep = analyse(info)
    assert rep["n_zero"] == 3 and rep["uninformative"] == []
    forces = analyse(fisher_information(model, [batch], SIGMA, kinds=["forces"]))
    assert sorted(forces["uninformative"]) == ["energies.e0[Si]", "energies.shift", "readout.nets.0.2.bias[0]"]
    assert forces["n_zero"] == 4


# ---------------------------------------------------------------------------- linear model
class LinearPair(torch.nn.Module):
    """E = sum_i E0 + 1/2 sum_ij sum_k theta_k b_k(r_ij) f(r_ij): linear in theta and E0."""

    def __init__(self, cutoff=4.0, num_basis=4):
        super().__init__()
        self.species = [14]
        self.cutoff = cutoff
        self.theta = torch.nn.Parameter(torch.linspace(0.3, -0.2, num_basis, dtype=torch.float64))
        self.basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff)
        self.energies = AtomicEnergies([-1.5])

    def forward(self, data):
        r = edge_vectors(data).norm(dim=-1)
        e = (self.basis(r) @ self.theta) * self.envelope(r)
        atomic = 0.5 * scatter_sum(e, data[keys.EDGE_INDEX][0], data[keys.SPECIES].shape[0])
        return self.energies(atomic, data)


def linear_pair() -> LinearPair:
    """Built in float64 throughout (basis frequencies included)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return LinearPair()
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_fisher_of_a_linear_model_equals_hand_computed_jtwj(mode):
    model = ForcesAndStress(linear_pair())
    frames = [triclinic_si(seed=s) for s in range(3)]
    batch = labelled_batch(model, frames, energy_mask=[True, False, True])  # frame 1: no energy label
    info = fisher_information(model, [batch], SIGMA, ["theta", "energies.e0"], mode=mode)
    assert info.names == [f"theta[{k}]" for k in range(4)] + ["energies.e0[Si]"]

    # columns of J by linearity: predictions with theta = unit vector, E0 = 0 (and E0 = 1, theta = 0)
    n_atoms = batch[keys.N_ATOMS].double()
    columns = {"energy": [], "forces": [], "stress": []}
    for k in range(5):
        unit = linear_pair()
        with torch.no_grad():
            unit.theta.zero_()
            unit.energies.e0.zero_()
            (unit.theta[k] if k < 4 else unit.energies.e0[0]).fill_(1.0)
        out = ForcesAndStress(unit)(batch, compute_forces=True, compute_stress=True)
        columns["energy"].append((out[keys.TOTAL_ENERGY] / n_atoms)[batch[keys.ENERGY_MASK]].detach())
        columns["forces"].append(out[keys.PRED_FORCES].reshape(-1).detach())
        columns["stress"].append(out[keys.PRED_STRESS].reshape(-1).detach())
    fisher = np.zeros((5, 5))
    for kind, cols in columns.items():
        J = torch.stack(cols, dim=1).numpy()
        assert info.counts[kind] == J.shape[0]
        fisher += J.T @ J / (J.shape[0] * SIGMA[kind] ** 2)
    assert info.counts["energy"] == 2 and info.counts["forces"] == 3 * 8 * 3
    np.testing.assert_allclose(info.matrix("loss"), fisher, rtol=1e-10, atol=1e-12 * np.abs(fisher).max())
    np.testing.assert_allclose(info.matrix("likelihood", ["forces"]) / info.counts["forces"],
                               info.matrix("loss", ["forces"]), rtol=1e-12)


def test_rows_and_columns_jacobians_agree(si_model_and_batch):
    model, batch = si_model_and_batch
    a = fisher_information(model, [batch], SIGMA, mode="rows").matrix()
    b = fisher_information(model, [batch], SIGMA, mode="columns").matrix()
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(a).max())
    r = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(ValueError):
        jacobian(r, [], mode="sideways")


def test_learned_sigma_replaces_the_configured_one(si_model_and_batch):
    model, batch = si_model_and_batch
    loss = SimpleNamespace(sigma={"energy": 0.005, "forces": 0.05},
                           log_sigma={"forces": torch.tensor(math.log(0.1), dtype=torch.float64)})
    learned = fisher_information(model, [batch], loss, ["readout.nets.0.2.weight"])
    fixed = fisher_information(model, [batch], {"energy": 0.005, "forces": 0.05}, ["readout.nets.0.2.weight"])
    assert learned.sigma == pytest.approx({"energy": 0.005, "forces": 0.1})
    np.testing.assert_allclose(learned.matrix(kinds=["forces"]), fixed.matrix(kinds=["forces"]) / 4, rtol=1e-12)


def test_parameter_patterns_and_errors(si_model_and_batch):
    model, _ = si_model_and_batch
    em = model.energy_model
    assert select_parameters(em, ["energies.*"]) == ["energies.e0", "energies.scale", "energies.shift"]
    assert "feature_mean" in select_parameters(em, ["feature_*"])  # float buffers count too
    with pytest.raises(ConfigError, match="matches no parameter"):
        select_parameters(em, ["nonexistent.*"])


# ---------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ident_run")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "experiment=quick", "trainer.max_epochs=1",
                          "export=false", f"hydra.run.dir={run_dir}"], cwd=run_dir, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir


def _mlip(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mlip.cli.main", "identifiability", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=600)


def test_cli_writes_table_json_and_spectrum(quick_run, tmp_path):
    res = _mlip(quick_run, "--max-frames", "6")
    assert res.returncode == 0, res.stderr[-3000:]
    out = quick_run / "identifiability"
    report = json.loads((out / "identifiability.json").read_text())
    # quick experiment: hidden [32] -> 32 weights + bias, E0 (Si), scale, shift
    assert report["n_parameters"] == 36 and len(report["eigenvalues"]) == 36
    assert report["n_zero"] == 3 and report["n_frames"] == 6
    assert report["eigenvalues"] == sorted(report["eigenvalues"], reverse=True)
    assert set(report["kinds"]) == {"energy", "forces", "stress"}
    assert report["kinds"]["energy"]["n_entries"] == 6
    assert "condition number" in res.stdout and "sloppiest combinations" in res.stdout
    assert (out / "identifiability.png").stat().st_size > 1000
    npz = np.load(out / "fisher.npz")
    assert npz["fisher"].shape == (36, 36)
    np.testing.assert_allclose(np.linalg.eigvalsh(npz["fisher"])[::-1], report["eigenvalues"],
                               rtol=1e-8, atol=1e-8 * report["largest_eigenvalue"])

    # a checkpoint, chosen tensors and kinds, another output folder
    res = _mlip(quick_run / "checkpoints" / "best.ckpt", "--params", "energies.*", "--kinds", "forces",
                "--max-frames", "3", "--out", tmp_path / "o")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "o" / "identifiability.json").read_text())
    assert report["n_parameters"] == 3 and list(report["kinds"]) == ["forces"]
    assert sorted(report["uninformative"]) == ["energies.e0[Si]", "energies.shift"]

    res = _mlip(quick_run, "--params", "no_such_*")
    assert res.returncode == 1 and "matches no parameter" in res.stderr


# ---------------------------------------------------------------------------- classical models
def test_classical_models_analyse_all_their_parameters_by_default():
    from mlip.models import build_model

    for name in ("lj", "morse", "spline_pair", "eam"):
        model = build_model(name, species=[14, 32], cutoff=5.0, e0=[-1.0, -2.0], fit_e0=True)
        chosen = select_parameters(model)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert set(trainable) <= set(chosen), (name, trainable, chosen)
        assert "energies.e0" in chosen


def _lj(epsilon, sigma, cutoff=7.0):
    from mlip.models import build_model

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = build_model("lj", species=[18], cutoff=cutoff, e0=[0.0])
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        model.epsilon.fill_(epsilon)
        model.sigma.fill_(sigma)
    return ForcesAndStress(model)


def test_lennard_jones_fisher_equals_finite_difference_jtwj():
    from mlip.testing.systems import random_gas

    model = _lj(0.0104, 3.4)
    frames = [random_gas(12, 9.0, 3.0, seed=s) for s in range(3)]
    batch = labelled_batch(model, frames)
    info = fisher_information(model, [batch], SIGMA, ["epsilon", "sigma"])
    assert info.names == ["epsilon[Ar-Ar]", "sigma[Ar-Ar]"]

    def flat_residuals(eps, sig):
        out = _lj(eps, sig)(batch, compute_forces=True, compute_stress=True)
        from mlip.training.loss import residuals
        return {k: residuals(out, batch, k).detach().numpy() for k in SIGMA}

    h = {0: 1e-6, 1: 1e-6}
    cols = {k: [] for k in SIGMA}
    for j, (de, ds) in enumerate(((h[0], 0.0), (0.0, h[1]))):
        plus, minus = flat_residuals(0.0104 + de, 3.4 + ds), flat_residuals(0.0104 - de, 3.4 - ds)
        for k in SIGMA:
            cols[k].append((plus[k] - minus[k]) / (2 * h[j]))
    fisher = sum(np.stack(cols[k], 1).T @ np.stack(cols[k], 1) / (len(cols[k][0]) * SIGMA[k] ** 2) for k in SIGMA)
    np.testing.assert_allclose(info.matrix(), fisher, rtol=1e-6)


def test_dilute_lennard_jones_data_fix_only_the_dispersion_coefficient():
    """With every pair beyond 2 sigma, V ~ -4 epsilon sigma^6 / r^6: only C6 = 4 epsilon sigma^6 is
    determined, so in log-parameters the stiff direction is (1, 6) / sqrt(37) and the sloppy one
    (6, -1) / sqrt(37), with a large condition number; dense data determine both."""
    from mlip.testing.systems import random_gas

    model = _lj(0.0104, 3.4, cutoff=10.0)
    dilute = labelled_batch(model, [random_gas(10, 20.0, 6.8, seed=s) for s in range(3)])
    rep = analyse(fisher_information(model, [dilute], SIGMA, ["epsilon", "sigma"]), relative=True)
    stiff = dict(rep["stiffest"][0]["components"])
    direction = np.array([stiff["epsilon[Ar-Ar]"], stiff["sigma[Ar-Ar]"]])
    assert abs(direction @ np.array([1.0, 6.0]) / 37 ** 0.5) > 0.999
    assert rep["condition_number"] > 1e3
    dense = labelled_batch(model, [random_gas(12, 9.0, 3.0, seed=s) for s in range(3)])
    rep_dense = analyse(fisher_information(model, [dense], SIGMA, ["epsilon", "sigma"]), relative=True)
    assert rep_dense["condition_number"] < rep["condition_number"] / 10
