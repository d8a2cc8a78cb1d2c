"""What every benchmark script records: the machine, the mlip commit, and appending its dated
section to docs/benchmarks.md."""

import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = "# Benchmarks\n\nEach section is appended by the script named in it.\n"


def machine() -> str:
    """CPU model, logical CPUs, threads per core, torch and Python versions (from lscpu)."""
    info = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    import torch

    cpu = info.get("Model name") or platform.processor() or "unknown CPU"
    return (f"{cpu}, {info.get('CPU(s)', os.cpu_count())} CPUs ({info.get('Thread(s) per core', '?')} thread(s) "
            f"per core), torch {torch.__version__}, Python {platform.python_version()}")


def commit() -> str:
    """Short hash of the checkout's HEAD, flagged when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return (head.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def append_section(path: str, text: str) -> None:
    """Append ``text`` to the markdown file ``path``, creating it with the header if needed."""
    out = Path(path)
    if not out.exists():
        out.write_text(HEADER)
    with open(out, "a") as fh:
        fh.write(text)


def publish(title: str, command: str, details: list, body: list, output: str, write: bool = True) -> str:
    """A dated section: ``## title, date``, the command (with the commit), the machine and the load
    average, the ``details`` bullets, then the ``body`` lines (tables, notes). Printed, and appended
    to ``output`` when ``write``; returns the text."""
    import datetime

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"\n## {title}, {datetime.date.today().isoformat()}\n",
             f"- command: `{command}` (mlip commit {commit()})",
             f"- machine: {machine()}; load average {load} at the end",
             *(f"- {d}" for d in details), "", *body, ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        append_section(output, text)
    return text
