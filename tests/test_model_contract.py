"""The energy-model contract in code (mlip/models/contract.py): ``build_model`` refuses a model
that lacks a required attribute or an inconsistent hook, naming what is missing; hooks are read
through the contract only, with no dispatch on model classes outside mlip/models."""

import re
from pathlib import Path

import pytest
import torch

from mlip import keys
from mlip.models import contract, registry
from mlip.models.contract import ModelContractError

REPO = Path(__file__).resolve().parents[1]


class Toy(torch.nn.Module):
    """A registry-shaped model: energy = sum over atoms of a learned constant."""

    def __init__(self, species, cutoff, e0):
        super().__init__()
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.c = torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch):
        atomic = self.c.expand(batch[keys.POSITIONS].shape[0])
        batch[keys.ATOMIC_ENERGY] = atomic
        batch[keys.TOTAL_ENERGY] = atomic.sum().reshape(1)
        return batch


class NoCutoff(Toy):
    def __init__(self, species, cutoff, e0):
        super().__init__(species, cutoff, e0)
        del self.cutoff


class HalfEam(Toy):
    """Declares an eam/alloy form but has only a pair function."""

    def lammps_style(self):
        return "eam/alloy"

    def pair_function(self, p, r):
        return r * 0.0


def _build(monkeypatch, cls, **kwargs):
    monkeypatch.setitem(registry.MODEL_REGISTRY, "toy", cls)
    return registry.build_model("toy", species=[14], cutoff=3.0, e0=[0.0], **kwargs)


def test_model_without_cutoff_is_refused_naming_it(monkeypatch):
    with pytest.raises(ModelContractError, match=r"model=toy \(NoCutoff\) does not meet .*no attribute cutoff"):
        _build(monkeypatch, NoCutoff)


def test_lammps_form_without_its_functions_is_refused(monkeypatch):
    with pytest.raises(ModelContractError,
                       match="lammps_style.. is 'eam/alloy' but pair_table, density_function, embedding_function, "
                             "rho_max missing"):
        _build(monkeypatch, HalfEam)


def test_hooks_and_their_defaults(monkeypatch):
    toy = _build(monkeypatch, Toy)
    assert isinstance(toy, contract.EnergyModel)
    assert contract.receptive_field(toy) == 3.0 and contract.lammps_style(toy) is None
    assert contract.l2_parameters(toy) is None and contract.identifiability_parameters(toy) is None
    assert contract.pair_names(toy) == [] and not contract.has_smooth_functions(toy)
    toy.receptive_field = 6.0
    assert contract.receptive_field(toy) == 6.0
    with pytest.raises(ModelContractError, match="receptive_field=1.0 is not a number >= the cutoff"):
        toy.receptive_field = 1.0
        contract.check_energy_model(toy)
    lj = registry.build_model("lj", species=[14, 32], cutoff=4.0, e0=[0.0, 0.0])
    eam = registry.build_model("eam", species=[14], cutoff=4.0, e0=[0.0])
    assert (contract.lammps_style(lj), contract.lammps_style(eam)) == ("table", "eam/alloy")
    assert contract.pair_names(lj) == ["Si-Si", "Si-Ge", "Ge-Ge"]


def test_no_hook_lookup_or_class_dispatch_outside_the_models():
    """Outside mlip/models, hooks are read through mlip.models.contract, and no code imports a
    model class to dispatch on it."""
    hooks = "|".join(contract.OPTIONAL_HOOKS)
    lookup = re.compile(rf"""(getattr|hasattr)\([^)]*["']({hooks})["']""")
    model_import = re.compile(r"from mlip\.models\.(classical|invariant|equivariant)\S* import")
    found = []
    for path in [*(REPO / "mlip").rglob("*.py"), *(REPO / "scripts").rglob("*.py")]:
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("mlip/models/"):
            continue
        for line in path.read_text().splitlines():
            if lookup.search(line) or model_import.search(line):
                found.append(f"{rel}: {line.strip()}")
    assert not found, found
