"""Saved notebooks are what a reader sees: executed in order, no errors, no machine paths.

They are also what strict nbval compares on every machine, so no saved output may carry a
negative zero: whether a tiny result rounds to `-0.` or `0.` depends on the CPU's kernels.
"""

import json
import re
from pathlib import Path

import pytest

from lib.utils import text_columns

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


def first_code_cell(path: Path) -> dict:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return next(c for c in cells if c["cell_type"] == "code")


def test_every_chapter_opens_with_the_same_colab_set_up_cell():
    """One cell, the same in every chapter, installs the book where it is missing (Colab)."""
    sources = {path.name: "".join(first_code_cell(path)["source"]) for path in NOTEBOOKS}
    assert len(set(sources.values())) == 1, f"the set-up cells differ: {sorted(sources)}"
    cell = first_code_cell(NOTEBOOKS[0])
    assert cell["metadata"].get("tags") == ["remove-cell"], "the book does not show it"
    assert 'find_spec("lib") is None' in "".join(cell["source"])


def test_the_colab_set_up_cell_does_nothing_where_the_book_is_installed(monkeypatch):
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"the set-up cell ran {args} although lib is installed")

    monkeypatch.setattr(subprocess, "run", refuse)
    before = Path.cwd()
    exec("".join(first_code_cell(NOTEBOOKS[0])["source"]), {})
    assert Path.cwd() == before


def output_text(out: dict) -> str:
    data = out.get("data", {})
    kinds = [out.get("text", "")] + [data.get(kind, "") for kind in ("text/plain", "text/markdown")]
    return "\n".join("".join(text) for text in kinds)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_streams_are_saved_as_a_reader_sees_them(path):
    """`make execute` merges each cell's streams and applies carriage returns (tidy_outputs.py),
    so a progress bar is saved as its final state, not one line per update."""
    for i, cell in enumerate(code_cells(path)):
        streams = [out for out in cell.get("outputs", []) if out["output_type"] == "stream"]
        names = [out["name"] for out in streams]
        assert len(names) == len(set(names)), f"{path.name} cell {i}: run make execute"
        for out in streams:
            assert "\r" not in "".join(out["text"]), f"{path.name} cell {i}: run make execute"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_printed_lines_fit_the_column(path):
    """Code is held to 100 characters by ruff; printed output is held to the same here, the
    width the book's column shows without scrolling (book/_static/book.css), a Chinese character
    counting as two."""
    for i, cell in enumerate(code_cells(path)):
        for out in cell.get("outputs", []):
            for line in output_text(out).splitlines():
                wide = text_columns(line)
                assert wide <= 100, f"{path.name} cell {i} prints {wide} columns: {line}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_sharp_sized_for_the_column_and_described(path):
    """Each figure is drawn at 2x by lib.plot.sharp_figures, at most 800 px wide as shown (the
    column is 816 px at the browser check's 1440 px window), with alt text in its cell."""
    for i, cell in enumerate(code_cells(path)):
        for out in cell.get("outputs", []):
            if "image/png" not in out.get("data", {}):
                continue
            size = out.get("metadata", {}).get("image/png", {})
            assert "width" in size, f"{path.name} cell {i}: call lib.plot.sharp_figures()"
            assert size["width"] <= 800, f"{path.name} cell {i}: {size['width']} px wide"
            alt = cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt.split()) >= 5, f"{path.name} cell {i}: describe the figure in alt"
