"""Benchmark (issue 14): active learning against random selection, fine-tuning against training from
scratch, and uncertainty against error. Appends a dated section to docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/bench_active.py --workdir /tmp/mlip-bench2/active

(a) ``mlip learn cu_emt`` (EMT) with small settings, and a random-selection baseline: the same
    first committee (iteration 0 is shared), then at every iteration as many frames as active
    learning labelled, drawn at random from the union of its exploration candidates
    (``iter_*/candidates.extxyz``), labelled by the same oracle and trained the same way
    (``mlip.cli.learn.train_committee``: members fine-tuned from the previous iteration's). Both
    are tested on the run's fixed test set (EMT MD at 1500 K); the x-axis is the number of
    labelled frames each committee was trained on.
(b) a Cu model (``mlip committee train`` on the cu_emt recipe; member 0), fine-tuned on 50 Cu-Ag
    frames (``finetune.from``, with and without ``finetune.replay_fraction``) against a model of
    the same architecture trained from scratch on them; tested on a Cu-Ag test set (cuag_emt,
    seed 1), forgetting on the Cu model's test frames (``metrics.json["finetune"]``).
(c) Spearman rank correlation between predicted std and actual error on MD frames (the Cu
    committee's test split: EMT MD at 300/900/1500 K): the committee (``committee_metrics.json``,
    energy per atom and force components) and LLPR on member 0 (``mlip llpr``, energy per atom).
    ``--xtb``: the same for ethanol with GFN2-xTB (``ethanol_xtb`` recipe, test on xTB MD).
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import append_section, commit, machine  # noqa: E402

MODEL = ["model=invariant", "experiment=quick"]


def mlip(args: list, log: Path) -> str:
    """Run ``mlip <args>`` (1 thread) with its output in ``log``; returns the command as typed."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    t0 = time.time()
    with open(log, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "mlip.cli.main", *args], stdout=fh, stderr=subprocess.STDOUT,
                             env=env)
    if res.returncode != 0:
        raise RuntimeError(f"mlip {' '.join(args)} failed: see {log}")
    print(f"mlip {args[0]} {args[1] if len(args) > 1 else ''}: {time.time() - t0:.0f} s", flush=True)
    return "mlip " + " ".join(str(a) for a in args)


def train(args: list, run_dir: Path, log: Path) -> dict:
    if not (run_dir / "metrics.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        t0 = time.time()
        with open(log, "w") as fh:
            res = subprocess.run([sys.executable, str(REPO / "train.py"), *args, "export=false",
                                  "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
                                 stdout=fh, stderr=subprocess.STDOUT, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"train.py {' '.join(args)} failed: see {log}")
        print(f"trained {run_dir.name}: {time.time() - t0:.0f} s", flush=True)
    return json.loads((run_dir / "metrics.json").read_text())


def best_epoch(run_dir: Path) -> tuple:
    """(epoch of best.ckpt, the lowest val/loss; epoch of last.ckpt), counted from 1."""
    from mlip.training.checkpoint_io import load_checkpoint

    return tuple(int(load_checkpoint(str(run_dir / "checkpoints" / f"{k}.ckpt"))["epoch"]) + 1
                 for k in ("best", "last"))


def read(path: Path) -> list:
    import ase.io

    return list(ase.io.read(str(path), ":")) if path.exists() and path.stat().st_size else []


def write(path: Path, frames) -> Path:
    import ase.io

    ase.io.write(str(path), list(frames), format="extxyz")
    return path


def build_recipe(recipe: str, overrides: list, output: Path, cache: Path) -> list:
    from mlip.building.recipe import build_dataset
    from mlip.cli.dataset import compose_recipe

    if not output.exists():
        build_dataset(compose_recipe(recipe, [*overrides, f"output={output}", f"cache_dir={cache}"]), progress=False)
    return read(output)


def md_test_set(output: Path, structure_spec: dict, oracle: str, temperatures, steps: int, interval: int,
                timestep_fs: float, seed: int) -> list:
    """Oracle MD frames (labelled) from the structure at each temperature."""
    import numpy as np

    from mlip.building.generators import run_md
    from mlip.building.oracles import build_oracle
    from mlip.building.structures import build_structure
    from mlip.cli.dataset import compose_recipe

    if output.exists():
        return read(output)
    oracle_cfg = compose_recipe(None, [f"oracle={oracle}"])["oracle"]
    base = build_structure(structure_spec, np.random.default_rng(seed))
    frames = []
    for k, t in enumerate(temperatures):
        frames += run_md(base, build_oracle(oracle_cfg), float(t), None, steps, interval, interval, timestep_fs,
                         seed * 100 + k, f"test_md_{t:g}K")
    return read(write(output, frames))


# (a) active learning against random selection ------------------------------------------------------------------

def active_vs_random(args, workdir: Path) -> dict:
    import numpy as np

    from mlip.building.labelling import label_all
    from mlip.cli.learn import compose_learn, train_committee

    overrides = [f"committee={args.committee}", f"iterations={args.iterations}", "patience=1000",
                 f"train=['experiment=quick','model=invariant','trainer.max_epochs={args.al_epochs}']",
                 *args.learn_overrides]
    al = workdir / "al"
    command = mlip(["learn", "cu_emt", *overrides, "--output", str(al)], workdir / "learn.log")
    cfg = compose_learn("cu_emt", overrides)
    its = sorted(int(p.name.split("_")[1]) for p in al.glob("iter_*") if p.is_dir())
    al_rows = [json.loads((al / f"iter_{i}" / "metrics.json").read_text()) for i in its]
    committees = [json.loads((al / f"iter_{i}" / "committee" / "committee_metrics.json").read_text()) for i in its]

    # random: iteration 0 is active learning's (same start set, same committee)
    rnd = workdir / "random"
    (rnd / "iter_0").mkdir(parents=True, exist_ok=True)
    if not (rnd / "iter_0" / "committee").exists():
        (rnd / "iter_0" / "committee").symlink_to(al / "iter_0" / "committee", target_is_directory=True)
    pool = [f for i in its for f in read(al / f"iter_{i}" / "candidates.extxyz")]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(pool)).tolist()
    data = read(al / "start.extxyz")
    test = al / "test.extxyz"
    random_rows = [{"iteration": 0, "train_frames": al_rows[0]["train_frames"],
                    "test_forces_mae_meV_per_A": al_rows[0]["test_forces_mae_meV_per_A"],
                    "test_energy_mae_meV_per_atom": al_rows[0]["test_energy_mae_meV_per_atom"]}]
    for it in its[1:]:
        n_new = len(read(al / f"iter_{it - 1}" / "labelled.extxyz"))
        chosen = [pool[order.pop()] for _ in range(min(n_new, len(order)))]
        for atoms in chosen:
            atoms.info["config_type"] = f"random_iter{it - 1}"
        frames, _, _ = label_all(chosen, cfg["oracle"], str(rnd / "cache"), 1, False)
        data += [f for f in frames if f is not None]
        folder = rnd / f"iter_{it}"
        folder.mkdir(exist_ok=True)
        write(folder / "data.extxyz", data)
        t0 = time.time()
        metrics = train_committee(cfg, it, folder / "data.extxyz", test, rnd)
        random_rows.append({"iteration": it, "train_frames": len(data),
                            "test_forces_mae_meV_per_A": 1000 * metrics["mae_of_mean"]["forces_eV_per_A"],
                            "test_energy_mae_meV_per_atom": 1000 * metrics["mae_of_mean"]["energy_eV_per_atom"]})
        print(f"random iteration {it}: {len(data)} frames, {random_rows[-1]['test_forces_mae_meV_per_A']:.1f} meV/Å "
              f"({time.time() - t0:.0f} s)", flush=True)
    exploration = [json.loads((al / f"iter_{i}" / "exploration.json").read_text()) for i in its]
    return {"command": command, "per_iteration": cfg["select"]["per_iteration"], "al": al_rows,
            "random": random_rows, "pool": len(pool), "exploration": exploration,
            "forces_scale": [c["calibration"]["forces"]["scale_fitted_on_val"] for c in committees],
            "test_frames": len(read(test)), "start_frames": len(read(al / "start.extxyz"))}


def goal_a(res: dict) -> dict:
    """Calls (frames trained on) active learning needed to reach random's final test force MAE."""
    final = res["random"][-1]
    reached = [r for r in res["al"] if r["test_forces_mae_meV_per_A"] <= final["test_forces_mae_meV_per_A"]]
    first = reached[0] if reached else None
    start = res["al"][0]["train_frames"]
    out = {"random_final_mae": final["test_forces_mae_meV_per_A"], "random_final_calls": final["train_frames"],
           "al_calls": first["train_frames"] if first else None}
    if first:
        out["ratio_total"] = first["train_frames"] / final["train_frames"]
        added = final["train_frames"] - start
        out["ratio_added"] = (first["train_frames"] - start) / added if added else None
    out["met"] = bool(first) and out["ratio_total"] <= 0.5
    return out


# (b) fine-tuning, (c) uncertainty ---------------------------------------------------------------------------------

def finetune_and_uncertainty(args, workdir: Path) -> dict:
    import numpy as np

    from mlip.building.labelling import structure_hash

    cache = workdir / "cache"
    cu_train = build_recipe("cu_emt", [f"scale={args.cu_scale}", "seed=0"], workdir / "cu_train.extxyz", cache)
    cu_test = md_test_set(workdir / "cu_test_md.extxyz",
                          {"build": "bulk", "args": {"name": "Cu", "crystalstructure": "fcc", "a": 3.61,
                                                     "cubic": True}, "repeat": [2, 2, 2]},
                          "emt", [300, 900, 1500], args.md_steps, args.md_interval, 2.0, 7)
    committee_dir = workdir / "cu_committee"
    committee_args = ["committee", "train", str(args.committee), "data=custom",
                      f"data.train={workdir / 'cu_train.extxyz'}", f"data.test={workdir / 'cu_test_md.extxyz'}",
                      *MODEL, f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
                      "--output", str(committee_dir)]
    commands = {"committee": "mlip " + " ".join(committee_args)}
    if not (committee_dir / "committee_metrics.json").exists():
        mlip(committee_args, workdir / "committee.log")
    committee = json.loads((committee_dir / "committee_metrics.json").read_text())
    commands["llpr"] = mlip(["llpr", str(committee_dir / "member_0")], workdir / "llpr.log")
    llpr = json.loads((committee_dir / "member_0" / "llpr_metrics.json").read_text())
    cu_model = committee_dir / "member_0"

    # Cu-Ag: 50 frames (plus the isolated atoms, for E0) and a test set of every config_type
    cuag = build_recipe("cuag_emt", [f"scale={args.cuag_scale}", "seed=0"], workdir / "cuag_pool.extxyz", cache)
    isolated = [f for f in cuag if f.info.get("config_type") == "isolated_atom"]
    rest = [f for f in cuag if f.info.get("config_type") != "isolated_atom"]
    pick = sorted(np.random.default_rng(0).choice(len(rest), size=min(args.n_finetune, len(rest)),
                                                  replace=False).tolist())
    small = [rest[i] for i in pick]
    small_file = write(workdir / "cuag_50.extxyz", small + isolated)
    test_all = build_recipe("cuag_emt", [f"scale={args.cuag_scale}", "seed=1", "generators.dimer.r_max=4.7"],
                            workdir / "cuag_test_full.extxyz", cache)
    seen = {structure_hash(f, "") for f in small}
    cuag_test = [f for f in test_all if f.info.get("config_type") != "isolated_atom"
                 and structure_hash(f, "") not in seen]
    test_file = write(workdir / "cuag_test.extxyz", cuag_test)
    base = ["data=custom", f"data.train={small_file}", f"data.test={test_file}", f"trainer.max_epochs={args.epochs}",
            "seed=0"]
    runs = {"scratch": (base + MODEL, None)}
    runs["fine-tuned"] = (base + [f"finetune.from={cu_model}"], 0.0)
    for fraction in args.replay:
        runs[f"fine-tuned, replay {fraction:g}"] = (base + [f"finetune.from={cu_model}",
                                                           f"finetune.replay_fraction={fraction}"], fraction)
    for lr_scale in args.lr_scales:
        fraction = args.replay[0] if args.replay else 0.0
        runs[f"fine-tuned, replay {fraction:g}, lr_scale {lr_scale:g}"] = (
            base + [f"finetune.from={cu_model}", f"finetune.replay_fraction={fraction}",
                    f"finetune.lr_scale={lr_scale}"], fraction)
    results = {}
    for name, (overrides, _) in runs.items():
        slug = name.replace(",", "").replace(" ", "_")
        results[name] = train(overrides, workdir / f"ft_{slug}", workdir / f"ft_{slug}.log")
        results[name]["overrides"] = overrides
        results[name]["best_epoch"] = best_epoch(workdir / f"ft_{slug}")
    cu_counts: dict = {}
    for f in cu_train:
        cu_counts[f.info["config_type"]] = cu_counts.get(f.info["config_type"], 0) + 1
    member_epochs = [best_epoch(committee_dir / f"member_{k}") for k in range(args.committee)]
    return {"commands": commands, "committee": committee, "llpr": llpr, "finetune": results,
            "member_best_epochs": member_epochs,
            "cu_train_frames": len(cu_train), "cu_train_by_type": cu_counts, "cu_test_frames": len(cu_test),
            "cuag_small": len(small), "cuag_small_types": sorted({f.info["config_type"] for f in small}),
            "cuag_test_frames": len(cuag_test), "cuag_pool": len(rest)}


def xtb_uncertainty(args, workdir: Path) -> dict:
    """Committee and LLPR on ethanol with GFN2-xTB, tested on xTB MD frames."""
    cache = workdir / "cache"
    build_recipe("ethanol_xtb", [f"scale={args.xtb_scale}", "seed=0"], workdir / "ethanol_train.extxyz", cache)
    md_test_set(workdir / "ethanol_test_md.extxyz", {"build": "molecule", "args": {"name": "CH3CH2OH"}}, "xtb",
                [300, 600, 1000], 300, 20, 0.5, 11)
    folder = workdir / "ethanol_committee"
    if not (folder / "committee_metrics.json").exists():
        mlip(["committee", "train", str(args.committee), "data=custom",
              f"data.train={workdir / 'ethanol_train.extxyz'}", f"data.test={workdir / 'ethanol_test_md.extxyz'}",
              *MODEL, f"trainer.max_epochs={args.epochs}",
              "trainer.enable_progress_bar=false", "--output", str(folder)], workdir / "ethanol_committee.log")
    mlip(["llpr", str(folder / "member_0")], workdir / "ethanol_llpr.log")
    return {"committee": json.loads((folder / "committee_metrics.json").read_text()),
            "llpr": json.loads((folder / "member_0" / "llpr_metrics.json").read_text()),
            "train_frames": len(read(workdir / "ethanol_train.extxyz")),
            "test_frames": len(read(workdir / "ethanol_test_md.extxyz"))}


# the section ----------------------------------------------------------------------------------------------------

def spearman_rows(label: str, committee: dict, llpr: dict) -> list:
    cal = committee["calibration"]
    rows = []
    for kind, unit in (("energy", "energy per atom"), ("forces", "force components")):
        if kind in cal:
            s, scale = cal[kind]["raw"]["spearman"], cal[kind]["scale_fitted_on_val"]
            rows.append(f"| {label} | committee ({committee['committee_size']} members) | {unit} | "
                        f"{cal[kind]['raw']['n']} | **{s:.2f}** | {'yes' if s >= 0.6 else 'no'} | {scale:.3g} |")
    s = llpr["test"]["spearman"]
    rows.append(f"| {label} | LLPR (member 0) | energy per atom | {llpr['test']['n']} | **{s:.2f}** | "
                f"{'yes' if s >= 0.6 else 'no'} | α {llpr['alpha']:.3g} |")
    return rows


def section(args, revision: str, load: tuple, total_s: float, a: dict, b: dict, x: dict, reused: bool) -> str:
    command = "OMP_NUM_THREADS=1 python scripts/bench_active.py " + " ".join(sys.argv[1:])
    lines = [f"\n## Active learning, fine-tuning and uncertainty (issue 14), {datetime.date.today().isoformat()}\n",
             f"- command: `{command}` (mlip commit {revision})",
             f"- machine: {machine()}; **shared** with two other engineers' jobs (load average {load[0]:.1f} at the "
             f"start, {load[1]:.1f} at the end); every job 1 thread, one at a time; wall time of this invocation "
             f"{total_s / 60:.0f} min" + (" (a re-invocation: the runs, labels and sets that an earlier one with the "
                                         "same --workdir finished were reused)" if reused else ""),
             "- models: `model=invariant experiment=quick` (6 channels, one hidden layer of 32) everywhere; float32",
             ""]
    if a:
        g = goal_a(a)
        lines += ["### (a) Active learning against random selection (Cu, EMT)", "",
                  f"- active learning: `{a['command']}` (the `cu_emt` preset: first set the cu_emt recipe at scale "
                  f"0.1, {a['start_frames']} frames; exploration MD at 900 and 1500 K; {a['per_iteration']} frames "
                  "per iteration; "
                  f"{args.committee} members, {args.al_epochs} epochs, later iterations fine-tuned at lr x 0.5)",
                  f"- random: iteration 0 shared; then, per iteration, as many frames as active learning labelled, "
                  f"drawn at random (seed {args.seed}) from the union of its exploration candidates ({a['pool']} "
                  f"frames), labelled by EMT, committee trained the same way (`mlip.cli.learn.train_committee`)",
                  f"- test: the run's `test.extxyz`, EMT MD at 1500 K ({a['test_frames']} frames); force MAE of the "
                  "committee mean; frames = labelled frames the committee was trained on (each one oracle call; "
                  "the last iteration's selection is not trained on and not counted)", "",
                  "| iteration | frames | AL test F MAE (meV/Å) | random test F MAE (meV/Å) | AL test E MAE "
                  "(meV/atom) | random test E MAE | AL exploration: MD steps before the threshold | forces scale "
                  "(val) |", "|---|---|---|---|---|---|---|---|"]
        for r, q, ex, scale in zip(a["al"], a["random"], a["exploration"], a["forces_scale"]):
            lines.append(f"| {r['iteration']} | {r['train_frames']} | {r['test_forces_mae_meV_per_A']:.1f} | "
                         f"{q['test_forces_mae_meV_per_A']:.1f} | {r['test_energy_mae_meV_per_atom']:.2f} | "
                         f"{q['test_energy_mae_meV_per_atom']:.2f} | {ex['steps_before_threshold']:.0f} | "
                         f"{scale:.3g} |")
        if g["al_calls"] is None:
            verdict = (f"**not met**: active learning never reached random's final {g['random_final_mae']:.1f} meV/Å "
                       f"({g['random_final_calls']} frames)")
        else:
            verdict = (f"**{'met' if g['met'] else 'not met'}**: active learning reached random's final "
                       f"{g['random_final_mae']:.1f} meV/Å ({g['random_final_calls']} frames) with {g['al_calls']} "
                       f"frames, {100 * g['ratio_total']:.0f}% of the oracle calls"
                       + (f" ({100 * g['ratio_added']:.0f}% of those added after the shared first set)"
                          if g.get("ratio_added") is not None else ""))
        lines += ["", f"Goal (active learning reaches random's final error with at most half the oracle calls): "
                  f"{verdict}.", ""]
    if b:
        lines += ["### (b) Fine-tuning a Cu model on 50 Cu-Ag frames (EMT)", "",
                  f"- Cu model: member 0 of `{b['commands']['committee']}` on `mlip dataset build cu_emt "
                  f"scale={args.cu_scale} seed=0` ({b['cu_train_frames']} frames: "
                  + ", ".join(f"{k} {v}" for k, v in b["cu_train_by_type"].items())
                  + f"); its test split (the old test set) is EMT MD of the fcc Cu cell at 300, 900 and 1500 K "
                  f"({b['cu_test_frames']} frames); best.ckpt (lowest val/loss) of the members at epochs "
                  + ", ".join(f"{e[0]} of {e[1]}" for e in b["member_best_epochs"]),
                  f"- Cu-Ag: {b['cuag_small']} frames drawn at random (seed 0) from `mlip dataset build cuag_emt "
                  f"scale={args.cuag_scale} seed=0` ({b['cuag_pool']} frames; drawn types: "
                  f"{', '.join(b['cuag_small_types'])}), plus its two isolated atoms for E0; test set `cuag_emt "
                  f"scale={args.cuag_scale} seed=1 generators.dimer.r_max=4.7` without isolated atoms "
                  f"({b['cuag_test_frames']} frames, every config_type)",
                  f"- every run `python train.py data=custom data.train=cuag_50.extxyz data.test=cuag_test.extxyz "
                  f"trainer.max_epochs={args.epochs} seed=0` plus the overrides below (fine-tuning: the Cu model's "
                  "architecture, `finetune.lr_scale` 0.1 by default)", "",
                  "| run | extra overrides | best epoch | Cu-Ag test E MAE (meV/atom) | Cu-Ag test F MAE (meV/Å) "
                  "| old Cu test F MAE before → after (meV/Å) | forgetting, forces | forgetting, energy |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, m in b["finetune"].items():
            extra = " ".join(o for o in m["overrides"] if o.startswith(("finetune", "model", "experiment")))
            extra = extra.replace(str(Path(args.workdir).resolve()) + "/", "")
            ft = m.get("finetune") or {}
            if ft.get("before"):
                ratio = ft["after_over_before"]
                old = f"{ft['before']['forces_mae']:.1f} → {ft['after']['forces_mae']:.1f}"
                forget_f = f"{100 * (ratio['forces_mae'] - 1):+.0f}%"
                forget_e = f"{100 * (ratio['energy_mae'] - 1):+.0f}%"
            else:
                old, forget_f, forget_e = "-", "-", "-"
            best = m.get("best_epoch") or ("-", "-")
            lines.append(f"| {name} | `{extra}` | {best[0]} of {best[1]} | {m['test']['energy_mae']:.1f} | "
                         f"{m['test']['forces_mae']:.1f} | "
                         f"{old} | {forget_f} | {forget_e} |")
        ft = b["finetune"]
        scratch = ft["scratch"]["test"]["forces_mae"]
        tuned = {k: v for k, v in ft.items() if k != "scratch"}
        beats = {k: v["test"]["forces_mae"] < scratch for k, v in tuned.items()}
        replay = {k: v["finetune"]["after_over_before"]["forces_mae"] - 1 for k, v in tuned.items() if "replay" in k}
        lines += ["", "Goals: fine-tuning beats scratch on the Cu-Ag test forces: "
                  + ", ".join(f"{k} **{'yes' if ok else 'no'}** ({v['test']['forces_mae']:.1f} against "
                              f"{scratch:.1f} meV/Å)" for (k, ok), v in zip(beats.items(), tuned.values()))
                  + "; forgetting (old Cu test force MAE, after / before - 1) at most 20% with replay: "
                  + ", ".join(f"{k} **{'yes' if v <= 0.2 else 'no'}** ({100 * v:+.0f}%)" for k, v in replay.items())
                  + ".", ""]
        lines += ["### (c) Uncertainty against error (Spearman rank correlation of predicted std with |error|)", "",
                  f"- Cu: the committee of (b) (`{b['commands']['committee']}`) and `{b['commands']['llpr']}`, on the "
                  f"committee's test split: EMT MD at 300, 900 and 1500 K ({b['cu_test_frames']} frames); raw "
                  "spreads (a scale does not change a rank correlation)"]
        if x:
            lines.append(f"- ethanol (GFN2-xTB, tblite): the same on `mlip dataset build ethanol_xtb scale="
                         f"{args.xtb_scale} seed=0` ({x['train_frames']} frames), tested on xTB MD at 300, 600 and "
                         f"1000 K ({x['test_frames']} frames)")
        lines += ["", "| system | method | quantity | test values | Spearman | ≥ 0.6? | scale fitted on val |",
                  "|---|---|---|---|---|---|---|"]
        lines += spearman_rows("Cu (EMT)", b["committee"], b["llpr"])
        if x:
            lines += spearman_rows("ethanol (xTB)", x["committee"], x["llpr"])
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/mlip-bench-active")
    parser.add_argument("--parts", default="a,b", help="a (active learning), b (fine-tuning and uncertainty)")
    parser.add_argument("--committee", type=int, default=3, help="committee members (a, c)")
    parser.add_argument("--iterations", type=int, default=5, help="active-learning iterations (a)")
    parser.add_argument("--al-epochs", type=int, default=40, help="epochs per member and iteration (a)")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of the Cu committee and fine-tuning runs (b, c)")
    parser.add_argument("--cu-scale", type=float, default=0.5, help="scale of the cu_emt recipe (b, c)")
    parser.add_argument("--cuag-scale", type=float, default=0.5, help="scale of the cuag_emt sets (b)")
    parser.add_argument("--n-finetune", type=int, default=50, help="Cu-Ag frames to fine-tune on (b)")
    parser.add_argument("--replay", type=float, nargs="*", default=[0.2, 0.5], help="replay fractions (b)")
    parser.add_argument("--lr-scales", type=float, nargs="*", default=[],
                        help="(b) more fine-tuning runs with the first replay fraction and these finetune.lr_scale")
    parser.add_argument("--md-steps", type=int, default=400, help="steps of the Cu MD test trajectories (c)")
    parser.add_argument("--md-interval", type=int, default=20)
    parser.add_argument("--xtb", action="store_true", help="(c) also on ethanol with GFN2-xTB")
    parser.add_argument("--xtb-scale", type=float, default=0.5)
    parser.add_argument("--learn-overrides", nargs="*", default=[], help="more `mlip learn` overrides (a)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not append it")
    args = parser.parse_args()

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    revision = commit()
    reused = (workdir / "results.json").exists()  # an earlier invocation: its finished steps are kept
    load_start = os.getloadavg()
    t0 = time.time()
    parts = set(args.parts.split(","))
    a = active_vs_random(args, workdir) if "a" in parts else {}
    b = finetune_and_uncertainty(args, workdir) if "b" in parts else {}
    x = xtb_uncertainty(args, workdir) if args.xtb else {}
    (workdir / "results.json").write_text(json.dumps({"a": a, "b": b, "x": x}, indent=1, default=str))
    text = section(args, revision, (load_start[0], os.getloadavg()[0]), time.time() - t0, a, b, x, reused)
    if not args.no_write:
        append_section(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
