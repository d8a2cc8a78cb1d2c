"""Property targets in the loss: elastic constants of a given structure, computed through the model
by autograd, fitted to measured (or computed) values with their own sigma.

    loss:
      properties:
        - structure: Cu:fcc:3.61          # Element:lattice:a (ase.build.bulk, cubic), or a file
          elastic: {C11: 176.2, C12: 124.9, C44: 81.8}    # GPa (Voigt)
          sigma: 5.0                      # GPa

For each structure, a symmetric strain ε [3, 3] (zero) is applied to positions and cell, and a
second one ε' on top of it measures the true stress of the strained cell, σ(ε) = (1/V(ε)) dE/dε';
the stress-strain coefficients C_ij = dσ_i/dε_j (Voigt, engineering shear strain: what
``mlip validate`` measures by finite differences) come from nested autograd derivatives, with the
graph kept so the loss trains the model: clamped-ion constants, equal to the relaxed-ion ones
for one-atom Bravais lattices (fcc, bcc; use their primitive or cubic cells). The term added to the training loss is
sum ((C_pred - C_ref) / sigma)^2 over the given entries, on every training step.
"""

from typing import Any, Dict, List, Optional

import torch

from mlip import keys
from mlip.errors import ConfigError
from mlip.models.contract import cutoff_of, species_of

#: Voigt index of the named constants: C11 -> (0, 0), ...
VOIGT_NAMES = {f"C{i + 1}{j + 1}": (i, j) for i in range(6) for j in range(6)}
#: Voigt component -> tensor indices
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: eV/Å³ -> GPa
EV_PER_A3_IN_GPA = 160.21766208


def structure_atoms(spec: Any):
    """``Element:lattice:a`` (``ase.build.bulk``, cubic cell) or a file ASE reads."""
    from pathlib import Path

    from ase.build import bulk
    from ase.io import read

    if Path(str(spec)).is_file():
        return read(str(spec))
    parts = str(spec).split(":")
    if len(parts) != 3:
        raise ConfigError(f"loss.properties[].structure={spec!r}: a file, or Element:lattice:a (e.g. Cu:fcc:3.61)")
    return bulk(parts[0], parts[1], a=float(parts[2]), cubic=True)


def check_properties(properties: Optional[List[Dict[str, Any]]]) -> None:
    """ConfigError naming the entry and key of a malformed ``loss.properties``."""
    for k, entry in enumerate(properties or []):
        where = f"loss.properties[{k}]"
        if not isinstance(entry, dict) or "structure" not in entry or "elastic" not in entry:
            raise ConfigError(f"{where}: needs structure, elastic ({{C11: GPa, ...}}) and sigma (GPa)")
        unknown = [n for n in entry["elastic"] if n not in VOIGT_NAMES]
        if unknown:
            raise ConfigError(f"{where}.elastic.{unknown[0]}: not a Voigt elastic constant (C11 ... C66)")
        if not isinstance(entry.get("sigma"), (int, float)) or entry["sigma"] <= 0:
            raise ConfigError(f"{where}.sigma={entry.get('sigma')!r} must be a number > 0 (GPa)")


def elastic_constants(energy_model: torch.nn.Module, data: Dict[str, torch.Tensor],
                      create_graph: bool) -> torch.Tensor:
    """[6, 6] stress-strain coefficients (GPa) of the one-frame batch ``data`` by autograd."""
    pos, cell = data[keys.POSITIONS], data[keys.CELL]
    eps = torch.zeros((3, 3), dtype=pos.dtype, device=pos.device, requires_grad=True)  # the applied strain
    probe = torch.zeros((3, 3), dtype=pos.dtype, device=pos.device, requires_grad=True)  # measures stress
    first = torch.eye(3, dtype=pos.dtype, device=pos.device) + 0.5 * (eps + eps.T)
    second = torch.eye(3, dtype=pos.dtype, device=pos.device) + 0.5 * (probe + probe.T)
    strained = dict(data)
    strained[keys.POSITIONS] = pos @ first @ second
    strained[keys.CELL] = cell @ first @ second
    energy = energy_model(strained)[keys.TOTAL_ENERGY].sum()
    (grad,) = torch.autograd.grad([energy], [probe], create_graph=True)
    stress = grad / torch.linalg.det(cell[0] @ first).abs()  # the true stress of the strained cell, eV/Å³
    rows = []
    for a, b in VOIGT:
        (d,) = torch.autograd.grad([stress[a, b]], [eps], create_graph=create_graph, retain_graph=True)
        # d[k, l] = dσ_ab/de_kl; with ε = sym(e), dσ/dε_kk = d[k, k]; the engineering shear strain
        # γ_kl = 2 ε_kl enters through e_kl and e_lk: dσ/dγ_kl = (d[k, l] + d[l, k]) / 2
        rows.append(torch.stack([d[0, 0], d[1, 1], d[2, 2], 0.5 * (d[1, 2] + d[2, 1]),
                                 0.5 * (d[0, 2] + d[2, 0]), 0.5 * (d[0, 1] + d[1, 0])]))
    return torch.stack(rows) * EV_PER_A3_IN_GPA


class PropertyLoss(torch.nn.Module):
    """The elastic-constant terms of ``loss.properties``; ``forward(energy_model)`` returns the
    summed term and the predicted constants {"<structure>/C11": GPa, ...} for logging."""

    def __init__(self, properties: Optional[List[Dict[str, Any]]] = None):
        super().__init__()
        check_properties(properties)
        self.entries = [dict(e) for e in properties or []]
        self._batches: Dict[int, Dict[str, torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        return bool(self.entries)

    def _batch(self, k: int, energy_model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        from mlip.data.graph import atoms_to_graph
        from mlip.nn.batch import collate

        if k not in self._batches:
            species = species_of(energy_model)
            atoms = structure_atoms(self.entries[k]["structure"])
            missing = sorted(set(atoms.numbers.tolist()) - set(species))
            if missing:
                raise ConfigError(f"loss.properties[{k}].structure has elements {missing} the model does not have "
                                  f"({species})")
            self._batches[k] = collate([atoms_to_graph(atoms, cutoff_of(energy_model),
                                                       {z: i for i, z in enumerate(species)})])
        param = next(energy_model.parameters())
        return {key: (v.to(device=param.device, dtype=param.dtype) if v.is_floating_point() else v.to(param.device))
                for key, v in self._batches[k].items()}

    def forward(self, energy_model: torch.nn.Module, create_graph: bool = True):
        total = next(energy_model.parameters()).new_zeros(())
        predicted: Dict[str, float] = {}
        for k, entry in enumerate(self.entries):
            c = elastic_constants(energy_model, self._batch(k, energy_model), create_graph)
            for name, target in entry["elastic"].items():
                i, j = VOIGT_NAMES[name]
                total = total + ((c[i, j] - float(target)) / float(entry["sigma"])) ** 2
                predicted[f"{entry['structure']}/{name}"] = float(c[i, j].detach())
        return total, predicted
