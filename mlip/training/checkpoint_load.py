"""Rebuild the trained model from a checkpoint, in the precision it was trained in.

``PotentialModule.load_from_checkpoint`` builds its modules in torch's default dtype and copies
the saved weights into them, which would silently turn a float64 model into float32; here the
saved dtype is read from the state dict first.
"""

from pathlib import Path

import torch

from mlip.physics import ForcesAndStress
from mlip.training.module import PotentialModule


def checkpoint_dtype(state_dict) -> torch.dtype:
    """The dtype of the model's floating-point entries of a state dict (float32 if it has none)."""
    for name, value in state_dict.items():
        if name.startswith("model.") and torch.is_tensor(value) and value.is_floating_point():
            return value.dtype
    return torch.float32


def model_from_checkpoint(path: str, device: str = "cpu") -> ForcesAndStress:
    """The ``ForcesAndStress`` model of a Lightning ``.ckpt`` (the EMA weights where EMA was on),
    in eval mode, in its saved dtype, on ``device``."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not an mlip training checkpoint (no hyper_parameters / state_dict)")
    module = PotentialModule(**ckpt["hyper_parameters"])
    module.to(checkpoint_dtype(ckpt["state_dict"]))
    module.load_state_dict(ckpt["state_dict"])
    return module.model.to(torch.device(device)).eval()
