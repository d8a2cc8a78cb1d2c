import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHIPPED = REPO / "mlip" / "datasets" / "mlearn_si"


@pytest.fixture
def shipped_train():
    return str(SHIPPED / "Si_training.extxyz")


@pytest.fixture
def shipped_test():
    return str(SHIPPED / "Si_test.extxyz")


@pytest.fixture
def shared_data():
    """``../shared/data`` beside the checkout (real DFT sets); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    return SHARED


#: variables by which Lightning (and mlip's launch checks) recognise ranks started by SLURM or torchrun
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
                      "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


@pytest.fixture(autouse=True)
def _plain_launch_environment(monkeypatch):
    """Every test sees a plain machine, also when the suite itself runs inside a SLURM job or
    under torchrun: tests that simulate those launches set the variables themselves."""
    for name in list(os.environ):
        if name.startswith("SLURM_") or name in LAUNCHER_VARIABLES:
            monkeypatch.delenv(name)
