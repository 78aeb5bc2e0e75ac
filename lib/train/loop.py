"""The training loop: `train_step` is one optimizer step, `train` runs them with checkpoints.

Batches are a function of an index, `batches(i)`, never a stateful iterator: a resumed run, or
each process of a distributed one, asks for exactly the batches an uninterrupted run would see.
Launched by torchrun (WORLD_SIZE > 1), `train` joins the process group and wraps the model in
DistributedDataParallel; process r of w takes the batches r, r + w, r + 2w, ...
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from lib.train.checkpoint import (
    MetricsLog,
    RunLock,
    load_checkpoint,
    read_pointer,
    remove_orphans,
    rng_state,
    save_checkpoint,
)
from lib.train.config import RunConfig, TrainConfig
from lib.train.optim import lr_at, make_optimizer
from lib.utils import get_device

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The loss came out inf or NaN: the run stops before that step changes the weights."""


def distributed_setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def autocast_for(device: torch.device):
    """bfloat16 autocast on CUDA; on the CPU float32 throughout."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: LossFn, batches, n: int, device) -> float:
    """Mean loss over the fixed batches 0..n-1 of `batches`, with the model in eval mode."""
    was_training = model.training
    model.eval()
    total = sum(loss_fn(model, _to(batches(i), device)).item() for i in range(n))
    model.train(was_training)
    return total / n


def _to(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device, non_blocking=True) for t in batch)


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[[int], Batch],
    optimizer: torch.optim.Optimizer,
    step: int,
    config: TrainConfig,
) -> dict:
    """Optimizer step `step` (0-based) over `config.grad_accum` micro-batches; its metrics.

    `model` may be wrapped in DistributedDataParallel or torch.compile: its parameters are the
    model's own, so clipping and the optimizer see the same tensors either way.
    """
    began = time.perf_counter()
    device = next(model.parameters()).device
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_sum, tokens = torch.zeros((), device=device), 0
    for micro in range(config.grad_accum):
        # Every process takes its own batch; together they see each index exactly once.
        batch = _to(batches((step * config.grad_accum + micro) * world + rank), device)
        sync = micro == config.grad_accum - 1 or world == 1
        with contextlib.nullcontext() if sync else model.no_sync(), autocast_for(device):
            loss = loss_fn(model, batch) / config.grad_accum
        loss.backward()
        loss_sum += loss.detach()
        tokens += batch[0].numel() * world
    if world > 1:  # log the loss averaged over all processes, not rank 0's alone
        dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
    loss = loss_sum.item()
    if not math.isfinite(loss):  # every process sees the same average, and stops alike
        raise NonFiniteLossError(
            f"the loss of step {step + 1} is {loss}; stopped before the optimizer step, so the "
            "last checkpoint stays finite: lower lr or check the batch, then resume"
        )
    clip = config.grad_clip if config.grad_clip is not None else math.inf
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - began
    return {
        "step": step + 1,
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": tokens / elapsed,
    }


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[[int], Batch],
    config: TrainConfig,
    val_batches: Callable[[int], Batch] | None = None,
    run: RunConfig | None = None,
) -> list[dict]:
    """Train `model` in place on `batches(i)` and return the metric records of the run.

    With `run.out_dir`, the folder is locked for the run, a folder that holds a run is continued
    only with `run.resume` (or replaced with `run.overwrite`), and SIGTERM saves like Ctrl-C.
    """
    run = run or RunConfig()
    device = get_device(run.device)
    rank, world = distributed_setup(device)
    out = Path(run.out_dir) if run.out_dir else None
    lock = _claim(out, run) if out is not None and rank == 0 else None
    try:
        with _sigterm_as_interrupt():
            return _train(model, loss_fn, batches, config, val_batches, run, device, out)
    finally:
        if lock is not None:
            lock.release()


def _claim(out: Path, run: RunConfig) -> RunLock:
    """Lock `out` for this run, after checking that the run may write there."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the run's output must be a folder")
    holds_run = (out / "checkpoint.json").exists() or (out / "metrics.jsonl").exists()
    if holds_run and not (run.resume or run.overwrite):
        raise ValueError(
            f"{out} already holds a run; continue it with --resume (resume=True), replace it "
            "with --overwrite (overwrite=True), or choose another folder"
        )
    lock = RunLock(out)
    remove_orphans(out)  # temporary files of a write that a crash cut short
    return lock


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's stop, `kill`) is handled as Ctrl-C: the finished steps are saved."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can be set only from the main thread
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_settings(config: TrainConfig, run: RunConfig) -> dict:
    """What makes a run the run it is, as JSON values: kept with every checkpoint."""
    settings = {"train": asdict(config), "seed": run.seed, "identity": run.identity}
    return json.loads(json.dumps(settings))


def check_continues(stored: dict | None, settings: dict, start: int, out: Path) -> str | None:
    """Refuse a resume that would not continue the run in `out`; say what an allowed change is.

    Every setting must match, except `steps`, which may change only where the schedule's
    horizon (`decay_steps`) is fixed and so does not follow it.
    """
    if stored is None:
        return None  # a checkpoint from before settings were kept: nothing to compare
    now = {"seed": settings["seed"], **(settings["identity"] or {}), **settings["train"]}
    then = {"seed": stored.get("seed"), **(stored.get("identity") or {}), **stored["train"]}
    steps, started = now["steps"], then.get("steps")
    if steps < start:
        raise ValueError(
            f"the checkpoint in {out} is at step {start}, past steps={steps}: nothing to train; "
            f"resume with steps of at least {start}"
        )
    if steps != started and now["decay_steps"] is None:
        raise ValueError(
            f"the run in {out} was started with steps={started} and its learning rate decays "
            f"over them; resuming with steps={steps} would change the schedule it trained on. "
            "Start runs that may grow with a fixed horizon (--lr-decay-steps), or resume with "
            f"steps={started}"
        )
    # checked after steps, whose message explains the warmup a shorter --steps also changes
    for name in sorted(set(now) | set(then)):
        if name != "steps" and now.get(name) != then.get(name):
            raise ValueError(
                f"the run in {out} was started with {name}={then.get(name)!r}, and this resume "
                f"asks for {name}={now.get(name)!r}; resume with the same {name}, or start a "
                "new run in another folder"
            )
    if steps != started:
        return (
            f"resuming to {steps} steps (started for {started}); the learning rate still "
            f"decays to step {now['decay_steps']}"
        )
    return None


def _train(model, loss_fn, batches, config, val_batches, run, device, out) -> list[dict]:
    """The loop itself, once `train` has claimed `out` (rank 0) and joined the process group."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    torch.manual_seed(run.seed)
    random.seed(run.seed)
    model.to(device).train()
    raw = model  # what is saved: the model, not its DDP or compiled wrapper
    optimizer = make_optimizer(model, config)
    settings, note, start = run_settings(config, run), None, 0
    if run.resume:  # the settings are compared first: a model of another shape would not load
        pointer = read_pointer(out)
        if pointer is not None:
            note = check_continues(pointer["settings"], settings, pointer["step"], out)
        start = load_checkpoint(out, model, optimizer)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    if run.compile:
        model = torch.compile(model)
    log = MetricsLog(out if rank == 0 else None, start)
    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="train",
        mininterval=1.0,
        disable=not run.progress or rank != 0,
    )
    if note is not None and rank == 0:
        bar.write(note)

    def evaluate_now(step: int) -> None:
        with autocast_for(device):
            val = evaluate(model, loss_fn, val_batches, run.eval_batches, device)
        log.write({"step": step, "val_loss": val})

    def checkpoint_due(done: int) -> bool:
        every = run.checkpoint_every and done % run.checkpoint_every == 0
        return out is not None and rank == 0 and (every or done == config.steps)

    done = start
    try:
        for step in range(start, config.steps):
            rng = rng_state()  # kept so that Ctrl-C mid-step can save the state of the step start
            record = train_step(model, loss_fn, batches, optimizer, step, config)
            done, rng = step + 1, None  # step finished: the current RNG state belongs to `done`
            log.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
            if val_batches is not None and run.eval_every and done % run.eval_every == 0:
                evaluate_now(done)
            if checkpoint_due(done):
                save_checkpoint(out, done, raw, optimizer, settings=settings)
    except KeyboardInterrupt:
        if out is not None and rank == 0 and done > start:
            # Stopped by hand: keep every finished step. A crash instead falls back to the last
            # periodic checkpoint, since the state it leaves behind cannot be trusted.
            save_checkpoint(out, done, raw, optimizer, rng, settings)
            bar.write(f"interrupted: saved step {done} in {out}; continue with resume")
        raise
    bar.close()
    evaluated_last = run.eval_every and config.steps % run.eval_every == 0
    if val_batches is not None and start < config.steps and not evaluated_last:
        evaluate_now(config.steps)
    if out is not None and rank == 0:
        settings = {"train": asdict(config), "run": asdict(run)}
        (out / "config.json").write_text(json.dumps(settings, indent=2) + "\n")
    return log.records
