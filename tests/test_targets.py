"""An open set of label kinds: a toy per-frame kind registered here, without editing any mlip
file, is read from a frame file, checked, batched and masked, enters the loss with its own sigma
and appears in the metrics, the parity arrays and the summary table."""

import math

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from hydra import compose, initialize_config_dir

from mlip import keys, targets
from mlip.analysis.report import metric_units, summary_table
from mlip.cli.check_config import check_config
from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import build_datamodule
from mlip.data.io import LabelKeys, read_frames
from mlip.errors import DataError
from mlip.models import build_model
from mlip.physics import ForcesAndStress
from mlip.training.evaluate import evaluate
from mlip.training.loss import WeightedLoss, residuals
from mlip.training.metrics import MetricAccumulator

DIPOLE = "dipole_norm"


@pytest.fixture
def dipole_kind():
    """|dipole| per frame (e·Å, reported in me·Å), read from atoms.info; negative values refused."""
    target = targets.register(targets.Target(
        DIPOLE, "pred_dipole_norm", per_atom=False, shape=(), unit="e·Å", residual_unit="e·Å",
        report_unit="me·Å", report_factor=1000.0, sigma_init=0.1,
        check=lambda value, key: f"{DIPOLE} '{key}' is negative" if value < 0 else None))
    yield target
    targets.unregister(DIPOLE)
    assert DIPOLE not in keys.LABEL_KINDS


class WithDipole(torch.nn.Module):
    """A toy model of the new kind: pred_dipole_norm = a * n_atoms beside energy, forces, stress."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.a = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, batch, **kwargs):
        out = self.inner(batch, **kwargs)
        out["pred_dipole_norm"] = self.a * batch[keys.N_ATOMS].to(self.a.dtype)
        return out


def _frames(tmp_path, name="cu.xyz", dipoles=(1.0, None, 1.5, 2.0, None, 1.2, 0.8, 1.1, 1.4, 0.9)):
    """Rattled 4-atom Cu cells with EMT labels; ``info[key]`` where a dipole is given."""
    images = []
    for k, d in enumerate(dipoles):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        res = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **res)
        atoms.info["config_type"] = "even" if k % 2 == 0 else "odd"
        if d is not None:
            atoms.info["my_dipole"] = d
        images.append(atoms)
    path = tmp_path / name
    ase.io.write(path, images)
    return str(path)


def test_a_registered_per_frame_kind_runs_through_reading_batching_loss_and_metrics(tmp_path, dipole_kind):
    assert keys.LABEL_KINDS == ("energy", "forces", "stress", DIPOLE)
    assert keys.MASK_OF[DIPOLE] == "dipole_norm_mask"
    path = _frames(tmp_path)

    # read under a configured key (data.keys.dipole_norm=my_dipole), absent on two frames
    frames = read_frames(path, LabelKeys(dipole_norm="my_dipole"))
    assert frames[0].labels[DIPOLE] == pytest.approx(1.0) and DIPOLE not in frames[1].labels
    assert DIPOLE not in read_frames(path)[0].labels  # default key "dipole_norm" is not in the file

    # the kind's plausibility hook names file and frame
    bad = _frames(tmp_path, "bad.xyz", dipoles=(1.0, -2.0))
    with pytest.raises(DataError, match=r"bad.xyz, frame 1: dipole_norm 'my_dipole' is negative"):
        read_frames(bad, LabelKeys(dipole_norm="my_dipole"))

    # one config line (its sigma; here also its file key, and frames without it allowed) passes the
    # config checks, and the data module batches and masks it and counts it among the labels
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=custom", f"data.train={path}", "data.e0=zero", "model.cutoff=3.0",
                                          "split.test_fraction=0.0", "split.val_fraction=0.2", "data.batch_size=10",
                                          "data.eval_batch_size=10", f"+loss.sigma.{DIPOLE}=0.2",
                                          f"+data.keys.{DIPOLE}=my_dipole", f"data.allow_missing=[{DIPOLE}]"])
    check_config(cfg)
    dm = build_datamodule(cfg, torch.float64)
    dm.prepare()
    assert DIPOLE in dm.label_kinds and dm.label_counts["train"][DIPOLE] + dm.label_counts["val"][DIPOLE] == 8
    batch = next(iter(dm.eval_loader("train")))
    n_frames = batch[keys.N_ATOMS].shape[0]
    assert batch[DIPOLE].shape == (n_frames,) and batch["dipole_norm_mask"].dtype == torch.bool
    assert not batch["dipole_norm_mask"].all() and batch[DIPOLE][~batch["dipole_norm_mask"]].eq(0).all()

    # its own sigma in the loss (fixed, and learned from its own sigma_init)
    model = WithDipole(ForcesAndStress(build_model(name="lj", species=dm.species, cutoff=3.0, e0=dm.e0, scale=1.0,
                                                   shift=0.0, avg_num_neighbors=12.0)).double())
    out = model(batch, compute_forces=True, compute_stress=True, create_graph=True)
    mask = batch["dipole_norm_mask"]
    r = (0.3 * 4 - batch[DIPOLE])[mask]
    assert torch.allclose(residuals(out, batch, DIPOLE), r)
    total, terms = WeightedLoss({"energy": 0.1, "forces": 0.5, DIPOLE: 0.2})(out, batch)
    assert float(terms[DIPOLE]) == pytest.approx(float(((r / 0.2) ** 2).mean()))
    terms[DIPOLE].backward(retain_graph=True)
    assert model.a.grad is not None and float(model.a.grad) != 0.0
    learned = WeightedLoss({DIPOLE: "learned"})
    assert learned.learned_sigma()[DIPOLE] == pytest.approx(0.1)

    # in the metrics (overall and per config type), the parity arrays and the summary table
    acc = MetricAccumulator(dm.config_types)
    acc.update(out, batch)
    m = acc.compute()
    assert m[f"{DIPOLE}_mae"] == pytest.approx(1000 * float(r.abs().mean()))
    assert m[f"{DIPOLE}_rmse"] == pytest.approx(1000 * math.sqrt(float((r ** 2).mean())))
    assert "even/dipole_norm_mae" in m and "energy_mae" in m
    metrics, parity = evaluate(model, dm.eval_loader("val"), dm.config_types, e0=dm.e0)
    assert parity[f"{DIPOLE}_ref"].size == parity[f"{DIPOLE}_pred"].size == dm.label_counts["val"][DIPOLE]
    if parity[f"{DIPOLE}_ref"].size:
        assert metrics[f"{DIPOLE}_mae"] == pytest.approx(
            1000 * np.abs(parity[f"{DIPOLE}_pred"] - parity[f"{DIPOLE}_ref"]).mean())
    assert metric_units()[f"{DIPOLE}_mae"] == "me·Å"
    table = summary_table({"val": m}, dm.config_types)
    assert "dipole_norm MAE / RMSE (me·Å)" in table.splitlines()[0]


def test_a_kind_name_or_batch_key_can_be_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        targets.register(targets.FORCES)
    with pytest.raises(ValueError, match=r"batch key\(s\) \['forces_mask'\] already in use"):
        targets.register(targets.Target("f2", "pred_f2", per_atom=True, shape=(3,), unit="eV/Å",
                                        residual_unit="eV/Å", report_unit="meV/Å", report_factor=1e3,
                                        sigma_init=0.05, mask_key=keys.FORCES_MASK))
    assert targets.names() == ("energy", "forces", "stress")
