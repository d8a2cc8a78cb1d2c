"""``mlip <command>``: the command-line entry point.

    mlip train [hydra overrides]          same as ``python train.py``
    mlip preprocess <files> --output DIR  on-disk dataset for data larger than memory
    mlip dataset build <recipe> [overrides]  training set from a structure and an oracle
    mlip committee train K [overrides] --output DIR   committee with calibrated uncertainty
    mlip llpr <run dir>                  single-model uncertainty, calibrated on val, tested
    mlip learn <preset> [overrides]       active learning with an oracle
    mlip validate <run> --structure ... [--reference emt]  properties beside a reference
    mlip cv <multirun dir>                cross-validation summary of a Hydra multirun
    mlip identifiability <run|ckpt>       Fisher-information analysis of a fitted model
    mlip export <run|ckpt>                TorchScript / AOTInductor export
    mlip build-lammps-plugin              build the LAMMPS ``pair_style mlip`` plugin

Each command lives in its own module of ``mlip.cli`` that defines ``add_arguments(parser)``
and ``main(args) -> int``; it is imported only when its command runs.
"""

import argparse
import importlib
import sys
from typing import List, Optional

from mlip.cli.malloc_tuning import keep_freed_memory, restart_with_huge_pages

#: command -> (module, one-line help)
COMMANDS = {
    "preprocess": ("mlip.cli.preprocess", "stream files into an on-disk dataset (data larger than memory)"),
    "dataset": ("mlip.cli.dataset", "build a training set with an oracle (build <recipe>), or converge its settings"),
    "committee": ("mlip.cli.committee", "train K models, combine them into committee.pt, calibrate its uncertainty"),
    "llpr": ("mlip.cli.llpr", "single-model energy uncertainty (last-layer prediction rigidity), calibrated"),
    "learn": ("mlip.cli.learn", "active learning: committee, MD exploration, selection, oracle labels, retrain"),
    "validate": ("mlip.cli.validate", "properties (EOS, elastic, phonons, defects, MD) of a model beside a reference"),
    "cv": ("mlip.cli.cv", "summarise cross-validation folds of a multirun (mean and std of every metric)"),
    "identifiability": ("mlip.cli.identifiability", "Fisher information, eigenvalues and sloppy parameters"),
    "export": ("mlip.cli.export", "export a run or checkpoint to TorchScript or AOTInductor"),
    "build-lammps-plugin": ("mlip.cli.lammps_plugin", "build the LAMMPS pair_style mlip plugin"),
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":  # Hydra parses its own arguments
        from mlip.cli.train import main as train_main

        sys.argv = [sys.argv[0] + " train"] + argv[1:]
        train_main()  # keeps freed memory itself (as python train.py)
        return 0
    keep_freed_memory()
    parser = argparse.ArgumentParser(prog="mlip", description="mlip: train, analyse and export interatomic potentials")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.add_parser("train", help="train a potential (Hydra overrides, as python train.py)")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command not in modules:
        parser.error(f"command {args.command!r} is not available in this build")
    return int(modules[args.command].main(args) or 0)


def entry() -> None:
    """The installed ``mlip`` command: ``main`` in a process restarted with huge pages for malloc
    (``restart_with_huge_pages``; ``main`` itself, which tests call in-process, never restarts)."""
    restart_with_huge_pages()
    sys.exit(main())


if __name__ == "__main__":
    entry()
