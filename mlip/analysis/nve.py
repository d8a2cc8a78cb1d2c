"""NVE molecular dynamics with ASE and the total-energy drift it shows.

A model whose forces are the exact negative gradient of a smooth energy conserves
E_tot = E_pot + E_kin under velocity Verlet up to an O(dt^2) fluctuation with no systematic
trend; a drift reveals forces inconsistent with the energy, a non-smooth cutoff, or a time step
too large for the potential.
"""

from typing import Dict

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet


def silicon_cell(repeat: int = 3, a: float = 5.43) -> Atoms:
    """Diamond Si, ``repeat`` x ``repeat`` x ``repeat`` conventional cells (216 atoms for 3)."""
    return bulk("Si", "diamond", a=a, cubic=True).repeat(repeat)


def nve_drift(atoms: Atoms, calc, steps: int, timestep_fs: float = 1.0, temperature_K: float = 1000.0,
              interval: int = 1, seed: int = 0) -> Dict[str, object]:
    """Run velocity Verlet from Maxwell-Boltzmann velocities (zero total momentum) and measure
    the total energy every ``interval`` steps.

    Returns ``time_ps`` and ``total_energy`` (eV/atom) series and ``drift_meV_per_atom`` (slope of a
    least-squares line through E_tot(t) times the run length), ``fluctuation_meV_per_atom`` (max -
    min of E_tot about that line), ``mean_temperature_K`` and ``max_force`` (eV/Å).
    """
    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    n = len(atoms)
    times, totals, temps, fmax = [], [], [], [0.0]
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)

    def record():
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        times.append(dyn.nsteps * timestep_fs / 1000.0)
        totals.append((epot + ekin) / n)
        temps.append(ekin / (1.5 * n * units.kB))
        fmax[0] = max(fmax[0], float(np.abs(atoms.get_forces()).max()))

    dyn.attach(record, interval=interval)
    dyn.run(steps)
    t = np.asarray(times)
    e = np.asarray(totals)
    slope, intercept = np.polyfit(t, e, 1)
    residual = e - (slope * t + intercept)
    return {"time_ps": t, "total_energy": e, "drift_meV_per_atom": float(slope * (t[-1] - t[0]) * 1000.0),
            "drift_meV_per_atom_per_ps": float(slope * 1000.0),
            "fluctuation_meV_per_atom": float((residual.max() - residual.min()) * 1000.0),
            "mean_temperature_K": float(np.mean(temps[len(temps) // 2:])), "max_force": fmax[0],
            "steps": steps, "timestep_fs": timestep_fs, "n_atoms": n}
