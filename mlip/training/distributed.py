"""Distributed runs: how they are launched, checked before any work, and stopped as a whole.

Three launches (README, "GPUs and clusters"), each rank one process:

- Lightning's own launcher: ``python train.py trainer=ddp trainer.devices=N`` starts N - 1 more
  processes of the same command on this node;
- ``torchrun --nproc_per_node=N train.py trainer=ddp trainer.devices=N`` (``TORCHELASTIC_RUN_ID``,
  ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE`` set): torchrun started every rank;
- ``srun python train.py trainer=slurm`` under SLURM (``SLURM_NTASKS`` set and a job name other
  than ``bash`` / ``interactive``: Lightning's ``SLURMEnvironment``): each SLURM task is a rank.

``check_launch`` compares ``trainer.devices`` / ``trainer.num_nodes`` with what torchrun or SLURM
started and raises ``ConfigError`` naming both before any data is read; Lightning would raise a
``ValueError`` only inside ``fit`` or, where it checks nothing, wait for ranks that never come.

``data.batch_size`` is per rank: each optimizer step averages the gradients of
``batch_size x ranks`` frames (``batch_line``).

A rank that fails stops the job (README, "GPUs and clusters"). Lightning's launcher kills every
process when one of the processes it started exits with an error (it polls every 5 s), torchrun
does the same, and so does ``srun --kill-on-bad-exit=1``; with gloo, a rank waiting in a
collective for a rank that died gets "Connection closed by peer" at once. What mlip adds: the
launching process of Lightning's launcher kills the processes it started when it fails itself
(``stop_started_ranks``; Lightning does so only on Ctrl-C, and ranks on GPUs can wait in NCCL
until the collective timeout), the error of a rank that lost its peers is one line
(``PeerFailure``), a failed rank leaves without tearing the process group down (``cli/train.py``,
``_exit``), and ``trainer.ddp_timeout_s`` sets the collective timeout (``strategy_argument``).
"""

import os
import signal
from datetime import timedelta
from typing import Any, Dict, Mapping, Optional

from mlip.errors import ConfigError

#: keys of the ``trainer`` config group that mlip reads itself (not arguments of lightning.Trainer)
TRAINER_OWN_KEYS = ("ddp_timeout_s",)
#: words of a backend error caused by another rank's death or silence (gloo, NCCL, the TCP store)
_PEER_LOST = ("closed by peer", "reset by peer", "remote worker", "broken pipe", "timed out",
              "connection refused", "nccl communicator was aborted")


# ------------------------------------------------------------------------------------ launchers
def _torchrun(env: Mapping[str, str]) -> bool:
    return "TORCHELASTIC_RUN_ID" in env


def _slurm(env: Mapping[str, str]) -> bool:
    """Lightning's rule (``SLURMEnvironment.detect``): SLURM_NTASKS set, and a job name other
    than ``bash`` / ``interactive`` (those tell Lightning to launch processes itself)."""
    return "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def launcher(env: Optional[Mapping[str, str]] = None) -> str:
    """``"torchrun"``, ``"slurm"`` (ranks started outside Lightning; torchrun first, as in
    Lightning) or ``"lightning"`` (this process launches the others, if any)."""
    env = os.environ if env is None else env
    if _torchrun(env):
        return "torchrun"
    if _slurm(env):
        return "slurm"
    return "lightning"


def external_world_size(env: Optional[Mapping[str, str]] = None) -> int:
    """Ranks that torchrun or SLURM started (each a separate ``python train.py``); 1 otherwise."""
    env = os.environ if env is None else env
    kind = launcher(env)
    value = env.get("WORLD_SIZE") if kind == "torchrun" else env.get("SLURM_NTASKS") if kind == "slurm" else None
    return int(value) if value and value.strip().isdigit() else 1


def device_count(devices: Any) -> Optional[int]:
    """Processes per node that ``trainer.devices`` asks for; None for ``auto`` / -1 (Lightning
    counts the devices then)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices >= 1 else None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.replace(" ", "").rstrip(",")
        if text.isdigit() and "," not in devices:
            return int(text)
        if text and all(part.isdigit() for part in text.split(",")):
            return len(text.split(","))
    return None


def _int_env(env: Mapping[str, str], name: str) -> Optional[int]:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def check_launch(devices: Any, num_nodes: Any, env: Optional[Mapping[str, str]] = None) -> None:
    """``ConfigError`` when ``trainer.devices`` (processes per node) or ``trainer.num_nodes``
    disagree with the ranks torchrun or SLURM started (see the module docstring)."""
    env = os.environ if env is None else env
    kind = launcher(env)
    n = device_count(devices)
    nodes = num_nodes if isinstance(num_nodes, int) and not isinstance(num_nodes, bool) else None
    if kind == "torchrun":
        world, local = _int_env(env, "WORLD_SIZE"), _int_env(env, "LOCAL_WORLD_SIZE")
        if n is not None and local is not None and n != local:
            raise ConfigError(f"trainer.devices={devices}, but torchrun started {local} processes on this node "
                              f"(--nproc_per_node, LOCAL_WORLD_SIZE={local}): each is one rank; set "
                              f"trainer.devices={local}")
        if n is not None and nodes is not None and world is not None and n * nodes != world:
            raise ConfigError(f"trainer.devices={devices} x trainer.num_nodes={num_nodes} = {n * nodes} ranks, but "
                              f"torchrun started {world} (WORLD_SIZE={world}, --nnodes x --nproc_per_node); set "
                              f"trainer.num_nodes={world // n if world % n == 0 else '?'}")
        return
    if kind != "slurm":
        return
    ntasks, per_node, nnodes = (_int_env(env, k) for k in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"))
    if ntasks is not None and ntasks > 1 and per_node is None:
        raise ConfigError(f"SLURM_NTASKS={ntasks} without SLURM_NTASKS_PER_NODE: give the job "
                          "#SBATCH --ntasks-per-node=<devices per node> (and --nodes) rather than --ntasks, so that "
                          "every node runs the same number of ranks; then trainer=slurm reads both")
    if n is not None and per_node is not None and n != per_node:
        tasks = f"{per_node} task{'s' if per_node != 1 else ''}"
        raise ConfigError(f"trainer.devices={devices}, but SLURM runs {tasks} per node "
                          f"(SLURM_NTASKS_PER_NODE={per_node}, --ntasks-per-node) and under srun each task is one "
                          f"rank: set trainer.devices={per_node} (trainer=slurm does), or --ntasks-per-node={n}")
    if nodes is not None and nnodes is not None and nodes != nnodes:
        raise ConfigError(f"trainer.num_nodes={num_nodes}, but the SLURM job runs on {nnodes} nodes "
                          f"(SLURM_NNODES={nnodes}, --nodes): set trainer.num_nodes={nnodes} (trainer=slurm does)")
    if n is not None and nodes is not None and ntasks is not None and n * nodes != ntasks:
        raise ConfigError(
            f"trainer.devices={devices} x trainer.num_nodes={num_nodes} = {n * nodes} ranks, but SLURM started "
            f"{ntasks} task{'s' if ntasks != 1 else ''} (SLURM_NTASKS={ntasks}). Under SLURM each task is one rank: "
            f"launch with srun and #SBATCH --ntasks-per-node={n} --nodes={nodes} (use trainer=slurm)")


def check_shared_run_dir(raw_run_dir: str, env: Optional[Mapping[str, str]] = None) -> None:
    """Ranks started by torchrun or SLURM each compose their own config: a run directory named by
    the clock (``${now:...}``, Hydra's default) can differ between them, and ``ckpt_path=last``
    would then resume some ranks and not others."""
    world = external_world_size(env)
    if world > 1 and "${now:" in raw_run_dir:
        hint = "outputs/job-$SLURM_JOB_ID" if launcher(env) == "slurm" else "outputs/my-run"
        who = "SLURM" if launcher(env) == "slurm" else "torchrun"
        raise ConfigError(f"hydra.run.dir={raw_run_dir} depends on the clock, and each of the {world} ranks "
                          f"{who} started resolves it on its own: give a fixed directory, e.g. "
                          f"hydra.run.dir={hint}")


# ------------------------------------------------------------------------------------- settings
def strategy_argument(strategy: Any, timeout_s: Optional[float]) -> Any:
    """``trainer.strategy`` as ``lightning.Trainer`` takes it: the name itself, or, with
    ``trainer.ddp_timeout_s``, the registered DDP strategy of that name built with that
    collective timeout."""
    if timeout_s is None:
        return strategy
    from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

    entry = StrategyRegistry[strategy] if isinstance(strategy, str) and strategy in StrategyRegistry else None
    if entry is None or not issubclass(entry["strategy"], DDPStrategy):
        raise ConfigError(f"trainer.ddp_timeout_s={timeout_s} applies to the ddp strategies, and "
                          f"trainer.strategy={strategy!r} is not one: use trainer=ddp (or trainer.strategy=ddp), or "
                          "trainer.ddp_timeout_s=null")
    return entry["strategy"](**{**entry["init_params"], "timeout": timedelta(seconds=float(timeout_s))})


def batch_line(batch_size: int, ranks: int, n_train: Optional[int] = None) -> str:
    """The banner line that says what ``data.batch_size`` (per rank) means for this run."""
    if ranks > 1:
        text = (f"batch: {batch_size} frames per rank x {ranks} ranks = {batch_size * ranks} frames per "
                "optimizer step")
    else:
        text = f"batch: {batch_size} frames per optimizer step (1 rank)"
    if n_train:
        per_rank = -(-n_train // ranks)  # DistributedSampler pads the training frames to a multiple of the ranks
        steps = -(-per_rank // batch_size)
        text += f", {steps} step{'s' if steps != 1 else ''} per epoch"
    return text


# ------------------------------------------------------------------------------------- failures
class PeerFailure(RuntimeError):
    """This rank stopped because another rank of the run failed, died or did not answer in time;
    that rank's own error is printed by that rank."""


def peer_failure(err: BaseException, rank: int) -> Optional[PeerFailure]:
    """A ``PeerFailure`` for a backend error that says another rank is gone (gloo's "Connection
    closed by peer", NCCL's aborted communicator, a collective timeout); None for other errors
    and outside a distributed run."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    text = str(err)
    if not (isinstance(err, dist.DistError) or any(word in text.lower() for word in _PEER_LOST)):
        return None
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return PeerFailure(f"rank {rank}: stopped because another rank of this run failed or stopped answering (its "
                       f"error, if it printed one, is above); {first[:300]}")


def stop_started_ranks(trainer: Any) -> None:
    """Kill the processes Lightning's launcher started from this one (this one is failing): they
    would otherwise wait in their next collective, on GPUs (NCCL) until the timeout."""
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher_ = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher_, _SubprocessScriptLauncher) and launcher_.procs:
        launcher_.kill(signal.SIGKILL)


def trainer_settings(trainer_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The ``trainer`` group as ``lightning.Trainer`` arguments: mlip's own keys taken out, the
    strategy built with ``ddp_timeout_s`` when given."""
    own = {k: trainer_cfg.pop(k, None) for k in TRAINER_OWN_KEYS}
    if own["ddp_timeout_s"] is not None:
        trainer_cfg["strategy"] = strategy_argument(trainer_cfg.get("strategy", "auto"), own["ddp_timeout_s"])
    return trainer_cfg
