"""Checkpoints that are never seen half-written, never point outside their folder, and are
verified on load; and the metrics log that resumes with them.

A run's folder holds:

    metrics.jsonl          one JSON line per optimizer step, and one per evaluation
    checkpoint.json        the latest checkpoint: its step, files, their SHA-256 and the run's
                           settings (written last)
    model-STEP.safetensors the model weights
    state-STEP.pt          optimizer, RNG and step (tensors and plain values only)
    .lock                  held while a run trains here, so that a second one is refused
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

# The only names checkpoint.json may give: files of this folder, never a path elsewhere.
FILE_NAMES = {
    "model": re.compile(r"model-\d{7}\.safetensors"),
    "state": re.compile(r"state-\d{7}\.pt"),
}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file and a rename, so it is never seen half-written."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict:
    """The random number generators' state: what dropout will draw next."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": random.getstate(),
    }


def save_checkpoint(
    out: Path,
    step: int,
    model: nn.Module,
    optimizer,
    rng: dict | None = None,
    settings: dict | None = None,
) -> None:
    """Save weights (safetensors) and the rest of the state; then point checkpoint.json at them.

    The previous checkpoint's files are removed only after the new pointer is in place, so a
    crash at any moment leaves one complete, verifiable checkpoint.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = {"model": f"model-{step:07d}.safetensors", "state": f"state-{step:07d}.pt"}
    state = {"step": step, "optimizer": optimizer.state_dict(), **(rng or rng_state())}
    _atomic(out / files["model"], lambda p: save_model(model, str(p)))
    _atomic(out / files["state"], lambda p: torch.save(state, p))
    digests = {kind: sha256(out / name) for kind, name in files.items()}
    pointer = json.dumps({"step": step, **files, "sha256": digests, "settings": settings})
    old = read_pointer(out)
    _atomic(out / "checkpoint.json", lambda p: p.write_text(pointer + "\n"))
    if old is not None and old["step"] != step:
        for kind in FILE_NAMES:
            (out / old[kind]).unlink(missing_ok=True)


def read_pointer(out: Path) -> dict | None:
    """checkpoint.json of `out`, checked: a step, and file names that stay inside `out`."""
    path = out / "checkpoint.json"
    if not path.is_file():
        return None
    try:
        pointer = json.loads(path.read_text())
        step = pointer["step"]
        names = {kind: pointer[kind] for kind in FILE_NAMES}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path} is not a checkpoint pointer this runner wrote ({exc!r}): restore the file "
            "or start afresh in a new folder"
        ) from exc
    bad = {
        k: v for k, v in names.items() if not (isinstance(v, str) and FILE_NAMES[k].fullmatch(v))
    }
    sha256, settings = pointer.get("sha256", {}), pointer.get("settings")
    if not (isinstance(sha256, dict) and all(isinstance(v, str) for v in sha256.values())):
        bad["sha256"] = sha256
    if not (
        settings is None or isinstance(settings, dict) and isinstance(settings.get("train"), dict)
    ):
        bad["settings"] = settings
    if not isinstance(step, int) or step < 0 or bad:
        raise CheckpointError(
            f"{path} names {bad or {'step': step}}, not a checkpoint of this folder (expected "
            "model-NNNNNNN.safetensors and state-NNNNNNN.pt): restore the file or start afresh "
            "in a new folder"
        )
    return {
        "step": step,
        **names,
        "sha256": sha256,
        "settings": settings,
    }


def load_checkpoint(out: Path, model: nn.Module, optimizer) -> int:
    """Restore weights, optimizer and RNG from `out`, each file verified against its SHA-256
    in checkpoint.json; return the step to continue from."""
    pointer = read_pointer(out)
    if pointer is None:
        raise CheckpointError(
            f"no checkpoint in {out}: nothing to resume; start afresh without --resume (with "
            "--overwrite if the folder holds a run's metrics), or in another folder"
        )
    for kind in FILE_NAMES:
        path, expected = out / pointer[kind], pointer["sha256"].get(kind)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: checkpoint.json points at it")
        if expected is not None and sha256(path) != expected:
            raise CheckpointError(
                f"{path} does not match the SHA-256 that checkpoint.json records: the file is "
                "corrupt; restore it from a copy, or start afresh in a new folder"
            )
    try:
        load_model(model, str(out / pointer["model"]))
        state = torch.load(out / pointer["state"], weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        rng = state["torch_rng"], state["cuda_rng"], _as_tuple(state["python_rng"])
    except Exception as exc:  # safetensors, pickle, shape and key errors all mean the same here
        raise CheckpointError(f"cannot load the checkpoint in {out}: {exc!r}") from exc
    torch.set_rng_state(rng[0])
    if rng[1] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng[1])
    random.setstate(rng[2])
    return state["step"]


def _as_tuple(value):
    """random.setstate wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def remove_orphans(out: Path) -> list[str]:
    """Delete the temporary files a crash mid-write left in `out`; their names."""
    orphans = sorted(p.name for p in out.glob("*.tmp"))
    for name in orphans:
        (out / name).unlink(missing_ok=True)
    return orphans


class RunLock:
    """An exclusive lock on `out/.lock` while a run trains there: a second process is refused.

    The operating system releases it when the process ends, however it ends (kill -9 too).
    """

    def __init__(self, out: Path):
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.file = (out / ".lock").open("w")
        except OSError as exc:  # a file on the way, a read-only disk, no permission
            raise CheckpointError(
                f"cannot write the run folder {out}: {exc.strerror}; choose another --out"
            ) from None
        try:
            _lock(self.file, exclusive=True)
        except OSError:  # BlockingIOError on POSIX, PermissionError on Windows
            self.file.close()
            raise CheckpointError(
                f"another process is training into {out}; wait for it, or choose another folder"
            ) from None

    def release(self) -> None:
        _lock(self.file, exclusive=False)
        self.file.close()


def _lock(file, exclusive: bool) -> None:
    """Take (without waiting) or give back the lock on an open file: flock, or msvcrt on Windows."""
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK if exclusive else msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_UN)


class MetricsLog:
    """Appends JSON lines to metrics.jsonl; on resume it first drops lines after the checkpoint.

    A last line torn by a crash mid-write is dropped (its step is redone); a broken line before
    the last is corruption, and stops the resume with the file and line named.
    """

    def __init__(self, out: Path | None, resume_step: int):
        self.path = None if out is None else out / "metrics.jsonl"
        self.records: list[dict] = []
        if self.path is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        if resume_step > 0 and self.path.is_file():
            lines = self.path.read_text().splitlines()
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    if number == len(lines):
                        break  # torn by a crash: the step it logged is redone
                    raise CheckpointError(
                        f"{self.path}, line {number}, is not JSON: repair or remove that line"
                    ) from None
                if record["step"] <= resume_step:
                    self.records.append(record)
        _atomic(
            self.path, lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        )

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
