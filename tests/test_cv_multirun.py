"""End to end: ``train.py -m`` over k-fold folds and two alphas (learned sigmas on), then ``mlip cv``."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

REPO = Path(__file__).resolve().parents[1]


def test_kfold_multirun_then_mlip_cv(tmp_path):
    sweep = tmp_path / "multirun"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    args = ["-m", "experiment=quick", "trainer.max_epochs=1", "export=false", "split=kfold", "split.k=2",
            "split.fold=0,1", "split.group_by=config_type", "regularization=l2", "regularization.alpha=1e-6,1e-2",
            "loss.sigma=learned", f"hydra.sweep.dir={sweep}"]
    res = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    metrics = {p.name: json.loads((p / "metrics.json").read_text()) for p in jobs}
    splits = {p.name: json.loads((p / "split.json").read_text()) for p in jobs}
    for name, m in metrics.items():
        assert {"cv", "val", "test"} <= set(m) and m["split"]["k"] == 2
        assert set(m["learned_sigma"]) == {"energy", "forces", "stress"}
        assert splits[name]["fold"] == m["split"]["fold"]
    # jobs 0, 1 are fold 0 (alpha 1e-6, 1e-2); 2, 3 fold 1: the held-out folds partition the frames
    # and no config type is in both
    held = [set(splits[n]["cv"]) for n in ("0", "2")]
    assert not held[0] & held[1] and len(held[0] | held[1]) == 214
    assert splits["0"]["cv"] == splits["1"]["cv"]
    # training loss = data loss + penalty, logged apart; learned sigmas logged every epoch
    with open(next((jobs[1] / "logs").glob("version_*/metrics.csv"))) as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r.get("train/penalty"))
    assert float(row["train/penalty"]) > 0
    assert [float(r["train/sigma_forces"]) > 0 for r in rows if r.get("train/sigma_forces")] == [True]
    total = float(row["train/data_loss"]) + float(row["train/penalty"])
    assert float(row["train/loss"]) == pytest.approx(total, rel=1e-5)
    assert "learned sigma: energy" in res.stdout

    cv = subprocess.run([sys.executable, "-m", "mlip.cli.main", "cv", str(sweep)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
    assert cv.returncode == 0, cv.stderr
    summary = json.loads((sweep / "cv_summary.json").read_text())
    groups = {g["alpha"]: g for g in summary["groups"]}
    assert set(groups) == {1e-6, 1e-2}
    for alpha, first in ((1e-6, "0"), (1e-2, "1")):
        second = str(int(first) + 2)
        mean = groups[alpha]["metrics"]["cv/forces_mae"]["mean"]
        assert mean == pytest.approx((metrics[first]["cv"]["forces_mae"] + metrics[second]["cv"]["forces_mae"]) / 2)
    best = min(groups.values(), key=lambda g: g["metrics"]["cv/forces_mae"]["mean"])
    assert summary["best"]["alpha"] == best["alpha"]
    assert f"best regularization.alpha = {best['alpha']:g}" in cv.stdout
    assert (sweep / "cv_curve.png").exists()
