"""Helpers every chapter uses: seeds, devices, the scale, parameter counts, source display, and
lists printed to fit the book's column."""

from __future__ import annotations

import inspect
import os
import random
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

SCALES = ("small", "full")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: `prefer` if given, else CUDA when available, else CPU."""
    if prefer is not None:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"{prefer!r} is not a device; use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} was asked for, but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {prefer!r} was asked for, but MPS is not available here")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device {prefer!r}: the book runs on cpu, cuda or mps")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def scale() -> str:
    """The book's scale: `BOOK_SCALE` if set, else "full" on CUDA and "small" otherwise."""
    value = os.environ.get("BOOK_SCALE", "").strip().lower()
    if value:
        if value not in SCALES:
            raise ValueError(f"BOOK_SCALE={value!r} is not a scale; set it to one of {SCALES}")
        return value
    return "full" if torch.cuda.is_available() else "small"


def check_positive_int(name: str, value: object) -> int:
    """`value` if it is an int >= 1 (not a bool, not a float), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters of `model` (a tied weight is counted once)."""
    params = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in params.values())


class Source:
    """Source code shown as a highlighted block in JupyterLab and in the built book."""

    def __init__(self, code: str, where: str):
        self.code = code
        self.where = where

    def _repr_markdown_(self) -> str:
        return f"*{self.where}*\n\n````python\n{self.code}````\n"

    def __repr__(self) -> str:
        return f"# {self.where}\n{self.code}"


def show_source(obj: object) -> Source:
    """The source of a function, class or module, labelled with its file and lines.

    Decorated functions are unwrapped (`@torch.no_grad()` would otherwise show torch's wrapper),
    and the label is a path inside the repository or, for an installed package, its module path.
    """
    obj = inspect.unwrap(obj) if callable(obj) else obj
    try:
        lines, start = inspect.getsourcelines(obj)
        path = Path(inspect.getsourcefile(obj)).resolve()
    except (TypeError, OSError) as exc:
        message = f"show_source needs a function, class or module defined in a file: {exc}"
        raise TypeError(message) from exc
    root = Path(__file__).resolve().parent.parent
    if path.is_relative_to(root) and "site-packages" not in path.parts:
        name = path.relative_to(root).as_posix()
    else:  # an installed package: name the file by its module, as an import would
        module = inspect.getmodule(obj)
        name = module.__name__.replace(".", "/") + ".py" if module else path.name
    start = max(start, 1)
    return Source("".join(lines), f"{name}, lines {start}–{start + len(lines) - 1}")


def text_columns(text: str) -> int:
    """Columns `text` takes in a monospaced block: a wide (e.g. Chinese) character takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def print_wrapped(label: str, items: Sequence, width: int = 100) -> None:
    """Print `label` and the list `items` as `label [a, b, ...]`, in lines of at most `width`
    columns (`text_columns`), broken between items; a line that wraps is indented by four."""
    line = f"{label} [" if label else "["
    for k, item in enumerate(items):
        piece = repr(item) + ("," if k < len(items) - 1 else "]")
        if line.endswith("[") or text_columns(line) + 1 + text_columns(piece) <= width:
            line += piece if line.endswith("[") else " " + piece
        else:
            print(line)
            line = "    " + piece
    print(line if items else line + "]")
