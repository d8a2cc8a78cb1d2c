"""End-to-end runs: train.py on the shipped data, outputs, resume, NaN stop, DDP on CPU."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import run

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

REPO = Path(__file__).resolve().parents[1]
QUICK = ["experiment=quick", "trainer.enable_progress_bar=false"]


def _train_py(args, cwd, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _compose(overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def _csv_rows(run_dir):
    with open(next(Path(run_dir).glob("logs/version_*/metrics.csv"))) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    res = _train_py([*QUICK, f"hydra.run.dir={run_dir}"], cwd=run_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir, res.stdout


def test_three_epoch_run_writes_every_output(quick_run):
    run_dir, stdout = quick_run
    for name in ("config.yaml", "split.json", "metrics.json", "parity_energy.png", "parity_forces.png",
                 "parity_stress.png", "summary.md",
                 "model.pt", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run_dir / name).exists(), name
    assert list(run_dir.glob("tb/version_*/events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    assert metrics["data"]["n_frames"] == {"train": 193, "val": 21, "test": 25}
    assert metrics["data"]["e0_eV"]["Si"] == pytest.approx(-5.1268, abs=1e-3)  # least squares on train
    for key in ("energy_mae", "forces_mae", "stress_mae", "Vacancy/forces_mae", "Surface/energy_rmse"):
        assert key in metrics["test"]
    # far better than predicting zero forces (mean |F| is about 0.7 eV/Å on this set)
    assert metrics["test"]["forces_mae"] < 600
    # the summary table: printed and in summary.md, overall and per config_type, with units
    assert "| **test** |" in stdout and "forces MAE / RMSE (meV/Å)" in stdout
    summary = (run_dir / "summary.md").read_text()
    assert "| test · Vacancy |" in summary and "(meV/atom)" in summary
    assert metrics["units"]["forces_mae"] == "meV/Å" and metrics["data"]["e0_source"].startswith("least squares")
    split = json.loads((run_dir / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])
    rows = [r for r in _csv_rows(run_dir) if r.get("val/forces_mae")]
    assert len(rows) == 3
    # checkpoints hold the EMA weights as the model (used for validation, test, export) and the raw
    # training weights apart, for resuming
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    name = "model.energy_model.descriptor.radial_weights"
    assert not torch.equal(ckpt["state_dict"][name], ckpt["current_model_state"][name])
    assert torch.equal(ckpt["state_dict"]["model.energy_model.descriptor.triu_flat"],
                       ckpt["current_model_state"]["model.energy_model.descriptor.triu_flat"])


def test_validation_metrics_logged_equal_final_evaluation(quick_run):
    """The best epoch's logged validation metrics equal a fresh evaluation of best.ckpt."""
    run_dir, _ = quick_run
    rows = [r for r in _csv_rows(run_dir) if r.get("val/loss")]
    best = min(rows, key=lambda r: float(r["val/loss"]))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert float(best["val/forces_mae"]) == pytest.approx(metrics["val"]["forces_mae"], rel=1e-4)
    assert float(best["val/energy_mae"]) == pytest.approx(metrics["val"]["energy_mae"], rel=1e-3, abs=1e-3)
    # the epoch reported as the model's is that of the lowest logged val/loss (1-based, as the log lines)
    assert metrics["best_epoch"] == int(best["epoch"]) + 1
    assert f"The model is epoch {metrics['best_epoch']}'s (lowest val/loss)." in (run_dir / "summary.md").read_text()


def test_resume_from_last_checkpoint_continues_epochs(quick_run, tmp_path):
    run_dir, _ = quick_run
    cfg = _compose([*QUICK, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=5",
                    "export=false"])
    results = run(cfg, tmp_path)
    assert results["epochs"] == 5
    rows = [r for r in _csv_rows(tmp_path) if r.get("val/loss")]
    assert [int(r["epoch"]) for r in rows] == [3, 4]


def test_nan_loss_stops_without_touching_checkpoints(quick_run, tmp_path, monkeypatch):
    run_dir, _ = quick_run
    import shutil

    shutil.copytree(run_dir / "checkpoints", tmp_path / "checkpoints")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    from mlip.training import loss as loss_module

    original = loss_module.WeightedLoss.forward

    def poisoned(self, out, batch):
        total, terms = original(self, out, batch)
        return total * float("nan"), terms

    monkeypatch.setattr(loss_module.WeightedLoss, "forward", poisoned)
    cfg = _compose([*QUICK, "ckpt_path=last", "trainer.max_epochs=6", "export=false"])
    with pytest.raises(FloatingPointError, match="training loss is not finite"):
        run(cfg, tmp_path)
    assert last.read_bytes() == before
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_bad_config_gives_clear_error(tmp_path):
    res = _train_py([*QUICK, "loss.sigma.forces=-1", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert res.returncode == 1
    assert "loss.sigma.forces=-1" in res.stderr and "must be > 0" in res.stderr
    res = _train_py([*QUICK, "data.train=missing.extxyz", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert res.returncode == 1 and "missing.extxyz: file not found" in res.stderr


def test_ddp_on_cpu_matches_single_process_metrics(tmp_path):
    """Two gloo ranks: training completes, and validation metrics reduced across ranks equal the
    single-process evaluation of the same weights (no frame counted twice or dropped)."""
    run_dir = tmp_path / "ddp"
    res = _train_py([*QUICK, "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.devices=2",
                     "trainer.strategy=ddp", "data.batch_size=4", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    rows = [r for r in _csv_rows(run_dir) if r.get("val/loss")]
    best = min(rows, key=lambda r: float(r["val/loss"]))
    assert float(best["val/forces_mae"]) == pytest.approx(metrics["val"]["forces_mae"], rel=1e-4)
    assert metrics["test"]["forces_mae"] < 800


def test_same_seed_repeats_a_run_exactly(tmp_path):
    cfg = _compose([*QUICK, "trainer.max_epochs=1", "export=false", "seed=7"])
    first = run(cfg, tmp_path / "a")
    second = run(cfg, tmp_path / "b")
    assert first["test"] == second["test"]
    other = run(_compose([*QUICK, "trainer.max_epochs=1", "export=false", "seed=8"]), tmp_path / "c")
    assert other["test"]["forces_mae"] != first["test"]["forces_mae"]


def test_calculator_loads_checkpoint_and_export_alike(quick_run):
    from ase.io import read

    from mlip.calculator import MLIPCalculator

    run_dir, _ = quick_run
    atoms = read(REPO / "mlip" / "datasets" / "mlearn_si" / "Si_test.extxyz", index="0")
    results = []
    for name in ("checkpoints/best.ckpt", "model.pt"):
        atoms.calc = MLIPCalculator(str(run_dir / name))
        results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    assert abs(results[0][0] - results[1][0]) < 1e-3  # float32
    assert abs(results[0][1] - results[1][1]).max() < 1e-4
    assert abs(results[0][2] - results[1][2]).max() < 1e-6
    assert abs(results[0][0] - read(REPO / "mlip" / "datasets" / "mlearn_si" / "Si_test.extxyz", index="0")
               .get_potential_energy()) / len(atoms) < 1.0  # eV/atom: a trained model, not E0 = 0


def test_float64_run_exports_float64(tmp_path):
    from mlip.export import load_exported

    results = run(_compose([*QUICK, "trainer.max_epochs=1", "dtype=float64"]), tmp_path)
    _, meta = load_exported(results["exported_model"])
    assert meta["dtype"] == "float64"


def test_console_script_composes_the_same_config(tmp_path):
    import shutil

    exe = shutil.which("mlip-train") or str(Path(sys.executable).parent / "mlip-train")
    res = subprocess.run([exe, "--cfg", "job", "loss.sigma.forces=0.07"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "forces: 0.07" in res.stdout and "name: invariant" in res.stdout


def test_export_says_when_it_replaces_a_file(quick_run, tmp_path, capsys):
    from mlip.cli.main import main as mlip_main

    run_dir, _ = quick_run
    out = tmp_path / "m.pt"
    assert mlip_main(["export", str(run_dir), "--output", str(out)]) == 0
    assert "replaced" not in capsys.readouterr().out
    assert mlip_main(["export", str(run_dir), "--output", str(out)]) == 0
    assert "replaced the existing m.pt" in capsys.readouterr().out


def test_an_early_best_epoch_is_reported(caplog):
    """A run whose val/loss stopped improving well before its end says so (a small set's floor);
    one whose best came late, or a short run, says nothing."""
    from mlip.cli.train import _say_when_best_came_early

    with caplog.at_level("INFO", logger="mlip"):
        _say_when_best_came_early(188, 359, 0.51234, 0.53)
    assert "lowest at epoch 188 of 359 (0.5123 there, 0.53 at the end)" in caplog.text
    assert "last 171 epochs" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="mlip"):
        _say_when_best_came_early(300, 358)
        _say_when_best_came_early(2, 10)
        _say_when_best_came_early(None, 358)
    assert "lowest at epoch" not in caplog.text
