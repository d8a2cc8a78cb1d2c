"""``model=eam``: the embedded-atom method in its multi-species (LAMMPS ``eam/alloy``) form,

    E = sum_i E0[Z_i] + sum_i [ F_a(rho_i) + 1/2 sum_j phi_ab(r_ij) ],   rho_i = sum_j f_b(r_ij),

a = species of atom i, b = species of neighbour j. Every function is a natural cubic spline
(``spline.py``) whose knot values are the parameters:

- ``phi_values`` [P, K] (eV): pair term per unordered species pair, knots on [r_min, r_c];
- ``density_values`` [S, K]: density contributed by a neighbour of each species (dimensionless,
  normalised to 1 at the shortest distance in the data at the start), same knots;
- ``embedding_values`` [S, K_rho - 1] (eV): F_a at rho = drho, 2 drho, ..., rho_max (the grid
  is [0, rho_max_init] times the buffer ``rho_scale``, which ``initialize_from_data`` sets);
  F_a(0) = 0 is fixed, so an isolated atom has energy E0 and E0 is not confounded with F.

phi and f are multiplied by the smooth polynomial envelope, so energies and forces go to zero at
r_c; below r_min they continue linearly (C2), as F does beyond rho_max. The rho grid
(``rho_max``) is set by ``initialize_from_data`` to ``rho_margin`` times the largest density
seen in the training data (``rho_max_init`` before). Known exact degeneracies of EAM remain
(F_a(rho) - g rho with phi_ab + g (f_a + f_b) for a linear g, and rescaling rho), so a
Fisher analysis will show sloppy directions; the smoothness penalty selects among them.
"""

from typing import Dict, Iterable, List, Tuple

import torch

from mlip import keys
from mlip.errors import ConfigError
from mlip.models.classical.base import ClassicalModel, covalent_bond_lengths
from mlip.models.classical.pair import morse
from mlip.models.classical.spline import UniformCubicSpline
from mlip.nn.scatter import scatter_sum


class EmbeddedAtomModel(ClassicalModel):
    """``model=eam``. Hyperparameters: ``n_knots`` and ``r_min`` (Å) of the r grid, ``n_rho_knots``
    of the rho grid; starting shapes: phi a Morse curve (``D_e_init`` eV, ``a_init`` 1/Å, r_e at
    the pair's shortest distance d in the data), f_b(r) = exp(-``density_decay`` (r / d_bb - 1)),
    F_a(rho) = -``embedding_init`` sqrt(rho) (Finnis-Sinclair)."""
    rho_scale: torch.Tensor

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, n_knots: int = 16, r_min: float = 1.5,
                 n_rho_knots: int = 16, rho_max_init: float = 24.0, rho_margin: float = 2.0,
                 D_e_init: float = 0.2, a_init: float = 1.5, density_decay: float = 3.0,
                 embedding_init: float = 1.0, cutoff_p: int = 6, fit_e0: bool = False):
        super().__init__(species, cutoff, e0, cutoff_p, fit_e0)
        if not 0.0 < r_min < cutoff:
            raise ConfigError(f"model.r_min={r_min} must lie between 0 and the cutoff {cutoff}")
        if not rho_max_init > 0 or not rho_margin >= 1.0:
            raise ConfigError(f"model.rho_max_init={rho_max_init} must be > 0 and model.rho_margin={rho_margin} >= 1")
        self.r_min = float(r_min)
        self.rho_margin = float(rho_margin)
        self.D_e_init, self.a_init = float(D_e_init), float(a_init)
        self.density_decay, self.embedding_init = float(density_decay), float(embedding_init)
        self.r_spline = UniformCubicSpline(r_min, cutoff, n_knots)
        # F_a(rho) = S_a(rho / rho_scale), S_a a spline on [0, rho_max_init]: the data sets rho_scale
        self.rho_spline = UniformCubicSpline(0.0, rho_max_init, n_rho_knots)
        self.register_buffer("rho_scale", torch.ones(()))
        self.phi_values = torch.nn.Parameter(torch.zeros(self.n_pairs, n_knots))
        self.density_values = torch.nn.Parameter(torch.zeros(self.n_species, n_knots))
        self.embedding_values = torch.nn.Parameter(torch.zeros(self.n_species, n_rho_knots - 1))
        self._set_shapes(covalent_bond_lengths(self.species))
        self._set_embedding(rho_max_init)

    # ------------------------------------------------------------------ starting shapes
    @torch.no_grad()
    def _set_shapes(self, nearest: torch.Tensor) -> None:
        r = self.r_spline.knots().unsqueeze(0)
        f64 = torch.float64
        self.phi_values.copy_(morse(r, torch.tensor(self.D_e_init, dtype=f64), torch.tensor(self.a_init, dtype=f64),
                                    nearest.unsqueeze(1)))
        self_pairs = torch.tensor([self.pair_table[a * self.n_species + a] for a in range(self.n_species)])
        d = nearest[self_pairs].unsqueeze(1)
        self.density_values.copy_(torch.exp(-self.density_decay * (r / d - 1.0)))

    @torch.no_grad()
    def _set_embedding(self, rho_max: float) -> None:
        self.rho_scale.fill_(rho_max / self.rho_spline.stop)
        rho = self.rho_knots()[1:]
        self.embedding_values.copy_((-self.embedding_init * rho.sqrt()).expand_as(self.embedding_values))

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        """Starting shapes from the data's shortest pair distances; rho grid up to
        ``rho_margin`` times the largest density the starting f gives on the data."""
        batches = list(batches)
        self._set_shapes(self.nearest_neighbour_distances(batches))
        largest = 0.0
        for data in batches:
            rho, _, _, _ = self.densities(data)
            if rho.numel() > 0:
                largest = max(largest, float(rho.max()))
        if largest > 0.0:
            self._set_embedding(self.rho_margin * largest)

    # ------------------------------------------------------------------ energy
    def full_embedding_values(self) -> torch.Tensor:
        """F_a at every rho knot, F_a(0) = 0 included: [S, K_rho] (eV)."""
        return torch.cat([torch.zeros_like(self.embedding_values[:, :1]), self.embedding_values], dim=1)

    def densities(self, data: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """rho_i [N], and the edge lengths, pair indices and centres of the batch."""
        r, pair, i = self.edge_geometry(data)
        j = data[keys.EDGE_INDEX][1]
        species = data[keys.SPECIES]
        f = self.r_spline(self.density_values, species.index_select(0, j), r) * self.envelope(r)
        rho = scatter_sum(f, i, species.shape[0])
        return rho, r, pair, i

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        rho, r, pair, i = self.densities(data)
        species = data[keys.SPECIES]
        phi = self.r_spline(self.phi_values, pair, r) * self.envelope(r)
        atomic = self.rho_spline(self.full_embedding_values(), species, rho / self.rho_scale) \
            + 0.5 * scatter_sum(phi, i, species.shape[0])
        return self.energies(atomic, data)

    # ------------------------------------------------------------------ tabulation (LAMMPS export)
    def pair_function(self, pair: int, r: torch.Tensor) -> torch.Tensor:
        """phi_p(r) (eV, envelope included) at ``r`` [M]."""
        which = torch.full(r.shape, pair, dtype=torch.long, device=r.device)
        return self.r_spline(self.phi_values, which, r) * self.envelope(r)

    def density_function(self, species: int, r: torch.Tensor) -> torch.Tensor:
        """f_b(r) (envelope included) of species index ``species`` at ``r`` [M]."""
        which = torch.full(r.shape, species, dtype=torch.long, device=r.device)
        return self.r_spline(self.density_values, which, r) * self.envelope(r)

    def embedding_function(self, species: int, rho: torch.Tensor) -> torch.Tensor:
        """F_a(rho) (eV) of species index ``species`` at ``rho`` [M]."""
        which = torch.full(rho.shape, species, dtype=torch.long, device=rho.device)
        return self.rho_spline(self.full_embedding_values(), which, rho / self.rho_scale)

    def rho_knots(self) -> torch.Tensor:
        """The rho grid of F [K_rho] (float64)."""
        return self.rho_spline.knots() * float(self.rho_scale)

    def rho_max(self) -> float:
        """End of the rho grid (F is linear beyond it)."""
        return float(self.rho_spline.stop * self.rho_scale)

    # ------------------------------------------------------------------ hooks of the model contract
    def lammps_style(self) -> str:
        """LAMMPS-native form: an ``eam/alloy`` setfl file of F_a, rho_a and phi_ab."""
        return "eam/alloy"

    def smooth_functions(self) -> List[torch.Tensor]:
        return [self.phi_values, self.density_values, self.full_embedding_values()]

    def identifiability_parameters(self) -> List[str]:
        return ["phi_values", "density_values", "embedding_values", "energies.e0"]

    def l2_parameters(self) -> List[torch.Tensor]:
        return [self.phi_values, self.density_values, self.embedding_values]
