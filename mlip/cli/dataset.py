"""``mlip dataset build <recipe> [overrides]`` and ``mlip dataset converge <oracle> ...``:
building training sets with an oracle.

    mlip dataset build cuag_emt scale=0.25 workers=2               # -> cuag_emt.extxyz (+ .provenance.json)
    mlip dataset build ethanol_xtb oracle=pyscf oracle.calculator.basis=sto-3g
    mlip dataset build my_recipe --config-dir ./my_configs        # your own configs/dataset/my_recipe.yaml
    mlip dataset converge pyscf --structures mol.xyz --param conv_tol=1e-4,1e-6,1e-8,1e-10

Recipes are ``configs/dataset/*.yaml`` (Hydra group ``dataset``), oracles ``configs/oracle/*.yaml``;
any key is a Hydra override (``structure.args.a=3.65``, ``md.temperatures=[300,600]``).
"""

import argparse
import sys
from pathlib import Path

from mlip.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="action", required=True)
    build = sub.add_parser("build", help="generate, label and write a training set from a recipe")
    build.add_argument("recipe", help="a recipe of configs/dataset (cu_emt, cuag_emt, si_xtb, ethanol_xtb) or your own")
    build.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. scale=0.25 workers=2 oracle=xtb")
    build.add_argument("--config-dir", default=None, help="a folder laid out like configs/ with your own recipes")
    build.add_argument("--no-progress", action="store_true")
    conv = sub.add_parser("converge", help="errors of an oracle's energies and forces against its settings")
    conv.add_argument("oracle", help="an oracle of configs/oracle (pyscf, xtb, emt) or your own")
    conv.add_argument("--structures", required=True, help="structures to test (any ASE-readable file; a few frames)")
    conv.add_argument("--param", action="append", required=True, metavar="NAME=V1,V2,...",
                      help="a calculator setting and its values, loosest to tightest; the last is the reference")
    conv.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="a fixed calculator setting for every run, e.g. --set basis=sto-3g")
    conv.add_argument("--sigma-energy", type=float, default=0.02, help="loss sigma of energy (eV/atom), default 0.02")
    conv.add_argument("--sigma-forces", type=float, default=0.1, help="loss sigma of forces (eV/Å), default 0.1")
    conv.add_argument("--fraction", type=float, default=0.1,
                      help="recommend the cheapest setting whose errors are below this fraction of the sigmas")
    conv.add_argument("--output", default="convergence", help="folder for convergence.json and plots")
    conv.add_argument("--config-dir", default=None)


def compose_recipe(recipe, overrides, config_dir=None):
    """The composed ``dataset_build`` config of ``recipe`` (None: none) with ``overrides``, as a dict."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.errors import ConfigError

    search = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            recipe_override = [f"+dataset={recipe}"] if recipe else []
            cfg = compose("dataset_build", overrides=[*recipe_override, *overrides, *search])
    except HydraException as err:
        known = sorted(p.stem for p in (Path(CONFIG_DIR) / "dataset").glob("*.yaml"))
        raise ConfigError(f"recipe {recipe!r} with overrides {list(overrides)}: {err} (shipped recipes: "
                          f"{', '.join(known)})") from None
    return OmegaConf.to_container(cfg, resolve=True)


def _value(text: str):
    """A command-line value: a number when it reads as one (1e-8 too), else YAML (true, null, text)."""
    import yaml

    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return yaml.safe_load(text)


def main(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "build":
            from mlip.building.recipe import build_dataset

            cfg = compose_recipe(args.recipe, args.overrides, args.config_dir)
            prov = build_dataset(cfg, progress=False if args.no_progress else None)
            print(f"mlip dataset: {prov['output']}: {prov['n_frames']} frames, {prov['n_atoms']} atoms, "
                  f"{prov['groups']} groups, labelled by {prov['oracle']['name']} ({prov['oracle']['package']}) "
                  f"in {prov['wall_time_s']:.0f} s")
            print("  frames by config_type: " + ", ".join(f"{k} {v}" for k, v in prov["frames_by_config_type"].items()))
            labels = prov["labels"]
            print(f"  labels: {labels['computed']} computed, {labels['cached']} from the cache, "
                  f"{labels['md_snapshots_labelled_in_md']} during MD, {labels['failed']} failed"
                  + (f" (first: {prov['failures'][0]['error']})" if prov["failures"] else ""))
            print(f"  provenance: {prov['output']}.provenance.json")
            print(f"  train: python train.py data=custom data.train={prov.get('store') or prov['output']} "
                  "split.group_by=group")
            return 0
        from mlip.building.convergence import converge

        oracle = dict(compose_recipe(None, [f"oracle={args.oracle}"], args.config_dir)["oracle"])
        for item in args.set:
            name, _, value = item.partition("=")
            oracle["calculator"][name] = _value(value)
        params = {}
        for item in args.param:
            name, _, values = item.partition("=")
            params[name] = [_value(v) for v in values.split(",")]
        result = converge(oracle, args.structures, params, sigma_energy=args.sigma_energy,
                          sigma_forces=args.sigma_forces, fraction=args.fraction, output=args.output)
        for name, rec in result["recommended"].items():
            print(f"mlip dataset converge: {name} = {rec['value']!r} (energy error {rec['energy_error']:.3g} eV/atom, "
                  f"force error {rec['force_error']:.3g} eV/Å; targets {rec['target_energy']:.3g} / "
                  f"{rec['target_forces']:.3g}); plots and convergence.json in {args.output}")
        return 0
    except USER_ERRORS as err:
        print(f"mlip dataset: error: {err}", file=sys.stderr)
        return 1
