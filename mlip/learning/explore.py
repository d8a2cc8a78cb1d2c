"""Exploration: Langevin MD with a committee model (``committee.pt`` through ``MLIPCalculator``),
recording candidate frames with their uncertainty and stopping a trajectory when the uncertainty
passes a threshold (the model no longer knows where it is going)."""

from typing import Any, Dict, List, Sequence

import numpy as np
from ase import Atoms


def run_trajectory(start: Atoms, model_path: str, temperature: float, steps: int, interval: int,
                   timestep_fs: float, threshold: float, seed: int, group: str) -> Dict[str, Any]:
    """MD from ``start`` for ``steps`` steps in all: a candidate every ``interval`` steps with
    ``info["max_force_std"]`` (eV/Å, the largest per-atom force uncertainty, calibrated) and
    ``info["energy_std"]`` (eV/atom). When a snapshot's ``max_force_std`` passes ``threshold``
    (that frame is kept: it is the most useful one) or atoms collapse, the trajectory stops and a
    new one starts from ``start`` with new velocities, until the steps are spent. Returns the
    candidates, the steps run, how many trajectories the uncertainty stopped, and the mean number
    of steps a trajectory lasted."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from mlip.calculator import MLIPCalculator

    calc = MLIPCalculator(model_path)
    candidates: List[Atoms] = []
    step, segment, stops, lengths = 0, 0, 0, []
    while step < steps:
        atoms = start.copy()
        atoms.calc = calc
        thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed + 7919 * segment))
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.02, fixcm=False,
                       rng=np.random.default_rng(seed + 7919 * segment + 1))
        length = 0
        while step < steps:
            try:
                dyn.run(interval)
            except ValueError:  # overlapping atoms: the model let atoms collapse
                stops += 1
                break
            step += interval
            length += interval
            results = atoms.calc.results
            force_std = float(np.linalg.norm(results["forces_std"], axis=1).max())
            snap = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            snap.info.update(max_force_std=force_std, energy_std=float(results["energy_std"]) / len(atoms),
                             temperature=temperature, step=length, config_type=f"al_md_{temperature:g}K",
                             group=f"{group}_{segment}")
            candidates.append(snap)
            if force_std > threshold:
                stops += 1
                break
        lengths.append(length)
        segment += 1
    return {"candidates": candidates, "steps": step, "trajectories": segment, "stopped_by_uncertainty": stops,
            "mean_steps_per_trajectory": float(np.mean(lengths)) if lengths else 0.0, "temperature": temperature}


def explore(starts: Sequence[Atoms], model_path: str, temperatures: Sequence[float], steps: int, interval: int,
            timestep_fs: float, threshold: float, seed: int, tag: str) -> List[Dict[str, Any]]:
    """A trajectory from every start structure at every temperature."""
    out = []
    for t_index, temperature in enumerate(temperatures):
        for s_index, start in enumerate(starts):
            out.append(run_trajectory(start, model_path, float(temperature), steps, interval, timestep_fs, threshold,
                                      seed + 100 * t_index + s_index, f"{tag}_{temperature:g}K_{s_index}"))
    return out
