"""Training runs never lose work: lib.train and its command line under faults and bad input.

Each of the ways a run could lose data has its test (a pointer aimed outside the run folder,
a second run into the same folder, SIGTERM, a NaN loss, a corrupt file, an empty --out), and
a table of bad command lines checks that each gives one line naming the fix, and no traceback.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_lm import batches, lm_loss, make_model

from lib.cli import main
from lib.train import (
    CheckpointError,
    NonFiniteLossError,
    RunConfig,
    RunLock,
    TrainConfig,
    load_checkpoint,
    train,
)

HYPER = TrainConfig(steps=12, warmup_steps=2, lr=1e-2)


def run_into(out: Path, **kw) -> list[dict]:
    """The tiny model trained into `out`, checkpointing every 5 steps."""
    run = RunConfig(out_dir=str(out), checkpoint_every=5, progress=False, **kw)
    return train(make_model(), lm_loss, batches, HYPER, run=run)


def test_a_pointer_cannot_name_files_outside_the_run(tmp_path):
    out, victim = tmp_path / "run", tmp_path / "victim"
    run_into(out)
    victim.write_text("someone else's file")
    pointer = {"step": 999, "model": "../victim", "state": str(victim)}
    (out / "checkpoint.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="not a checkpoint of this folder"):
        run_into(out, resume=True)
    with pytest.raises(CheckpointError, match="not a checkpoint of this folder"):
        run_into(out, overwrite=True)  # saving reads the old pointer before deleting its files
    assert victim.read_text() == "someone else's file"


def test_a_run_folder_is_continued_or_replaced_only_when_asked(tmp_path):
    run_into(tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run; continue it with --resume"):
        run_into(tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert len(run_into(tmp_path, overwrite=True)) == HYPER.steps


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    lock = RunLock(tmp_path)  # as a run in another process holds it
    try:
        with pytest.raises(CheckpointError, match="another process is training into"):
            run_into(tmp_path)
    finally:
        lock.release()
    assert len(run_into(tmp_path)) == HYPER.steps  # released: the folder is free again


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    def poisoned(i):
        x, y = batches(i)
        return x, y, torch.tensor(float("nan") if i == 7 else 1.0)

    def weighted(model, batch):
        x, y, weight = batch
        return weight * lm_loss(model, (x, y))

    run = RunConfig(out_dir=str(tmp_path), checkpoint_every=5, progress=False)
    with pytest.raises(NonFiniteLossError, match="the loss of step 8 is nan"):
        train(make_model(), weighted, poisoned, HYPER, run=run)
    pointer = json.loads((tmp_path / "checkpoint.json").read_text())
    weights = load_file(tmp_path / pointer["model"])
    assert pointer["step"] == 5 and all(torch.isfinite(w).all() for w in weights.values())


def test_a_corrupt_byte_is_found_on_load(tmp_path):
    run_into(tmp_path)
    pointer = json.loads((tmp_path / "checkpoint.json").read_text())
    data = bytearray((tmp_path / pointer["model"]).read_bytes())
    data[-3] ^= 0x01  # one bit of one weight: safetensors alone would load it
    (tmp_path / pointer["model"]).write_bytes(bytes(data))
    model = make_model()
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()))


def test_a_torn_metrics_line_and_orphaned_files_are_repaired_on_resume(tmp_path):
    whole = run_into(tmp_path / "whole")
    cut = tmp_path / "cut"
    run_into(cut)
    pointer = json.loads((cut / "checkpoint.json").read_text())
    assert pointer["step"] == HYPER.steps
    with (cut / "metrics.jsonl").open("a") as f:
        f.write('{"step": 13, "lo')  # a crash in the middle of a line
    (cut / "model-0000013.safetensors.tmp").write_bytes(b"half a file")
    longer = TrainConfig(steps=14, warmup_steps=2, lr=1e-2)
    run = RunConfig(out_dir=str(cut), resume=True, progress=False)
    resumed = train(make_model(), lm_loss, batches, longer, run=run)
    assert [r["step"] for r in resumed] == list(range(1, 15))
    assert [r["loss"] for r in resumed[:12]] == [r["loss"] for r in whole]
    assert not list(cut.glob("*.tmp"))


def test_sigterm_saves_the_finished_steps_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lib.train", "--model", "gpt", "--device", "cpu"]
    command += ["--out", str(out), "--no-progress"]
    env = {**os.environ, "BOOK_SCALE": "small"}
    proc = subprocess.Popen([*command, "--steps", "500"], env=env, stderr=subprocess.PIPE)
    metrics, deadline = out / "metrics.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and (
        not metrics.exists() or len(metrics.read_text().splitlines()) < 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert "Traceback" not in stderr.decode()
    saved = json.loads((out / "checkpoint.json").read_text())["step"]
    assert saved >= 3
    resumed = subprocess.run(
        [*command, "--steps", str(saved + 2), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "checkpoint.json").read_text())["step"] == saved + 2


# name -> (arguments after --model gpt, what the one line must say); OUT is a new folder,
# FILE an existing file.
BAD_COMMAND_LINES = {
    "no steps": ("--steps 0 --out OUT", "steps must be at least 1"),
    "negative steps": ("--steps -3 --out OUT", "steps must be at least 1"),
    "negative checkpoint interval": (
        "--steps 2 --checkpoint-every -5 --out OUT",
        "checkpoint_every must be 0 (off) or positive",
    ),
    "no micro-batches": ("--steps 2 --grad-accum 0 --out OUT", "grad_accum must be at least 1"),
    "unknown device": ("--steps 2 --device gpu --out OUT", "'gpu' is not a device"),
    "absent CUDA": ("--steps 2 --device cuda --out OUT", "CUDA is not available"),
    "out is a file": ("--steps 2 --out FILE", "is a file"),
    "nothing to resume": ("--steps 2 --resume --out OUT", "nothing to resume"),
    "resume and overwrite": (
        "--steps 2 --resume --overwrite --out OUT",
        "resume and overwrite exclude each other",
    ),
    "unknown data": ("--steps 2 --data wiki --out OUT", "gpt trains on"),
    "unknown preset": ("--steps 2 --preset 124M --out OUT", "unknown preset '124M'"),
}


@pytest.mark.parametrize("name", list(BAD_COMMAND_LINES))
def test_a_bad_command_line_is_one_clear_line(name, tmp_path, capsys):
    if name == "absent CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "file").write_text("not a folder")
    words, message = BAD_COMMAND_LINES[name]
    paths = {"OUT": str(tmp_path / "new"), "FILE": str(tmp_path / "file")}
    argv = [paths.get(word, word) for word in words.split()]
    assert main(["--model", "gpt", "--no-progress", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m lib.train: error: "), err
    assert message in err
    assert not (tmp_path / "new" / "metrics.jsonl").exists()  # refused before training


def test_an_empty_out_is_refused(capsys):
    assert main(["--model", "gpt", "--steps", "2", "--out", "", "--no-progress"]) == 1
    assert "out_dir is empty" in capsys.readouterr().err
