"""ASE calculator for trained mlip models: ``MLIPCalculator("run/model.pt")`` or a ``.ckpt``.

Gives energy and free_energy (eV), forces (eV/Å), stress (eV/Å³, Voigt, ASE sign; periodic cells
only) and per-atom energies (eV). The neighbour list comes from vesin.
"""

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from mlip.nn.neighbors import vesin_neighbor_list


def load_potential(path: str, device: str = "cpu", dtype: Optional[torch.dtype] = None):
    """An ``ExportedPotential``-like module from ``model.pt`` (TorchScript) or a Lightning ``.ckpt``."""
    path = str(path)
    if path.endswith(".ckpt"):
        from mlip.export.torchscript import ExportedPotential
        from mlip.training.module import PotentialModule

        module = PotentialModule.load_from_checkpoint(path, map_location=device)
        model = module.model.eval()
        if dtype is not None:
            model = model.to(dtype)
        em = model.energy_model
        return ExportedPotential(model, em.species, em.cutoff).to(device)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: model file not found")
    module = torch.jit.load(path, map_location=device)
    if dtype is not None:
        module = module.to(dtype)
    return module


class MLIPCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model_path: str, device: str = "cpu", dtype: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        torch_dtype = getattr(torch, dtype) if dtype else None
        self.device = torch.device(device)
        self.potential = load_potential(model_path, device=device, dtype=torch_dtype)
        self.cutoff = float(self.potential.cutoff)
        params = list(self.potential.parameters())
        self.dtype = params[0].dtype if params else torch.float64

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        cell = np.asarray(atoms.get_cell()[:], dtype=np.float64)
        edge_index, shifts, _ = vesin_neighbor_list(atoms.get_positions(), cell, pbc, self.cutoff)
        kw = dict(dtype=self.dtype, device=self.device)
        out = self.potential.compute(
            torch.tensor(atoms.get_positions(), **kw),
            torch.tensor(atoms.get_atomic_numbers(), dtype=torch.long, device=self.device),
            torch.tensor(cell, **kw), torch.tensor(pbc, device=self.device),
            torch.from_numpy(edge_index).to(self.device), torch.from_numpy(shifts).to(**kw))
        energy = float(out["energy"])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].cpu().double().numpy()
        self.results["energies"] = out["atomic_energies"].cpu().double().numpy()
        if pbc.all():
            s = out["stress"].cpu().double().numpy()
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
