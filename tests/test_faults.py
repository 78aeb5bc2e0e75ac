"""Training runs never lose work: lib.train and its command line under faults and bad input.

Each of the ways a run could lose data has its test (a pointer aimed outside the run folder,
a second run into the same folder, SIGTERM, a NaN loss, a corrupt file, an empty --out). Three
tables then try bad input the way a hostile but realistic user would: command lines, damaged
run folders, and calls into the library; each must give one line naming the fix, never a
traceback or a silent wrong result.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
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
    def hyper(steps):  # a fixed horizon, so that the run may grow from 12 to 14 steps
        return TrainConfig(steps=steps, warmup_steps=2, lr=1e-2, decay_steps=14)

    def run(out, resume=False):
        return RunConfig(out_dir=str(out), resume=resume, progress=False)

    whole = train(make_model(), lm_loss, batches, hyper(14), run=run(tmp_path / "whole"))
    cut = tmp_path / "cut"
    train(make_model(), lm_loss, batches, hyper(12), run=run(cut))
    with (cut / "metrics.jsonl").open("a") as f:
        f.write('{"step": 13, "lo')  # a crash in the middle of a line
    (cut / "model-0000013.safetensors.tmp").write_bytes(b"half a file")
    resumed = train(make_model(), lm_loss, batches, hyper(14), run=run(cut, resume=True))
    assert [r["step"] for r in resumed] == list(range(1, 15))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]
    assert not list(cut.glob("*.tmp"))


def test_sigterm_saves_the_finished_steps_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lib.train", "--model", "gpt", "--device", "cpu"]
    command += ["--out", str(out), "--no-progress", "--lr-decay-steps", "500"]
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


def test_kill_9_at_a_random_step_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    command = [sys.executable, "-m", "lib.train", "--model", "gpt", "--device", "cpu"]
    command += ["--steps", "30", "--checkpoint-every", "5", "--no-progress"]
    env = {**os.environ, "BOOK_SCALE": "small", "OMP_NUM_THREADS": "1"}  # one summation order

    def metrics(out: Path) -> list[dict]:
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in lines]

    whole = subprocess.run([*command, "--out", str(tmp_path / "whole")], env=env, timeout=300)
    assert whole.returncode == 0
    cut, kill_after = tmp_path / "cut", random.Random(7).randint(6, 27)
    proc = subprocess.Popen([*command, "--out", str(cut)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (cut / "metrics.jsonl").exists() and len(metrics_lines(cut)) >= kill_after:
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no handler runs, nothing is saved at the moment of death
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    resumed = subprocess.run([*command, "--out", str(cut), "--resume"], env=env, timeout=300)
    assert resumed.returncode == 0
    assert metrics(cut) == metrics(tmp_path / "whole")


def metrics_lines(out: Path) -> list[str]:
    return (out / "metrics.jsonl").read_text().splitlines()


# name -> (arguments after --model gpt, what the one line must say); OUT is a new folder,
# FILE an existing file.
BAD_COMMAND_LINES = {
    "no steps": ("--steps 0 --out OUT", "steps must be at least 1"),
    "negative steps": ("--steps -3 --out OUT", "steps must be at least 1"),
    "steps not a number": ("--steps abc --out OUT", "argument --steps: invalid int value: 'abc'"),
    "negative checkpoint interval": (
        "--steps 2 --checkpoint-every -5 --out OUT",
        "checkpoint_every must be 0 (off) or positive",
    ),
    "no micro-batches": ("--steps 2 --grad-accum 0 --out OUT", "grad_accum must be at least 1"),
    "negative decay horizon": (
        "--steps 2 --lr-decay-steps -1 --out OUT",
        "decay_steps must be at least 1 or None, got -1",
    ),
    # argparse would otherwise read --lr as --lr-decay-steps, a silent wrong schedule
    "abbreviated flag": ("--steps 2 --lr 1 --out OUT", "unrecognized arguments: --lr 1"),
    "unknown model": ("--model bart --steps 2 --out OUT", "invalid choice: 'bart'"),
    "unknown device": ("--steps 2 --device gpu --out OUT", "'gpu' is not a device"),
    "malformed device": ("--steps 2 --device cuda:x --out OUT", "'cuda:x' is not a device"),
    "absent CUDA": ("--steps 2 --device cuda --out OUT", "CUDA is not available"),
    "absent MPS": ("--steps 2 --device mps --out OUT", "MPS is not available"),
    "out is a file": ("--steps 2 --out FILE", "is a file"),
    "out below a file": ("--steps 2 --out FILE/run", "cannot write the run folder"),
    "nothing to resume": ("--steps 2 --resume --out OUT", "nothing to resume"),
    "resume and overwrite": (
        "--steps 2 --resume --overwrite --out OUT",
        "resume and overwrite exclude each other",
    ),
    "unknown data": ("--steps 2 --data wiki --out OUT", "gpt trains on"),
    "unknown preset": ("--steps 2 --preset 124M --out OUT", "unknown preset '124M'"),
}


def exit_code(argv: list[str]) -> int:
    """`main`'s exit status, also where argparse exits (status 2) on a malformed command line."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("name", list(BAD_COMMAND_LINES))
def test_a_bad_command_line_is_one_clear_line(name, tmp_path, capsys):
    if name == "absent CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if name == "absent MPS" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    (tmp_path / "file").write_text("not a folder")
    words, message = BAD_COMMAND_LINES[name]
    words = words.replace("OUT", str(tmp_path / "new")).replace("FILE", str(tmp_path / "file"))
    assert exit_code(["--model", "gpt", "--no-progress", *words.split()]) in (1, 2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m lib.train: error: "), err
    assert message in err
    assert not (tmp_path / "new" / "metrics.jsonl").exists()  # refused before training


# A finished 2-step run whose checkpoint.json or files are then damaged: name -> (the damage,
# what the one line must say). The resume is refused and the run's metrics stay as they were.
DAMAGED_RUNS = {
    "pointer not JSON": ({"raw": "garbage{"}, "is not a checkpoint pointer this runner wrote"),
    "pointer a list": ({"raw": "[1, 2]"}, "is not a checkpoint pointer this runner wrote"),
    "pointer without step": ({"drop": "step"}, "is not a checkpoint pointer this runner wrote"),
    "step a string": ({"set": ("step", "2")}, "not a checkpoint of this folder"),
    "step negative": ({"set": ("step", -1)}, "not a checkpoint of this folder"),
    "checksums not a table": ({"set": ("sha256", "x")}, "not a checkpoint of this folder"),
    "settings not a table": ({"set": ("settings", [])}, "not a checkpoint of this folder"),
    "state file gone": ({"remove": "state"}, "is missing: checkpoint.json points at it"),
    "weights truncated": ({"truncate": "model"}, "does not match the SHA-256"),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    common = ["--model", "gpt", "--no-progress", "--lr-decay-steps", "4", "--out", str(out)]
    assert main([*common, "--steps", "2"]) == 0
    return out


@pytest.mark.parametrize("name", list(DAMAGED_RUNS))
def test_a_damaged_run_is_refused_in_one_line(name, finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    metrics = (out / "metrics.jsonl").read_bytes()
    damage, message = DAMAGED_RUNS[name]
    pointer_path = out / "checkpoint.json"
    pointer = json.loads(pointer_path.read_text())
    if "raw" in damage:
        pointer_path.write_text(damage["raw"])
    elif "drop" in damage:
        del pointer[damage["drop"]]
    elif "set" in damage:
        key, value = damage["set"]
        pointer[key] = value
    elif "remove" in damage:
        (out / pointer[damage["remove"]]).unlink()
    else:
        with (out / pointer[damage["truncate"]]).open("r+b") as file:
            file.truncate(100)
    if not {"raw", "remove", "truncate"} & set(damage):
        pointer_path.write_text(json.dumps(pointer))
    capsys.readouterr()
    argv = ["--model", "gpt", "--no-progress", "--lr-decay-steps", "4", "--out", str(out)]
    assert main([*argv, "--steps", "4", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert (out / "metrics.jsonl").read_bytes() == metrics


def test_an_empty_out_is_refused(capsys):
    assert main(["--model", "gpt", "--steps", "2", "--out", "", "--no-progress"]) == 1
    assert "out_dir is empty" in capsys.readouterr().err


# --- a resumed run is the run it continues ------------------------------------------------


def test_a_resume_with_another_seed_is_refused(tmp_path):
    run_into(tmp_path)
    with pytest.raises(ValueError, match="started with seed=0, and this resume asks for seed=1"):
        run_into(tmp_path, resume=True, seed=1)


def test_a_resume_past_the_end_is_refused(tmp_path):
    run_into(tmp_path)
    run = RunConfig(out_dir=str(tmp_path), resume=True, progress=False)
    shorter = TrainConfig(steps=10, warmup_steps=2, lr=1e-2)
    with pytest.raises(ValueError, match="at step 12, past steps=10: nothing to train"):
        train(make_model(), lm_loss, batches, shorter, run=run)


def test_steps_may_grow_only_on_a_fixed_horizon(tmp_path):
    def hyper(steps, decay_steps=None):
        return TrainConfig(steps=steps, warmup_steps=2, lr=1e-2, decay_steps=decay_steps)

    def run(out, resume=False):
        return RunConfig(out_dir=str(out), resume=resume, progress=False)

    train(make_model(), lm_loss, batches, hyper(6), run=run(tmp_path / "a"))
    with pytest.raises(ValueError, match="its learning rate decays over them"):
        train(make_model(), lm_loss, batches, hyper(12), run=run(tmp_path / "a", resume=True))
    straight = train(make_model(), lm_loss, batches, hyper(12, 12), run=run(tmp_path / "b"))
    train(make_model(), lm_loss, batches, hyper(6, 12), run=run(tmp_path / "c"))
    grown = train(make_model(), lm_loss, batches, hyper(12, 12), run=run(tmp_path / "c", True))
    assert [r["loss"] for r in grown] == [r["loss"] for r in straight]  # bit for bit


def test_the_command_line_names_the_flag_that_differs(tmp_path, capsys):
    common = ["--model", "gpt", "--steps", "2", "--out", str(tmp_path), "--no-progress"]
    assert main([*common, "--preset", "shakespeare-char"]) == 0
    capsys.readouterr()
    assert main([*common, "--preset", "shakespeare-char-full", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "started with preset='shakespeare-char'" in err


# --- bad input to the library: one clear error, never a wrong result ----------------------


def _library_calls() -> dict:
    """name -> (a call with bad input, the exception it must raise, what its message says)."""
    from lib.data.lm import lm_batches
    from lib.generate import generate, sample_next
    from lib.hf import gpt_config_from_hf, gpt_from_hf
    from lib.models.gpt import GPT, GPTConfig
    from lib.models.transformer import TransformerConfig
    from lib.tokenizer import BPETokenizer, CharTokenizer

    gpt = GPT(GPTConfig(vocab_size=5, max_seq_len=8, d_model=8, n_layers=1, n_heads=2))
    prompt = torch.zeros(1, 2, dtype=torch.long)
    ids = torch.arange(50)

    def saved(text: str | bytes) -> Path:
        path = Path(tempfile.mkdtemp()) / "tokenizer.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    bpe = '{"type": "BPETokenizer", "pattern": null, "merges": %s}'
    return {
        "heads a bool": (lambda: GPTConfig(n_heads=True), ValueError, "positive integer, got True"),
        "no heads": (lambda: TransformerConfig(n_heads=0), ValueError, "positive integer, got 0"),
        "NaN logits": (
            lambda: sample_next(torch.tensor([[0.0, float("nan")]]), temperature=0),
            ValueError,
            "the model's logits hold NaN",
        ),
        "fractional new tokens": (
            lambda: generate(gpt, prompt, 2.5),
            ValueError,
            "max_new_tokens must be an integer >= 0, got 2.5",
        ),
        "negative temperature": (
            lambda: generate(gpt, prompt, 2, temperature=-1),
            ValueError,
            "temperature must be a finite number >= 0",
        ),
        "ids outside the vocabulary": (
            lambda: generate(gpt, torch.tensor([[7]]), 2),
            IndexError,
            "token ids must lie in [0, 5)",
        ),
        "prompt past the context": (
            lambda: generate(gpt, torch.zeros(1, 9, dtype=torch.long), 2),
            ValueError,
            "past the model's max_seq_len=8",
        ),
        "converter given our GPT": (
            lambda: gpt_from_hf(gpt),
            TypeError,
            "converts a transformers GPT2LMHeadModel, got GPT",
        ),
        "config converter given ours": (
            lambda: gpt_config_from_hf(gpt.config),
            TypeError,
            "converts GPT-2",
        ),
        "batch of no sequences": (
            lambda: lm_batches(ids, 0, 8),
            ValueError,
            "batch_size must be a positive integer, got 0",
        ),
        "fractional batch": (
            lambda: lm_batches(ids, 2.5, 8),
            ValueError,
            "batch_size must be a positive integer, got 2.5",
        ),
        "data of two dimensions": (lambda: lm_batches(ids[None], 2, 8), ValueError, "1-D tensor"),
        "tokenizer not JSON": (
            lambda: BPETokenizer.load(saved("merges: 1")),
            ValueError,
            "is not a JSON file",
        ),
        "tokenizer binary": (
            lambda: BPETokenizer.load(saved(b"\xff\xfe\x00")),
            ValueError,
            "is not a JSON file",
        ),
        "tokenizer of another kind": (
            lambda: BPETokenizer.load(saved('{"type": "CharTokenizer", "chars": "ab"}')),
            ValueError,
            "does not hold a saved BPETokenizer",
        ),
        "merge of an unknown token": (
            lambda: BPETokenizer.load(saved(bpe % "[[0, 999]]")),
            ValueError,
            "refers to a token not yet in the vocabulary",
        ),
        "broken split pattern": (
            lambda: BPETokenizer.load(saved(bpe.replace("null", '"("') % "[]")),
            ValueError,
            "'pattern' is not a regular expression",
        ),
        "characters repeated": (
            lambda: CharTokenizer.load(saved('{"type": "CharTokenizer", "chars": "aab"}')),
            ValueError,
            "a string of distinct characters",
        ),
        "learning rate NaN": (
            lambda: TrainConfig(lr=float("nan")),
            ValueError,
            "need a finite lr > 0",
        ),
        "beta of one or more": (
            lambda: TrainConfig(betas=(0.9, 1.5)),
            ValueError,
            "betas in [0, 1)",
        ),
        "negative weight decay": (
            lambda: TrainConfig(weight_decay=-0.1),
            ValueError,
            "need weight_decay >= 0",
        ),
        "no evaluation batches": (
            lambda: RunConfig(eval_batches=0),
            ValueError,
            "eval_batches must be at least 1",
        ),
    }


LIBRARY_CALLS = _library_calls()


@pytest.mark.parametrize("name", list(LIBRARY_CALLS))
def test_bad_library_input_is_a_clear_error(name):
    call, error, message = LIBRARY_CALLS[name]
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- downloads ---------------------------------------------------------------------------
# The corpora ship in data/ (sha256-checked, lib/data/corpora.py) and weights come from pip
# packages, so nothing in lib/ downloads and no half-downloaded file can be installed. This
# test keeps it so: a network module imported anywhere in lib/ fails it.

NETWORK_MODULES = {"urllib", "http", "socket", "requests", "httpx", "ftplib", "huggingface_hub"}


def test_lib_downloads_nothing():
    import ast

    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            found += [f"{path}: {n}" for n in names if n.split(".")[0] in NETWORK_MODULES]
    assert not found, found
