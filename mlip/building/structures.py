"""The starting structures of a recipe: from a file or an ``ase.build`` spec, optionally alloyed.

A spec is a mapping::

    {build: bulk, args: {name: Cu, crystalstructure: fcc, a: 3.61, cubic: true}, repeat: [2, 2, 2],
     substitute: {Ag: 0.25}}            # a random quarter of the atoms become Ag (seeded)
    {file: start.xyz, index: 0}         # any ASE-readable file
    {build: molecule, args: {name: CH3CH2OH}}
"""

from typing import Any, Dict, List, Mapping

import numpy as np
from ase import Atoms

from mlip.errors import ConfigError

#: ase.build functions a spec may name
BUILDERS = ("bulk", "molecule", "fcc100", "fcc110", "fcc111", "bcc100", "bcc110", "bcc111", "diamond100",
            "diamond111", "hcp0001", "graphene", "mx2", "nanotube")


def build_structure(spec: Mapping[str, Any], rng: np.random.Generator, key: str = "structure") -> Atoms:
    """The ``Atoms`` a spec describes (``key`` names the config entry in errors)."""
    spec = dict(spec)
    if "file" in spec:
        import ase.io

        try:
            atoms = ase.io.read(str(spec["file"]), index=int(spec.get("index", 0)))
            assert isinstance(atoms, Atoms)
        except Exception as err:  # ASE raises many types
            raise ConfigError(f"{key}.file={spec['file']}: cannot read it with ASE ({type(err).__name__}: {err})") \
                from None
    elif "build" in spec:
        import ase.build

        name = spec["build"]
        if name not in BUILDERS:
            raise ConfigError(f"{key}.build={name!r}: use one of {', '.join(BUILDERS)}, or {key}.file=<structure file>")
        try:
            atoms = getattr(ase.build, name)(**dict(spec.get("args") or {}))
        except Exception as err:  # wrong arguments for the builder
            raise ConfigError(f"{key}: ase.build.{name}(**{dict(spec.get('args') or {})}) failed: {err}") from None
    else:
        raise ConfigError(f"{key} needs 'file' or 'build' (an ase.build function with its args)")
    if spec.get("repeat"):
        atoms = atoms.repeat(tuple(spec["repeat"]))
    for symbol, fraction in dict(spec.get("substitute") or {}).items():
        n = int(round(float(fraction) * len(atoms)))
        chosen = rng.choice(len(atoms), size=n, replace=False)
        symbols = atoms.get_chemical_symbols()
        for i in chosen:
            symbols[i] = symbol
        atoms.set_chemical_symbols(symbols)
    atoms.info.clear()
    atoms.calc = None
    return atoms


def build_structures(specs: List[Dict[str, Any]], rng: np.random.Generator, key: str) -> List[Atoms]:
    return [build_structure(s, rng, f"{key}[{k}]") for k, s in enumerate(specs)]
