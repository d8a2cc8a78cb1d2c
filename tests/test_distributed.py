"""Distributed runs (mlip.training.distributed): the trainer=ddp / trainer=slurm presets, launch
checks against SLURM and torchrun before any work, data.batch_size per rank, the run-directory
lock under srun, validation metrics equal on 1, 2 and 4 processes, a failing rank stopping the
whole job, and two SLURM "nodes" and torchrun simulated on this machine."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mlip.cli.check_config import check_config
from mlip.cli.config_path import CONFIG_DIR
from mlip.errors import ConfigError
from mlip.fileio import LOCK_NAME, run_dir_lock
from mlip.training import distributed

REPO = Path(__file__).resolve().parents[1]
QUICK = ["experiment=quick", "trainer.enable_progress_bar=false", "export=false"]


def _compose(overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _slurm_env(rank=0, nodes=2, per_node=1, ntasks=None, name="train", **extra):
    """What srun gives task ``rank`` of a job of ``nodes`` nodes x ``per_node`` tasks."""
    per = per_node or 1
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": name, "SLURM_NTASKS": str(ntasks or nodes * per),
           "SLURM_NNODES": str(nodes), "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % per),
           "SLURM_NODEID": str(rank // per), "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost",
           "SLURM_STEP_ID": "0"}
    if per_node is not None:
        env["SLURM_NTASKS_PER_NODE"] = str(per_node)
    env.update(extra)
    return env


# ------------------------------------------------------------------------------ presets, checks
def test_presets_inherit_every_default_key_and_pass_the_checks(monkeypatch):
    default = set(_compose([]).trainer)
    ddp = _compose(["trainer=ddp", "trainer.devices=4", "trainer.accelerator=cpu"])
    assert set(ddp.trainer) == default and ddp.trainer.strategy == "ddp" and ddp.trainer.devices == 4
    check_config(ddp)
    slurm = _compose(["trainer=slurm"])  # outside SLURM: one task on one node
    assert set(slurm.trainer) == default and (slurm.trainer.devices, slurm.trainer.num_nodes) == (1, 1)
    check_config(slurm)
    for key, value in _slurm_env(nodes=2, per_node=4).items():
        monkeypatch.setenv(key, value)
    slurm = _compose(["trainer=slurm", "trainer.accelerator=cpu"])  # devices and nodes from the allocation
    assert (slurm.trainer.devices, slurm.trainer.num_nodes) == (4, 2)
    check_config(slurm)


LAUNCH_ERRORS = [
    (_slurm_env(nodes=1, per_node=4), 2, 1, r"trainer.devices=2, but SLURM runs 4 tasks per node "
                                            r"\(SLURM_NTASKS_PER_NODE=4.*set trainer.devices=4"),
    (_slurm_env(nodes=2, per_node=1), 1, 1, r"trainer.num_nodes=1, but the SLURM job runs on 2 nodes "
                                            r"\(SLURM_NNODES=2.*set trainer.num_nodes=2"),
    (_slurm_env(nodes=2, per_node=None, ntasks=8), 4, 2, r"SLURM_NTASKS=8 without SLURM_NTASKS_PER_NODE.*"
                                                         r"--ntasks-per-node"),
    (_slurm_env(nodes=1, per_node=None, ntasks=1), 4, 1, r"trainer.devices=4 x trainer.num_nodes=1 = 4 ranks, but "
                                                         r"SLURM started 1 task \(SLURM_NTASKS=1\).*srun"),
    ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}, 4, 1,
     r"trainer.devices=4, but torchrun started 2 processes on this node \(--nproc_per_node, LOCAL_WORLD_SIZE=2"),
    ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, 4, 1,
     r"trainer.devices=4 x trainer.num_nodes=1 = 4 ranks, but torchrun started 8 \(WORLD_SIZE=8.*num_nodes=2"),
]


@pytest.mark.parametrize("env,devices,nodes,message", LAUNCH_ERRORS)
def test_settings_that_disagree_with_slurm_or_torchrun_are_refused(env, devices, nodes, message):
    with pytest.raises(ConfigError, match=message):
        distributed.check_launch(devices, nodes, env)


def test_launch_checks_pass_and_are_part_of_the_config_checks(monkeypatch):
    distributed.check_launch(4, 2, _slurm_env(nodes=2, per_node=4))
    distributed.check_launch("auto", 2, _slurm_env(nodes=2, per_node=4))  # Lightning counts the devices
    distributed.check_launch([0, 1], 1, {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    # job name bash / interactive: Lightning does not read SLURM's ranks and launches the processes itself
    distributed.check_launch(4, 1, _slurm_env(nodes=1, per_node=1, name="interactive"))
    for key, value in _slurm_env(nodes=2, per_node=1).items():
        monkeypatch.setenv(key, value)
    cfg = _compose(["trainer=ddp", "trainer.devices=1", "trainer.accelerator=cpu"])
    with pytest.raises(ConfigError, match=r"trainer.num_nodes=1, but the SLURM job runs on 2 nodes"):
        check_config(cfg)  # with the other settings, before the data are read


def test_run_dir_named_by_the_clock_is_refused_for_externally_started_ranks():
    default = "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}"
    with pytest.raises(ConfigError, match=r"hydra.run.dir=outputs/\$\{now.*hydra.run.dir=outputs/job-\$SLURM_JOB_ID"):
        distributed.check_shared_run_dir(default, _slurm_env(nodes=2))
    with pytest.raises(ConfigError, match="each of the 2 ranks torchrun started"):
        distributed.check_shared_run_dir(default, {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2"})
    distributed.check_shared_run_dir(default, {})  # Lightning's launcher hands its directory to its processes
    distributed.check_shared_run_dir("outputs/job-4242", _slurm_env(nodes=2))


def test_ddp_timeout_builds_the_strategy_and_is_checked():
    from lightning.pytorch.strategies import DDPStrategy

    settings = distributed.trainer_settings({"strategy": "ddp", "devices": 2, "ddp_timeout_s": 90})
    assert "ddp_timeout_s" not in settings and isinstance(settings["strategy"], DDPStrategy)
    assert settings["strategy"]._timeout == timedelta(seconds=90)
    assert distributed.trainer_settings({"strategy": "auto", "ddp_timeout_s": None}) == {"strategy": "auto"}
    with pytest.raises(ConfigError, match="trainer.ddp_timeout_s=60 applies to the ddp strategies.*'auto'"):
        check_config(_compose(["trainer.ddp_timeout_s=60"]))
    with pytest.raises(ConfigError, match="trainer.ddp_timeout_s=0 must be a finite number > 0 or null"):
        check_config(_compose(["trainer=ddp", "trainer.ddp_timeout_s=0"]))
    check_config(_compose(["trainer=ddp", "trainer.ddp_timeout_s=600", "trainer.accelerator=cpu"]))


def test_batch_line_says_the_batch_is_per_rank():
    assert distributed.batch_line(8, 4) == "batch: 8 frames per rank x 4 ranks = 32 frames per optimizer step"
    assert distributed.batch_line(8, 1, 193) == "batch: 8 frames per optimizer step (1 rank), 25 steps per epoch"
    # 193 frames on 2 ranks: 97 each (the sampler pads), 13 batches of up to 8
    assert distributed.batch_line(8, 2, 193).endswith("= 16 frames per optimizer step, 13 steps per epoch")


@pytest.mark.parametrize("rank_env,locks", [
    ({"SLURM_PROCID": "0", "SLURM_NODEID": "0", "SLURM_LOCALID": "0"}, True),
    ({"SLURM_PROCID": "1", "SLURM_NODEID": "1", "SLURM_LOCALID": "0"}, False),  # node 1, no LOCAL_RANK
    ({"SLURM_PROCID": "3", "SLURM_NODEID": "1", "SLURM_LOCALID": "1", "LOCAL_RANK": "1"}, False),
    ({"RANK": "2", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, False),  # torchrun, second node
])
def test_only_global_rank_zero_takes_the_run_dir_lock(tmp_path, monkeypatch, rank_env, locks):
    """Under srun the process of node 1 has SLURM_PROCID=1 and may have no LOCAL_RANK: it must
    neither take the lock nor refuse the directory rank 0 has locked."""
    for key, value in {**_slurm_env(nodes=2), **rank_env}.items():
        monkeypatch.setenv(key, value)
    if locks:
        with run_dir_lock(tmp_path) as lock:
            assert lock is not None and json.loads(lock.read_text())["slurm_job_id"] == "4242"
        assert not (tmp_path / LOCK_NAME).exists()
    else:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
        with run_dir_lock(tmp_path) as lock:
            assert lock is None
        assert (tmp_path / LOCK_NAME).exists()


def test_peer_failure_only_inside_a_distributed_run():
    assert distributed.peer_failure(RuntimeError("Connection closed by peer"), 0) is None


# ------------------------------------------------------------------------ end to end (processes)
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra):
    """This test's environment (conftest has taken SLURM's and torchrun's variables out) for a
    process importing this checkout's mlip."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **extra)


def _val_rows(run_dir):
    with open(next(Path(run_dir).glob("logs/version_*/metrics.csv"))) as fh:
        return [r for r in csv.DictReader(fh) if r.get("val/loss")]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A run of one epoch (in this process) and its configuration."""
    from mlip.cli.train import run

    run_dir = tmp_path_factory.mktemp("one_epoch")
    cfg = _compose([*QUICK, "trainer.max_epochs=1"])
    results = run(cfg, run_dir)
    return cfg, run_dir, results


@pytest.mark.slow
def test_validation_metrics_equal_on_1_2_4_processes(one_epoch, tmp_path, monkeypatch):
    """The same checkpoint validated by 1, 2 and 4 gloo processes (21 validation frames: the ranks
    get 11/10 and 6/5/5/5) gives the metrics of one process and of the final evaluation: every
    frame counted exactly once."""
    import lightning as L

    from mlip.cli.train import build_datamodule
    from mlip.training.checkpoint_load import module_from_checkpoint
    from mlip.training.evaluate import evaluate

    class CountFrames(L.Callback):
        """Writes the validation frames (energy labels) this rank counted, before they are reduced."""

        def on_validation_epoch_end(self, trainer, pl_module):
            acc = pl_module._val["metrics"]
            row = [t.name for t in acc.kinds].index("energy")
            out = tmp_path / f"count_{trainer.world_size}_{trainer.global_rank}.json"
            out.write_text(json.dumps(float(acc.count[row, -1])))

    cfg, run_dir, results = one_epoch
    dm = build_datamodule(cfg, torch.float32)
    dm.prepare()
    n_val = dm.summary()["n_frames"]["val"]
    assert n_val % 2 == 1
    module = module_from_checkpoint(str(run_dir / "checkpoints" / "best.ckpt"))
    reference, _ = evaluate(module.model, dm.eval_loader("val"), dm.config_types, e0=dm.e0)
    assert reference["forces_mae"] == pytest.approx(results["val"]["forces_mae"], rel=1e-9)
    metrics = {}
    for world in (1, 2, 4):
        monkeypatch.delenv("MASTER_PORT", raising=False)
        trainer = L.Trainer(accelerator="cpu", devices=world, strategy="ddp_fork" if world > 1 else "auto",
                            logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, inference_mode=False, use_distributed_sampler=False,
                            callbacks=[CountFrames()])
        metrics[world] = trainer.validate(module, datamodule=dm, verbose=False)[0]
        counts = [json.loads((tmp_path / f"count_{world}_{r}.json").read_text()) for r in range(world)]
        assert sum(counts) == n_val and max(counts) - min(counts) <= 1, counts
    for world in (2, 4):
        assert metrics[world].keys() == metrics[1].keys()
        for key, value in metrics[1].items():
            assert metrics[world][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (world, key)
    for kind in ("energy_mae", "forces_rmse", "stress_mae"):
        assert metrics[4][f"val/{kind}"] == pytest.approx(reference[kind], rel=1e-5)


def _start(args, cwd, name, env):
    """``python args`` with stdout and stderr in files (``<name>.out``, ``<name>.err`` in ``cwd``):
    processes it starts in turn write there too, and a wait never hangs on a pipe they hold."""
    out, err = open(Path(cwd) / f"{name}.out", "w"), open(Path(cwd) / f"{name}.err", "w")
    with out, err:
        return subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=out, stderr=err, env=env)


def _finish(procs, cwd, timeout=240):
    """Wait for ``procs`` (killed after ``timeout`` s); their (stdout, stderr) texts."""
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            p.kill()
    names = sorted(p.stem for p in Path(cwd).glob("*.out"))
    return [((Path(cwd) / f"{n}.out").read_text(), (Path(cwd) / f"{n}.err").read_text()) for n in names]


def _srun(args, cwd, nodes=2, **extra):
    """``nodes`` processes of ``python args``, each with the variables srun gives one task of a
    job of ``nodes`` nodes with one task each (rank 0's address: this machine)."""
    port = str(_free_port())
    return [_start(args, cwd, f"rank{rank}", _env(**_slurm_env(rank, nodes=nodes), MASTER_PORT=port, **extra))
            for rank in range(nodes)]


@pytest.mark.slow
def test_two_slurm_nodes_simulated_give_the_single_process_metrics(tmp_path):
    """trainer=slurm under srun's variables for 2 nodes x 1 task: both ranks exit 0, rank 0 alone
    holds the lock and writes the outputs, and the validation metrics reduced over the 2 ranks
    equal rank 0's single-process evaluation of the same weights."""
    run_dir = tmp_path / "run"
    procs = _srun([str(REPO / "train.py"), *QUICK, "trainer=slurm", "trainer.num_nodes=2", "trainer.devices=1",
                   "trainer.accelerator=cpu", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    outs = _finish(procs, tmp_path)
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    (out0, _), (out1, _) = outs
    assert "batch: 8 frames per rank x 2 ranks = 16 frames per optimizer step" in out0
    assert "mlip: finished" in out0 and "mlip: run directory" not in out1 and "mlip: finished" not in out1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    [row] = _val_rows(run_dir)
    for kind in ("energy_mae", "forces_mae", "stress_rmse"):
        assert float(row[f"val/{kind}"]) == pytest.approx(metrics["val"][kind], rel=1e-5)
    assert not (run_dir / LOCK_NAME).exists() and not list(run_dir.glob(".*.tmp-*"))


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """torchrun --standalone --nproc_per_node=2 train.py trainer=ddp trainer.devices=2."""
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(REPO / "train.py"), *QUICK, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                          "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("mlip: run directory") == 1 and "x 2 ranks = 16 frames" in res.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    [row] = _val_rows(run_dir)
    assert float(row["val/forces_mae"]) == pytest.approx(metrics["val"]["forces_mae"], rel=1e-5)


#: train.py with a failure injected into one rank's training step (the test's own launcher script)
INJECT = '''
import os, sys, time
from pathlib import Path

from mlip.errors import DataError
from mlip.training import module

FAIL, STALL = int(os.environ["MLIP_TEST_FAIL_RANK"]), int(os.environ.get("MLIP_TEST_STALL_RANK", "-1"))
original = module.PotentialModule.training_step


def training_step(self, batch, batch_idx):
    if batch_idx == 1 and self.global_rank == FAIL:
        Path(os.environ["MLIP_TEST_OUT"], "failed_at").write_text(repr(time.time()))
        raise DataError(f"injected failure on rank {self.global_rank}")
    if batch_idx == 1 and self.global_rank == STALL:  # busy elsewhere, in no collective
        Path(os.environ["MLIP_TEST_OUT"], "stalled_pid").write_text(str(os.getpid()))
        time.sleep(600)
    return original(self, batch, batch_idx)


module.PotentialModule.training_step = training_step
from mlip.cli.train import main

main()
'''


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("launch,fail,stall", [("srun", 1, -1), ("lightning", 0, 1)])
def test_a_failing_rank_stops_the_whole_job(tmp_path, launch, fail, stall):
    """A rank that raises in its training step ends every rank within seconds, non-zero, with its
    error on the console. srun-like (2 "nodes"): rank 1 raises, rank 0 waits in its next collective
    and stops with a one-line PeerFailure. Lightning's launcher: rank 0 (the launching process)
    raises while rank 1 is busy outside any collective; mlip kills it (Lightning would leave it)."""
    script = tmp_path / "inject_train.py"
    script.write_text(INJECT)
    args = [str(script), *QUICK, "trainer.accelerator=cpu", "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path / 'run'}"]
    extra = {"MLIP_TEST_FAIL_RANK": str(fail), "MLIP_TEST_STALL_RANK": str(stall), "MLIP_TEST_OUT": str(tmp_path)}
    if launch == "srun":
        procs = _srun([*args, "trainer=slurm"], cwd=tmp_path, **extra)
    else:  # Lightning's launcher starts rank 1 from rank 0
        procs = [_start([*args, "trainer=ddp", "trainer.devices=2"], tmp_path, "rank0", _env(**extra))]
    outs = _finish(procs, tmp_path)
    ended = time.time()
    failed_at = float((tmp_path / "failed_at").read_text())
    stderr = "".join(err for _, err in outs)
    assert all(p.returncode != 0 for p in procs), stderr[-3000:]
    assert f"mlip: error: injected failure on rank {fail}" in stderr
    if launch == "srun":
        assert "mlip: error: rank 0: stopped because another rank of this run failed" in outs[0][1]
        assert "Traceback" not in outs[0][1]
    else:
        pid = int((tmp_path / "stalled_pid").read_text())
        deadline = time.time() + 10
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            pytest.fail("rank 1 outlived the failed rank 0")
    print(f"{launch}: every rank exited {ended - failed_at:.1f} s after rank {fail} raised")
    assert ended - failed_at < 30
