"""NVE energy drift of a trained model: velocity Verlet, 1 fs, 216-atom Si (3x3x3 diamond
conventional cells) at 1000 K, through the ASE calculator. Result for docs/md_engines.md.

    python scripts/nve_drift.py --train                        # python train.py on the shipped data first
    python scripts/nve_drift.py --model outputs/.../model.pt --dtype float32 float64 --steps 10000

Drift = slope of a least-squares line through E_tot(t) (eV/atom) times the run length, in
meV/atom; fluctuation = max - min of E_tot about that line. Writes a JSON summary (--out).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model.pt / model.pt2 / .ckpt / run directory (default: --train's run)")
    parser.add_argument("--train", action="store_true", help="train on the shipped data first (python train.py)")
    parser.add_argument("--run-dir", default=str(REPO / "outputs" / "nve_model"), help="where --train writes")
    parser.add_argument("--dtype", nargs="+", default=["float64"], choices=["float32", "float64"],
                        help="precision(s) to run the model in (a .pt or .ckpt is converted)")
    parser.add_argument("--steps", type=int, default=10000, help="1 fs steps (10000 = 10 ps)")
    parser.add_argument("--temperature", type=float, default=1000.0, help="initial Maxwell-Boltzmann T (K)")
    parser.add_argument("--repeat", type=int, default=3, help="diamond conventional cells per direction")
    parser.add_argument("--interval", type=int, default=10, help="record E_tot every this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="nve_drift.json")
    args = parser.parse_args()

    if args.train:
        res = subprocess.run([sys.executable, str(REPO / "train.py"), f"hydra.run.dir={args.run_dir}",
                              "trainer.enable_progress_bar=false"], cwd=REPO)
        if res.returncode:
            return res.returncode
    model = Path(args.model or args.run_dir)
    if model.is_dir():
        model = model / "model.pt"

    import torch

    from mlip.analysis.nve import nve_drift, silicon_cell
    from mlip.calculator import MLIPCalculator

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    summary = {"model": str(model), "steps": args.steps, "timestep_fs": 1.0, "temperature_K": args.temperature,
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(), "runs": {}}
    for dtype in args.dtype:
        keep = None if str(model).endswith(".pt2") else dtype
        calc = MLIPCalculator(str(model), dtype=keep)
        t0 = time.time()
        r = nve_drift(silicon_cell(args.repeat), calc, args.steps, temperature_K=args.temperature,
                      interval=args.interval, seed=args.seed)
        wall = time.time() - t0
        row = {k: r[k] for k in ("drift_meV_per_atom", "drift_meV_per_atom_per_ps", "fluctuation_meV_per_atom",
                                 "mean_temperature_K", "max_force", "n_atoms")}
        row.update(wall_s=wall, ms_per_step=1000.0 * wall / args.steps, dtype=str(calc.dtype).replace("torch.", ""))
        summary["runs"][dtype] = row
        print(f"{row['dtype']}: {args.steps} steps ({args.steps / 1000:.1f} ps), "
              f"drift {row['drift_meV_per_atom']:+.4f} meV/atom, "
              f"fluctuation {row['fluctuation_meV_per_atom']:.4f} meV/atom, <T> "
              f"{row['mean_temperature_K']:.0f} K, {row['ms_per_step']:.1f} ms/step", flush=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
