"""Cu-Ag EMT data in parallel chunks: one extxyz file per chunk, seeds fixed per chunk.

Each base structure is a 3x3x3 conventional fcc cell (108 atoms) of random Ag fraction with the
Vegard lattice constant; it yields either a few static variants (one EMT call each: ``strain``
isotropic + shear, ``rattle``, ``vacancy`` with 1-4 atoms removed) or, with probability
``md_probability``, a short Langevin run (``md``: a snapshot every ``md_interval`` steps). Frames
carry EMT energy, forces and stress, ``config_type`` and the base's id ``traj``.
"""

import time
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List

import numpy as np

A_CU, A_AG = 3.61, 4.09  # Å, fcc lattice constants (Vegard's law in between)
STATIC_PER_BASE = 4
MD_SNAPSHOTS = 8


def _base(rng: np.random.Generator):
    from ase.build import bulk

    x = float(rng.choice([0.0, 1.0, rng.uniform(0.0, 1.0)], p=[0.1, 0.1, 0.8]))
    atoms = bulk("Cu", "fcc", a=(1 - x) * A_CU + x * A_AG, cubic=True).repeat((3, 3, 3))
    atoms.numbers = np.where(rng.random(len(atoms)) < x, 47, 29)
    return atoms


def _strain(atoms, rng: np.random.Generator, iso: float, shear: float) -> None:
    eps = np.eye(3) * (1 + rng.uniform(-iso, iso))
    off = rng.uniform(-shear, shear, size=3)
    eps[0, 1] = eps[1, 0] = off[0]
    eps[0, 2] = eps[2, 0] = off[1]
    eps[1, 2] = eps[2, 1] = off[2]
    atoms.set_cell(atoms.cell @ eps, scale_atoms=True)


def _label(atoms, calc, config_type: str, traj: str):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = calc
    stress = atoms.get_stress()  # EMT computes energy, forces and stress in one call
    frame = atoms.copy()
    frame.arrays.pop("momenta", None)
    frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                       stress=stress)
    frame.info.update(config_type=config_type, traj=traj)
    atoms.calc = None
    return frame


def _static(base, rng, calc, traj: str) -> List:
    out = []
    for _ in range(STATIC_PER_BASE):
        atoms = base.copy()
        kind = str(rng.choice(["strain", "rattle", "vacancy"], p=[0.3, 0.4, 0.3]))
        if kind == "strain":
            _strain(atoms, rng, 0.05, 0.04)
            atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
        elif kind == "rattle":
            _strain(atoms, rng, 0.01, 0.0)
            atoms.positions += rng.normal(0, rng.uniform(0.05, 0.2), atoms.positions.shape)
        else:
            del atoms[sorted(rng.choice(len(atoms), size=int(rng.integers(1, 5)), replace=False))]
            atoms.positions += rng.normal(0, rng.uniform(0.03, 0.1), atoms.positions.shape)
        out.append(_label(atoms, calc, kind, traj))
    return out


def _md(base, rng, calc, traj: str, interval: int) -> List:
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = base.copy()
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    temperature = float(rng.uniform(300, 1500))
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    atoms.calc = calc
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
    out = []
    for _ in range(MD_SNAPSHOTS):
        dyn.run(interval)
        out.append(_label(atoms.copy(), calc, "md", traj))
    return out


def make_chunk(args) -> Dict:
    """Write chunk ``chunk`` (``n_frames`` frames, seed ``seed + chunk``) to ``out_dir``; returns counts
    and timing."""
    out_dir, chunk, n_frames, seed, md_probability, md_interval = args
    import ase.io
    from ase.calculators.emt import EMT

    t0, c0 = time.time(), time.process_time()
    rng = np.random.default_rng(seed + chunk)
    calc = EMT()
    frames: List = []
    k = 0
    while len(frames) < n_frames:
        traj = f"c{chunk:04d}b{k:05d}"
        base = _base(rng)
        if rng.random() < md_probability:
            frames += _md(base, rng, calc, traj, md_interval)
        else:
            frames += _static(base, rng, calc, traj)
        k += 1
    frames = frames[:n_frames]
    path = Path(out_dir) / f"chunk_{chunk:04d}.extxyz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".extxyz.part")
    with open(tmp, "w") as fh:
        ase.io.write(fh, frames, format="extxyz")
    tmp.rename(path)
    return {"chunk": chunk, "frames": len(frames), "atoms": sum(len(f) for f in frames), "wall_s": time.time() - t0,
            "cpu_s": time.process_time() - c0, "md_frames": sum(f.info["config_type"] == "md" for f in frames)}


def generate(out_dir: str, n_chunks: int, chunk_frames: int, processes: int = 2, seed: int = 12,
             md_probability: float = 0.02, md_interval: int = 5) -> Dict:
    """Chunks 0..n_chunks-1 under ``out_dir`` (existing chunk files are kept, not regenerated)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    todo = [(out_dir, c, chunk_frames, seed, md_probability, md_interval) for c in range(n_chunks)
            if not (Path(out_dir) / f"chunk_{c:04d}.extxyz").exists()]
    t0 = time.time()
    with get_context("fork").Pool(processes) as pool:
        results = list(pool.imap_unordered(make_chunk, todo))
    return {"dir": out_dir, "chunks_made": len(results), "processes": processes, "wall_s": time.time() - t0,
            "frames": sum(r["frames"] for r in results), "atoms": sum(r["atoms"] for r in results),
            "md_frames": sum(r["md_frames"] for r in results), "cpu_s": sum(r["cpu_s"] for r in results),
            "chunk_frames": chunk_frames, "seed": seed, "md_probability": md_probability, "md_interval": md_interval}
