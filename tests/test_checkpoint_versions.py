"""Checkpoint format versions: a checkpoint written by mlip 0.1.0 (format version 1, stored under
tests/data/checkpoints/) loads through the one checkpoint path, is upgraded, resumes, exports and
predicts the energy it predicted when written; newer or malformed versions are refused; every
reader of .ckpt files in mlip/ and scripts/ goes through ``checkpoint_io.load_checkpoint``."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from ase.io import read

from mlip.errors import CheckpointError, ConfigError
from mlip.training.checkpoint_io import load_checkpoint
from mlip.training.checkpoint_versions import CHECKPOINT_VERSION, VERSION_KEY, WRITER_KEY, upgrade

REPO = Path(__file__).resolve().parents[1]
STORED = REPO / "tests" / "data" / "checkpoints"
V1 = STORED / "v1_lj.ckpt"
EXPECTED = json.loads((STORED / "v1_lj_expected.json").read_text())


def _structure():
    return read(STORED / EXPECTED["structure"])


def test_stored_v1_checkpoint_is_version_1_on_disk():
    raw = torch.load(V1, map_location="cpu", weights_only=False)
    assert VERSION_KEY not in raw and WRITER_KEY not in raw  # written before versions existed


def test_v1_checkpoint_loads_upgraded_in_float64():
    ckpt = load_checkpoint(V1, for_resume=True)
    assert ckpt[VERSION_KEY] == CHECKPOINT_VERSION and ckpt[WRITER_KEY] == "0.1.0"
    assert all(v.dtype in (torch.float64, torch.int64) for v in ckpt["state_dict"].values())


def test_v1_checkpoint_predicts_the_energy_it_predicted_when_written():
    from mlip.calculator import MLIPCalculator
    from mlip.training.module import PotentialModule

    atoms = _structure()
    atoms.calc = MLIPCalculator(str(V1))
    assert atoms.get_potential_energy() == pytest.approx(EXPECTED["energy_eV"], rel=0, abs=1e-9)
    assert atoms.get_forces()[0] == pytest.approx(EXPECTED["forces_eV_per_A_atom0"], rel=0, abs=1e-9)
    # Lightning's entry point goes through the same path (float64 kept, not Lightning's float32)
    module = PotentialModule.load_from_checkpoint(V1, map_location="cpu")
    assert next(module.parameters()).dtype == torch.float64


@pytest.mark.slow
def test_v1_checkpoint_exports_to_the_same_energy(tmp_path):
    from mlip.cli.main import main
    from mlip.export import load_exported

    assert main(["export", str(V1), "--output", str(tmp_path / "model.pt")]) == 0
    model, meta = load_exported(str(tmp_path / "model.pt"))
    assert meta["dtype"] == "float64"
    atoms = _structure()
    out = model(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell.array),
                torch.tensor(atoms.pbc))
    assert float(out["energy"]) == pytest.approx(EXPECTED["energy_eV"], rel=0, abs=1e-9)


@pytest.mark.slow
def test_v1_checkpoint_resumes_and_new_checkpoints_carry_the_version(tmp_path):
    from ase.io import write
    from hydra import compose, initialize_config_dir

    import mlip
    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run

    frames = tmp_path / "si8.extxyz"  # the frames the stored checkpoint was trained on (see README)
    write(frames, read(REPO / "mlip" / "datasets" / "mlearn_si" / "Si_training.extxyz", index="::20")[:8])
    shutil.copy(V1, tmp_path / "v1.ckpt")
    overrides = ["experiment=quick", "model=lj", f"data.train={frames}", "data.test=null", "split.test_fraction=0",
                 "split.val_fraction=0.25", "data.batch_size=4", "dtype=float64", "export=false", "seed=0",
                 "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'v1.ckpt'}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
        # written under the old default schedule (plateau): resuming needs it, and says so
        with pytest.raises(ConfigError, match=r"optimizer.scheduler.name='plateau', this run has 'cosine'"):
            run(cfg, tmp_path / "refused")
        cfg = compose("train", overrides=[*overrides, "optimizer.scheduler.name=plateau"])
    results = run(cfg, tmp_path / "run")
    assert results["epochs"] == 2
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (1, 4)  # one more epoch of 2 batches after the stored one
    assert last[VERSION_KEY] == CHECKPOINT_VERSION and last[WRITER_KEY] == mlip.__version__


def test_newer_or_malformed_version_is_refused(tmp_path):
    ckpt = torch.load(V1, map_location="cpu", weights_only=False)
    ckpt[VERSION_KEY], ckpt[WRITER_KEY] = CHECKPOINT_VERSION + 1, "9.9"
    torch.save(ckpt, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match=r"future.ckpt: checkpoint format version \d+ \(written by mlip 9.9\) "
                                              r"is newer .* upgrade mlip"):
        load_checkpoint(tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match="not a version number"):
        upgrade({VERSION_KEY: "2"}, "x.ckpt")


def test_upgrades_apply_in_order_from_any_older_version(monkeypatch):
    """A checkpoint of version 1 passes through every upgrade, one version at a time."""
    from mlip.training import checkpoint_versions as cv

    seen = []

    def v2_to_v3(ckpt):
        seen.append(ckpt[VERSION_KEY])
        ckpt[VERSION_KEY] = 3
        return ckpt

    monkeypatch.setattr(cv, "CHECKPOINT_VERSION", 3)
    monkeypatch.setattr(cv, "UPGRADES", cv.UPGRADES + [v2_to_v3])
    assert cv.upgrade({})[VERSION_KEY] == 3 and seen == [2]
    assert cv.upgrade({VERSION_KEY: 3}) == {VERSION_KEY: 3} and seen == [2]


def test_every_checkpoint_reader_uses_the_one_path():
    """``torch.load`` / Lightning's ``load_from_checkpoint`` only in checkpoint_io.py (and the
    override that delegates to it)."""
    allowed = {"mlip/training/checkpoint_io.py", "mlip/training/module.py"}
    found = []
    for path in [*(REPO / "mlip").rglob("*.py"), *(REPO / "scripts").rglob("*.py")]:
        rel = path.relative_to(REPO).as_posix()
        for line in path.read_text().splitlines():
            if re.search(r"\btorch\.load\(|load_from_checkpoint\(", line) and rel not in allowed:
                found.append(f"{rel}: {line.strip()}")
    assert not found, found
