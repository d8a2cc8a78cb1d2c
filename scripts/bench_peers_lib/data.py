"""The one split, E0 and set of label files that every model of the peer benchmark trains on.

Each dataset is written once per run as ``train.extxyz``, ``val.extxyz`` and ``test.extxyz``
(extended XYZ, eV, Å, eV/Å, stress in eV/Å³ with ASE's sign). Every frame carries its labels
twice, so that each tool reads them where it looks by default and all read the same numbers:

- as ASE calculator values ``energy``, ``forces``, ``stress`` (read by mlip and NequIP);
- as ``REF_energy`` / ``REF_stress`` (``atoms.info``) and ``REF_forces`` (``atoms.arrays``),
  MACE 0.3's default keys.

Validation frames: a seeded random ``val_fraction`` of the training file (same frames for all).
E0 (eV per atom of each element): free-atom energies when the dataset provides them, else a
least-squares fit of the training-split energies against composition; passed explicitly to
every tool so that none computes its own.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, chemical_symbols
from ase.io import read, write
from ase.stress import full_3x3_to_voigt_6_stress

#: name -> (training file, test file, isolated-atom file or None, batch size), under --data-root
DATASETS = {
    "si": ("mlearn/Si_training.extxyz", "mlearn/Si_test.extxyz", None, 8),
    "ge": ("mlearn/Ge_training.extxyz", "mlearn/Ge_test.extxyz", None, 8),
    "li": ("mlearn/Li_training.extxyz", "mlearn/Li_test.extxyz", None, 8),
    "ethanol": ("rmd17_ethanol/train.xyz", "rmd17_ethanol/test_MD.xyz", "rmd17_ethanol/isolated_atoms.xyz", 16),
}


@dataclass
class PreparedData:
    """Paths and facts about one prepared dataset (all paths absolute)."""

    name: str
    train: str
    val: str
    test: str
    n_train: int
    n_val: int
    n_test: int
    species: List[str]                      # chemical symbols, sorted by atomic number
    e0: Dict[str, float]                    # eV per atom, by symbol
    e0_source: str                          # "isolated atoms (<file>)" or "least squares on train split"
    has_stress: bool                        # every training frame is periodic and has a stress label
    periodic: bool
    batch_size: int
    atoms_per_frame: List[int] = field(default_factory=list)  # of the test frames

    def to_dict(self) -> dict:
        return asdict(self)


def _labels(atoms: Atoms) -> dict:
    """Energy (eV), forces (eV/Å), stress (eV/Å³ Voigt, or None) of a frame as read by ASE."""
    calc = atoms.calc
    results = dict(calc.results) if calc is not None else {}
    energy = results.get("energy", atoms.info.get("energy"))
    forces = results.get("forces", atoms.arrays.get("forces"))
    stress = results.get("stress", atoms.info.get("stress"))
    if energy is None or forces is None:
        raise ValueError("frame without energy or forces")
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3) or stress.size == 9:
            stress = full_3x3_to_voigt_6_stress(stress.reshape(3, 3))  # xx yy zz yz xz xy
    return {"energy": float(energy), "forces": np.asarray(forces, dtype=float), "stress": stress}


def _clean_frame(atoms: Atoms) -> Atoms:
    """A copy carrying only positions, cell, pbc, config_type and the labels in both spellings."""
    lab = _labels(atoms)
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if "config_type" in atoms.info:
        out.info["config_type"] = str(atoms.info["config_type"])
    periodic = bool(np.all(atoms.pbc))
    stress = lab["stress"] if periodic else None
    out.info["REF_energy"] = lab["energy"]
    out.arrays["REF_forces"] = lab["forces"].copy()
    results = {"energy": lab["energy"], "forces": lab["forces"].copy()}
    if stress is not None:
        out.info["REF_stress"] = stress.copy()
        results["stress"] = stress.copy()
    out.calc = SinglePointCalculator(out, **results)
    return out


def fit_e0(frames: List[Atoms], species: List[str]) -> Dict[str, float]:
    """Least-squares E0 per element from total energies (eV); minimum-norm when degenerate."""
    counts = np.array([[np.sum(f.numbers == atomic_numbers[s]) for s in species] for f in frames], dtype=float)
    energies = np.array([_labels(f)["energy"] for f in frames])
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {s: float(c) for s, c in zip(species, coef)}


def isolated_e0(path: Path, species: List[str]) -> Optional[Dict[str, float]]:
    """E0 from one-atom non-periodic frames of ``path``, or None if they miss an element."""
    e0 = {}
    for atoms in read(str(path), index=":"):
        if len(atoms) == 1 and not np.any(atoms.pbc):
            e0[atoms.get_chemical_symbols()[0]] = _labels_energy_only(atoms)
    if not all(s in e0 for s in species):
        return None
    return {s: e0[s] for s in species}


def _labels_energy_only(atoms: Atoms) -> float:
    if atoms.calc is not None and "energy" in atoms.calc.results:
        return float(atoms.calc.results["energy"])
    return float(atoms.info["energy"])


def prepare(name: str, data_root: Path, out_dir: Path, seed: int = 0, val_fraction: float = 0.1) -> PreparedData:
    """Read the dataset, split train/val with ``seed``, write the three label files to ``out_dir``."""
    train_rel, test_rel, iso_rel, batch_size = DATASETS[name]
    train_path, test_path = data_root / train_rel, data_root / test_rel
    for p in (train_path, test_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: dataset file not found (set --data-root)")
    frames = [_clean_frame(a) for a in read(str(train_path), index=":") if len(a) > 1]
    test = [_clean_frame(a) for a in read(str(test_path), index=":") if len(a) > 1]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frames))
    n_val = max(1, int(round(val_fraction * len(frames))))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    train = [frames[i] for i in train_idx]
    val = [frames[i] for i in val_idx]

    zs = sorted({int(z) for f in frames + test for z in f.numbers})
    species = [chemical_symbols[z] for z in zs]
    e0 = isolated_e0(data_root / iso_rel, species) if iso_rel else None
    e0_source = f"isolated atoms ({iso_rel})"
    if e0 is None:
        e0, e0_source = fit_e0(train, species), "least squares on the training split"

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, fr in (("train", train), ("val", val), ("test", test)):
        paths[split] = out_dir / f"{split}.extxyz"
        write(str(paths[split]), fr, format="extxyz")
    periodic = all(bool(np.all(f.pbc)) for f in frames)
    has_stress = periodic and all("stress" in f.calc.results for f in frames)
    return PreparedData(
        name=name, train=str(paths["train"]), val=str(paths["val"]), test=str(paths["test"]),
        n_train=len(train), n_val=len(val), n_test=len(test), species=species, e0=e0, e0_source=e0_source,
        has_stress=has_stress, periodic=periodic, batch_size=batch_size,
        atoms_per_frame=[len(f) for f in test])


def read_references(test_file: str) -> dict:
    """Reference labels of the prepared test file: lists of energy (eV), forces (eV/Å, n x 3),
    stress (eV/Å³ Voigt or None) and atom counts, in file order."""
    ref = {"energy": [], "forces": [], "stress": [], "n_atoms": []}
    for atoms in read(test_file, index=":"):
        lab = _labels(atoms)
        ref["energy"].append(lab["energy"])
        ref["forces"].append(lab["forces"])
        ref["stress"].append(lab["stress"] if bool(np.all(atoms.pbc)) else None)
        ref["n_atoms"].append(len(atoms))
    return ref
