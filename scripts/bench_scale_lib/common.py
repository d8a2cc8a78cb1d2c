"""Paths, results files and the environment of timed jobs."""

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict

LIB = Path(__file__).resolve().parent
SCRIPTS = LIB.parent
REPO = SCRIPTS.parent


def job_env(threads: int = 1, **extra: str) -> Dict[str, str]:
    """Environment of a timed job: ``threads`` OpenMP/MKL threads, this checkout's mlip and the
    scripts folder (for ``bench_scale_lib.first_step``) on PYTHONPATH."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(SCRIPTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                                     else []))
    env["HYDRA_FULL_ERROR"] = "1"
    env.update(extra)
    return env


def save(work: Path, name: str, data: Any) -> None:
    out = work / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, default=str))


def load(work: Path, name: str) -> Any:
    path = work / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
