"""Committees: K models trained alike but for the seed, combined into one exported model that gives
the mean and the spread of their predictions.

``committee.pt`` has the interface of ``model.pt`` (``forward`` and ``compute`` return the
committee mean as ``energy``, ``forces``, ``stress``, ``atomic_energies``, ``virial``) plus
``energy_std`` [] eV, ``forces_std`` [N, 3] eV/Å, ``stress_std`` [3, 3] eV/Å³ (standard deviation
over members, the first two times ``energy_scale`` / ``forces_scale``, the calibration factors
fitted on a validation split, 1 until fitted; stress is not calibrated) and ``energy_members`` [K]
eV. ``compute_local`` (LAMMPS ``pair_style mlip``) returns the mean only: engines that call it get
no uncertainty.
"""

import json
from typing import Dict, List, Optional

import torch

from mlip import keys
from mlip.export.torchscript import ExportedPotential
from mlip.fileio import atomic_open
from mlip.models.contract import cutoff_of, receptive_field, species_of
from mlip.physics import ForcesAndStress


class CommitteePotential(ExportedPotential):
    """The mean and spread of ``members`` (``ForcesAndStress`` models of the same species and
    cutoff). Works eagerly and under ``torch.jit.script``."""

    def __init__(self, members: List[ForcesAndStress], energy_scale: float = 1.0, forces_scale: float = 1.0):
        species, cutoff = species_of(members[0]), cutoff_of(members[0])
        for k, m in enumerate(members[1:], 1):
            if species_of(m) != species or abs(cutoff_of(m) - cutoff) > 1e-12:
                raise ValueError(f"committee member {k} has species {species_of(m)} and cutoff {cutoff_of(m)} Å; "
                                 f"member 0 has {species} and {cutoff} Å: members must agree")
        super().__init__(members[0], species, cutoff)
        self.others = torch.nn.ModuleList(members[1:])
        self.committee_size: int = len(members)
        #: multiply the energy and force standard deviations (fitted on a validation split; calibration.py)
        self.energy_scale: float = float(energy_scale)
        self.forces_scale: float = float(forces_scale)
        self.receptive_field_length = max(receptive_field(m) for m in members)

    def _compute(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                 pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor,
                 engine: bool, paired: bool = False) -> Dict[str, torch.Tensor]:
        """What ``compute`` and ``compute_engine(_paired)`` return: the members' mean and spread."""
        data = self._checked_graph(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts, engine, paired)
        dtype = self.dtype_probe.dtype
        positions, cell = data[keys.POSITIONS], data[keys.CELL][0]
        periodic = bool(pbc.all())
        outs = [self.model(data, compute_forces=True, compute_stress=periodic, create_graph=False)]
        for member in self.others:
            outs.append(member(data, compute_forces=True, compute_stress=periodic, create_graph=False))
        energies = torch.stack([o["total_energy"][0].detach() for o in outs])
        forces = torch.stack([o["pred_forces"].detach() for o in outs])
        atomic = torch.stack([o["atomic_energy"].detach() for o in outs])
        if periodic:
            stress = torch.stack([o["pred_stress"][0].detach() for o in outs])
        else:
            stress = torch.zeros((len(outs), 3, 3), dtype=dtype, device=positions.device)
        mean_stress = stress.mean(0)
        volume = torch.linalg.det(cell).abs()
        return {
            "energy": energies.mean(0), "atomic_energies": atomic.mean(0), "forces": forces.mean(0),
            "stress": mean_stress, "virial": -mean_stress * volume,
            "energy_std": self.energy_scale * energies.std(0), "forces_std": self.forces_scale * forces.std(0),
            "stress_std": stress.std(0),
            "energy_members": energies,
        }

    def _local_energies(self, data: Dict[str, torch.Tensor], n_local: int) -> torch.Tensor:
        """The committee mean of the members' per-atom energies: ``compute_local`` (LAMMPS) gives
        the mean only, no uncertainty."""
        atomic = self.model.energy_model(data)["atomic_energy"][:n_local]
        for member in self.others:
            atomic = atomic + member.energy_model(data)["atomic_energy"][:n_local]  # type: ignore[operator]
        return atomic / float(self.committee_size)

    def metadata(self) -> Dict[str, object]:
        return {**super().metadata(), "committee_size": self.committee_size,
                "energy_scale": self.energy_scale, "forces_scale": self.forces_scale,
                "uncertainty": "energy_std, forces_std: committee spread x the scale fitted on validation data; "
                               "stress_std: uncalibrated spread; compute_local (LAMMPS) gives the mean only"}


def committee_from_checkpoints(paths: List[str], dtype: Optional[torch.dtype] = None) -> CommitteePotential:
    """A ``CommitteePotential`` of the models in ``paths`` (``.ckpt`` files), on the CPU, eval mode."""
    from mlip.training.checkpoint_load import model_from_checkpoint

    members = [model_from_checkpoint(str(p), device="cpu").eval() for p in paths]
    if dtype is not None:
        members = [m.to(dtype) for m in members]
    return CommitteePotential(members)


def export_committee(committee: CommitteePotential, path: str) -> torch.jit.ScriptModule:
    """Script and save ``committee`` to ``path`` atomically, with ``metadata.json``."""
    scripted = torch.jit.script(committee)
    with atomic_open(path, "wb") as fh:
        torch.jit.save(scripted, fh, _extra_files={"metadata.json": json.dumps(committee.metadata())})
    return scripted
