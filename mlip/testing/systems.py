"""Small test systems and helpers to build float64 models on them."""

from typing import Dict, List, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, molecule

from mlip.data.graph import atoms_to_graph
from mlip.models import build_model
from mlip.models.contract import cutoff_of, initialize_from_data, species_of
from mlip.nn.batch import collate
from mlip.physics import ForcesAndStress

#: Small but non-trivial hyperparameters for each registered model, for tests.
SMALL_MODEL_CONFIGS: Dict[str, dict] = {
    "invariant": dict(num_basis=6, num_channels=4, l_max=2, hidden=[16]),
    "lj": dict(epsilon_init=0.2, fit_e0=True),
    "morse": dict(D_e_init=0.3, a_init=1.6),
    "spline_pair": dict(n_knots=10, r_min=0.8),
    "eam": dict(n_knots=10, r_min=0.8, n_rho_knots=8, fit_e0=True),
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
               calibrate_on: Sequence[Atoms] = (), **settings) -> ForcesAndStress:
    """A float64 model with random but O(1) outputs: normalisation fitted on ``calibrate_on``
    and readout output layers (``Linear`` modules with one output) scaled up from their near-zero
    initialisation. Models without such layers (the classical ones) keep their physical start.
    ``settings``: more ``model.<key>`` settings (``zbl``, ``d3``, ...)."""
    torch.manual_seed(0)
    species = sorted(int(z) for z in species)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # constants computed at construction (e3nn's CG) in float64
    try:
        model = build_model(name, species=species, cutoff=cutoff, e0=[-1.0 - 0.1 * k for k in range(len(species))],
                            scale=0.5, shift=0.05, avg_num_neighbors=10.0,
                            **{**SMALL_MODEL_CONFIGS[name], **settings}).double()
    finally:
        torch.set_default_dtype(default_dtype)
    if calibrate_on:
        initialize_from_data(model, [batch_of(calibrate_on, model)])
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 1:  # readout output layers
                module.weight.mul_(100.0)
    return ForcesAndStress(model).eval()


def batch_of(frames: Sequence[Atoms], model) -> Dict[str, torch.Tensor]:
    index = {z: k for k, z in enumerate(species_of(model))}
    cutoff = cutoff_of(model)
    return collate([atoms_to_graph(a, cutoff, index) for a in frames], torch.float64)


def predict(model: ForcesAndStress, frames: List[Atoms]) -> Dict[str, torch.Tensor]:
    return model(batch_of(frames, model), compute_forces=True, compute_stress=True)


def energy_of(model: ForcesAndStress, atoms: Atoms) -> float:
    out = model(batch_of([atoms], model), compute_forces=False, compute_stress=False)
    return float(out["total_energy"][0].detach())


def random_gas(n_atoms: int, box: float, min_distance: float, seed: int = 0, symbol: str = "Ar",
               max_tries: int = 100000) -> Atoms:
    """``n_atoms`` atoms placed at random in a periodic cubic box of side ``box`` (Å), no two
    closer than ``min_distance`` (Å, minimum image): a gas or liquid-like configuration."""
    rng = np.random.default_rng(seed)
    positions: List[np.ndarray] = []
    tries = 0
    while len(positions) < n_atoms:
        tries += 1
        if tries > max_tries:
            raise RuntimeError(f"could not place {n_atoms} atoms {min_distance} Å apart in a {box} Å box")
        p = rng.uniform(0.0, box, 3)
        if positions:
            d = np.asarray(positions) - p
            d -= box * np.round(d / box)
            if (np.einsum("ij,ij->i", d, d) < min_distance ** 2).any():
                continue
        positions.append(p)
    return Atoms(f"{symbol}{n_atoms}", positions=positions, cell=[box] * 3, pbc=True)
