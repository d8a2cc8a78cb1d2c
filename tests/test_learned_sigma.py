"""Learned loss weights: maximising the Gaussian likelihood through the loss module recovers the
noise level of synthetic labels."""

import math

import pytest
import torch

from mlip import keys
from mlip.testing.systems import SMALL_MODEL_CONFIGS, batch_of, triclinic_si
from mlip.training.loss import WeightedLoss, resolve_sigma
from mlip.training.module import PotentialModule

SIGMA_E, SIGMA_F = 0.004, 0.08  # true noise: eV/atom, eV/Å


def test_resolve_learned_sigma_to_the_labelled_kinds():
    assert resolve_sigma("learned", ["forces", "energy"]) == {"energy": "learned", "forces": "learned"}
    assert resolve_sigma({"energy": 0.1, "forces": "learned"}, []) == {"energy": 0.1, "forces": "learned"}
    with pytest.raises(ValueError, match="loss.sigma='fixed'"):
        resolve_sigma("fixed", ["energy"])
    with pytest.raises(ValueError, match="loss.sigma.forces=bogus must be > 0, 'learned'"):
        WeightedLoss({"forces": "bogus"})


def test_learned_sigma_recovers_the_noise_of_synthetic_labels():
    """Labels = a fixed model + Gaussian noise of known std; the model is frozen at the truth and
    the log-sigmas are trained by the module's own optimiser (weight decay on, which must not reach
    them) on minibatches of the loss, from starting values 5x off."""
    torch.manual_seed(0)
    config = dict(name="invariant", species=[14], cutoff=3.5, e0=[-1.0], scale=0.5, shift=0.0,
                  avg_num_neighbors=8.0, **SMALL_MODEL_CONFIGS["invariant"])
    module = PotentialModule(config, {"sigma": {"energy": "learned", "forces": "learned", "stress": None},
                                      "sigma_init": {"energy": 5 * SIGMA_E, "forces": SIGMA_F / 5}},
                             {"lr": 0.05, "weight_decay": 0.5}).double()
    module.model.requires_grad_(False)
    frames = [triclinic_si(rattle=0.1, seed=s) for s in range(240)]
    gen = torch.Generator().manual_seed(1)
    batches = []
    for start in range(0, len(frames), 24):
        batch = batch_of(frames[start:start + 24], module.model)
        out = module.model(batch, compute_forces=True, compute_stress=False)
        n = batch[keys.N_ATOMS].double()
        batch[keys.ENERGY] = out[keys.TOTAL_ENERGY].detach() + SIGMA_E * n * torch.randn(n.shape, generator=gen,
                                                                                          dtype=torch.float64)
        batch[keys.FORCES] = out[keys.PRED_FORCES].detach() + SIGMA_F * torch.randn(
            out[keys.PRED_FORCES].shape, generator=gen, dtype=torch.float64)
        batch[keys.ENERGY_MASK] = torch.ones_like(n, dtype=torch.bool)
        batch[keys.FORCES_MASK] = torch.ones_like(n, dtype=torch.bool)
        batches.append(({k: v.detach() for k, v in out.items()}, batch))
    optimizer = module.configure_optimizers()["optimizer"]
    for epoch in range(60):
        if epoch == 45:
            for group in optimizer.param_groups:
                group["lr"] = 0.005
        for out, batch in batches:
            optimizer.zero_grad()
            loss, _ = module.loss_fn(out, batch)
            loss.backward()
            optimizer.step()
    learned = module.loss_fn.learned_sigma()
    assert learned["energy"] == pytest.approx(SIGMA_E, rel=0.10)
    assert learned["forces"] == pytest.approx(SIGMA_F, rel=0.10)
    # the optimum is the maximum-likelihood sigma^2 = mean squared residual of the whole set
    for kind in ("energy", "forces"):
        from mlip.training.loss import residuals
        r2 = torch.cat([residuals(out, batch, kind) for out, batch in batches]).pow(2).mean()
        assert learned[kind] == pytest.approx(math.sqrt(float(r2)), rel=0.03)
    # the validation form uses the fixed initial sigmas, without log terms
    out, batch = batches[0]
    fixed, _ = module.loss_fn.validation_loss(out, batch)
    expected = (residuals(out, batch, "energy") / (5 * SIGMA_E)).pow(2).mean() + \
        (residuals(out, batch, "forces") / (SIGMA_F / 5)).pow(2).mean()
    assert float(fixed) == pytest.approx(float(expected))
