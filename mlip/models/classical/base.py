"""What every classical model shares: species-pair indexing, edge lengths, the smooth cutoff,
E0 per species, and first guesses of bond lengths from covalent radii or from data.

Energies are E = sum_i E0[Z_i] + (physical form). The data-derived ``scale``, ``shift`` and
``avg_num_neighbors`` of the model contract are accepted and ignored: a classical model's
parameters carry their own units, so its ``AtomicEnergies`` has scale 1 and shift 0.

E0 starts at the data's E0 (``data.e0``). With ``fit_e0=True`` (the configs' default) it is
fitted along with the physical parameters (``energies.e0`` is then a parameter, not a buffer):
with a least-squares E0 a fixed E0 would leave the physical form to fit energies relative to
the data's average, which a pair potential can only do by vanishing (the fit of ``lj`` to the
shipped Si data collapses to epsilon = 0.002 eV). With isolated-atom E0, ``fit_e0=false``
keeps the physical reference. L2 regularisation never acts on E0.
"""

from typing import Dict, Iterable, List, Tuple

import torch

from mlip import keys
from mlip.models.energy import AtomicEnergies
from mlip.nn.cutoff import PolynomialCutoff
from mlip.nn.geometry import edge_vectors


def pair_index_table(n_species: int) -> torch.Tensor:
    """[S, S] long: index of the unordered species pair (a, b), numbered (0,0), (0,1), ..., (1,1), ..."""
    table = torch.zeros(n_species, n_species, dtype=torch.long)
    p = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = p
            p += 1
    return table


def pair_labels(species: List[int]) -> List[str]:
    """Names of the unordered pairs in pair-index order, e.g. ``["Si-Si", "Si-Ge", "Ge-Ge"]``."""
    from ase.data import chemical_symbols

    names = [chemical_symbols[z] for z in species]
    return [f"{names[a]}-{names[b]}" for a in range(len(names)) for b in range(a, len(names))]


def pair_members(n_species: int) -> List[Tuple[int, int]]:
    """(a, b) with a <= b for each pair index."""
    return [(a, b) for a in range(n_species) for b in range(a, n_species)]


def covalent_bond_lengths(species: List[int]) -> torch.Tensor:
    """Sum of covalent radii (Å, ASE's table) of each unordered pair: the guess of a pair's
    nearest-neighbour distance before any data is seen. [P] float64."""
    from ase.data import covalent_radii

    return torch.tensor([covalent_radii[species[a]] + covalent_radii[species[b]]
                         for a, b in pair_members(len(species))], dtype=torch.float64)


class ClassicalModel(torch.nn.Module):
    """Base of the classical models: ``species``, ``cutoff`` (Å), E0 (eV), the polynomial
    envelope of exponent ``cutoff_p`` (energies and forces go smoothly to zero at the cutoff),
    the pair-index table and the pair names (``pair_names``, in parameter order). ``fit_e0``:
    train E0 (see the module docstring)."""
    pair_table: torch.Tensor

    def __init__(self, species: List[int], cutoff: float, e0: List[float], cutoff_p: int = 6, fit_e0: bool = False):
        super().__init__()
        self.species: List[int] = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.n_species = len(self.species)
        self.n_pairs = self.n_species * (self.n_species + 1) // 2
        self.pair_names: List[str] = pair_labels(self.species)
        self.register_buffer("pair_table", pair_index_table(self.n_species).reshape(-1))
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)
        self.energies = AtomicEnergies(e0, scale=1.0, shift=0.0, trainable_e0=fit_e0)

    def edge_geometry(self, data: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edge lengths r [E] (Å), pair index of each edge [E] and the centre atom i [E]."""
        r = torch.linalg.norm(edge_vectors(data), dim=1)
        i = data[keys.EDGE_INDEX][0]
        j = data[keys.EDGE_INDEX][1]
        species = data[keys.SPECIES]
        pair = self.pair_table.index_select(0, species.index_select(0, i) * self.n_species + species.index_select(0, j))
        return r, pair, i

    @torch.no_grad()
    def nearest_neighbour_distances(self, batches: Iterable[Dict[str, torch.Tensor]]) -> torch.Tensor:
        """Shortest distance of each pair [P] (Å, float64) in the data, where the data has such
        pairs within the cutoff; the covalent-radius sum elsewhere. The shortest rather than a
        typical distance, so a potential whose repulsive wall starts there is moderate on every
        training frame (a pair seen only as second neighbours in one structure but bonded in
        another would otherwise start with a wall far outside the bond)."""
        guess = covalent_bond_lengths(self.species)
        shortest = torch.full((self.n_pairs,), float("inf"), dtype=torch.float64)
        for data in batches:
            r, pair, _ = self.edge_geometry(data)
            shortest = shortest.scatter_reduce(0, pair.cpu(), r.detach().double().cpu(), reduce="amin")
        return torch.where(torch.isfinite(shortest), shortest, guess)
