"""Saved notebooks are what a reader sees: executed in order, no errors, no machine paths.

They are also what strict nbval compares on every machine, so no saved output may carry a
negative zero: whether a tiny result rounds to `-0.` or `0.` depends on the CPU's kernels.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MACHINE_PATH = re.compile(rf"({re.escape(str(ROOT.parent))}/|/tmp/|/root/|/home/[^/\s]+/)")
TOC = (ROOT / "_toc.yml").read_text()
NEGATIVE_ZERO = re.compile(r"(?<![\w.])-0\.0*(?![0-9])")


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


@pytest.mark.parametrize("text", ["[-0.   1.5]", "-0.0", "x = -0.000,", "-0.0e+00"])
def test_negative_zero_is_recognised(text):
    assert NEGATIVE_ZERO.search(text)


@pytest.mark.parametrize("text", ["-0.5", "-0.01", "10-0.5", "0.", "v1.-0"])
def test_other_numbers_are_not_negative_zero(text):
    assert NEGATIVE_ZERO.search(text) is None


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_executed_in_order(path):
    counts = [cell["execution_count"] for cell in code_cells(path)]
    assert None not in counts, f"{path.name}: some cells were never executed; run make execute"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run top to bottom"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_hold_no_errors_or_machine_paths(path):
    for i, cell in enumerate(code_cells(path)):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name} cell {i}: {out.get('ename')}"
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            found = MACHINE_PATH.search(text)
            assert found is None, f"{path.name} cell {i} prints a path of this machine: {found[0]}"
            zero = NEGATIVE_ZERO.search(text)
            assert zero is None, f"{path.name} cell {i} prints a negative zero: {zero[0]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_table_of_contents(path):
    assert f"notebooks/{path.stem}" in TOC, f"add notebooks/{path.stem} to _toc.yml"
