"""Small test systems and helpers to build float64 models on them."""

from typing import Dict, List, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, molecule

from mlip.data.graph import atoms_to_graph
from mlip.models import build_model
from mlip.models.registry import initialize_from_data
from mlip.nn.batch import collate
from mlip.physics import ForcesAndStress

#: Small but non-trivial hyperparameters for each registered model, for tests.
SMALL_MODEL_CONFIGS: Dict[str, dict] = {
    "invariant": dict(num_basis=6, num_channels=4, l_max=2, hidden=[16]),
    "equivariant": dict(num_channels=4, l_max=1, sh_l_max=2, num_interactions=2, correlation=3,
                        num_basis=6, radial_hidden=[8], readout_hidden=8),
}


def triclinic_si(rattle: float = 0.05, seed: int = 0) -> Atoms:
    """A sheared 8-atom Si cell, rattled: periodic, triclinic, smaller than twice a 4 Å cutoff."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    cell = atoms.get_cell()[:] @ np.array([[1.0, 0.0, 0.0], [0.12, 1.0, 0.0], [-0.07, 0.09, 1.0]])
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def ethanol(seed: int = 0) -> Atoms:
    """Ethanol (C, H, O), rattled, not periodic."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return atoms


def sicgeo_cell(seed: int = 1) -> Atoms:
    """Periodic Si/C/O/H mixture, to test several species in one periodic cell."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    numbers = atoms.numbers.copy()
    numbers[[1, 4]] = 6
    numbers[6] = 8
    atoms.numbers = numbers
    atoms.rattle(0.05, seed=seed)
    return atoms


def make_model(name: str, species: Sequence[int], cutoff: float = 4.0,
               calibrate_on: Sequence[Atoms] = ()) -> ForcesAndStress:
    """A float64 model with random but O(1) outputs: normalisation fitted on ``calibrate_on``
    and readouts scaled up from their near-zero initialisation."""
    torch.manual_seed(0)
    species = sorted(int(z) for z in species)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # constants computed at construction (e3nn's CG) in float64
    try:
        model = build_model(name, species=species, cutoff=cutoff, e0=[-1.0 - 0.1 * k for k in range(len(species))],
                            scale=0.5, shift=0.05, avg_num_neighbors=10.0, **SMALL_MODEL_CONFIGS[name]).double()
    finally:
        torch.set_default_dtype(default_dtype)
    if calibrate_on:
        initialize_from_data(model, [batch_of(calibrate_on, model)])
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 1:  # readout output layers
                module.weight.mul_(100.0)
    return ForcesAndStress(model).eval()


def batch_of(frames: List[Atoms], model) -> Dict[str, torch.Tensor]:
    energy_model = getattr(model, "energy_model", model)
    index = {z: k for k, z in enumerate(energy_model.species)}
    return collate([atoms_to_graph(a, energy_model.cutoff, index) for a in frames], torch.float64)


def predict(model: ForcesAndStress, frames: List[Atoms]) -> Dict[str, torch.Tensor]:
    return model(batch_of(frames, model), compute_forces=True, compute_stress=True)


def energy_of(model: ForcesAndStress, atoms: Atoms) -> float:
    out = model(batch_of([atoms], model), compute_forces=False, compute_stress=False)
    return float(out["total_energy"][0])
