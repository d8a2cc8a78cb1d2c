"""The markdown section of ``bench_scale.py`` from ``<work>/results/*.json``."""

import time
from pathlib import Path
from typing import Dict, List, Optional

from .common import load

MB = 2 ** 20


def _mb(x: Optional[float]) -> str:
    return "-" if not x else f"{x / MB:,.0f}"


def _f(x: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _role(roles: Dict, name: str, key: str) -> Optional[int]:
    return roles.get(name, {}).get(key)


def _children(roles: Dict, parent: str) -> Dict:
    return roles.get(f"child of {parent}", {})


def generation(work: Path) -> str:
    g = load(work, "generate")
    if not g:
        return ""
    return (f"Data: {g['frames']:,} frames, {g['atoms']:,} atoms (Cu-Ag fcc 3x3x3 cells, 104-108 atoms; strain, "
            f"rattle, vacancy and {g['md_frames']} Langevin MD frames; EMT energy, forces, stress; `config_type` and "
            f"group `traj`), generated in {g['chunks_made']} chunks of {g['chunk_frames']} frames by "
            f"{g['processes']} processes in {g['wall_s']:.0f} s wall ({g['frames'] / g['wall_s']:.1f} frames/s; "
            f"{g['cpu_s']:.0f} s CPU; load average {g['load_before']} before, {g['load_after']} after: the other "
            f"engineer's tests shared the cores). The small set is a copy of the first chunks.\n")


def preprocessing(work: Path) -> str:
    rows = []
    for r in load(work, "preprocess") or []:
        roles = r["roles"]
        kids = _children(roles, "main")
        rows.append([Path(r["cmd_text"].split()[-3]).stem,
                     r["workers"], f"{r['frames']:,}", f"{r['atoms']:,}", f"{r['wall_s']:.1f}",
                     f"{r['frames_per_s']:.0f}", _mb(_role(roles, "main", "VmHWM")),
                     _mb(_role(roles, "main", "RssAnon")), _mb(_role(roles, "main", "RssFile")),
                     _mb(kids.get("VmHWM")), _mb(kids.get("RssAnon")), _mb(r["extxyz_bytes"]),
                     _mb(r["store_bytes"]), r["load_before"]])
    if not rows:
        return ""
    return _table(["set", "workers", "frames", "atoms", "wall s", "frames/s", "main peak RSS MB", "main anon MB",
                   "main file MB", "worker peak RSS MB", "worker anon MB", "extxyz MB", "store MB", "load before"],
                  rows) + ("\nCommand: `mlip preprocess <work>/<set>/*.extxyz --output <work>/<set>.mlipdata "
                           "--workers N --no-progress` (a fresh output each time; wall time includes start-up and "
                           "imports).\n")


def _train_row(r: Dict) -> List[List[str]]:
    out = []
    for rank in r["ranks"] or [None]:
        who = "main" if rank is None or rank["rank"] == 0 else f"rank {rank['rank']}"
        roles = r["roles"]
        kids = _children(roles, who)
        out.append([r["name"], r.get("size", ""), r["devices"], r["num_workers"],
                    "-" if rank is None else rank["rank"],
                    _f(rank and rank["first_step_since_launch"]),
                    _f(rank and (rank["fit_start"] - rank["process_start"])),
                    _f(rank and rank["steps_per_s"], "{:.2f}"),
                    _f(rank and rank.get("cpu_step_s") and 1 / rank["cpu_step_s"], "{:.2f}"),
                    _mb(max(_role(roles, who, "VmHWM") or 0, (rank or {}).get("memory_end", {}).get("VmHWM", 0))),
                    _mb(_role(roles, who, "RssAnon")),
                    _mb(_role(roles, who, "RssFile")), _mb(_role(roles, who, "Pss")),
                    _mb(rank and rank["memory_first_step"].get("RssAnon")),
                    (f"{kids['count']} x {_mb(kids.get('VmHWM'))} ({_mb(kids.get('RssAnon'))} anon, "
                     f"PSS {_mb(kids.get('Pss'))})" if kids else "-"), f"{r['wall_s']:.0f}", r["load_before"],
                    "ok" if r["rc"] == 0 else f"rc {r['rc']}"])
    return out


TRAIN_HEADER = ["run", "set", "ranks", "loader workers", "rank", "first step s (from launch)",
                "process start to fit s", "steps/s", "steps per CPU s", "peak RSS MB", "peak anon MB", "peak file MB",
                "peak PSS MB", "anon at 1st step MB",
                "workers: n x peak RSS MB (anon, PSS)", "wall s", "load before", "status"]


def training(work: Path, name: str) -> str:
    rows = [row for r in load(work, name) or [] for row in _train_row(r)]
    if not rows:
        return ""
    commands = "\n".join(f"- `{r['name']}`: `{r['cmd_text']}`" for r in load(work, name))
    return _table(TRAIN_HEADER, rows) + "\n" + commands + "\n"


def loaders(work: Path) -> str:
    results = load(work, "loader") or []
    rows = [[r["size"], r["workers"], f"{r['frames_per_s']:.0f}", f"{1e3 * r['batch_s']:.1f}",
             f"{1e6 * r['main_cpu_s_per_frame']:.0f}",
             f"{r['first_batch_s']:.2f}", f"{r['prepare_s']:.2f}",
             f"{r['prepare_anon_bytes'] / r['n_frames']:,.0f}", _mb(_role(r["roles"], "main", "VmHWM")),
             _mb(_children(r["roles"], "main").get("VmHWM")), r["load_before"]]
            for r in results if r["mode"] == "loader"]
    steps = [[r["model"], f"{r['n_params']:,}", f"{r['atoms_per_batch']:.0f}", f"{1e3 * r['step_s']:.0f}",
              f"{1e3 * r['cpu_step_s']:.0f}", f"{r['frames_per_s']:.1f}", r["load_before"]]
             for r in results if r["mode"] == "step"]
    out = ""
    if rows:
        out += _table(["set", "workers", "frames/s", "ms per batch of 8", "main CPU µs/frame", "first batch s",
                       "prepare s", "prepare anon bytes/frame", "main peak RSS MB", "worker peak RSS MB",
                       "load before"], rows)
    if steps:
        out += "\n" + _table(["model", "params", "atoms per batch", "training step ms (batch 8)", "CPU ms", "frames/s",
                              "load before"], steps)
    return out


def formats(work: Path) -> str:
    r = load(work, "formats")
    if not r:
        return ""
    rows = [["LMDB store: record -> Frame", _f(r["lmdb_read_us"], "{:.0f}"), f"{r['store_bytes_per_atom']:.0f}"],
            ["HDF5 (h5py), flat arrays + offsets: 7 slices", _f(r.get("h5_read_us"), "{:.0f}"),
             _f(r.get("h5_bytes_per_atom"), "{:.0f}")],
            ["vesin neighbour list (rebuild)", _f(r["vesin_us"], "{:.0f}"), "0"],
            ["whole graph (vesin + tensors, `frame_to_graph`)", _f(r["graph_us"], "{:.0f}"), "-"],
            ["stored neighbour list read (LMDB, int32 pairs + int8 shifts)", _f(r["stored_nl_read_us"], "{:.0f}"),
             f"{r['stored_nl_bytes_per_atom_lmdb']:.0f} ({r['stored_nl_bytes_per_atom_raw']:.0f} raw)"]]
    return (_table(["per frame, random order, warm page cache", "µs/frame", "bytes/atom on disk"], rows)
            + f"\n{r['frames_read']} random frames of {r['frames_total']:,}; {r['mean_atoms']:.1f} atoms and "
            f"{r['edges_per_atom']:.1f} directed edges per atom within {r['cutoff']:g} Å.\n")


def extra(work: Path) -> str:
    r = load(work, "extra")
    if not r:
        return ""
    out = ""
    if r.get("many_files"):
        rows = [[sum(str(c).endswith(".extxyz") for c in x["cmd"]), x["workers"], f"{x['frames']:,}",
                 f"{x['wall_s']:.1f}", f"{x['frames_per_s']:.0f}",
                 _children(x["roles"], "main").get("count", 0), x["load_before"]] for x in r["many_files"]]
        out += ("Many small files (the small set rewritten 20 frames to a file):\n\n"
                + _table(["files", "workers", "frames", "wall s", "frames/s", "worker processes started",
                          "load before"], rows) + "\n")
    series = (r.get("preprocess_series") or {}).get("main_anon_series") or []
    if series:
        marks = [series[int(k * (len(series) - 1) / 4)] for k in range(5)]
        out += ("Anonymous memory of the main process over `mlip preprocess` of the large set with `--workers 1` "
                "(seconds: MB): " + ", ".join(f"{t:.0f} s: {a / MB:.0f}" for t, a in marks) + ".\n\n")
    if r.get("extxyz_large"):
        out += "The large set trained from one extxyz file (in memory):\n\n" + _table(
            TRAIN_HEADER, _train_row(r["extxyz_large"])) + f"\n`{r['extxyz_large']['cmd_text']}`\n"
    return out


def section(work: Path, args) -> str:
    from bench_common import commit, machine

    parts = [f"\n## Scaling of the on-disk dataset (issue 12), {time.strftime('%Y-%m-%d')}\n\n",
             f"- command: `OMP_NUM_THREADS=1 python scripts/bench_scale.py --work {work}"
             + (" --worker-run" if getattr(args, "worker_run", False) else "")
             + (" --extxyz-large" if getattr(args, "extxyz_large", False) else "")
             + f"` (mlip commit {commit()}; steps may run one by one with `--steps`, into the same results)\n",
             f"- machine: {machine()}; every timed job one thread, one at a time (except the 2-process generation "
             "and `--workers 2` preprocessing); the other core was shared with another engineer's test runs "
             "(load average in the tables)\n\n"]
    for title, body in (("Data", generation(work)), ("Preprocessing (`mlip preprocess`)", preprocessing(work)),
                        ("Training per rank (`python train.py`)", training(work, "train")),
                        ("Loader throughput against the model's step time", loaders(work)),
                        ("Format and neighbour lists", formats(work)),
                        ("DDP on the CPU (gloo)", training(work, "ddp")), ("Further checks", extra(work))):
        if body:
            parts.append(f"### {title}\n\n{body}\n")
    return "".join(parts)
