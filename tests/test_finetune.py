"""Fine-tuning: the pretrained weights carry over exactly (a frame of the old elements gets the
same energy before any training, also when elements are added), frozen parameters do not move,
E0 of the old elements is kept and a new element's is fitted, and ``finetune.from`` trains,
replays old frames and reports forgetting on the old test set."""

import json

import numpy as np
import pytest
import torch

from mlip.data.reference import reference_energies
from mlip.errors import ConfigError
from mlip.models import build_model
from mlip.physics import ForcesAndStress
from mlip.testing.systems import SMALL_MODEL_CONFIGS, energy_of, make_model, sicgeo_cell
from mlip.training import finetune


class _Pre:
    """A stand-in for ``finetune.Pretrained`` built from a model in memory."""

    def __init__(self, model, config):
        self.state_dict = model.state_dict()
        self.species = list(config["species"])
        self.model_config = config


@pytest.mark.parametrize("name", ["invariant", "equivariant"])
def test_weights_carry_over_when_an_element_is_added(name):
    cell = sicgeo_cell()
    numbers = cell.numbers.copy()
    numbers[numbers == 8] = 14  # a Si-C frame: only the old elements
    cell.numbers = numbers
    old = make_model(name, [6, 14], calibrate_on=[cell])
    config = dict(name=name, species=[6, 14], cutoff=4.0, e0=[-1.0, -1.1], scale=0.5, shift=0.05,
                  avg_num_neighbors=10.0, **SMALL_MODEL_CONFIGS[name])
    torch.set_default_dtype(torch.float64)
    try:
        new = ForcesAndStress(build_model(**{**config, "species": [6, 14, 1], "e0": [-1.0, -1.1, -0.5]})).double()
    finally:
        torch.set_default_dtype(torch.float32)
    counts = finetune.transfer(new, _Pre(old, config))
    assert counts["extended"] > 0  # per-element tensors grew
    assert energy_of(new.eval(), cell) == pytest.approx(energy_of(old, cell), abs=1e-9)


def test_freeze_patterns():
    model = make_model("invariant", [6, 8, 14], calibrate_on=[sicgeo_cell()])
    names = [n for n, _ in model.energy_model.named_parameters()]
    frozen = finetune.freeze(model, [names[0].split(".")[0] + ".*"])
    assert frozen > 0 and not next(model.energy_model.parameters()).requires_grad
    with pytest.raises(ConfigError, match="matches no parameter"):
        finetune.freeze(model, ["nothing.*"])


def test_old_e0_kept_and_new_element_fitted():
    from mlip.data.io import atoms_to_frame

    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        cell = sicgeo_cell(seed=k)
        frame = atoms_to_frame(cell, None, "x", k)
        comp = frame.composition
        frame.labels["energy"] = np.array(comp.get(6, 0) * -2.0 + comp.get(14, 0) * -3.0 + comp.get(8, 0) * -4.5
                                          + rng.normal(0, 1e-9))
        frames.append(frame)
    e0, source = reference_energies("auto", frames, [6, 14, 8], fixed={6: -2.0, 14: -3.0})
    assert e0[6] == -2.0 and e0[14] == -3.0
    assert e0[8] == pytest.approx(-4.5, abs=1e-6)
    assert "pretrained" in source and "O by least squares" in source


def test_new_element_e0_from_isolated_atom_is_said():
    from ase import Atoms

    from mlip.data.io import atoms_to_frame

    atom = Atoms("O", positions=[[0, 0, 0]], pbc=False)
    isolated = atoms_to_frame(atom, None, "x", 0)
    isolated.labels["energy"] = np.array(-4.5)
    frames = [atoms_to_frame(sicgeo_cell(seed=0), None, "x", 1)]
    e0, source = reference_energies("auto", frames, [6, 14, 8], isolated=[isolated], fixed={6: -2.0, 14: -3.0})
    assert e0 == {6: -2.0, 14: -3.0, 8: -4.5}
    assert source == "the pretrained model's; O from isolated-atom frames"


@pytest.mark.slow
def test_finetune_run_replays_and_reports_forgetting(tmp_path, shared_data):
    from hydra import compose, initialize_config_dir

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run

    def cfg(overrides):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("train", overrides=["experiment=quick", "trainer.max_epochs=2", "export=false", *overrides])

    run(cfg([]), tmp_path / "si")
    ge = str(shared_data / "mlearn" / "Ge_training.extxyz")
    result = run(cfg(["data=custom", f"data.train={ge}", f"finetune.from={tmp_path / 'si'}",
                      "finetune.replay_fraction=0.2", "finetune.freeze=[descriptor.*]"]), tmp_path / "ge")
    tuned = result["finetune"]
    assert tuned["new_species"] == [32] and tuned["replayed_frames"] > 10
    assert result["data"]["species"] == ["Si", "Ge"]
    assert tuned["old_test_frames"] == 25 and tuned["before"]["forces_mae"] > 0
    saved = json.loads((tmp_path / "ge" / "metrics.json").read_text())["finetune"]
    assert saved["after_over_before"]["forces_mae"] == pytest.approx(
        tuned["after"]["forces_mae"] / tuned["before"]["forces_mae"])
