# %% [markdown]
# # Fitting statistics with mlip: sloppiness, identifiability, regularisation, Boltzmann inversion
#
# Every idea is shown on data this notebook generates itself (a Lennard-Jones "argon" with known
# parameters), using mlip's own models, loss, regularisation, k-fold split, CV summary and Fisher
# analysis. It runs in well under two minutes on two CPU cores.
#
# 1. Lennard-Jones epsilon/sigma sloppiness: which combination the data determine.
# 2. E0 cannot be identified from forces alone.
# 3. Adding forces to energies stiffens the Fisher spectrum.
# 4. A tabulated pair potential with and without the smoothness penalty; k-fold CV picks alpha.
# 5. Boltzmann inversion U(r) = -kT ln g(r) of a dilute-gas MD as the starting guess.
#
# This notebook is generated from `notebooks/fitting_statistics.py` by
# `python notebooks/build_notebooks.py`; edit the .py file and rebuild.

# %%
import math
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from mlip import keys
from mlip.analysis.cross_validation import Job, best_alpha, summarise
from mlip.analysis.identifiability import analyse, fisher_information, format_combination
from mlip.data.graph import frame_to_graph
from mlip.data.io import LabelKeys, atoms_to_frame
from mlip.data.split import kfold_split
from mlip.models import build_model
from mlip.nn.batch import collate
from mlip.physics import ForcesAndStress
from mlip.testing.systems import random_gas
from mlip.training.loss import WeightedLoss
from mlip.training.metrics import MetricAccumulator
from mlip.training.regularization import Regularizer

torch.set_default_dtype(torch.float64)  # models built below are float64 throughout
torch.set_num_threads(min(2, os.cpu_count() or 1))
T_START, CPU_START = time.time(), time.process_time()

EPSILON, SIGMA_LJ = 0.0104, 3.40  # eV, Å: argon-like "truth"
CUTOFF = 7.0  # Å
SIGMAS = {"energy": 0.001, "forces": 0.01}  # loss sigmas: eV/atom, eV/Å


def lennard_jones(epsilon=EPSILON, sigma=SIGMA_LJ, cutoff=CUTOFF, fit_e0=True, e0=0.0):
    """mlip's `model=lj` for one element (Ar), wrapped for forces and stress."""
    model = build_model("lj", species=[18], cutoff=cutoff, e0=[e0], fit_e0=fit_e0)
    with torch.no_grad():
        model.epsilon.fill_(epsilon)
        model.sigma.fill_(sigma)
    return ForcesAndStress(model)


def label(frames, truth, force_noise=0.0, energy_noise=0.0, seed=0):
    """Frames labelled by `truth` (plus Gaussian noise), as one collated batch through mlip's data
    pipeline (atoms -> Frame -> graph -> batch)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    em = truth.energy_model
    batch = collate([frame_to_graph(atoms_to_frame(a, None, "<gen>", i), em.cutoff, {18: 0})
                     for i, a in enumerate(frames)], torch.float64)
    out = truth(batch, compute_forces=True, compute_stress=False)
    energies = out[keys.TOTAL_ENERGY].detach().numpy()
    forces = out[keys.PRED_FORCES].detach().numpy()
    start = 0
    labelled = []
    for i, a in enumerate(frames):
        a = a.copy()
        n = len(a)
        e = energies[i] + energy_noise * n * rng.standard_normal()
        f = forces[start:start + n] + force_noise * rng.standard_normal((n, 3))
        start += n
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        labelled.append(frame_to_graph(atoms_to_frame(a, LabelKeys(), "<gen>", i), em.cutoff, {18: 0}))
    return labelled


def fit(model, graphs, sigma=SIGMAS, regularizer=None, steps=60, lr=1.0):
    """Minimise mlip's WeightedLoss (+ an optional Regularizer penalty) with L-BFGS over all frames."""
    batch = collate(graphs, torch.float64)
    loss_fn = WeightedLoss(sigma)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=lr, max_iter=steps, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = model(batch, compute_forces=True, compute_stress=False, create_graph=True)
        loss, _ = loss_fn(out, batch)
        if regularizer is not None:
            loss = loss + regularizer(model.energy_model)
        loss.backward()
        return loss

    opt.step(closure)
    return float(closure().detach())


def metrics(model, graphs):
    """mlip's validation metrics (meV/atom, meV/Å) of `model` on `graphs`."""
    batch = collate(graphs, torch.float64)
    acc = MetricAccumulator(["default"])
    acc.update(model(batch, compute_forces=True, compute_stress=False), batch)
    return acc.compute()


# %% [markdown]
# ## 1. Lennard-Jones: epsilon and sigma are sloppy together
#
# Data: random periodic argon configurations, energies and forces from the true LJ potential
# (noiseless). A fit from a poor start recovers epsilon and sigma. The Fisher information
# F = sum_k J_k^T J_k / (n_k sigma_k^2) (mlip's `fisher_information`, the loss's own residuals and
# weights) in log-parameters (`relative=True`) tells which combination the data determine.
# When every pair is far apart (a dilute gas), V(r) ~ -4 epsilon sigma^6 / r^6 and only the
# dispersion coefficient C6 = 4 epsilon sigma^6 is seen: the stiff direction is
# d ln epsilon + 6 d ln sigma, i.e. (1, 6)/sqrt(37), and the orthogonal one is sloppy.

# %%
truth = lennard_jones()
dense = label([random_gas(24, 11.0, 3.1, seed=s) for s in range(6)], truth)
model = lennard_jones(epsilon=0.02, sigma=3.1)
fit(model, dense)
eps_fit, sig_fit = model.energy_model.epsilon.item(), model.energy_model.sigma.item()
print(f"recovered epsilon {eps_fit:.6f} eV (true {EPSILON}), sigma {sig_fit:.5f} Å (true {SIGMA_LJ})")

truth_long = lennard_jones(cutoff=12.0)
dilute = label([random_gas(12, 26.0, 7.0, seed=s) for s in range(6)], truth_long)
reports = {}
for name, graphs, m in (("dense", dense, model), ("dilute", dilute, truth_long)):
    info = fisher_information(m, [collate(graphs, torch.float64)], SIGMAS, ["epsilon", "sigma"])
    reports[name] = analyse(info, relative=True)
    r = reports[name]
    print(f"{name:7s} condition number {r['condition_number']:.3g}; stiff: "
          f"{format_combination(r['stiffest'][0]['components'])}; sloppy: "
          f"{format_combination(r['sloppiest'][0]['components'])}")
stiff = dict(reports["dilute"]["stiffest"][0]["components"])
cos_c6 = abs(stiff["epsilon[Ar-Ar]"] + 6 * stiff["sigma[Ar-Ar]"]) / math.sqrt(37)
print(f"dilute gas: |cos| between the stiff direction and (1, 6)/sqrt(37) = {cos_c6:.5f}")

# %%
assert abs(eps_fit / EPSILON - 1) < 1e-4 and abs(sig_fit / SIGMA_LJ - 1) < 1e-5
assert cos_c6 > 0.999
assert reports["dilute"]["condition_number"] > 100 * reports["dense"]["condition_number"]

# %% [markdown]
# The loss of the dilute data along the two eigenvectors of F, moving away from the truth in
# log-parameters: the curvature ratio of the two parabolas is the condition number.

# %%
batch_dilute = collate(dilute, torch.float64)
loss_fn = WeightedLoss(SIGMAS)
steps = np.linspace(-0.03, 0.03, 12)  # t = 0 (loss 0) left out of the log plot
fig, ax = plt.subplots(figsize=(4.5, 3.5))
for which in ("stiffest", "sloppiest"):
    v = dict(reports["dilute"][which][0]["components"])
    losses = []
    for t in steps:
        m = lennard_jones(EPSILON * math.exp(t * v["epsilon[Ar-Ar]"]), SIGMA_LJ * math.exp(t * v["sigma[Ar-Ar]"]),
                          cutoff=12.0)
        losses.append(loss_fn(m(batch_dilute, compute_stress=False), batch_dilute)[0].item())
    ax.plot(steps, losses, "o-", ms=3, label=f"{which}: {format_combination(v.items())}")
ax.set_yscale("log")
ax.set_xlabel("t: ln(theta / theta_true) = t v")
ax.set_ylabel("loss")
ax.legend(fontsize=6)
plt.show()

# %% [markdown]
# ## 2. E0 is not identifiable from forces alone
#
# Forces are derivatives of the energy, and E0 (eV per atom of each element) is a constant per
# atom: no force depends on it. Its row and column of the forces-only Fisher matrix are zero, so
# it is reported as carrying no information and its standard error is infinite. With energies
# in the loss it is determined.

# %%
model_e0 = lennard_jones(fit_e0=True, e0=-0.05)  # E0 is a parameter of the LJ model here
info = fisher_information(model_e0, [collate(dense, torch.float64)], SIGMAS, ["epsilon", "sigma", "energies.e0"])
forces_only = analyse(info, kinds=["forces"], relative=False)
with_energy = analyse(info, relative=False)
for name, r in (("forces only", forces_only), ("energy + forces", with_energy)):
    se = {p["name"]: p["marginal_se"] for p in r["parameters"]}
    print(f"{name:16s} zero eigenvalues {r['n_zero']}, no information: {r['uninformative']}, "
          f"standard error of E0: {se['energies.e0[Ar]']:.3g} eV")

# %%
assert forces_only["uninformative"] == ["energies.e0[Ar]"] and forces_only["n_zero"] == 1
assert with_energy["n_zero"] == 0 and with_energy["uninformative"] == []

# %% [markdown]
# ## 3. Forces stiffen the Fisher spectrum
#
# A tabulated pair potential (`model=spline_pair`, 10 knot values) and 30 configurations. Each
# energy is one number per frame, a sum over all pairs, and random configurations have similar
# pair histograms: the energies determine some knot combinations poorly. Adding the force
# components (3N per frame, each local) raises every eigenvalue of F (a sum of positive
# semi-definite terms) and the smallest ones most: the condition number drops.

# %%
def spline(n_knots=10, r_min=3.0, values=None):
    model = build_model("spline_pair", species=[18], cutoff=CUTOFF, e0=[0.0], n_knots=n_knots, r_min=r_min)
    if values is not None:
        with torch.no_grad():
            model.knot_values.copy_(torch.as_tensor(values).reshape(1, -1))
    return ForcesAndStress(model)


many = label([random_gas(16, 9.6, 3.1, seed=200 + s) for s in range(30)], truth)
info = fisher_information(spline(), [collate(many, torch.float64)], SIGMAS, ["knot_values"])
spectra = {"energies only": analyse(info, kinds=["energy"]), "energies + forces": analyse(info)}
fig, ax = plt.subplots(figsize=(4.5, 3.5))
for k, (name, r) in enumerate(spectra.items()):
    lam = np.asarray(r["eigenvalues"])
    ax.hlines(lam, k - 0.25, k + 0.25, color=f"C{k}")
    print(f"{name:18s} eigenvalues {lam[0]:.3g} ... {lam[-1]:.3g}, zero {r['n_zero']}, "
          f"condition number {r['condition_number']:.3g}")
ax.set_xticks([0, 1], list(spectra))
ax.set_xlim(-0.5, 1.5)
ax.set_yscale("log")
ax.set_ylabel("eigenvalue of F")
plt.show()

# %%
before, after = spectra["energies only"], spectra["energies + forces"]
assert after["n_zero"] == 0
assert all(b <= a * (1 + 1e-9) for b, a in zip(before["eigenvalues"], after["eigenvalues"]))  # Weyl
assert after["condition_number"] < before["condition_number"] / 3

# %% [markdown]
# ## 4. Smoothness penalty and cross-validation
#
# Many knots (30) and few, noisy frames: the unregularised spline follows the noise, wiggling
# where few pairs are seen. mlip's smoothness penalty alpha * sum (v[i-1] - 2 v[i] + v[i+1])^2
# (`regularization=smoothness`) tames it; 4-fold cross-validation over whole frames (mlip's
# `kfold_split`) picks alpha, and mlip's CV summary (`summarise`, `best_alpha`) reports it.

# %%
noisy = label([random_gas(16, 9.6, 3.1, seed=100 + s) for s in range(5)], truth, force_noise=0.005,
              energy_noise=0.0005, seed=1)
K = 4
alphas = [0.0, 1e2, 1e3, 3e3, 1e4]
jobs = []
for alpha in alphas:
    for fold in range(K):
        split = kfold_split(len(noisy), K, fold, val_fraction=0.2, seed=0)
        train = [noisy[i] for i in split["train"] + split["val"]]  # no early stopping here: use both
        m = spline(n_knots=30)
        reg = Regularizer({"name": "smoothness", "alpha": alpha}, m.energy_model)
        fit(m, train, regularizer=reg if alpha > 0 else None, steps=50)
        held = metrics(m, [noisy[i] for i in split["cv"]])
        jobs.append(Job(Path(f"alpha={alpha}/fold={fold}"),
                        [f"regularization.alpha={alpha}", f"split.fold={fold}"],
                        {"regularization.name": "smoothness" if alpha > 0 else "none",
                         "regularization.alpha": alpha, "split.fold": fold, "split.k": K},
                        {f"cv/{k}": v for k, v in held.items()}))
groups = summarise(jobs)
best = best_alpha(groups, "cv/forces_rmse")
for g in groups:
    s = g.stats["cv/forces_rmse"]
    print(f"alpha {g.alpha:8g}: CV forces RMSE {s['mean']:.3f} ± {s['std']:.3f} meV/Å")
print("best alpha:", best["alpha"])

# %%
cv_rmse = {g.alpha: g.stats["cv/forces_rmse"]["mean"] for g in groups}
assert best["alpha"] > 0 and cv_rmse[best["alpha"]] < cv_rmse[0.0]

# %%
rough = spline(n_knots=30)
fit(rough, noisy, steps=50)
smooth = spline(n_knots=30)
fit(smooth, noisy, regularizer=Regularizer({"name": "smoothness", "alpha": best["alpha"]}, smooth.energy_model),
    steps=50)
r = torch.linspace(3.0, CUTOFF, 300)
true_v = truth.energy_model.pair_function(0, r).detach()
fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.5))
for name, m, style in (("no penalty", rough, "C3-"), (f"smoothness, alpha={best['alpha']:g}", smooth, "C0-")):
    ax.plot(r, 1000 * m.energy_model.pair_function(0, r).detach(), style, label=name)
ax.plot(r, 1000 * true_v, "k--", label="true LJ")
ax.set_ylim(-15, 15)
ax.set_xlabel("r (Å)")
ax.set_ylabel("V(r) f(r) (meV)")
ax.legend(fontsize=7)
g0 = [g for g in groups if g.alpha > 0]
bx.errorbar([g.alpha for g in g0], [g.stats["cv/forces_rmse"]["mean"] for g in g0],
            [g.stats["cv/forces_rmse"]["std"] for g in g0], marker="o", capsize=3)
bx.axhline(cv_rmse[0.0], ls="--", color="grey", label="alpha = 0")
bx.set_xscale("log")
bx.set_xlabel("regularization.alpha")
bx.set_ylabel("CV forces RMSE (meV/Å)")
bx.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## 5. Boltzmann inversion of a dilute-gas g(r) as the starting guess
#
# In a dilute gas, the pair distribution is g(r) = exp(-U(r)/kT) up to corrections of order the
# density, so U(r) ~ -kT ln g(r). We run Langevin MD of the true potential (mlip's model exported to
# TorchScript and driven by ASE through `MLIPCalculator`), histogram pair distances with ASE's
# neighbour list, invert, and use the result as the starting knot values of the tabulated potential.

# %%
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.neighborlist import neighbor_list

from mlip.calculator import MLIPCalculator
from mlip.export import export_torchscript

T = 150.0  # K
kT = units.kB * T
workdir = Path(tempfile.mkdtemp())
export_torchscript(truth, str(workdir / "lj.pt"))
gas = random_gas(200, 52.0, 3.4, seed=7)  # density 0.0014 / Å^3, rho sigma^3 = 0.06
gas.set_masses([39.95] * len(gas))
gas.calc = MLIPCalculator(str(workdir / "lj.pt"))
MaxwellBoltzmannDistribution(gas, temperature_K=T, rng=np.random.default_rng(0))
dyn = Langevin(gas, 10 * units.fs, temperature_K=T, friction=0.01 / units.fs, rng=np.random.default_rng(1),
               fixcm=False)
dyn.run(200)  # equilibrate
bins = np.linspace(2.5, CUTOFF, 56)
counts = np.zeros(bins.size - 1)
n_samples = 0
for _ in range(300):
    dyn.run(4)
    counts += np.histogram(neighbor_list("d", gas, CUTOFF), bins)[0]  # each pair twice
    n_samples += 1
rho = len(gas) / gas.get_volume()
shell = 4.0 / 3.0 * np.pi * (bins[1:] ** 3 - bins[:-1] ** 3)
g = counts / (n_samples * len(gas) * rho * shell)
centres = 0.5 * (bins[1:] + bins[:-1])
seen = counts >= 20
u_bi = np.where(seen, -kT * np.log(np.where(seen, g, 1.0)), np.nan)
print(f"MD: {n_samples} samples, {int(counts.sum() / 2)} pairs counted within {CUTOFF} Å")

# %% [markdown]
# Knot values from the inversion: interpolate U_BI at the knots, continue it below the first
# sampled distance as a straight line (the wall is never sampled at this temperature), and divide
# by the smooth cutoff envelope that the model multiplies every pair term by (zero near r_c).
# Then fit the spline to the energies and forces of section 4 from that start.
#
# The inversion is only a starting guess: at any finite density -kT ln g(r) is the potential of
# mean force, not the pair potential (here it is off by about a tenth of the well depth, plus
# sampling noise), and the repulsive wall below the sampled distances is a guess. The fit to
# energies and forces corrects both; the better start shows as a far lower initial loss.

# %%
bi = spline(n_knots=30)
knots = bi.energy_model.spline.knots().numpy()
first = np.flatnonzero(seen)[:3]
slope = np.polyfit(centres[first], u_bi[first], 1)[0]
start_values = np.where(knots < centres[first[0]], u_bi[first[0]] + slope * (knots - centres[first[0]]),
                        np.interp(knots, centres[seen], u_bi[seen]))
envelope = bi.energy_model.envelope(torch.as_tensor(knots)).numpy()
start_values = np.where(envelope > 0.05, start_values / np.maximum(envelope, 0.05), 0.0)
bi = spline(n_knots=30, values=start_values)
bi_start = bi.energy_model.pair_function(0, r).detach().clone()
loss_start = {"Boltzmann inversion": fit(spline(n_knots=30, values=start_values), noisy, steps=1),
              "mlip's Morse default": fit(spline(n_knots=30), noisy, steps=1)}
fit(bi, noisy, regularizer=Regularizer({"name": "smoothness", "alpha": best["alpha"]}, bi.energy_model), steps=50)
print({k: f"{v:.4g}" for k, v in loss_start.items()}, "(loss after one L-BFGS step from each start)")

well = (r > 3.6) & (r < 6.0)
err_bi = float((bi_start - true_v)[well].abs().max()) / EPSILON
err_fit = float((bi.energy_model.pair_function(0, r).detach() - true_v)[well].abs().max()) / EPSILON
print(f"max |U - V_true| on 3.6-6 Å in units of epsilon: Boltzmann inversion {err_bi:.3f}, after the fit {err_fit:.3f}")

fig, ax = plt.subplots(figsize=(5.5, 3.8))
ax.plot(r, 1000 * true_v, "k--", label="true pair potential V f")
ax.plot(centres, 1000 * u_bi, "C1o", ms=3, label="-kT ln g(r) (MD, 150 K)")
ax.plot(r, 1000 * bi_start, "C1-", lw=0.8, label="starting spline")
ax.plot(r, 1000 * bi.energy_model.pair_function(0, r).detach(), "C0-", label="fitted spline")
ax.set_ylim(-15, 20)
ax.set_xlabel("r (Å)")
ax.set_ylabel("meV")
ax.legend(fontsize=7)
plt.show()

# %%
assert err_bi < 0.5  # the inversion alone is within half the well depth
assert err_fit < err_bi
assert loss_start["Boltzmann inversion"] < loss_start["mlip's Morse default"]
cpu_seconds = time.process_time() - CPU_START
print(f"notebook ran in {time.time() - T_START:.1f} s ({cpu_seconds:.1f} s of CPU)")
