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
