"""``mlip validate <run dir | model> --structure ... [--reference ...]``: the properties materials
scientists check, for the model and a reference side by side.

    mlip validate outputs/<run> --structure Cu:fcc:3.61 --reference emt
    mlip validate model.pt --structure start.vasp --reference other_model.pt --properties eos,elastic,phonons
    mlip validate outputs/<run> --structure Si:diamond:5.43 --temperature 1700 --md-steps 3000

``--structure``: a file ASE reads, or ``Element:lattice:a`` for ``ase.build.bulk`` (cubic cell).
``--reference``: an oracle of configs/oracle (emt, xtb, pyscf) or another model file / run.
Properties: ``eos`` (E–V, bulk modulus), ``elastic`` (C_ij with relaxed ions, Cauchy pressure),
``phonons`` (phonopy: band path and DOS), ``vacancy``, ``surface`` (``--miller``), ``dimer``
(isolated dimers of each element pair: bond length, closest approach of head-on collisions at 10
and 100 eV, holes in the short-range repulsion), ``md`` (NVT at ``--temperature``: g(r),
self-diffusion, stability; then NVE drift). The structure is relaxed (cell and positions)
by each calculator first. Output: ``validation.json``, ``validation.md``, ``eos.png``,
``phonons.png``, ``dimers.png``, ``rdf.png`` in ``<run>/validation`` (or ``--output``).
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict

from mlip.errors import USER_ERRORS

PROPERTIES = ("eos", "elastic", "phonons", "vacancy", "surface", "dimer", "md")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run directory (model.pt or checkpoints/best.ckpt) or a model file")
    parser.add_argument("--structure", required=True, help="a structure file, or Element:lattice:a (e.g. Cu:fcc:3.61)")
    parser.add_argument("--reference", default=None, help="an oracle (emt, xtb, pyscf) or a model file / run directory")
    parser.add_argument("--properties", default=",".join(PROPERTIES),
                        help=f"comma-separated, from {', '.join(PROPERTIES)}")
    parser.add_argument("--miller", default="100,111", help="surfaces, e.g. 100,111 (default)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="K for the NVT run (default: 0.5 x a rough melting estimate, 1000 K)")
    parser.add_argument("--md-steps", type=int, default=2000, help="NVT steps of 2 fs (default 2000)")
    parser.add_argument("--nve-steps", type=int, default=500,
                        help="NVE steps after the NVT run, for the energy drift (default 500; 0: none)")
    parser.add_argument("--repeat", default="2,2,2", help="supercell of the vacancy and MD runs (default 2,2,2)")
    parser.add_argument("--output", default=None, help="folder of the report (default <run>/validation)")


def structure_of(spec: str):
    from ase.build import bulk
    from ase.io import read

    from mlip.errors import ConfigError

    if Path(spec).is_file():
        return read(spec)
    parts = spec.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--structure {spec}: not a file, and not Element:lattice:a (e.g. Cu:fcc:3.61)")
    try:
        return bulk(parts[0], parts[1], a=float(parts[2]), cubic=True)
    except (ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"--structure {spec}: ase.build.bulk refused it ({err})") from None


def calculator_of(source: str):
    """(calculator, description) of a run directory, a model file, or an oracle name."""
    from mlip.calculator import MLIPCalculator
    from mlip.cli.config_path import CONFIG_DIR

    path = Path(source)
    if path.is_dir():
        for candidate in (path / "model.pt", path / "committee.pt", path / "checkpoints" / "best.ckpt"):
            if candidate.exists():
                return MLIPCalculator(str(candidate)), str(candidate)
    if path.is_file():
        return MLIPCalculator(str(path)), str(path)
    if (Path(CONFIG_DIR) / "oracle" / f"{source}.yaml").exists():
        from mlip.building.oracles import build_oracle
        from mlip.cli.dataset import compose_recipe

        cfg = compose_recipe(None, [f"oracle={source}"])["oracle"]
        return build_oracle(cfg), f"oracle {source}"
    raise FileNotFoundError(f"{source}: no model file, run directory (model.pt, checkpoints/best.ckpt) or oracle name")


def properties_of(atoms, calc, wanted, args) -> Dict[str, Any]:
    from mlip.validation import properties as P

    repeat = tuple(int(x) for x in args.repeat.split(","))
    relaxed = P.relax(atoms, calc)
    scale = float((relaxed.get_volume() / atoms.get_volume()) ** (1 / 3))
    out: Dict[str, Any] = {"relaxed": {"lattice_a": float(relaxed.cell.lengths()[0]), "volume_scale": scale ** 3}}
    timing = {}
    for name in wanted:
        t0 = time.time()
        if name == "eos":
            out["eos"] = P.equation_of_state(relaxed, calc)
        elif name == "elastic":
            out["elastic"] = P.elastic_constants(relaxed, calc)
        elif name == "phonons":
            out["phonons"] = P.phonons(relaxed, calc)
        elif name == "vacancy" and relaxed.pbc.all():
            out["vacancy"] = P.vacancy_formation_energy(relaxed, calc, repeat)
        elif name == "surface" and relaxed.pbc.all():
            out["surfaces"] = {m: P.surface_energy(relaxed, calc, [int(c) for c in m]) for m in args.miller.split(",")}
        elif name == "dimer":
            out["dimer"] = P.dimer_curves(relaxed, calc)
        elif name == "md":
            out["md"] = P.md_properties(relaxed.repeat(repeat), calc, args.temperature or 1000.0, steps=args.md_steps,
                                        equilibration=min(500, args.md_steps // 4), nve_steps=args.nve_steps)
        timing[name] = time.time() - t0
    out["seconds"] = timing
    return out


def main(args: argparse.Namespace) -> int:
    from mlip.errors import ConfigError
    from mlip.fileio import write_json, write_text
    from mlip.validation import report

    try:
        wanted = [p.strip() for p in args.properties.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in PROPERTIES]
        if unknown:
            raise ConfigError(f"--properties: unknown {', '.join(unknown)}; choose from {', '.join(PROPERTIES)}")
        atoms = structure_of(args.structure)
        calc, model_path = calculator_of(args.source)
        results: Dict[str, Any] = {"structure": args.structure, "model_path": model_path,
                                   "model": properties_of(atoms, calc, wanted, args)}
        if args.reference:
            ref_calc, ref_name = calculator_of(args.reference)
            results["reference_name"] = ref_name
            results["reference"] = properties_of(atoms, ref_calc, wanted, args)
        results["table"] = report.rows(results)
        source = Path(args.source)
        folder = Path(args.output) if args.output else (source if source.is_dir() else source.parent) / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "validation.json", results)
        write_text(folder / "validation.md", report.markdown(results, model_path))
        plots = report.plots(results, folder)
        if "md" in results["model"]:  # g(r) as columns, e.g. for spline_pair's model.init_rdf
            md = results["model"]["md"]
            write_text(folder / "rdf.dat", f"# r (Å)  g(r) of the model, NVT {md['temperature']:g} K\n"
                       + "".join(f"{r:.5f} {g:.6f}\n" for r, g in zip(md["r"], md["g"])))
            plots.append("rdf.dat")
    except (*USER_ERRORS, FileNotFoundError, ImportError) as err:
        print(f"mlip validate: error: {err}", file=sys.stderr)
        return 1
    print(report.markdown(results, model_path))
    print(f"mlip validate: validation.md, validation.json and {', '.join(plots)} in {folder}")
    return 0
