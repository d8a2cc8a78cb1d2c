"""Cross-validation folds and grouped splits hold out whole groups; ``mlip cv`` statistics by hand."""

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mlip.analysis.cross_validation import load_jobs, summarise
from mlip.cli.main import main as mlip_main
from mlip.data.split import group_labels, kfold_assignment, kfold_split, random_split
from mlip.errors import DataError


def _groups(seed=0):
    """55 frames in 13 groups of uneven sizes (1..9 frames), interleaved."""
    rng = np.random.default_rng(seed)
    labels = [f"traj{g}" for g in range(13) for _ in range(1 + g % 9)]
    return [labels[i] for i in rng.permutation(len(labels))]


@pytest.mark.parametrize("grouped", [True, False])
def test_kfold_partitions_frames_and_never_splits_a_group(grouped):
    groups = _groups() if grouped else None
    n, k = 55, 4
    fold_of = kfold_assignment(n, k, seed=3, groups=groups)
    sizes = Counter(fold_of)
    assert sorted(sizes) == list(range(k))
    assert max(sizes.values()) - min(sizes.values()) <= (9 if grouped else 1)  # balanced to within a group
    if grouped:
        for g in set(groups):
            assert len({fold_of[i] for i in range(n) if groups[i] == g}) == 1, g
    held_out = Counter()
    for fold in range(k):
        split = kfold_split(n, k, fold, val_fraction=0.15, seed=3, groups=groups)
        parts = [split["train"], split["val"], split["cv"]]
        assert sorted(sum(parts, [])) == list(range(n))  # a partition of the frames
        assert split["cv"] == [i for i in range(n) if fold_of[i] == fold]
        assert split["val"] and split["train"]
        if grouped:  # no group both held out and trained on (the inner val is drawn by frame)
            assert not {groups[i] for i in split["cv"]} & {groups[i] for i in split["train"] + split["val"]}
        held_out.update(split["cv"])
    assert held_out == Counter(range(n))  # every frame held out exactly once over the k folds
    assert kfold_assignment(n, k, seed=3, groups=groups) == fold_of  # seeded
    if not grouped:  # (with groups, only groups of equal size are ordered by the seed)
        assert kfold_assignment(n, k, seed=4, groups=groups) != fold_of


def test_random_split_with_groups_keeps_groups_whole():
    groups = _groups(1)
    split = random_split(55, 0.2, 0.2, seed=5, groups=groups)
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(55))
    for name in ("val", "test"):
        assert split[name] and len(split[name]) >= 11  # filled to at least the requested fraction
        others = {groups[i] for other in ("train", "val", "test") if other != name for i in split[other]}
        assert not {groups[i] for i in split[name]} & others


def test_group_errors_name_the_key():
    frames = [SimpleNamespace(info={"description": "a"}, config_type="x", source="f.xyz", index=0),
              SimpleNamespace(info={}, config_type="default", source="f.xyz", index=1)]
    assert group_labels(frames, "config_type") == ["x", "default"]
    with pytest.raises(DataError, match=r"f.xyz, frame 1: split.group_by=description: .*no info key 'description'"):
        group_labels(frames, "description")
    with pytest.raises(DataError, match=r"split.k=3 folds need at least 3 group"):
        kfold_assignment(4, 3, groups=["a", "a", "b", "b"])
    with pytest.raises(DataError, match=r"split.fold=3 must be an integer in 0..2"):
        kfold_split(9, 3, 3, 0.1)


@pytest.mark.slow
def test_datamodule_kfold_by_config_type_writes_fold_and_groups(shipped_train, tmp_path):
    from mlip.training.datamodule import FrameDataModule

    held = {}
    for fold in range(2):
        dm = FrameDataModule(shipped_train, cutoff=3.0, split="kfold", k=2, fold=fold, group_by="config_type",
                             val_fraction=0.2, seed=0, e0="zero")
        dm.prepare()
        dm.save_split(str(tmp_path / "split.json"))
        saved = json.loads((tmp_path / "split.json").read_text())
        assert saved["method"] == "kfold" and saved["fold"] == fold and saved["group_by"] == "config_type"
        assert set(saved["groups"]) == {"AIMD-NVT", "Elastic", "Surface", "Vacancy"}
        # greedy by size: AIMD-NVT (90) | Vacancy (57) | Elastic (55) to the smaller fold | Surface (12)
        together = {g for g, f in saved["groups"].items() if f == saved["groups"]["AIMD-NVT"]}
        assert together == {"AIMD-NVT", "Surface"}
        assert len(dm.datasets["cv"]) == len(saved["cv"]) and len(saved["cv"]) in (102, 112)
        held[fold] = set(saved["cv"])
    assert not held[0] & held[1] and len(held[0] | held[1]) == 214


def _fabricate(root: Path, alpha: float, fold: int, num: int, forces_mae: float, energy_mae: float):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        f"- split=kfold\n- split.fold={fold}\n- regularization=l2\n- regularization.alpha={alpha}\n")
    (job / "config.yaml").write_text(
        f"split:\n  name: kfold\n  k: 3\n  fold: {fold}\nregularization:\n  name: l2\n  alpha: {alpha}\n")
    (job / "metrics.json").write_text(json.dumps(
        {"cv": {"forces_mae": forces_mae, "energy_mae": energy_mae}, "test": {"forces_mae": 2 * forces_mae},
         "learned_sigma": {"forces": 0.01 * forces_mae}, "epochs": 3}))


def test_mlip_cv_mean_std_and_best_alpha(tmp_path, capsys):
    values = {1e-6: [30.0, 34.0, 38.0], 1e-4: [20.0, 21.0, 25.0], 1e-2: [50.0, 40.0, 45.0]}
    num = 0
    for alpha, maes in values.items():
        for fold, mae in enumerate(maes):
            _fabricate(tmp_path, alpha, fold, num, mae, energy_mae=10.0 / alpha if alpha < 1e-3 else 1.0)
            num += 1
    assert mlip_main(["cv", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "best regularization.alpha = 0.0001" in printed
    summary = json.loads((tmp_path / "cv_summary.json").read_text())
    assert summary["metric"] == "cv/forces_mae" and summary["best"]["alpha"] == 1e-4
    stats = {g["alpha"]: g["metrics"] for g in summary["groups"]}
    assert stats[1e-6]["cv/forces_mae"]["mean"] == pytest.approx(34.0)
    assert stats[1e-6]["cv/forces_mae"]["std"] == pytest.approx(4.0)  # sample std of 30, 34, 38
    assert stats[1e-4]["cv/forces_mae"]["std"] == pytest.approx(np.std([20, 21, 25], ddof=1))
    assert stats[1e-2]["test/forces_mae"]["mean"] == pytest.approx(90.0)
    assert stats[1e-2]["learned_sigma/forces"]["mean"] == pytest.approx(0.45)
    assert all(g["folds"] == [0, 1, 2] for g in summary["groups"])
    assert (tmp_path / "cv_curve.png").stat().st_size > 1000
    # another metric picks another alpha (energy MAE is lowest for alpha = 1e-2)
    assert mlip_main(["cv", str(tmp_path), "--metric", "energy_mae"]) == 0
    assert json.loads((tmp_path / "cv_summary.json").read_text())["best"]["alpha"] == 1e-2
    assert mlip_main(["cv", str(tmp_path), "--metric", "val/nope"]) == 1
    assert "no job has it" in capsys.readouterr().err


def test_cv_groups_by_config_without_overrides(tmp_path):
    for fold in range(2):
        for num, alpha in enumerate((0.1, 0.2)):
            _fabricate(tmp_path, alpha, fold, 2 * fold + num, 10.0 + fold + 10 * num, 1.0)
            (tmp_path / str(2 * fold + num) / ".hydra" / "overrides.yaml").unlink()
    groups = summarise(load_jobs(str(tmp_path)))
    assert [g.label for g in groups] == ["regularization.alpha=0.1", "regularization.alpha=0.2"]
    assert [g.stats["cv/forces_mae"]["mean"] for g in groups] == [10.5, 20.5]
