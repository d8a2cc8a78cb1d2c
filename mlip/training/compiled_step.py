"""``compile=true``: the training step's energies, forces and stress through ``torch.compile``.

A force loss needs the parameter gradients of the forces, themselves gradients: autograd through
``torch.autograd.grad(create_graph=True)``, a double backward, which AOTAutograd cannot run
through a compiled graph. So Dynamo traces ``ForcesAndStress.evaluate`` whole, the
``torch.autograd.grad`` call included (``trace_autograd_ops``): the forces and stress become plain
operations of one graph, and the loss's backward pass is a first-order backward through it, which
Inductor compiles and fuses like the rest (NequIP reaches the same graph with ``make_fx``).

Shapes are dynamic: atoms, edges, neighbour slots and atoms per species change from batch to batch,
and one compiled graph serves them all (a few more compilations at most, e.g. when a batch first has
no atom of some species). Index tensors whose sizes depend on the data come from the model's
``compile_inputs`` hook, computed eagerly, so the compiled graph takes their sizes as inputs.

Costs and limits:

- The first step compiles: one to three minutes on one CPU core for the equivariant model, about
  20 s when Inductor's cache (``TORCHINDUCTOR_CACHE_DIR``, default under the system's temporary
  folder) already holds the graph. Each new combination of ``compute_stress`` compiles once more.
- Validation, evaluation and export stay eager: they need no second derivatives.
- A model Dynamo cannot trace whole trains eagerly, after a warning that names the reason.
"""

import warnings
from typing import Dict, Optional

import torch
from torch.fx.experimental import _config as fx_config

from mlip.models.contract import compile_inputs
from mlip.physics import ForcesAndStress


class CompiledForcesAndStress:
    """``model(batch, compute_forces, compute_stress, create_graph=True)`` through one compiled graph
    (see the module docstring); the same outputs (eV, eV/Å, eV/Å³) and parameter gradients as the
    eager call, to rounding. Holds no parameters: ``model``'s stay where they are, so state dicts,
    checkpoints and optimisers see no difference."""

    def __init__(self, model: ForcesAndStress, backend: str = "inductor"):
        self.model = model
        #: ``backend``: torch.compile's (the tests trace with "aot_eager": the same graph, no code generation)
        self._evaluate = torch.compile(model.evaluate, backend=backend, dynamic=True, fullgraph=True)
        #: why compiling failed (training then continues eagerly), None while it works
        self.failure: Optional[str] = None
        self._announced = False

    def __call__(self, batch: Dict[str, torch.Tensor], compute_forces: bool = True,
                 compute_stress: bool = True) -> Dict[str, torch.Tensor]:
        if self.failure is None:
            data = compile_inputs(self.model, batch)
            pos, strain = self.model.inputs(data, compute_forces, compute_stress)
            if not self._announced:
                print("compile=true: compiling the training step (torch.compile; one to three minutes on a "
                      "CPU the first time, seconds once Inductor's cache holds it)", flush=True)
                self._announced = True
            try:
                # no duck sizing: sizes that happen to be equal in one batch (2 frames, the 2 rows of
                # edge_index) must not be assumed equal in the next
                with torch._dynamo.config.patch(trace_autograd_ops=True, capture_scalar_outputs=True), \
                        fx_config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
                    return self._evaluate(data, pos, strain, compute_forces, compute_stress, True)
            except torch._dynamo.exc.TorchDynamoException as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                self.failure = f"{type(err).__name__}: {first}"
                warnings.warn(f"compile=true: torch.compile could not compile this model's training step "
                              f"({self.failure}); training continues eagerly (the same results, slower). "
                              "Set compile=false to skip the attempt.", RuntimeWarning, stacklevel=2)
        return self.model(batch, compute_forces=compute_forces, compute_stress=compute_stress, create_graph=True)
