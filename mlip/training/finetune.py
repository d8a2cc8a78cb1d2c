"""Fine-tuning: start from a trained model on new data (``finetune.from=<run dir | .ckpt>``).

- The model is the pretrained one: its settings (``model_config``) and weights; ``model.*`` of the
  new run is not used. Elements of the new data that the model lacks are added after its own
  (``species_order``); their per-element parameters start fresh, every other parameter is copied.
  E0 of the pretrained elements is kept (``fixed_e0``); new elements get theirs from isolated-atom
  frames or by least squares on what the kept E0 leave. The output normalisation (scale, shift,
  average neighbour count) is the pretrained model's.
- ``finetune.freeze``: parameter-name patterns (``fnmatch``, e.g. ``descriptor.*``) not trained.
- ``finetune.lr_scale``: multiplies ``optimizer.lr`` (default 0.1).
- ``finetune.replay_fraction``: that fraction of the pretrained run's training frames is added to
  every epoch's training frames, so the old systems are not forgotten (``replay_frames``).
- The pretrained run's test frames measure forgetting: both models are evaluated on them
  (``metrics.json["finetune"]``).
"""

import fnmatch
from typing import Any, Dict, List

import numpy as np
import torch

from mlip.errors import ConfigError
from mlip.models.contract import species_of
from mlip.training.checkpoint_io import load_checkpoint

#: finetune.* settings and their defaults
DEFAULTS: Dict[str, Any] = {"from": None, "freeze": [], "lr_scale": 0.1, "replay_fraction": 0.0}


class Pretrained:
    """The pretrained model's settings and weights (``model_config``, ``state_dict`` of the
    ``ForcesAndStress`` model, ``species``, ``e0`` {Z: eV}) and its run directory."""

    def __init__(self, source: str):
        from mlip.training.run_frames import resolve_source

        self.checkpoint, self.run_dir = resolve_source(source, "finetune.from=")
        ckpt = load_checkpoint(str(self.checkpoint))
        self.model_config: Dict[str, Any] = dict(ckpt["hyper_parameters"]["model_config"])
        self.state_dict = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        self.species: List[int] = [int(z) for z in self.model_config["species"]]
        self.e0 = {z: float(e) for z, e in zip(self.species, self.model_config["e0"])}


def model_config_for(pre: Pretrained, species: List[int], e0: List[float]) -> Dict[str, Any]:
    """The pretrained model's settings with the (possibly extended) species and their E0."""
    return {**pre.model_config, "species": list(species), "e0": list(e0)}


def transfer(model: torch.nn.Module, pre: Pretrained) -> Dict[str, int]:
    """Copy the pretrained weights into ``model`` (a ``ForcesAndStress`` built with the pretrained
    species first): same-shape tensors whole; a tensor whose dimensions grew with the species
    (embeddings, E0, [S, S, ...] tables) in its leading block; a per-pair table flattened as
    [S*S, ...] row by row to the new pair index; parameters new to the model (a
    new element's network) keep their fresh initialisation. Returns counts."""
    own = model.state_dict()
    copied = partial = 0
    s_old = len(pre.species)
    s_new = len(species_of(model))
    with torch.no_grad():
        for name, value in pre.state_dict.items():
            if name not in own:
                continue
            target = own[name]
            if target.shape == value.shape:
                target.copy_(value)
                copied += 1
            elif (s_new > s_old and value.dim() >= 1 and value.shape[0] == s_old ** 2
                  and target.shape[0] == s_new ** 2 and target.shape[1:] == value.shape[1:]):
                for a in range(s_old):  # a per-pair table flattened as a * S + b: rows move when S grows
                    target[a * s_new:a * s_new + s_old].copy_(value[a * s_old:(a + 1) * s_old])
                partial += 1
            elif target.dim() == value.dim() and all(t >= v for t, v in zip(target.shape, value.shape)):
                target[tuple(slice(0, v) for v in value.shape)].copy_(value)
                partial += 1
            else:
                raise ConfigError(f"finetune.from: parameter {name} has shape {tuple(value.shape)} in the pretrained "
                                  f"model and {tuple(target.shape)} here: the model cannot be extended this way")
    model.load_state_dict(own)
    return {"copied": copied, "extended": partial, "new": len([n for n in own if n not in pre.state_dict])}


def freeze(model: torch.nn.Module, patterns: List[str]) -> int:
    """Stop training the parameters whose names (in the energy model) match a pattern; returns how
    many scalars are frozen. A pattern that matches nothing is a ``ConfigError`` naming the names."""
    inner = getattr(model, "energy_model", model)
    names = [n for n, _ in inner.named_parameters()]
    frozen = 0
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatch(n, pattern)]
        if not hits:
            roots = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"finetune.freeze: {pattern!r} matches no parameter; parameter names start with "
                              f"{', '.join(roots)} (e.g. {names[0]})")
        for name, p in inner.named_parameters():
            if name in hits and p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
    return frozen


def replay_frames(pre: Pretrained, fraction: float, seed: int) -> list:
    """A seeded random ``fraction`` of the pretrained run's training frames (never its test frames)."""
    if not fraction:
        return []
    if not 0 < fraction <= 1:
        raise ConfigError(f"finetune.replay_fraction={fraction} must lie in (0, 1]")
    if pre.run_dir is None:
        raise ConfigError("finetune.replay_fraction needs the pretrained run directory (config.yaml, split.json) "
                          "beside its checkpoint")
    from mlip.training.run_frames import frames_of_split

    frames = frames_of_split(pre.run_dir, "train")
    n = max(1, int(round(fraction * len(frames))))
    chosen = sorted(np.random.default_rng(seed).choice(len(frames), size=n, replace=False).tolist())
    return [frames[i] for i in chosen]


def old_test_frames(pre: Pretrained) -> list:
    """The pretrained run's test frames (its validation frames if it had no test split)."""
    if pre.run_dir is None:
        return []
    from mlip.training.run_frames import frames_of_split

    return frames_of_split(pre.run_dir, "test") or frames_of_split(pre.run_dir, "val")


def forgetting(model: torch.nn.Module, e0: List[float], pre: Pretrained, frames: list, device: torch.device,
               batch_size: int = 16) -> Dict[str, Any]:
    """Test metrics of the pretrained model and of the fine-tuned ``model`` on the pretrained
    run's test ``frames`` (meV/atom, meV/Å, GPa as in ``metrics.json``), and their ratios
    (after / before: above 1 is forgetting). ``e0``: the fine-tuned model's E0 per species index."""
    from functools import partial as bind

    from torch.utils.data import DataLoader

    from mlip.data.dataset import GraphDataset
    from mlip.nn.batch import collate
    from mlip.training.checkpoint_load import model_from_checkpoint
    from mlip.training.evaluate import evaluate

    if not frames:
        return {}
    results = {}
    before = model_from_checkpoint(str(pre.checkpoint)).to(device)
    for name, m, m_e0 in (("before", before, list(pre.model_config["e0"])), ("after", model, e0)):
        species = species_of(m)
        dtype = next(m.parameters()).dtype
        ds = GraphDataset(frames, float(pre.model_config["cutoff"]), {z: k for k, z in enumerate(species)},
                          ["default"])
        loader = DataLoader(ds, batch_size=batch_size, collate_fn=bind(collate, dtype=dtype))
        metrics, _ = evaluate(m, loader, ["default"], device, e0=m_e0)
        results[name] = {k: v for k, v in metrics.items() if "/" not in k}
    ratios = {k: results["after"][k] / results["before"][k] for k in results["before"]
              if k.endswith("_mae") and results["before"][k]}
    return {"old_test_frames": len(frames), **results, "after_over_before": ratios}
