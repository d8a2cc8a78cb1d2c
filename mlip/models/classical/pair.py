"""Pair potentials per unordered species pair, each multiplied by the smooth polynomial envelope
f(r) of ``mlip.nn.cutoff`` (E, dE/dr and d2E/dr2 go to zero at the cutoff):

    E = sum_i E0[Z_i] + 1/2 sum_i sum_{j != i, r_ij < r_c} V_ab(r_ij) f(r_ij)

- ``model=lj``     ``LennardJones``: V = 4 epsilon ((sigma/r)^12 - (sigma/r)^6); parameters
  ``epsilon`` [P] (eV) and ``sigma`` [P] (Å);
- ``model=morse``  ``Morse``: V = D_e (exp(-2a(r - r_e)) - 2 exp(-a(r - r_e))); parameters
  ``D_e`` [P] (eV), ``a`` [P] (1/Å), ``r_e`` [P] (Å);
- ``model=spline_pair``  ``SplinePair``: V is a natural cubic spline through ``knot_values``
  [P, K] (eV) at K uniform knots on [r_min, r_c]; below r_min it continues as the straight line
  with the spline's end value and slope (C2-smooth; not steeper than at r_min, so choose r_min
  below the shortest distance the potential will meet).

P = S(S+1)/2 pairs in the order of ``pair_names``. Parameters are plain, unconstrained
``nn.Parameter``s named as above, so Fisher and identifiability tables read in physical units.
``initialize_from_data`` sets sigma, r_e and the spline's starting shape from the shortest
distance of each pair in the training data, unless ``model.init_rdf`` gave the spline a start by
Boltzmann inversion of a radial distribution function, U(r) = -k_B T ln g(r).
"""

from typing import Dict, Iterable, List, Optional

import torch

from mlip import keys
from mlip.errors import ConfigError
from mlip.models.classical.base import ClassicalModel, covalent_bond_lengths
from mlip.models.classical.spline import UniformCubicSpline
from mlip.nn.scatter import scatter_sum


def morse(r: torch.Tensor, depth: torch.Tensor, a: torch.Tensor, r_e: torch.Tensor) -> torch.Tensor:
    """Morse energy (eV) with well depth ``depth`` (eV) at ``r_e`` (Å), width ``a`` (1/Å)."""
    x = torch.exp(-a * (r - r_e))
    return depth * (x * x - 2.0 * x)


class PairPotential(ClassicalModel):
    """Base of the pair models: subclasses define ``pair_energy(r, pair)`` (no envelope)."""

    def pair_energy(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        r, pair, i = self.edge_geometry(data)
        edge_energy = self.pair_energy(r, pair) * self.envelope(r)
        atomic = 0.5 * scatter_sum(edge_energy, i, data[keys.SPECIES].shape[0])
        return self.energies(atomic, data)

    def pair_function(self, pair: int, r: torch.Tensor) -> torch.Tensor:
        """V_p(r) f(r) (eV) of pair index ``pair`` at distances ``r`` [M]: the function a LAMMPS
        table holds."""
        which = torch.full(r.shape, pair, dtype=torch.long, device=r.device)
        return self.pair_energy(r, which) * self.envelope(r)

    def smooth_functions(self) -> List[torch.Tensor]:
        return []

    def lammps_style(self) -> str:
        """LAMMPS-native form: ``pair_style table`` of ``pair_function`` per species pair."""
        return "table"


class LennardJones(PairPotential):
    """``model=lj``. ``epsilon_init`` (eV) is the starting well depth of every pair; sigma
    starts at d / 2^(1/6) for each pair's shortest distance d in the data (covalent radii until
    ``initialize_from_data``). L2 regularisation does not apply (no parameter has a natural zero)."""

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, epsilon_init: float = 0.1,
                 cutoff_p: int = 6, fit_e0: bool = False):
        super().__init__(species, cutoff, e0, cutoff_p, fit_e0)
        dtype = torch.get_default_dtype()
        self.epsilon = torch.nn.Parameter(torch.full((self.n_pairs,), float(epsilon_init), dtype=dtype))
        self.sigma = torch.nn.Parameter((covalent_bond_lengths(self.species) * 2.0 ** (-1.0 / 6.0)).to(dtype))

    def pair_energy(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        sr6 = (self.sigma.index_select(0, pair) / r).pow(6)
        return 4.0 * self.epsilon.index_select(0, pair) * (sr6 * sr6 - sr6)

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        d = self.nearest_neighbour_distances(batches)
        self.sigma.copy_(d * 2.0 ** (-1.0 / 6.0))

    def identifiability_parameters(self) -> List[str]:
        return ["epsilon", "sigma", "energies.e0"]

    def l2_parameters(self) -> List[torch.Tensor]:
        return []


class Morse(PairPotential):
    """``model=morse``. ``D_e_init`` (eV) and ``a_init`` (1/Å) start every pair; r_e starts at
    each pair's shortest distance in the data. L2 regularisation does not apply."""

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, D_e_init: float = 0.5,
                 a_init: float = 1.5, cutoff_p: int = 6, fit_e0: bool = False):
        super().__init__(species, cutoff, e0, cutoff_p, fit_e0)
        dtype = torch.get_default_dtype()
        self.D_e = torch.nn.Parameter(torch.full((self.n_pairs,), float(D_e_init), dtype=dtype))
        self.a = torch.nn.Parameter(torch.full((self.n_pairs,), float(a_init), dtype=dtype))
        self.r_e = torch.nn.Parameter(covalent_bond_lengths(self.species).to(dtype))

    def pair_energy(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        return morse(r, self.D_e.index_select(0, pair), self.a.index_select(0, pair), self.r_e.index_select(0, pair))

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        self.r_e.copy_(self.nearest_neighbour_distances(batches))

    def identifiability_parameters(self) -> List[str]:
        return ["D_e", "a", "r_e", "energies.e0"]

    def l2_parameters(self) -> List[torch.Tensor]:
        return []


class SplinePair(PairPotential):
    """``model=spline_pair``: ``n_knots`` knot values per pair on [``r_min``, cutoff] are the
    parameters (``knot_values`` [P, K], eV). They start on a Morse curve (``D_e_init``,
    ``a_init``, r_e = shortest distance in the data). L2 acts on the knot values (pulling V to 0);
    ``smooth_functions`` returns them for the curvature penalty."""

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, n_knots: int = 16, r_min: float = 1.5,
                 D_e_init: float = 0.5, a_init: float = 1.5, cutoff_p: int = 6, fit_e0: bool = False,
                 init_rdf: Optional[str] = None, init_temperature: float = 300.0):
        super().__init__(species, cutoff, e0, cutoff_p, fit_e0)
        if not 0.0 < r_min < cutoff:
            raise ConfigError(f"model.r_min={r_min} must lie between 0 and the cutoff {cutoff}")
        self.r_min = float(r_min)
        self.D_e_init = float(D_e_init)
        self.a_init = float(a_init)
        self.spline = UniformCubicSpline(r_min, cutoff, n_knots)
        self.knot_values = torch.nn.Parameter(torch.zeros(self.n_pairs, n_knots))
        self._set_morse_shape(covalent_bond_lengths(self.species))
        #: the start came from a g(r) (Boltzmann inversion): the data's distances do not reset it
        self.from_rdf = bool(init_rdf)
        if init_rdf:
            self._boltzmann_inversion(str(init_rdf), float(init_temperature))

    @torch.no_grad()
    def _set_morse_shape(self, r_e: torch.Tensor) -> None:
        knots = self.spline.knots()
        values = morse(knots.unsqueeze(0), torch.tensor(self.D_e_init, dtype=torch.float64), torch.tensor(
            self.a_init, dtype=torch.float64), r_e.unsqueeze(1))
        self.knot_values.copy_(values)

    def pair_energy(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        return self.spline(self.knot_values, pair, r)

    @torch.no_grad()
    def _boltzmann_inversion(self, path: str, temperature: float) -> None:
        """Knot values U(r) = -k_B T ln g(r) from a radial distribution function file: columns
        r (Å) and g(r), one g column per species pair in ``pair_names`` order (or one for all).
        Where g(r) < 1e-3 (no sampled contacts) U continues as a straight line with the slope of
        the first sampled points, so the wall stays repulsive."""
        import numpy as np

        from mlip.errors import DataError

        try:
            table = np.loadtxt(path, ndmin=2)
        except (OSError, ValueError) as err:
            raise DataError(f"model.init_rdf: cannot read it as columns r, g(r) ({err})", path) from None
        if table.shape[1] not in (2, self.n_pairs + 1):
            raise DataError(f"model.init_rdf: {table.shape[1]} columns; expected r and 1 or {self.n_pairs} g(r) "
                            f"columns (pairs {', '.join(self.pair_names)})", path)
        r = table[:, 0]
        knots = self.spline.knots().cpu().numpy()
        k_t = 8.617333262e-5 * temperature  # eV
        for p in range(self.n_pairs):
            g = table[:, 1 + (p if table.shape[1] > 2 else 0)]
            ok = g > 1e-3
            if ok.sum() < 2:
                raise DataError(f"model.init_rdf: g(r) of pair {self.pair_names[p]} is never above 1e-3", path)
            u = -k_t * np.log(np.interp(knots, r[ok], g[ok]))
            first = r[ok][0]
            r2, g2 = r[ok][:2], g[ok][:2]
            slope = -k_t * (np.log(g2[1]) - np.log(g2[0])) / (r2[1] - r2[0])
            below = knots < first
            u[below] = -k_t * np.log(g[ok][0]) + slope * (knots[below] - first)
            self.knot_values[p].copy_(torch.as_tensor(u, dtype=self.knot_values.dtype))

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        if not self.from_rdf:
            self._set_morse_shape(self.nearest_neighbour_distances(batches))

    def smooth_functions(self) -> List[torch.Tensor]:
        return [self.knot_values]

    def identifiability_parameters(self) -> List[str]:
        return ["knot_values", "energies.e0"]

    def l2_parameters(self) -> List[torch.Tensor]:
        return [self.knot_values]
