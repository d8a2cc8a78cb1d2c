"""Any mix of labels trains under the default loss: molecules without stress, stress on a few
frames, energies only, forces only. A kind no training frame carries leaves the loss with one
warning; a batch without a kind contributes nothing to that term."""

import json
import logging

import ase.io
import numpy as np
import pytest
import torch
from conftest import SHARED, SHIPPED
from hydra import compose, initialize_config_dir

from mlip import keys
from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import run
from mlip.training.loss import WeightedLoss, residuals

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

FAST = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.num_channels=4",
        "model.hidden=[16]", "model.l_max=1", "data.batch_size=4", "export=false"]


def _run(tmp_path, data_overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=custom", *data_overrides, *FAST])
    return run(cfg, tmp_path / "run")


def _molecules(tmp_path, n=16, drop=None):
    images = ase.io.read(str(SHARED / "3bpa" / "train_300K.xyz"), f":{n}")
    for atoms in images:
        if drop == "forces":
            atoms.calc.results.pop("forces", None)
            atoms.arrays.pop("forces", None)
        if drop == "energy":
            atoms.calc.results.pop("energy", None)
            atoms.info.pop("energy", None)
    path = tmp_path / "mols.xyz"
    ase.io.write(path, images)
    return str(path)


def test_molecules_without_stress_train_with_the_default_loss(tmp_path):
    path = _molecules(tmp_path)
    results = _run(tmp_path, [f"data.train={path}", f"data.e0_file={SHARED / '3bpa' / 'iso_atoms.xyz'}"])
    assert results["test"]["forces_mae"] > 0 and results["test"]["energy_mae"] > 0
    assert "stress_mae" not in results["test"]
    assert results["data"]["e0_source"] == "isolated-atom frames"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["labels"]["train"]["stress"] == 0


def test_stress_on_a_few_frames_trains_and_is_reported(tmp_path):
    images = ase.io.read(str(SHIPPED / "Si_training.extxyz"), ":40")
    for k, atoms in enumerate(images):
        if k % 10:
            atoms.calc.results.pop("stress")
    path = tmp_path / "sparse.xyz"
    ase.io.write(path, images)
    results = _run(tmp_path, [f"data.train={path}", "split.seed=3"])
    n_stress = sum(results["data"]["labels"][s]["stress"] for s in ("train", "val", "test"))
    assert n_stress == 4
    assert results["data"]["labels"]["train"]["stress"] >= 1


@pytest.mark.parametrize("drop, kept", [("forces", "energy"), ("energy", "forces")])
def test_one_kind_only_trains_and_the_other_leaves_the_loss(tmp_path, caplog, drop, kept):
    path = _molecules(tmp_path, drop=drop)
    with caplog.at_level(logging.WARNING):
        results = _run(tmp_path, [f"data.train={path}", f"data.e0_file={SHARED / '3bpa' / 'iso_atoms.xyz'}"])
    assert f"{kept}_mae" in results["test"] and f"{drop}_mae" not in results["test"]
    left_out = [r.getMessage() for r in caplog.records if "left out of the loss" in r.getMessage()]
    assert len(left_out) == 1 and f"data.keys.{drop}" in left_out[0]


def _batch_of_molecules():
    return {
        keys.ENERGY: torch.tensor([-1.0, -2.0]), keys.ENERGY_MASK: torch.tensor([True, False]),
        keys.N_ATOMS: torch.tensor([1, 2]), keys.BATCH: torch.tensor([0, 1, 1]),
        keys.FORCES: torch.zeros(3, 3), keys.FORCES_MASK: torch.tensor([False, False]),
        keys.STRESS: torch.zeros(2, 3, 3), keys.STRESS_MASK: torch.tensor([False, False]),
    }


def test_a_batch_without_a_kind_contributes_nothing_to_its_term():
    batch = _batch_of_molecules()
    out = {keys.TOTAL_ENERGY: torch.tensor([-0.5, 0.0]), keys.PRED_FORCES: torch.ones(3, 3)}  # no stress
    assert residuals(out, batch, keys.STRESS).numel() == 0
    assert residuals(out, batch, keys.FORCES).numel() == 0
    loss = WeightedLoss({"energy": 0.1, "forces": 0.05, "stress": 0.003})
    total, terms = loss(out, batch)
    assert float(terms["stress"]) == 0.0 and float(terms["forces"]) == 0.0
    assert float(total) == pytest.approx((0.5 / 0.1) ** 2)
    assert np.isfinite(float(loss.validation_loss(out, batch)[0]))


def test_labels_under_other_keys_are_suggested(tmp_path):
    from mlip.errors import DataError

    images = ase.io.read(str(SHARED / "3bpa" / "train_300K.xyz"), ":8")
    for atoms in images:
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
    path = tmp_path / "mace_style.xyz"
    ase.io.write(path, images)
    with pytest.raises(DataError, match=r"mace_style.xyz: no training frame carries .* try "
                                        r"data.keys.energy=REF_energy data.keys.forces=REF_forces"):
        _run(tmp_path, [f"data.train={path}"])
