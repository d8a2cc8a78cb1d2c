"""ASE calculator for trained mlip models: ``MLIPCalculator("run/model.pt")``, a ``model.pt2``
(AOTInductor) or a ``.ckpt``, on ``device="cpu"`` or ``"cuda"``.

Gives energy and free_energy (eV), forces (eV/Å), stress (eV/Å³, Voigt xx yy zz yz xz xy, ASE
sign; periodic cells only) and per-atom energies ``energies`` (eV); a committee (``committee.pt``)
adds ``energy_std`` (eV), ``forces_std`` (eV/Å, per component) and ``stress_std``. The neighbour list comes from
vesin (on the CPU) and is handed to the model's ``compute`` with integer cell shifts. Atoms closer
than ``min_distance`` (default the model's, 0.1 Å) raise ``ValueError`` naming them, instead of
giving NaN.
"""

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlip.nn.geometry import MIN_DISTANCE, half_edge_list, overlap_message
from mlip.nn.neighbors import vesin_neighbor_list


def load_potential(path: str, device: str = "cpu", dtype: Optional[torch.dtype] = None):
    """A module with ``compute(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts)``
    and a ``cutoff`` from ``model.pt`` (TorchScript), ``model.pt2`` (AOTInductor) or a ``.ckpt``.

    ``dtype`` converts a checkpoint or TorchScript model; an AOTInductor package is compiled for
    one dtype and device, so asking for another is an error.
    """
    path = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.endswith(".ckpt"):
        from mlip.export.torchscript import ExportedPotential
        from mlip.training.checkpoint_load import model_from_checkpoint

        model = model_from_checkpoint(path, device=device)
        if dtype is not None:
            model = model.to(dtype)
        from mlip.models.contract import cutoff_of, species_of

        return ExportedPotential(model, species_of(model), cutoff_of(model)).to(device)
    if path.endswith(".pt2"):
        from mlip.export.aoti import AOTIPotential

        potential = AOTIPotential(path, device=device)
        if dtype is not None and dtype != potential.dtype:
            raise ValueError(f"{path} is compiled for {potential.dtype}; export it again with --dtype "
                             f"{str(dtype).replace('torch.', '')}")
        return potential
    try:
        module = torch.jit.load(path, map_location=device)
    except RuntimeError as err:
        raise ValueError(f"{path}: cannot load it as an mlip model.pt (TorchScript): corrupt, truncated or not a "
                         f"model file ({str(err).strip().splitlines()[0]})") from None
    if dtype is not None:
        module = module.to(dtype)
    return module


#: phrases of the errors that model.pt raises for bad input (shown without the TorchScript traceback)
USER_FACING = ("not among the model's species", "overlapping atoms", "atomic number out of range")


def _model_dtype(potential) -> torch.dtype:
    if isinstance(getattr(potential, "dtype", None), torch.dtype):
        return potential.dtype
    params = list(potential.parameters())
    return params[0].dtype if params else torch.float64


class MLIPCalculator(Calculator):
    """``MLIPCalculator(model_path, device="cpu", dtype=None, min_distance=None)``; ``dtype``
    ("float32" / "float64") converts a checkpoint or TorchScript model (default: as saved);
    ``min_distance`` (Å) is the closest two atoms may come (default: the model's, 0.1 Å; 0 turns
    the check off)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "energy_std", "forces_std",
                              "stress_std"]

    def __init__(self, model_path: str, device: str = "cpu", dtype: Optional[str] = None,
                 min_distance: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r}, but torch sees no CUDA device here; use device='cpu'")
        torch_dtype = getattr(torch, dtype) if dtype else None
        self.device = torch.device(device)
        self.potential = load_potential(model_path, device=device, dtype=torch_dtype)
        self.cutoff = float(self.potential.cutoff)
        self.dtype = _model_dtype(self.potential)
        if min_distance is None:
            min_distance = float(getattr(self.potential, "min_distance", MIN_DISTANCE))
        elif hasattr(self.potential, "min_distance"):
            self.potential.min_distance = float(min_distance)  # the model's own check agrees
        self.min_distance = float(min_distance)

    def _check_distances(self, edge_index: np.ndarray, distances: np.ndarray) -> None:
        """ValueError naming the atoms when two are closer than ``min_distance``."""
        if self.min_distance > 0.0 and len(distances):
            k = int(np.argmin(distances))
            if distances[k] < self.min_distance:
                i, j = int(edge_index[0, k]), int(edge_index[1, k])
                raise ValueError(overlap_message(i, j, float(distances[k]), self.min_distance))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if len(atoms) == 0:
            raise ValueError("the structure has no atoms")
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        cell = np.asarray(atoms.get_cell()[:], dtype=np.float64)
        edge_index, shifts, distances = vesin_neighbor_list(atoms.get_positions(), cell, pbc, self.cutoff)
        self._check_distances(edge_index, distances)
        kw = dict(dtype=self.dtype, device=self.device)
        edges = (torch.from_numpy(edge_index).to(self.device), torch.from_numpy(shifts).to(**kw))
        compute = self.potential.compute
        if getattr(self.potential, "paired_route", False):  # model.pt, .ckpt: the model reads pairs
            half = half_edge_list(*edges)  # vesin's list is a full one: each pair once, the model doubles it
            if half is not None:
                compute, edges = self.potential.compute_paired, half
        try:
            out = compute(
                torch.tensor(atoms.get_positions(), **kw),
                torch.tensor(atoms.get_atomic_numbers(), dtype=torch.long, device=self.device),
                torch.tensor(cell, **kw), torch.tensor(pbc, device=self.device), *edges)
        except (RuntimeError, torch.jit.Error) as err:  # model.pt's own checks arrive inside its traceback
            last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
            if any(phrase in last for phrase in USER_FACING):
                raise ValueError(last.split("RuntimeError: ")[-1]) from None
            raise
        energy = float(out["energy"])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].detach().cpu().double().numpy()
        self.results["energies"] = out["atomic_energies"].detach().cpu().double().numpy()
        if pbc.all():
            s = out["stress"].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(s)  # xx yy zz yz xz xy
        if "energy_std" in out:  # a committee (committee.pt): calibrated spread of its members
            self.results["energy_std"] = float(out["energy_std"])
            self.results["forces_std"] = out["forces_std"].detach().cpu().double().numpy()
            if pbc.all():
                spread = out["stress_std"].detach().cpu().double().numpy()
                self.results["stress_std"] = full_3x3_to_voigt_6_stress(spread)
