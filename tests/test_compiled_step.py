"""``compile=true``: the training step through ``torch.compile`` (``mlip.training.compiled_step``)
gives the eager step's energies, forces, stress and parameter gradients, on batches of other sizes
without compiling again; a model Dynamo cannot trace trains eagerly after a warning."""

import warnings

import pytest
import torch

from mlip import keys
from mlip.physics import ForcesAndStress
from mlip.testing.systems import batch_of, ethanol, make_model, sicgeo_cell, triclinic_si
from mlip.training.compiled_step import CompiledForcesAndStress

SPECIES = [1, 6, 8, 14]


def _outputs_and_gradients(model: ForcesAndStress, out):
    """Energies, forces, stress and the parameter gradients of a force-and-stress loss (the double
    backward a training step runs)."""
    loss = out["total_energy"].sum() + out["pred_forces"].pow(2).sum() + out["pred_stress"].pow(2).sum()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [out["total_energy"], out["pred_forces"], out["pred_stress"]] + [
        g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]


def _graphs_compiled() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.parametrize("name", ["equivariant", "invariant"])
def test_compiled_step_equals_eager_on_batches_of_other_sizes(name):
    """A triclinic 4-element cell with a molecule, then two Si cells of another size: the compiled
    step equals eager (float64, parameter gradients of a force loss included), and the second batch
    (other atoms, edges, neighbour slots and atoms per species) needs no second compilation."""
    settings = dict(num_channels=4, l_max=0, num_interactions=2) if name == "equivariant" else {}
    model = make_model(name, SPECIES, **settings).train()
    compiled = CompiledForcesAndStress(model, backend="aot_eager")
    first = batch_of([sicgeo_cell(), ethanol()], model)
    second = batch_of([triclinic_si(seed=1), triclinic_si(seed=2).repeat((2, 1, 1)), ethanol(seed=3)], model)
    assert first[keys.POSITIONS].shape[0] != second[keys.POSITIONS].shape[0]
    graphs = None
    for batch in (first, second):
        eager = _outputs_and_gradients(model, model(batch, compute_forces=True, compute_stress=True,
                                                    create_graph=True))
        got = _outputs_and_gradients(model, compiled(batch, compute_forces=True, compute_stress=True))
        assert compiled.failure is None, compiled.failure
        assert len(got) == len(eager)
        for x, y in zip(got, eager):
            torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)
        if graphs is None:
            graphs = _graphs_compiled()
    assert _graphs_compiled() == graphs, "the second batch compiled the step again"


class _Untraceable(torch.nn.Module):
    """A pair energy that reads a tensor's value in Python (data-dependent control flow), which
    Dynamo cannot put in one graph."""

    def __init__(self):
        super().__init__()
        self.species = [14]
        self.cutoff = 4.0
        self.k = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, data):
        pos = data[keys.POSITIONS]
        i, j = data[keys.EDGE_INDEX]
        shift = data[keys.CELL_SHIFTS] @ data[keys.CELL][0]
        r = torch.linalg.norm(pos[j] - pos[i] + shift, dim=1)
        if float(r.min()) > 0.0:  # a Python branch on a value
            r = r + 0.0
        e = self.k * (r - 2.35).pow(2)
        atomic = torch.zeros_like(pos[:, 0]).index_add(0, i, 0.5 * e)
        out = dict(data)
        out[keys.ATOMIC_ENERGY] = atomic
        out[keys.TOTAL_ENERGY] = torch.zeros(data[keys.CELL].shape[0], dtype=pos.dtype).index_add(
            0, data[keys.BATCH], atomic)
        return out


def test_a_model_dynamo_cannot_trace_trains_eagerly_after_a_warning():
    model = ForcesAndStress(_Untraceable())
    compiled = CompiledForcesAndStress(model)
    batch = batch_of([triclinic_si()], model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(batch, compute_forces=True, compute_stress=True)
    assert compiled.failure is not None
    assert any("continues eagerly" in str(w.message) for w in caught)
    eager = model(batch, compute_forces=True, compute_stress=True, create_graph=True)
    torch.testing.assert_close(out["pred_forces"], eager["pred_forces"])
    assert out["pred_forces"].requires_grad  # the loss can still differentiate the forces


def test_inductor_compiles_the_equivariant_step_with_several_species():
    """Inductor itself (the default backend): the per-species blocks of the symmetric contraction
    and the neighbour-slot table must lower with dynamic sizes (a one-layer model keeps it short)."""
    model = make_model("equivariant", SPECIES, num_channels=2, l_max=0, sh_l_max=1, num_interactions=1,
                       correlation=3).train()
    compiled = CompiledForcesAndStress(model)
    batch = batch_of([sicgeo_cell(), ethanol()], model)
    got = _outputs_and_gradients(model, compiled(batch, compute_forces=True, compute_stress=True))
    assert compiled.failure is None, compiled.failure
    eager = _outputs_and_gradients(model, model(batch, compute_forces=True, compute_stress=True, create_graph=True))
    for x, y in zip(got, eager):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)


def test_training_step_of_the_module_runs_through_the_compiled_graph(monkeypatch):
    """``PotentialModule.compile_training_step`` (what ``compile=true`` calls): the training step's
    loss and its parameter gradients equal the eager step's, and the compiled graph did the work."""
    from mlip.testing.systems import SMALL_MODEL_CONFIGS
    from mlip.training.module import PotentialModule

    config = dict(name="invariant", species=[14], cutoff=3.5, e0=[-1.0], scale=0.5, shift=0.0,
                  avg_num_neighbors=8.0, **SMALL_MODEL_CONFIGS["invariant"])
    torch.manual_seed(0)
    module = PotentialModule(config, {"sigma": {"energy": 0.01, "forces": 0.05, "stress": 0.01}}, {"lr": 1e-3}).double()
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)  # no Trainer here
    batch = batch_of([triclinic_si(seed=1), triclinic_si(seed=2)], module.model)
    reference = module.model(batch, compute_forces=True, compute_stress=True)
    batch[keys.ENERGY] = reference[keys.TOTAL_ENERGY].detach() + 0.1
    batch[keys.FORCES] = reference[keys.PRED_FORCES].detach() * 0.9
    batch[keys.STRESS] = reference[keys.PRED_STRESS].detach() * 1.1
    for kind in ("energy", "forces", "stress"):
        batch[f"{kind}_mask"] = torch.ones(2, dtype=torch.bool)

    def loss_and_gradients():
        module.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in module.model.parameters()]

    eager = loss_and_gradients()
    module.compile_training_step(backend="aot_eager")
    before = _graphs_compiled()
    compiled = loss_and_gradients()
    assert module._compiled is not None and module._compiled.failure is None
    assert _graphs_compiled() == before + 1
    for x, y in zip(compiled, eager):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)
