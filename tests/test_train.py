import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_lm import TinyLM, batches, lm_loss, make_model

from lib.train import (
    CheckpointError,
    RunConfig,
    TrainConfig,
    load_checkpoint,
    lr_at,
    param_groups,
    save_checkpoint,
    train,
)
from lib.train.checkpoint import sha256

ROOT = Path(__file__).resolve().parent.parent


RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def quiet(**kw) -> dict:
    """train()'s `config` and `run` keywords from one set of fields, with quick defaults."""
    run = {k: v for k, v in kw.items() if k in RUN_FIELDS}
    hyper = {k: v for k, v in kw.items() if k not in RUN_FIELDS}
    return {
        "config": TrainConfig(**{"warmup_steps": 2, "lr": 1e-2, **hyper}),
        "run": RunConfig(**{"progress": False, **run}),
    }


def losses(records):
    return [r["loss"] for r in records if "loss" in r]


def untimed(records):
    """The records without their timings, which differ from run to run."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]


def test_schedule_warms_up_then_decays_to_the_floor():
    c = TrainConfig(steps=110, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(60, c) == pytest.approx(0.55)  # half way through the cosine: mean of peak, floor
    assert lr_at(110, c) == pytest.approx(0.1)
    assert lr_at(500, c) == pytest.approx(0.1)
    values = [lr_at(s, c) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_param_groups_keep_decay_off_biases_norms_and_embeddings():
    model = TinyLM()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.mix.weight)}
    expected = {model.emb.weight, model.mix.bias, model.norm.weight, model.norm.bias}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in expected}
    assert len(no_decay["params"]) == 4  # the tied head weight is the embedding, counted once


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"warmup_steps": 20, "steps": 10}, "warmup_steps must lie in"),
        ({"grad_accum": 0}, "grad_accum must be at least 1"),
        ({"grad_clip": 0.0}, "grad_clip must be positive"),
        ({"resume": True}, "resume=True needs out_dir"),
        ({"eval_every": -1}, "eval_every must be 0"),
        ({"eval_batches": 0}, "eval_batches must be at least 1"),
    ],
)
def test_bad_config_says_what_to_change(kw, message):
    with pytest.raises(ValueError, match=message):
        quiet(**kw)


def test_training_lowers_the_loss_and_logs_every_step(tmp_path):
    records = train(make_model(), lm_loss, batches, **quiet(steps=30, out_dir=str(tmp_path)))
    trained = losses(records)
    assert len(trained) == 30 and trained[-1] < 0.5 * trained[0]
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == records
    assert set(lines[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
    assert [r["step"] for r in lines] == list(range(1, 31))


def test_clip_grad_norm_is_applied_before_the_step(monkeypatch):
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kw):
        seen.append(
            math.sqrt(
                sum(
                    float(p.grad.pow(2).sum())
                    for g in self.param_groups
                    for p in g["params"]
                    if p.grad is not None
                )
            )
        )
        return original(self, *args, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    config = quiet(steps=2, grad_clip=0.5)
    records = train(make_model(), lambda m, b: 1e4 * lm_loss(m, b), batches, **config)
    assert all(r["grad_norm"] > 100 for r in records)  # the norm is logged before clipping
    assert seen == pytest.approx([0.5, 0.5], rel=1e-4)  # the optimizer sees the clipped one


def test_accumulation_equals_a_larger_batch():
    def large(i):
        parts = [batches(2 * i + k, size=2) for k in range(2)]
        return tuple(torch.cat(t) for t in zip(*parts, strict=True))

    def small(i):
        return batches(i, size=2)

    model_a, model_b = make_model(), make_model()
    model_a.drop.p = model_b.drop.p = 0.0
    a = train(model_a, lm_loss, large, **quiet(steps=5))
    b = train(model_b, lm_loss, small, **quiet(steps=5, grad_accum=2))
    assert losses(a) == pytest.approx(losses(b), abs=1e-6)
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def crash_at(index: int, error: type[BaseException]):
    """Batches that raise `error` when batch `index` is asked for: a run killed mid-way."""

    def get(i):
        if i == index:
            raise error("stopped")
        return batches(i)

    return get


def run(out, steps=12, resume=False, data=batches, seed=0):
    config = quiet(steps=steps, eval_every=4, checkpoint_every=5, out_dir=str(out), resume=resume)
    return train(make_model(seed), lm_loss, data, val_batches=batches, **config)


def test_checkpoints_do_not_change_the_run(tmp_path):
    config = quiet(steps=12, eval_every=4)
    plain = train(make_model(), lm_loss, batches, val_batches=batches, **config)
    assert untimed(run(tmp_path)) == untimed(plain)


@pytest.mark.parametrize("error, saved_step", [(RuntimeError, 5), (KeyboardInterrupt, 7)])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, error, saved_step):
    whole = run(tmp_path / "whole")
    with pytest.raises(error):
        run(tmp_path / "cut", data=crash_at(7, error))  # dies while taking step 8
    # A crash falls back to the last periodic checkpoint (step 5); Ctrl-C saves the steps done.
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["step"] == saved_step
    resumed = run(tmp_path / "cut", resume=True, seed=99)  # the weights come from the checkpoint
    assert losses(resumed) == losses(whole)  # bit for bit, step for step
    assert untimed(resumed) == untimed(whole)  # val losses too; no line of the lost steps
    log = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in log] == resumed


def test_checkpoint_is_written_atomically_and_old_ones_removed(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, 3, model, optimizer)
    save_checkpoint(tmp_path, 6, model, optimizer)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.json", "model-0000006.safetensors", "state-0000006.pt"]
    weights = load_file(tmp_path / "model-0000006.safetensors")
    assert torch.equal(weights["mix.weight"], model.mix.weight)
    assert load_checkpoint(tmp_path, make_model(seed=5), optimizer) == 6


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path, model, optimizer)
    save_checkpoint(tmp_path, 1, model, optimizer)
    (tmp_path / "state-0000001.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_checkpoint(tmp_path, model, optimizer)
    (tmp_path / "checkpoint.json").write_text("{")
    with pytest.raises(CheckpointError, match="is not a checkpoint pointer this runner wrote"):
        load_checkpoint(tmp_path, model, optimizer)


def test_loading_refuses_pickled_code(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, 1, model, optimizer)
    torch.save({"step": 1, "evil": TinyLM}, tmp_path / "state-0000001.pt")
    pointer = json.loads((tmp_path / "checkpoint.json").read_text())
    pointer["sha256"]["state"] = sha256(tmp_path / "state-0000001.pt")  # past the checksum
    (tmp_path / "checkpoint.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(tmp_path, model, optimizer)


def test_ddp_replicas_hold_identical_weights(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "tests" / "ddp_worker.py"),
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    start = load_file(tmp_path / "initial.safetensors")
    assert not torch.equal(start["mix.weight"], rank0["mix.weight"])  # it did train
    metrics = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 4  # rank 0 alone writes the log
