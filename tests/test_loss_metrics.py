"""The loss and metrics against hand computations on a tiny batch."""

import math

import pytest
import torch

from mlip import keys
from mlip.training.loss import WeightedLoss
from mlip.training.metrics import MetricAccumulator


def tiny_batch():
    # frame 0: 2 atoms, energy + forces + stress; frame 1: 1 atom, forces only (no energy, no stress)
    batch = {
        keys.N_ATOMS: torch.tensor([2, 1]),
        keys.BATCH: torch.tensor([0, 0, 1]),
        keys.CONFIG_TYPE: torch.tensor([0, 1]),
        keys.ENERGY: torch.tensor([-10.0, 999.0], dtype=torch.float64),
        keys.ENERGY_MASK: torch.tensor([True, False]),
        keys.FORCES: torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.3]], dtype=torch.float64),
        keys.FORCES_MASK: torch.tensor([True, True]),
        keys.STRESS: torch.zeros(2, 3, 3, dtype=torch.float64),
        keys.STRESS_MASK: torch.tensor([True, False]),
    }
    out = {
        keys.TOTAL_ENERGY: torch.tensor([-10.4, 5.0], dtype=torch.float64),
        keys.PRED_FORCES: torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64),
        keys.PRED_STRESS: torch.zeros(2, 3, 3, dtype=torch.float64),
    }
    out[keys.PRED_STRESS][0, 0, 0] = 0.01
    out[keys.PRED_STRESS][1, 1, 1] = 7.0  # unlabelled frame: must not count
    return out, batch


def test_loss_matches_hand_computation():
    out, batch = tiny_batch()
    loss_fn = WeightedLoss({"energy": 0.1, "forces": 0.5, "stress": 0.01})
    total, terms = loss_fn(out, batch)
    e_term = ((-0.4 / 2) / 0.1) ** 2  # one labelled frame, per-atom residual
    f_term = ((0.1 / 0.5) ** 2 + (0.3 / 0.5) ** 2) / 9  # 9 labelled components
    s_term = (0.01 / 0.01) ** 2 / 9  # 9 components of the one labelled frame
    assert terms["energy"].item() == pytest.approx(e_term)
    assert terms["forces"].item() == pytest.approx(f_term)
    assert terms["stress"].item() == pytest.approx(s_term)
    assert total.item() == pytest.approx(e_term + f_term + s_term)


def test_huber_and_left_out_kinds():
    out, batch = tiny_batch()
    loss_fn = WeightedLoss({"energy": 0.1, "forces": None, "stress": None}, huber_delta=1.0)
    total, terms = loss_fn(out, batch)
    x = 0.2 / 0.1  # |r| / sigma = 2 > delta
    assert set(terms) == {"energy"}
    assert total.item() == pytest.approx(2 * 1.0 * x - 1.0)


def test_no_labels_give_zero_term():
    out, batch = tiny_batch()
    batch[keys.ENERGY_MASK][:] = False
    _, terms = WeightedLoss({"energy": 0.1, "forces": 1.0})(out, batch)
    assert terms["energy"].item() == 0.0


@pytest.mark.parametrize("bad", [0.0, -0.1])
def test_nonpositive_sigma_is_rejected(bad):
    with pytest.raises(ValueError, match=r"loss.sigma.forces=.* must be > 0"):
        WeightedLoss({"energy": 0.1, "forces": bad})


def test_metrics_match_hand_computation():
    out, batch = tiny_batch()
    acc = MetricAccumulator(["bulk", "surface"])
    acc.update(out, batch)
    acc.update(out, batch)  # accumulating twice must not change averages
    m = acc.compute()
    assert m["energy_mae"] == pytest.approx(200.0)  # meV/atom
    assert m["forces_mae"] == pytest.approx(1000 * 0.4 / 9)
    assert m["forces_rmse"] == pytest.approx(1000 * math.sqrt(0.1 / 9))
    assert m["stress_mae"] == pytest.approx(160.21766208 * 0.01 / 9)
    assert m["bulk/forces_mae"] == pytest.approx(1000 * 0.1 / 6)
    assert m["surface/forces_mae"] == pytest.approx(1000 * 0.3 / 3)
    assert "surface/energy_mae" not in m
