"""Rebuild the trained model from a checkpoint, in the precision it was trained in.

``PotentialModule.load_from_checkpoint`` builds its modules in torch's default dtype and copies
the saved weights into them, which would silently turn a float64 model into float32; here the
saved dtype is read from the state dict first. Files are read by ``checkpoint_io.load_checkpoint``,
which refuses truncated and foreign files (``CheckpointError``).
"""

import torch

from mlip.errors import CheckpointError
from mlip.physics import ForcesAndStress
from mlip.training.checkpoint_io import load_checkpoint
from mlip.training.module import PotentialModule


def checkpoint_dtype(state_dict) -> torch.dtype:
    """The dtype of the model's floating-point entries of a state dict (float32 if it has none)."""
    for name, value in state_dict.items():
        if name.startswith("model.") and torch.is_tensor(value) and value.is_floating_point():
            return value.dtype
    return torch.float32


def module_from_checkpoint(path: str) -> PotentialModule:
    """The ``PotentialModule`` of a ``.ckpt`` (model with the EMA weights where EMA was on, and the
    loss with its learned sigmas), on the CPU, in the saved dtype, in eval mode."""
    ckpt = load_checkpoint(path)
    try:
        module = PotentialModule(**ckpt["hyper_parameters"])
        module.to(checkpoint_dtype(ckpt["state_dict"]))
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or not an mlip checkpoint (its model cannot be rebuilt: "
                              f"{str(err).splitlines()[0][:160]})") from err
    return module.eval()


def model_from_checkpoint(path: str, device: str = "cpu") -> ForcesAndStress:
    """The ``ForcesAndStress`` model of a Lightning ``.ckpt`` (the EMA weights where EMA was on),
    in eval mode, in its saved dtype, on ``device``."""
    return module_from_checkpoint(path).model.to(torch.device(device)).eval()
