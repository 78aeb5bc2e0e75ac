"""Merge each cell's stream outputs as a Jupyter front end shows them: `make execute` runs this.

A progress bar writes one stream message per update, each opening with a carriage return; the
book would print every one of them on its own line. Merged and with carriage returns applied, as
nbval does before comparing (so strict nbval still sees the same outputs), only the bar's final
state is saved.

    python tests/tidy_outputs.py notebooks/05_transformer.ipynb [...]
"""

import sys

import nbformat
from nbval.plugin import coalesce_streams


def tidy(path: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.outputs)
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        tidy(name)
