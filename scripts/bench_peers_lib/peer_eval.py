"""The common evaluator of the peer benchmark: one ASE calculator per tool, the same loop for all.

Runs inside the tool's own environment (it imports only numpy, torch, ase and the tool's
calculator), so it must not import anything else from this folder:

    <venv>/bin/python peer_eval.py --tool mace --model m.model --test test.extxyz \
        --out pred.json --threads 2 [--timing] [--dtype float32]

Writes JSON: per test frame the predicted energy (eV), forces (eV/Å) and, for periodic frames,
stress (eV/Å³, Voigt, ASE sign); the parameter count; and with ``--timing`` the time per atom
of an energy+forces call on a rattled 216-atom diamond Si cell (3x3x3 cubic cells, a = 5.43 Å,
rattle 0.05 Å), after 5 warm-up calls, averaged over 30 calls that each move the atoms.
Scoring happens in the main script, identically for every tool.
"""

import argparse
import json
import time

import numpy as np


def make_calculator(tool: str, model: str, dtype: str):
    """(ASE calculator, parameter count) for a trained model of ``tool``."""
    if tool == "mlip":
        from mlip.calculator import MLIPCalculator

        calc = MLIPCalculator(model)
        return calc, sum(p.numel() for p in calc.potential.parameters())
    if tool == "mace":
        from mace.calculators import MACECalculator

        calc = MACECalculator(model_paths=model, device="cpu", default_dtype=dtype)
        return calc, sum(p.numel() for p in calc.models[0].parameters())
    if tool == "nequip":
        from nequip.integrations.ase import NequIPCalculator

        if model.endswith((".nequip.pt2", ".nequip.pth")):  # nequip-compile output
            calc = NequIPCalculator.from_compiled_model(model, device="cpu")
        else:  # a checkpoint or packaged model, run eagerly
            calc = NequIPCalculator._from_saved_model(model, device="cpu")
        return calc, sum(p.numel() for p in calc.model.parameters())
    raise ValueError(f"unknown tool {tool!r}")


def predict(calc, test_file: str) -> dict:
    from ase.io import read

    out = {"energy": [], "forces": [], "stress": []}
    for atoms in read(test_file, index=":"):
        atoms = atoms.copy()  # drops the stored labels: the calculator must compute everything
        atoms.calc = calc
        out["energy"].append(float(atoms.get_potential_energy()))
        out["forces"].append(np.asarray(atoms.get_forces(), dtype=float).tolist())
        out["stress"].append(np.asarray(atoms.get_stress(voigt=True), dtype=float).tolist()
                             if bool(np.all(atoms.pbc)) else None)
    return out


def si216():
    """The timing cell: 216-atom diamond Si (3x3x3 cubic cells, a = 5.43 Å), rattled 0.05 Å."""
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=0)
    return atoms


def time_si216(calc, warmup: int = 5, calls: int = 30) -> dict:
    """µs per atom per energy+forces call on ``si216()``, each call after a small random move."""
    atoms = si216()
    atoms.calc = calc
    rng = np.random.default_rng(0)
    base = atoms.get_positions().copy()
    for _ in range(warmup):
        atoms.set_positions(base + rng.normal(scale=0.01, size=base.shape))
        atoms.get_forces()
    t = time.perf_counter()
    for _ in range(calls):
        atoms.set_positions(base + rng.normal(scale=0.01, size=base.shape))
        atoms.get_potential_energy()
        atoms.get_forces()
    elapsed = time.perf_counter() - t
    return {"us_per_atom": elapsed / calls / len(atoms) * 1e6, "n_atoms": len(atoms), "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", required=True, choices=["mlip", "mace", "nequip"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    calc, n_params = make_calculator(args.tool, args.model, args.dtype)
    t = time.perf_counter()
    result = {"tool": args.tool, "model": args.model, "n_params": n_params, "predictions": predict(calc, args.test)}
    result["predict_s"] = time.perf_counter() - t
    if args.timing:
        result["timing"] = time_si216(calc)
    result["torch"] = torch.__version__
    with open(args.out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
