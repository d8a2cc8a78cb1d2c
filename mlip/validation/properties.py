"""Material properties of a structure under any ASE calculator (a trained model or a reference
oracle), as materials scientists validate potentials. Units: Å, eV, GPa, THz, J/m², Å²/ps.

Each function takes the structure and the calculator, works on copies, and returns a dict of
numbers (and arrays for plots). The structure is relaxed first where the property needs the
equilibrium (``relax``), so model and reference are compared at their own equilibria.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units

#: eV/Å³ -> GPa
GPA = 1.0 / units.GPa
#: Voigt order xx, yy, zz, yz, xz, xy as (i, j) pairs
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _with(atoms: Atoms, calc) -> Atoms:
    out = atoms.copy()
    out.calc = calc
    return out


def relax(atoms: Atoms, calc, cell: bool = True, fmax: float = 1e-3, steps: int = 500) -> Atoms:
    """Positions (and with ``cell`` the cell, at zero stress) relaxed with BFGS; returns a copy
    with ``calc`` attached."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    out = _with(atoms, calc)
    target: Any = FrechetCellFilter(out) if cell and out.pbc.all() else out
    BFGS(target, logfile=None).run(fmax=fmax, steps=steps)
    return out


def equation_of_state(atoms: Atoms, calc, max_strain: float = 0.04, points: int = 9) -> Dict[str, Any]:
    """E(V) over isotropic strains up to ``max_strain`` of the lattice, fitted by Birch-Murnaghan:
    ``v0`` (Å³/atom), ``e0`` (eV/atom), ``bulk_modulus`` (GPa), ``lattice_scale`` (a/a_input) and
    the points."""
    from ase.eos import EquationOfState

    n = len(atoms)
    volumes, energies = [], []
    for s in np.linspace(1 - max_strain, 1 + max_strain, points):
        a = _with(atoms, calc)
        a.set_cell(atoms.cell[:] * s, scale_atoms=True)
        volumes.append(a.get_volume() / n)
        energies.append(a.get_potential_energy() / n)
    eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
    v0, e0, b = eos.fit()
    return {"v0": float(v0), "e0": float(e0), "bulk_modulus": float(b / units.GPa),
            "lattice_scale": float((v0 * n / atoms.get_volume()) ** (1 / 3)),
            "volumes": volumes, "energies": energies}


def elastic_constants(atoms: Atoms, calc, delta: float = 0.005, relax_ions: bool = True) -> Dict[str, Any]:
    """C_ij (GPa, 6x6 Voigt) from central differences of the stress under the six strains ±δ
    (C_ij = dσ_i/dε_j, ASE sign: tension positive), with internal coordinates relaxed at each
    strain (``relax_ions``; needed for lattices with a basis such as diamond). For cubic crystals
    C11, C12, C44 (averaged over equivalent entries), the Cauchy pressure C12 − C44 (zero for any
    pair potential at zero pressure) and (C11 + 2 C12)/3."""
    c = np.zeros((6, 6))
    cell0 = atoms.cell[:].copy()
    for j, (a, b) in enumerate(VOIGT):
        stresses = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] += sign * delta
            if a != b:
                eps[b, a] += sign * delta  # engineering shear strain 2ε_ab = γ: Voigt ε_j = γ/1 below
            s = _with(atoms, calc)
            s.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
            if relax_ions and len(s) > 1:
                s = relax(s, calc, cell=False)
            stresses.append(s.get_stress(voigt=True))
        strain = 2 * delta if a == b else 4 * delta  # Voigt shear strain γ = 2ε
        c[:, j] = (stresses[0] - stresses[1]) / strain * GPA
    c = 0.5 * (c + c.T)
    c11 = float(np.mean([c[0, 0], c[1, 1], c[2, 2]]))
    c12 = float(np.mean([c[0, 1], c[0, 2], c[1, 2]]))
    c44 = float(np.mean([c[3, 3], c[4, 4], c[5, 5]]))
    return {"C": c.tolist(), "C11": c11, "C12": c12, "C44": c44, "cauchy_pressure": c12 - c44,
            "bulk_modulus_from_C": (c11 + 2 * c12) / 3}


def vacancy_formation_energy(atoms: Atoms, calc, repeat: Sequence[int] = (2, 2, 2)) -> Dict[str, Any]:
    """E_f = E(N-1, relaxed at the bulk cell) - (N-1)/N E(N) (eV) in the ``repeat`` supercell."""
    bulk = _with(atoms.repeat(tuple(repeat)), calc)
    e_bulk = bulk.get_potential_energy()
    n = len(bulk)
    defect = bulk.copy()
    del defect[0]
    defect = relax(defect, calc, cell=False)
    return {"vacancy_formation_energy": float(defect.get_potential_energy() - (n - 1) / n * e_bulk),
            "supercell_atoms": n}


def surface_energy(atoms: Atoms, calc, miller: Sequence[int], layers: int = 6,
                   vacuum: float = 8.0) -> Dict[str, Any]:
    """γ = (E_slab − N e_bulk) / 2A of a relaxed slab, in eV/Å² and J/m²."""
    from ase.build import surface

    e_bulk = _with(atoms, calc).get_potential_energy() / len(atoms)
    slab = surface(atoms, tuple(int(i) for i in miller), layers, vacuum=vacuum)
    slab.pbc = True
    slab = relax(slab, calc, cell=False)
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    gamma = (slab.get_potential_energy() - len(slab) * e_bulk) / (2 * area)
    return {"miller": "".join(str(int(i)) for i in miller), "surface_energy_eV_per_A2": float(gamma),
            "surface_energy_J_per_m2": float(gamma * 16.021766), "slab_atoms": len(slab)}


def phonons(atoms: Atoms, calc, supercell: Sequence[int] = (2, 2, 2), distance: float = 0.01,
            points: int = 40) -> Dict[str, Any]:
    """Phonons by finite displacements with phonopy: frequencies (THz) along the standard band
    path of the cell (ASE's ``bandpath``) and at its special points, and the density of states."""
    try:
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms
    except ImportError:
        raise ImportError("phonons need phonopy: pip install \"mlip[validate]\" (or pip install phonopy)") from None
    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                        scaled_positions=atoms.get_scaled_positions())
    # primitive_matrix "P": q-points are in the reciprocal cell of the structure as given
    phonon = Phonopy(unit, supercell_matrix=np.diag(list(supercell)), primitive_matrix="P")
    phonon.generate_displacements(distance=distance)
    forces = []
    for sc in phonon.supercells_with_displacements or []:
        a = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        a.calc = calc
        forces.append(a.get_forces().copy())
    phonon.forces = forces
    phonon.produce_force_constants()
    path = atoms.cell.bandpath(npoints=points)
    phonon.run_qpoints(path.kpts)
    assert phonon.qpoints is not None
    freqs = np.asarray(phonon.qpoints.frequencies)
    x, special_x, labels = path.get_linear_kpoint_axis()
    special: Dict[str, List[float]] = {}
    for label, sx in zip(labels, special_x):
        k = int(np.argmin(np.abs(np.asarray(x) - sx)))
        special.setdefault(label, [float(f) for f in np.sort(freqs[k])])
    phonon.run_mesh([12, 12, 12], is_gamma_center=True)
    phonon.run_total_dos()
    total = phonon.total_dos
    assert total is not None
    return {"path": path.path, "x": list(map(float, x)), "special_x": list(map(float, special_x)), "labels": labels,
            "frequencies": freqs.tolist(), "special_points": special,
            "dos_frequencies": np.asarray(total.frequency_points).tolist(),
            "dos": np.asarray(total.dos).tolist(), "min_frequency": float(freqs.min())}


def md_properties(atoms: Atoms, calc, temperature: float, steps: int = 2000, timestep_fs: float = 2.0,
                  equilibration: int = 500, r_max: Optional[float] = None, bins: int = 100,
                  seed: int = 0, nve_steps: int = 500, friction_per_fs: float = 0.002) -> Dict[str, Any]:
    """NVT (Langevin) MD: radial distribution function g(r) over the production steps, the
    self-diffusion coefficient D from the slope of the mean squared displacement (Å²/ps; 6 D t),
    the mean temperature, and the stability: the first time (ps) two atoms came closer than 0.5 Å
    or the temperature exceeded 3x the target (None if the run survived). Then, from the last NVT
    state, ``nve_steps`` of NVE (velocity Verlet, same time step): the drift of the total energy
    (slope of a straight-line fit, meV/atom/ps) and its standard deviation (meV/atom), which show
    whether forces are the gradient of a smooth energy (None when the NVT run failed). The Langevin
    friction is ``friction_per_fs`` (1/fs; default 0.002, a 500 fs coupling: weak, so that it
    barely damps diffusion; the mean temperature is reported beside the target)."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    a = _with(atoms, calc)
    thermalize_momenta(a, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = Langevin(a, timestep_fs * units.fs, temperature_K=temperature, friction=friction_per_fs / units.fs,
                   fixcm=False, rng=np.random.default_rng(seed + 1))
    r_max = r_max or min(6.0, 0.49 * min(np.linalg.norm(a.cell[:], axis=1)))
    edges = np.linspace(0, r_max, bins + 1)
    hist = np.zeros(bins)
    samples, times, msd, temps = 0, [], [], []
    failed_at = None
    ref = None
    unwrapped = a.positions.copy()
    previous = a.positions.copy()
    for step in range(1, steps + 1):
        dyn.run(1)
        disp = a.positions - previous
        disp -= np.round(disp @ np.linalg.inv(a.cell[:])) @ a.cell[:]  # minimum image: unwrap
        unwrapped += disp
        previous = a.positions.copy()
        d = a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)]
        temp = a.get_temperature()
        if failed_at is None and ((len(d) and d.min() < 0.5) or temp > 3 * temperature):
            failed_at = step * timestep_fs / 1000
            break
        if step == equilibration:
            ref = unwrapped.copy()
        if step > equilibration and step % 5 == 0:
            hist += np.histogram(d, edges)[0]
            samples += 1
            times.append((step - equilibration) * timestep_fs / 1000)
            msd.append(float(((unwrapped - ref) ** 2).sum(axis=1).mean()))
            temps.append(temp)
    r = 0.5 * (edges[1:] + edges[:-1])
    shell = 4 * np.pi * r ** 2 * np.diff(edges)
    density = len(a) / a.get_volume()
    g = hist / max(samples, 1) / (len(a) / 2) / (shell * density) if samples else np.zeros(bins)
    slope = float(np.polyfit(times, msd, 1)[0]) if len(times) > 2 else float("nan")
    drift = fluctuation = None
    if failed_at is None and nve_steps > 0:
        from ase.md.verlet import VelocityVerlet

        nve = VelocityVerlet(a, timestep_fs * units.fs)
        t_nve, e_nve = [], []
        for step in range(nve_steps + 1):
            if step:
                nve.run(1)
            t_nve.append(step * timestep_fs / 1000)
            e_nve.append(a.get_total_energy() / len(a) * 1000)  # meV/atom
        drift = float(np.polyfit(t_nve, e_nve, 1)[0])
        fluctuation = float(np.std(e_nve))
    return {"nve_drift_meV_per_atom_ps": drift, "nve_energy_std_meV_per_atom": fluctuation,
            "temperature": temperature, "r": r.tolist(), "g": g.tolist(), "diffusion_A2_per_ps": slope / 6,
            "mean_temperature": float(np.mean(temps)) if temps else float("nan"),
            "failed_at_ps": failed_at, "simulated_ps": steps * timestep_fs / 1000 if failed_at is None else failed_at,
            "first_peak_r": float(r[int(np.argmax(g))]) if samples else float("nan")}


def dimer_curves(atoms: Atoms, calc, r_min: float = 0.3, r_max: float = 6.0, points: int = 120,
                 collision_energies: Sequence[float] = (10.0, 100.0)) -> Dict[str, Any]:
    """Short-range repulsion, what keeps atoms apart in hot MD and cascades: the energy of an
    isolated dimer of each pair of elements in ``atoms``, V(r) = E(r) - E(r_max) (eV), on ``points``
    distances from ``r_min`` to ``r_max`` (Å). Per pair: the closest approach (Å) of a head-on
    collision at each of ``collision_energies`` (eV, centre-of-mass frame: the largest r, coming in
    from r_max, where V(r) reaches that energy; None when it never does, so the atoms pass through
    each other), and ``hole_below`` (Å): the largest r inside the potential's minimum where V drops
    again as the atoms come closer (None when V rises all the way in), the bond being the lowest V
    beyond half the sum of the covalent radii."""
    from ase.data import atomic_numbers, covalent_radii

    elements = sorted(set(atoms.get_chemical_symbols()))
    r = np.linspace(r_min, r_max, points)
    out: Dict[str, Any] = {"r": r.tolist(), "pairs": {}}
    for a_i, first in enumerate(elements):
        for second in elements[a_i:]:
            energies = []
            for d in r:
                dimer = Atoms(f"{first}{second}", positions=[[0, 0, 0], [0, 0, float(d)]], cell=np.zeros((3, 3)),
                              pbc=False)
                dimer.calc = calc
                energies.append(float(dimer.get_potential_energy()))
            v = np.array(energies) - energies[-1]
            closest: Dict[str, Optional[float]] = {}
            for e in collision_energies:
                above = np.nonzero(v >= e)[0]
                closest[f"{e:g}"] = float(r[above[-1]]) if len(above) else None
            # the bond: the lowest V beyond half the sum of covalent radii (a deeper hole closer in is found
            # below as one; a minimum that is itself spurious shows as minimum_r far from the reference's)
            outer = r >= 0.5 * (covalent_radii[atomic_numbers[first]] + covalent_radii[atomic_numbers[second]])
            k_min = int(np.nonzero(outer)[0][0] + np.argmin(v[outer])) if outer.any() else int(np.argmin(v))
            drops = np.nonzero(np.diff(v[:k_min + 1]) > 0)[0]  # V(r_k) < V(r_k+1) inside the minimum: a hole
            out["pairs"][f"{first}-{second}"] = {
                "energy": v.tolist(), "closest_approach": closest,
                "minimum_r": float(r[k_min]), "minimum_energy": float(v[k_min]),
                "hole_below": float(r[drops[-1] + 1]) if len(drops) else None}
    return out


def high_symmetry_list(result: Dict[str, Any]) -> List[Tuple[str, float]]:
    """(point/branch, THz) pairs of the phonon frequencies at special points, for tables."""
    out = []
    for label, freqs in result["special_points"].items():
        for k, f in enumerate(freqs):
            out.append((f"{label}[{k}]", f))
    return out
