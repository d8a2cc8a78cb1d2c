"""Learning-rate schedules: the cosine factor against hand values, run progress from steps and
from the wall-clock Timer, and the rate a short run logs."""

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Timer

from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import run
from mlip.errors import ConfigError
from mlip.training.schedule import cosine_factor, make_scheduler, run_progress

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")


def test_cosine_factor_hand_values():
    assert cosine_factor(0.0, 0.01) == pytest.approx(1.0)
    assert cosine_factor(0.5, 0.01) == pytest.approx(0.505)
    assert cosine_factor(1.0, 0.01) == pytest.approx(0.01)
    assert cosine_factor(0.25, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_progress_is_the_larger_of_steps_and_wall_time():
    trainer = SimpleNamespace(estimated_stepping_batches=1000, global_step=100, callbacks=[])
    assert run_progress(trainer) == pytest.approx(0.1)
    timer = Timer(duration={"seconds": 100})
    timer.time_elapsed = lambda stage="train": 40.0
    trainer.callbacks = [timer]
    assert run_progress(trainer) == pytest.approx(0.4)  # the budget ends first
    trainer.global_step = 700
    assert run_progress(trainer) == pytest.approx(0.7)
    trainer.estimated_stepping_batches = float("inf")
    assert run_progress(trainer) == pytest.approx(0.4)


def test_unknown_scheduler_is_a_config_error():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="optimizer.scheduler.name='step'"):
        make_scheduler(opt, {"name": "step"}, 0.1, None)


def test_cosine_run_follows_the_planned_steps(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quick", "trainer.enable_progress_bar=false", "export=false",
                                          "trainer.max_epochs=2", "optimizer.scheduler.name=cosine",
                                          "optimizer.lr=0.01", "optimizer.scheduler.min_lr=0.0001"])
    run(cfg, tmp_path)
    with open(next(Path(tmp_path).glob("logs/version_*/metrics.csv"))) as fh:
        lrs = [float(r["lr-AdamW"]) for r in csv.DictReader(fh) if r.get("lr-AdamW")]
    # logged at the start of each epoch: progress 0, then 1/2 of the planned steps
    assert lrs == pytest.approx([0.01, 0.0001 + (0.01 - 0.0001) * 0.5], rel=1e-6)
