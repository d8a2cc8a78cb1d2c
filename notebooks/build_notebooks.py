"""Build the notebooks of this folder from their percent-format sources, without outputs.

    python notebooks/build_notebooks.py          # writes <name>.ipynb next to each <name>.py source

A source is a Python file whose cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown,
every line a comment). ``tests/test_notebooks.py`` checks that the stored notebooks match.
"""

import sys
from pathlib import Path
from typing import List

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = ["fitting_statistics.py", "building_a_dataset.py"]


def cells_of(source: str) -> List[nbformat.NotebookNode]:
    cells = []
    for chunk in source.split("# %%")[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            cells.append(nbformat.v4.new_code_cell(body))
    return cells


def build(source_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_of(source_path.read_text())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for k, cell in enumerate(nb.cells):  # stable ids, so rebuilding gives the same file
        cell["id"] = f"cell-{k:02d}"
    return nb


def main() -> int:
    for name in SOURCES:
        path = HERE / name
        nbformat.write(build(path), str(path.with_suffix(".ipynb")))
        print(f"wrote {path.with_suffix('.ipynb')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
