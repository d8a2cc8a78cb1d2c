"""Generators of a recipe: each turns the starting structure into candidate frames, tagged with
``config_type`` and a ``group`` (``atoms.info``), so grouped cross-validation
(``split.group_by=group``) holds out a whole trajectory or a whole family of a defect.

Every generator takes ``(base, params, rng)`` and returns a list of unlabelled ``Atoms``, except
``md``, which runs dynamics with a calculator and returns labelled snapshots (see ``run_md``).
Counts in ``params`` are already scaled by the recipe's ``scale``.
"""

from typing import Any, Callable, Dict, List, Mapping

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from mlip.errors import ConfigError

Params = Mapping[str, Any]


def _tag(atoms: Atoms, config_type: str, group: str) -> Atoms:
    atoms.info["config_type"] = config_type
    atoms.info["group"] = group
    return atoms


def _rattled(atoms: Atoms, stdev: float, rng: np.random.Generator) -> Atoms:
    out = atoms.copy()
    out.positions += rng.normal(0.0, stdev, out.positions.shape)
    return out


def strain(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """``count`` cells under random strain up to ``max_strain``: isotropic (volume) for the first
    half, then a random symmetric tensor with shear (``shear: true``); atoms rattled by ``rattle`` Å."""
    out = []
    count, emax = int(p.get("count", 10)), float(p.get("max_strain", 0.05))
    n_iso = (count + 1) // 2 if p.get("shear", True) else count
    volumes = np.linspace(-emax, emax, n_iso) if n_iso > 1 else np.array([emax])
    for k in range(count):
        if k < n_iso:
            eps = np.eye(3) * volumes[k]
            kind = "strain_iso"
        else:
            a = rng.uniform(-emax, emax, (3, 3))
            eps = (a + a.T) / 2
            kind = "strain_shear"
        atoms = _rattled(base, float(p.get("rattle", 0.01)), rng)
        atoms.set_cell(base.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        out.append(_tag(atoms, kind, f"{kind}_{k}"))
    return out


def rattle(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """``count`` copies with every atom displaced by a Gaussian of ``stdev`` Å."""
    return [_tag(_rattled(base, float(p.get("stdev", 0.05)), rng), "rattle", f"rattle_{k}")
            for k in range(int(p.get("count", 10)))]


def vacancy(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """``count`` cells with one atom removed (chosen at random), rattled by ``rattle`` Å."""
    if not base.pbc.all():
        raise ConfigError("generators.vacancy needs a periodic structure")
    out = []
    for k in range(int(p.get("count", 5))):
        atoms = _rattled(base, float(p.get("rattle", 0.02)), rng)
        del atoms[int(rng.integers(len(atoms)))]
        out.append(_tag(atoms, "vacancy", f"vacancy_{k}"))
    return out


def interstitial(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """``count`` cells with one extra atom (an element of the structure, at random) at the emptiest
    of 200 random points (largest distance to the nearest atom), rattled by ``rattle`` Å."""
    if not base.pbc.all():
        raise ConfigError("generators.interstitial needs a periodic structure")
    from ase.geometry import get_distances

    out = []
    symbols = sorted(set(base.get_chemical_symbols()))
    for k in range(int(p.get("count", 5))):
        trial = rng.random((200, 3)) @ base.cell[:]
        _, d = get_distances(trial, base.positions, cell=base.cell, pbc=base.pbc)
        best = trial[int(d.min(axis=1).argmax())]
        atoms = base + Atoms(str(rng.choice(symbols)), positions=[best])
        atoms = _rattled(atoms, float(p.get("rattle", 0.02)), rng)
        out.append(_tag(atoms, "interstitial", f"interstitial_{k}"))
    return out


def surface(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """Slabs of each Miller index in ``miller`` (``layers`` layers, ``vacuum`` Å each side),
    ``count`` rattled copies of each; one group per index."""
    from ase.build import surface as ase_surface

    if not base.pbc.all():
        raise ConfigError("generators.surface needs a periodic structure")
    out = []
    for hkl in p.get("miller", [[1, 0, 0], [1, 1, 1]]):
        name = "".join(str(int(i)) for i in hkl)
        slab = ase_surface(base, tuple(int(i) for i in hkl), int(p.get("layers", 4)),
                           vacuum=float(p.get("vacuum", 8.0)))
        slab.pbc = True
        if len(slab) > int(p.get("max_atoms", 200)):
            raise ConfigError(f"generators.surface: the ({name}) slab has {len(slab)} atoms (> max_atoms="
                              f"{p.get('max_atoms', 200)}): use fewer layers or a smaller structure")
        for _ in range(int(p.get("count", 2))):
            out.append(_tag(_rattled(slab, float(p.get("rattle", 0.03)), rng), f"surface_{name}", f"surface_{name}"))
    return out


def phases(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """Other phases (``structures``: specs as in ``structures.py``), each with ``count`` strained
    and rattled copies (strain up to ``max_strain``); one group per phase."""
    from mlip.building.structures import build_structure

    out = []
    for k, spec in enumerate(p.get("structures") or []):
        phase = build_structure(spec, rng, f"generators.phases.structures[{k}]")
        name = spec.get("name") or (spec.get("args") or {}).get("crystalstructure") or f"phase{k}"
        emax = float(p.get("max_strain", 0.03))
        for _ in range(int(p.get("count", 3))):
            atoms = _rattled(phase, float(p.get("rattle", 0.03)), rng)
            atoms.set_cell(phase.cell[:] * (1 + rng.uniform(-emax, emax)), scale_atoms=True)
            out.append(_tag(atoms, f"phase_{name}", f"phase_{name}"))
    return out


def dimer(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """Two atoms in vacuum for every pair of elements, at ``count`` distances from ``r_min``
    (default 0.7 x the sum of covalent radii) to ``r_max`` Å (default 5); one group per pair."""
    symbols = sorted(set(base.get_chemical_symbols()), key=lambda s: atomic_numbers[s])
    out = []
    for i, a in enumerate(symbols):
        for b in symbols[i:]:
            r0 = covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]]
            for r in np.linspace(float(p.get("r_min", 0.7 * r0)), float(p.get("r_max", 5.0)), int(p.get("count", 8))):
                atoms = Atoms(a + b, positions=[[0, 0, 0], [0, 0, r]], pbc=False)
                out.append(_tag(atoms, "dimer", f"dimer_{a}{b}"))
    return out


def isolated(base: Atoms, p: Params, rng: np.random.Generator) -> List[Atoms]:
    """One atom of each element in vacuum (pbc=False): the reference energies E0."""
    symbols = sorted(set(base.get_chemical_symbols()), key=lambda s: atomic_numbers[s])
    return [_tag(Atoms(s, positions=[[0, 0, 0]], pbc=False), "isolated_atom", f"isolated_{s}") for s in symbols]


#: generators that make unlabelled candidates (md is run separately: it needs a calculator)
GENERATORS: Dict[str, Callable[[Atoms, Params, np.random.Generator], List[Atoms]]] = {
    "strain": strain, "rattle": rattle, "vacancy": vacancy, "interstitial": interstitial, "surface": surface,
    "phases": phases, "dimer": dimer, "isolated": isolated,
}
#: count-like parameters multiplied by the recipe's ``scale``
SCALED = ("count", "trajectories", "snapshots")


def run_md(base: Atoms, calc, temperature: float, pressure, steps: int, interval: int, equilibration: int,
           timestep_fs: float, seed: int, group: str) -> List[Atoms]:
    """Langevin NVT at ``temperature`` K (or Berendsen NPT at ``pressure`` GPa for periodic cells)
    with ``calc``; a snapshot every ``interval`` steps after ``equilibration`` steps (decorrelated
    frames), each labelled by ``calc`` (energy eV, forces eV/Å, stress eV/Å³ when periodic).
    Stops early when two atoms come closer than 0.5 Å (a broken trajectory): the frames before stay."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    atoms = base.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn: Any
    if pressure is not None and atoms.pbc.all():
        from ase.md.nptberendsen import NPTBerendsen

        dyn = NPTBerendsen(atoms, timestep_fs * units.fs, temperature_K=temperature,
                           pressure_au=float(pressure) * units.GPa, taut=100 * units.fs, taup=1000 * units.fs,
                           compressibility_au=1.0 / (100 * units.GPa))
        kind = f"md_{temperature:g}K_{pressure:g}GPa"
    else:
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.02, fixcm=False,
                       rng=np.random.default_rng(seed + 1))
        kind = f"md_{temperature:g}K"
    frames: List[Atoms] = []
    for step in range(1, steps + 1):
        dyn.run(1)
        if len(atoms) > 1 and atoms.get_all_distances(mic=atoms.pbc.any())[np.triu_indices(len(atoms), 1)].min() < 0.5:
            break
        if step > equilibration and (step - equilibration) % interval == 0:
            snap = atoms.copy()
            results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
            if atoms.pbc.all():
                results["stress"] = atoms.get_stress()
            snap.calc = SinglePointCalculator(snap, **results)
            frames.append(_tag(snap, kind, group))
    return frames
