"""Run a command and follow the memory of its whole process tree by polling ``/proc``.

Per process: ``VmHWM`` (the kernel's peak resident set, exact up to the last poll before exit) and
the largest ``RssAnon`` (private heap, what the process itself allocated) and ``RssFile``
(file-backed pages: shared libraries and memory-mapped files such as the LMDB map, shared with
the page cache and other processes, reclaimable) seen while polling, and the largest proportional
set sizes ``Pss``/``Pss_Anon`` (shared pages divided among the processes mapping them, so that
forked workers' copy-on-write pages are not counted once per process), read about once a second. A process is labelled
``main`` (the command), ``rank <r>`` (a DDP rank: ``LOCAL_RANK`` in its environment) or
``child`` (loader or preprocessing workers), with its parent's label.
"""

import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "Pss", "Pss_Anon", "Pss_File")
#: seconds between reads of smaps_rollup (proportional set sizes: shared pages divided among their users)
PSS_INTERVAL = 1.0


def _status(pid: int, pss: bool = False) -> Optional[Dict[str, int]]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        if pss:
            text += Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0]) * 1024  # kB -> bytes
    return out


def _children() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "main"
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        env = []
    for item in env:
        if item.startswith(b"LOCAL_RANK="):
            return f"rank {item.split(b'=', 1)[1].decode()}"
    return "child"


def run_monitored(cmd: List[str], env: Dict[str, str], log_path: Path, interval: float = 0.2,
                  timeout: Optional[float] = None, cwd: Optional[str] = None) -> Dict:
    """Run ``cmd``; returns ``{"rc", "wall_s", "processes": [{pid, role, parent_role, peak fields}],
    "main_anon_series": [(seconds, RssAnon bytes) of the command's own process, about once a second]}``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env={**env, "MLIP_BENCH_T0": repr(t0)}, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd)
        seen: Dict[int, Dict] = {}
        series: List = []  # (seconds, RssAnon of the command's own process), about once a second
        last_pss = 0.0
        while proc.poll() is None:
            pss = time.time() - last_pss >= PSS_INTERVAL
            if pss:
                last_pss = time.time()
            if timeout is not None and time.time() - t0 > timeout:
                proc.kill()
                break
            kids = _children()
            todo, tree = [proc.pid], []
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo += kids.get(pid, [])
            for pid in tree:
                st = _status(pid, pss)
                if st is None:
                    continue
                rec = seen.get(pid)
                if rec is None:
                    parent = next((p for p, ks in kids.items() if pid in ks), None)
                    rec = seen[pid] = {"pid": pid, "role": _role(pid, proc.pid), "parent": parent}
                for key, value in st.items():
                    rec[key] = max(rec.get(key, 0), value)
                if pid == proc.pid and (not series or time.time() - t0 - series[-1][0] >= 1.0):
                    series.append((round(time.time() - t0, 1), st.get("RssAnon", 0)))
            time.sleep(interval)
        rc = proc.wait()
    wall = time.time() - t0
    for rec in seen.values():
        rec["parent_role"] = seen[rec["parent"]]["role"] if rec["parent"] in seen else None
    return {"rc": rc, "wall_s": wall, "cmd": cmd, "log": str(log_path), "processes": list(seen.values()),
            "main_anon_series": series}


def peaks_by_role(processes: List[Dict]) -> Dict[str, Dict[str, int]]:
    """The largest value of each field over the processes of each role (``main``, ``rank r``,
    ``child of <role>``), with their count."""
    out: Dict[str, Dict[str, int]] = {}
    for p in processes:
        role = p["role"] if p["role"] != "child" else f"child of {p['parent_role']}"
        agg = out.setdefault(role, {"count": 0})
        agg["count"] += 1
        for key in FIELDS:
            agg[key] = max(agg.get(key, 0), p.get(key, 0))
    return out
