"""``model=invariant``: invariant atom-centred descriptors fed to per-element MLPs."""

from typing import Dict, Iterable, List, Sequence, Tuple

import torch

from mlip import keys
from mlip.models.descriptor import SphericalPowerDescriptor
from mlip.models.energy import AtomicEnergies
from mlip.models.readout import PerSpeciesMLP

#: grid points of the radial functions returned by ``smooth_functions`` (spacing cutoff / 64)
SMOOTH_GRID_POINTS = 64


class InvariantDescriptorModel(torch.nn.Module):
    """Energy model. Batch in (see ``mlip.keys``); adds ``atomic_energy`` [N] and
    ``total_energy`` [B] in eV.

    ``species``: atomic numbers in model order; ``e0``: eV per atom of each, same order;
    ``scale`` (eV) and ``shift`` (eV/atom) set the output range from training statistics.
    Descriptor features are standardised with means and deviations measured on training data at
    set-up (``initialize_from_data``).
    """
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, num_basis: int = 8,
                 num_channels: int = 12, l_max: int = 3, hidden: Sequence[int] = (64, 64), cutoff_p: int = 6):
        super().__init__()
        self.species: List[int] = [int(z) for z in species]
        self.cutoff = float(cutoff)
        n = len(self.species)
        self.descriptor = SphericalPowerDescriptor(n, cutoff, num_basis, num_channels, l_max,
                                                   avg_num_neighbors, cutoff_p)
        f = self.descriptor.num_features
        self.register_buffer("feature_mean", torch.zeros(f))
        self.register_buffer("feature_std", torch.ones(f))
        self.readout = PerSpeciesMLP(n, f, list(hidden))
        self.energies = AtomicEnergies(e0, scale, shift)

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x, _ = self.exchange_begin(data, data[keys.SPECIES].shape[0])
        return self.energies(self.readout(x, data[keys.SPECIES]), data)

    # --- the contract's exchange hooks: one layer, so an engine exchanges nothing, but it computes
    # descriptors and readouts of its local atoms only, not of its ghosts ----------------------
    def exchange_widths(self) -> List[int]:
        """One layer (the readout); its output is never exchanged."""
        return [1]

    def exchange_begin(self, data: Dict[str, torch.Tensor], n_centres: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Standardised descriptors [M, F] of the first M = ``n_centres`` atoms; no shared edge inputs."""
        return (self.descriptor(data, n_centres) - self.feature_mean) / self.feature_std, []

    def exchange_layer(self, t: int, h: torch.Tensor, data: Dict[str, torch.Tensor],
                       edges: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The per-species readout y [M] of the centres' descriptors ``h`` [M, F]."""
        return h, self.readout(h, data[keys.SPECIES][:h.shape[0]])

    def exchange_energies(self, y: torch.Tensor, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-atom energies (eV) [M] of the centres from their readouts ``y`` [M]."""
        return self.energies.of_centres(y, data)

    def identifiability_parameters(self) -> List[str]:
        """Default tensors of ``mlip identifiability``: each element's output layer (weight and
        bias), E0, scale and shift. (Bias, E0 and shift are collinear in the energies, and scale
        with the output layer: the analysis shows these exact degeneracies as zero eigenvalues.)"""
        names: List[str] = []
        for k, net in enumerate(self.readout.nets):
            last = len(list(net.children())) - 1
            names += [f"readout.nets.{k}.{last}.weight", f"readout.nets.{k}.{last}.bias"]
        return names + ["energies.e0", "energies.scale", "energies.shift"]

    def smooth_functions(self, num_points: int = SMOOTH_GRID_POINTS) -> List[torch.Tensor]:
        """The learned radial functions R_{c,l}(r; Z_i, Z_j) (units of the Bessel basis, 1/Å^1.5,
        times the learned weights) sampled at ``num_points`` distances r_g = g h, g = 1..G,
        h = cutoff / G (Å), i.e. a uniform grid over (0, cutoff]; one tensor
        [num_species^2, num_channels, l_max + 1, G].

        Values are multiplied by h^(-3/2), so that sum_g (v[g-1] - 2 v[g] + v[g+1])^2 approximates
        the integral of (d^2 R / dr^2)^2 over (0, cutoff] (in Å^-3 times the units of R squared) and
        ``regularization.alpha`` means nearly the same for any grid size (the sum converges to the
        integral as 1/G; at 64 points it is about 15 % below it for a typical initialisation, the
        strip [0, 1.5 h] left out of the sum being where R curves most). Differentiable in the weights.
        """
        w = self.descriptor.radial_weights
        h = self.cutoff / num_points
        r = torch.arange(1, num_points + 1, dtype=w.dtype, device=w.device) * h
        return [self.descriptor.radial_functions(r) * h ** -1.5]

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        """Set feature means and deviations from training batches (float64 accumulation)."""
        xs = [self.descriptor(b).double() for b in batches]
        x = torch.cat(xs)
        self.feature_mean.copy_(x.mean(0))
        self.feature_std.copy_(x.std(0).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(x[0]))
