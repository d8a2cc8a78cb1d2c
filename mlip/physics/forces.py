"""Forces F = -dE/dR and stress sigma = (1/V) dE/d(epsilon), both by autograd.

A symmetric strain epsilon [B, 3, 3] (zero) is applied to every frame's positions and cell,
R' = R (1 + epsilon), cell' = cell (1 + epsilon), so the derivative of E with respect to it is
the virial-like quantity whose division by the volume is the stress in ASE's convention
(positive = tensile; virial W = -V sigma). Non-periodic frames get a zero stress.
"""

from typing import Dict, Tuple

import torch

from mlip import keys
from mlip.nn.geometry import cell_volume


class ForcesAndStress(torch.nn.Module):
    """Wraps an energy model; adds ``pred_forces`` [N, 3] eV/Å and ``pred_stress`` [B, 3, 3] eV/Å³.

    ``create_graph`` must be True while training (the loss then differentiates the forces).
    """

    def __init__(self, energy_model: torch.nn.Module):
        super().__init__()
        self.energy_model = energy_model

    def forward(self, data: Dict[str, torch.Tensor], compute_forces: bool = True,
                compute_stress: bool = True, create_graph: bool = False) -> Dict[str, torch.Tensor]:
        pos, strain = self.inputs(data, compute_forces, compute_stress)
        return self.evaluate(data, pos, strain, compute_forces, compute_stress, create_graph)

    def inputs(self, data: Dict[str, torch.Tensor], compute_forces: bool,
               compute_stress: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """The tensors autograd differentiates in: the positions [N, 3] (Å; a detached copy that
        requires grad when forces or stress are wanted) and the zero strain [B, 3, 3] (requires grad
        with stress)."""
        pos = data[keys.POSITIONS]
        strain = torch.zeros((data[keys.CELL].shape[0], 3, 3), dtype=pos.dtype, device=pos.device)
        if compute_forces or compute_stress:
            pos = pos.detach().requires_grad_(True)
        if compute_stress:
            strain.requires_grad_(True)
        return pos, strain

    def evaluate(self, data: Dict[str, torch.Tensor], pos: torch.Tensor, strain: torch.Tensor,
                 compute_forces: bool, compute_stress: bool, create_graph: bool) -> Dict[str, torch.Tensor]:
        """Energies, forces and stress at ``pos`` and ``strain`` (from ``inputs``). Makes no tensor
        require grad itself, so ``torch.compile`` can trace it whole, autograd included
        (``mlip.training.compiled_step``)."""
        data = dict(data)
        cell = data[keys.CELL]
        batch = data[keys.BATCH]
        if compute_stress:
            sym = 0.5 * (strain + strain.transpose(1, 2))
            data[keys.POSITIONS] = pos + torch.bmm(pos.unsqueeze(1), sym.index_select(0, batch)).squeeze(1)
            data[keys.CELL] = cell + torch.bmm(cell, sym)
        else:
            data[keys.POSITIONS] = pos
        out = self.energy_model(data)
        out[keys.POSITIONS] = pos
        out[keys.CELL] = cell
        if not (compute_forces or compute_stress):
            return out
        energy = out[keys.TOTAL_ENERGY]
        inputs = [pos, strain] if compute_stress else [pos]
        grads = torch.autograd.grad([energy.sum()], inputs, create_graph=create_graph, allow_unused=True)
        if compute_forces:
            g = grads[0]
            out[keys.PRED_FORCES] = -g if g is not None else torch.zeros_like(pos)
        if compute_stress:
            g = grads[1]
            if g is None:
                g = torch.zeros_like(strain)
            volume = cell_volume(cell)
            periodic = data[keys.PBC].all(dim=1) & (volume > 0)
            safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
            stress = g / safe_volume.view(-1, 1, 1)
            out[keys.PRED_STRESS] = torch.where(periodic.view(-1, 1, 1), stress, torch.zeros_like(stress))
        return out
