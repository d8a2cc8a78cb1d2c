"""Nothing lost: last.ckpt is the last epoch, a killed run resumes to the same parameters, writes
are atomic (a full disk leaves the previous files whole), corrupt checkpoints are refused, and a
live run's directory is locked. Runs are tiny: 16 frames, float64, a few epochs."""

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import run
from mlip.errors import CheckpointError, ConfigError, RunDirInUseError, WriteError
from mlip.fileio import LOCK_NAME, run_dir_lock
from mlip.training.checkpoint_io import AtomicCheckpointIO

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

REPO = Path(__file__).resolve().parents[1]
SI = REPO / "mlip" / "datasets" / "mlearn_si" / "Si_training.extxyz"


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way handles it."""


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """16 frames of the shipped Si set (every 13th)."""
    from ase.io import read, write

    path = tmp_path_factory.mktemp("data") / "si16.extxyz"
    write(path, read(SI, index="::13"))
    return path


def _cfg(frames, *overrides):
    base = ["experiment=quick", f"data.train={frames}", "data.test=null", "split.test_fraction=0",
            "split.val_fraction=0.25", "data.batch_size=4", "dtype=float64", "export=false",
            "trainer.max_epochs=4"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def tiny_run(frames, tmp_path_factory):
    """A finished 2-epoch run with model.pt."""
    run_dir = tmp_path_factory.mktemp("tiny")
    run(_cfg(frames, "trainer.max_epochs=2", "export=true"), run_dir)
    return run_dir


# ---------------------------------------------------------------------------- last.ckpt
def test_last_ckpt_is_the_last_epoch_and_best_the_best(frames, tmp_path, monkeypatch):
    """val/loss made to grow every epoch: best.ckpt stays at epoch 0, last.ckpt must move on."""
    from mlip.training import loss as loss_module

    original = loss_module.WeightedLoss.validation_loss
    epoch = {"n": 0}

    def growing(self, out, batch):
        loss, terms = original(self, out, batch)
        scale = 10.0 ** epoch["n"]
        return loss * scale, {kind: term * scale for kind, term in terms.items()}

    monkeypatch.setattr(loss_module.WeightedLoss, "validation_loss", growing)
    monkeypatch.setattr("mlip.training.module.PotentialModule.on_validation_epoch_start",
                        _counting_epochs(epoch))
    run(_cfg(frames, "trainer.max_epochs=3"), tmp_path)
    assert _load(tmp_path / "checkpoints" / "best.ckpt")["epoch"] == 0
    assert _load(tmp_path / "checkpoints" / "last.ckpt")["epoch"] == 2


def _counting_epochs(counter):
    from mlip.training.module import PotentialModule

    original = PotentialModule.on_validation_epoch_start

    def hook(self):
        counter["n"] = 0 if self.trainer.sanity_checking else self.current_epoch
        original(self)

    return hook


# ---------------------------------------------------------------------------- kill and resume
def _kill_mid_epoch(monkeypatch, epoch, batch):
    from mlip.training.module import PotentialModule

    original = PotentialModule.training_step

    def step(self, b, batch_idx):
        if self.current_epoch == epoch and batch_idx == batch:
            raise Killed(f"killed in epoch {epoch}, batch {batch}")
        return original(self, b, batch_idx)

    monkeypatch.setattr(PotentialModule, "training_step", step)


def _kill_writing_last(monkeypatch, epoch):
    """Dies half-way through writing last.ckpt of ``epoch`` (after best.ckpt of that epoch)."""
    original = AtomicCheckpointIO.save_checkpoint

    def save(self, checkpoint, path, storage_options=None):
        if Path(path).name == "last.ckpt" and checkpoint["epoch"] == epoch:
            def half(obj, fh, **kw):
                fh.write(b"PK\x03\x04 half a checkpoint")
                raise Killed("killed while writing last.ckpt")
            monkeypatch.setattr(torch, "save", half)
        return original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save)


def _assert_same(a, b, where=""):
    """Every tensor equal (bitwise) and every other value equal, recursively."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


COMPARED = ("epoch", "global_step", "state_dict", "current_model_state", "averaging_state", "optimizer_states",
            "lr_schedulers")


@pytest.mark.parametrize("scheduler,kill", [("plateau", "mid_epoch"), ("cosine", "writing_last")])
def test_killed_and_resumed_run_equals_uninterrupted(frames, tmp_path, monkeypatch, scheduler, kill):
    """4 epochs straight vs killed in epoch 2 and resumed with ckpt_path=last: best.ckpt and
    last.ckpt agree bitwise (weights, EMA, optimiser, schedule). The plateau case uses a large
    lr and patience 0 so that the rate is cut during the run."""
    overrides = [f"optimizer.scheduler.name={scheduler}", "optimizer.scheduler.patience=0", "optimizer.lr=0.05"]
    run(_cfg(frames, *overrides), tmp_path / "straight")
    with monkeypatch.context() as patch:
        (_kill_mid_epoch(patch, 2, 1) if kill == "mid_epoch" else _kill_writing_last(patch, 2))
        with pytest.raises(Killed):
            run(_cfg(frames, *overrides), tmp_path / "killed")
    ckpts = tmp_path / "killed" / "checkpoints"
    assert _load(ckpts / "last.ckpt")["epoch"] == 1  # the last completed and fully written epoch
    orphan = ckpts / ".last.tmp-999999999.ckpt"  # what a SIGKILL during a write leaves
    orphan.write_bytes(b"PK\x03\x04")
    results = run(_cfg(frames, *overrides, "ckpt_path=last"), tmp_path / "killed")
    assert results["epochs"] == 4
    assert not orphan.exists()
    for name in ("best.ckpt", "last.ckpt"):
        a, b = _load(tmp_path / "straight" / "checkpoints" / name), _load(ckpts / name)
        for key in COMPARED:
            _assert_same(a.get(key), b.get(key), f"{name}:{key}")
    last = _load(ckpts / "last.ckpt")
    assert last["epoch"] == 3
    lr = last["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr < 0.05  # the schedule acted, so its state mattered
    if scheduler == "plateau":
        assert last["lr_schedulers"][0]["last_epoch"] == 4  # stepped after each of the 4 epochs


def test_training_order_depends_on_seed_and_epoch_only(frames):
    from mlip.training.datamodule import FrameDataModule

    dm = FrameDataModule(str(frames), cutoff=5.0, val_fraction=0.25, test_fraction=0.0, seed=3, batch_size=4)
    dm.prepare()

    def order(epoch):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return list(loader.sampler)

    assert order(1) == order(1) and order(0) != order(1)
    assert sorted(order(2)) == list(range(len(dm.datasets["train"])))


# ---------------------------------------------------------------------------- atomic writes
def _half_then_enospc(real):
    """A writer that puts half its output into the file, then finds the disk full."""
    def write(obj, f, *args, **kwargs):
        import io

        buf = io.BytesIO()
        real(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2])
        else:
            Path(f).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


def test_full_disk_keeps_previous_checkpoint_and_model(tiny_run, frames, tmp_path, monkeypatch, capsys):
    import shutil

    from mlip.cli.main import main as mlip_main
    from mlip.export import load_exported

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", _half_then_enospc(torch.save))
    with pytest.raises(WriteError, match="disk full") as err:
        run(_cfg(frames, "ckpt_path=last", "trainer.max_epochs=3"), run_dir)
    assert "checkpoints/" in str(err.value) and ".ckpt" in str(err.value)
    assert last.read_bytes() == before
    assert _load(last)["epoch"] == 1
    assert not list(run_dir.rglob(".*tmp*"))

    model_pt = run_dir / "model.pt"
    before = model_pt.read_bytes()
    monkeypatch.setattr(torch.jit, "save", _half_then_enospc(torch.jit.save))
    assert mlip_main(["export", str(run_dir)]) == 1
    message = capsys.readouterr().err
    assert f"mlip export: error: {model_pt}: disk full" in message
    assert model_pt.read_bytes() == before
    load_exported(str(model_pt))


def test_write_helpers_report_failures_and_keep_previous(tmp_path, monkeypatch):
    from mlip.fileio import atomic_open, write_json

    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(WriteError, match=r"metrics.json: write failed \(Permission denied\)"):
        with atomic_open(target) as fh:
            fh.write("{")
            raise PermissionError(errno.EACCES, "Permission denied")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ---------------------------------------------------------------------------- corrupt checkpoints
@pytest.fixture(scope="module")
def bad_checkpoints(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad")
    data = (tiny_run / "checkpoints" / "best.ckpt").read_bytes()
    (out / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (out / "random.ckpt").write_bytes(os.urandom(4096))
    torch.save({"weights": torch.zeros(3)}, out / "foreign.ckpt")
    return [out / n for n in ("truncated.ckpt", "random.ckpt", "foreign.ckpt")]


def test_corrupt_checkpoints_refused_by_export_calculator_identifiability(bad_checkpoints, capsys):
    from mlip.calculator import MLIPCalculator
    from mlip.cli.main import main as mlip_main

    for path in bad_checkpoints:
        with pytest.raises(CheckpointError, match=f"{path}: corrupt or not an mlip checkpoint"):
            MLIPCalculator(str(path))
        assert mlip_main(["export", str(path)]) == 1
        err = capsys.readouterr().err
        assert f"mlip export: error: {path}: corrupt or not an mlip checkpoint" in err
        assert "Traceback" not in err
        assert mlip_main(["identifiability", str(path), "--data", str(SI)]) == 1
        assert f"mlip identifiability: error: {path}: corrupt or not an mlip checkpoint" in capsys.readouterr().err


def test_corrupt_checkpoints_refused_on_resume(bad_checkpoints, frames, tmp_path):
    for path in bad_checkpoints:
        with pytest.raises(CheckpointError, match=f"{path}: corrupt or not an mlip checkpoint"):
            run(_cfg(frames, f"ckpt_path={path}"), tmp_path / path.stem)


def test_train_cli_reports_corrupt_last_ckpt(bad_checkpoints, frames, tmp_path):
    """ckpt_path=last with a truncated last.ckpt: one line on stderr, exit 1, no traceback."""
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(bad_checkpoints[0].read_bytes())
    res = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "experiment=quick", f"data.train={frames}", "data.test=null",
         "split.test_fraction=0", "ckpt_path=last", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert f"mlip: error: {last}: corrupt or not an mlip checkpoint" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / LOCK_NAME).exists()  # released on error


# ---------------------------------------------------------------------------- run-directory lock
def _write_lock(run_dir, host, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps({"host": host, "pid": pid}))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_lock_refuses_a_second_run(frames, tmp_path):
    host = socket.gethostname()
    _write_lock(tmp_path, host, os.getpid())
    with pytest.raises(RunDirInUseError) as err:
        run(_cfg(frames), tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and host in message and str(os.getpid()) in message
    assert (tmp_path / LOCK_NAME).exists()  # someone else's lock is left alone
    _write_lock(tmp_path, "another-host", 12345)  # cannot be checked from here: refused too
    with pytest.raises(RunDirInUseError, match="another-host, pid 12345"):
        run(_cfg(frames), tmp_path)


def test_stale_lock_is_taken_over_and_released(frames, tmp_path, monkeypatch):
    import mlip.cli.train as train_cli

    def fails_inside(cfg, run_dir):
        raise ConfigError("failed while holding the lock")

    monkeypatch.setattr(train_cli, "_run", fails_inside)
    _write_lock(tmp_path, socket.gethostname(), _dead_pid())
    with pytest.raises(ConfigError, match="holding the lock"):  # got past the lock, then failed: lock released
        run(_cfg(frames), tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    with run_dir_lock(tmp_path) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(RunDirInUseError):
            with run_dir_lock(tmp_path):
                pass
    assert not lock.exists()


def test_ddp_ranks_share_the_locked_directory(tmp_path, monkeypatch):
    """Ranks started by Lightning's DDP launcher (LOCAL_RANK > 0) neither take nor check the lock."""
    _write_lock(tmp_path, socket.gethostname(), os.getpid())
    monkeypatch.setenv("LOCAL_RANK", "1")
    with run_dir_lock(tmp_path) as lock:
        assert lock is None
    assert (tmp_path / LOCK_NAME).exists()


def test_fresh_run_into_a_finished_run_and_resume_with_other_settings_are_refused(frames, tmp_path):
    run(_cfg(frames, "trainer.max_epochs=1", "model=lj"), tmp_path)
    with pytest.raises(ConfigError, match="already holds a run .* resume it with ckpt_path=last"):
        run(_cfg(frames, "trainer.max_epochs=1", "model=lj"), tmp_path)
    with pytest.raises(ConfigError, match=r"was trained with model.cutoff=5.0, this run has 4.0"):
        run(_cfg(frames, "trainer.max_epochs=2", "model=lj", "model.cutoff=4.0", "ckpt_path=last"), tmp_path)
    with pytest.raises(ConfigError, match=r"was trained with loss.sigma.forces=0.05, this run has 'learned'"):
        run(_cfg(frames, "trainer.max_epochs=2", "model=lj", "loss.sigma.forces=learned", "ckpt_path=last"),
            tmp_path)
    # a run resumes only with the schedule it was trained with (cosine here, the default)
    with pytest.raises(ConfigError, match=r"was trained with optimizer.scheduler.name='cosine', this run has "
                                          r"'plateau'"):
        run(_cfg(frames, "trainer.max_epochs=2", "model=lj", "optimizer.scheduler.name=plateau", "ckpt_path=last"),
            tmp_path)


def test_sigterm_exits_nonzero_with_the_resume_command(frames, tmp_path):
    """A scheduler's SIGTERM: Lightning stops gracefully; mlip says so and exits 143, not 0."""
    import signal
    import subprocess
    import sys
    import time

    script = REPO / "train.py"
    args = [sys.executable, str(script), "experiment=quick", f"data.train={frames}", "data.test=null",
            "split.test_fraction=0", "split.val_fraction=0.25", "data.batch_size=1", "model=lj",
            "trainer.max_epochs=100000", "export=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while not (tmp_path / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM after epoch" in err and "ckpt_path=last" in err
