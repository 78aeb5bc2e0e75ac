"""Checkpoints that are never seen half-written, and the metrics log that resumes with them.

A run's folder holds:

    metrics.jsonl          one JSON line per optimizer step, and one per evaluation
    checkpoint.json        which checkpoint is the latest (written last, atomically)
    model-STEP.safetensors the model weights
    state-STEP.pt          optimizer, RNG and step (tensors and plain values only)
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file and a rename, so it is never seen half-written."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    """The random number generators' state: what dropout will draw next."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": random.getstate(),
    }


def save_checkpoint(
    out: Path, step: int, model: nn.Module, optimizer, rng: dict | None = None
) -> None:
    """Save weights (safetensors) and the rest of the state; then point checkpoint.json at them."""
    out.mkdir(parents=True, exist_ok=True)
    model_file, state_file = f"model-{step:07d}.safetensors", f"state-{step:07d}.pt"
    state = {"step": step, "optimizer": optimizer.state_dict(), **(rng or rng_state())}
    _atomic(out / model_file, lambda p: save_model(model, str(p)))
    _atomic(out / state_file, lambda p: torch.save(state, p))
    pointer = json.dumps({"step": step, "model": model_file, "state": state_file})
    old = _read_pointer(out)
    _atomic(out / "checkpoint.json", lambda p: p.write_text(pointer + "\n"))
    if old is not None and old["step"] != step:
        for name in (old["model"], old["state"]):
            (out / name).unlink(missing_ok=True)


def _read_pointer(out: Path) -> dict | None:
    path = out / "checkpoint.json"
    if not path.is_file():
        return None
    try:
        pointer = json.loads(path.read_text())
        return {"step": int(pointer["step"]), "model": pointer["model"], "state": pointer["state"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a valid checkpoint pointer: {exc}") from exc


def load_checkpoint(out: Path, model: nn.Module, optimizer) -> int:
    """Restore weights, optimizer and RNG from `out`; return the step to continue from."""
    pointer = _read_pointer(out)
    if pointer is None:
        raise CheckpointError(f"no checkpoint in {out}: run without --resume to start afresh")
    try:
        load_model(model, str(out / pointer["model"]))
        state = torch.load(out / pointer["state"], weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # safetensors, pickle and shape errors all mean the same here
        raise CheckpointError(f"cannot load the checkpoint in {out}: {exc}") from exc
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(_as_tuple(state["python_rng"]))
    return state["step"]


def _as_tuple(value):
    """random.setstate wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


class MetricsLog:
    """Appends JSON lines to metrics.jsonl; on resume it first drops lines after the checkpoint."""

    def __init__(self, out: Path | None, resume_step: int):
        self.path = None if out is None else out / "metrics.jsonl"
        self.records: list[dict] = []
        if self.path is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        if resume_step > 0 and self.path.is_file():
            kept = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            self.records = [r for r in kept if r["step"] <= resume_step]
        _atomic(
            self.path, lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        )

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
