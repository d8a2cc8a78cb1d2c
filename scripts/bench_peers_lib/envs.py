"""One virtual environment per peer, created on first use in a cache folder outside the repo.

MACE pins ``e3nn==0.4.4`` and NequIP needs ``e3nn>=0.6``, so they cannot share an environment.
Each is made with ``python -m venv``; torch 2.13.0 is installed first with a constraints file
pinning ``torch==2.13.0+cpu`` (a bare torch requirement pulls the CUDA build and several GB of
CUDA packages), then the peer under the same constraints, so pip never replaces torch.
A finished environment is marked by ``bench-env.json`` (package versions, creation time) and is
reused as is; delete the folder to rebuild it.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

#: peer -> pip requirement of the peer itself
PEER_REQUIREMENTS = {"mace": "mace-torch==0.3.16", "nequip": "nequip==0.19.*"}
TORCH_VERSION = "2.13.0"
#: distributions whose versions are recorded for the report
RECORDED = ("torch", "e3nn", "mace-torch", "nequip", "ase", "lightning", "numpy")


def venv_python(cache: Path, peer: str) -> Path:
    return cache / peer / "bin" / "python"


def ensure_env(peer: str, cache: Path, torch_spec: str = f"torch=={TORCH_VERSION}",
               torch_pin: str = f"torch=={TORCH_VERSION}+cpu", log=print) -> dict:
    """The environment of ``peer`` (created if missing): {'python', 'versions', 'created_s'}."""
    env_dir = cache / peer
    marker = env_dir / "bench-env.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        info["python"] = str(venv_python(cache, peer))
        return info
    cache.mkdir(parents=True, exist_ok=True)
    constraints = cache / "constraints.txt"
    constraints.write_text(torch_pin + "\n")
    py = venv_python(cache, peer)
    t0 = time.time()
    pip_log = cache / f"{peer}-pip.log"
    log(f"[env] creating {env_dir} ({PEER_REQUIREMENTS[peer]}); pip output in {pip_log}")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(env_dir)],
        [str(py), "-m", "pip", "install", "--upgrade", "pip"],
        [str(py), "-m", "pip", "install", torch_spec, "-c", str(constraints)],
        [str(py), "-m", "pip", "install", PEER_REQUIREMENTS[peer], "-c", str(constraints)],
    ]
    for cmd in steps:
        with open(pip_log, "a") as fh:
            res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise RuntimeError(f"creating the {peer} environment failed at: {' '.join(cmd)} (see {pip_log})")
    versions = installed_versions(py)
    if not versions.get("torch", "").startswith(TORCH_VERSION):
        raise RuntimeError(f"{peer} environment has torch {versions.get('torch')}, expected {TORCH_VERSION}")
    info = {"peer": peer, "requirement": PEER_REQUIREMENTS[peer], "versions": versions,
            "created_s": round(time.time() - t0, 1), "created": time.strftime("%Y-%m-%d %H:%M")}
    marker.write_text(json.dumps(info, indent=1))
    log(f"[env] {peer} ready in {info['created_s']:.0f} s: {versions}")
    info["python"] = str(py)
    return info


def installed_versions(python: Path) -> dict:
    code = ("import json, importlib.metadata as m\n"
            f"names = {list(RECORDED)!r}\n"
            "out = {}\n"
            "for n in names:\n"
            "    try:\n"
            "        out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError:\n"
            "        pass\n"
            "print(json.dumps(out))")
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)
