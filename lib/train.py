"""The training recipe every model in the book uses: AdamW, warmup + cosine, clipping, checkpoints.

`train(model, loss_fn, batches, config)` runs the loop; `python -m lib.train` runs it from the
command line (the flags live in `lib/cli.py`). A run writes into `config.out_dir`:

    metrics.jsonl          one JSON line per optimizer step, and one per evaluation
    checkpoint.json        which checkpoint is the latest (written last, atomically)
    model-STEP.safetensors the model weights
    state-STEP.pt          optimizer, RNG and step (tensors and plain values only)

Batches are a function of an index, `batches(i)`, never a stateful iterator: a resumed run, or
each process of a distributed one, asks for exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_model, save_model
from torch import nn
from tqdm import tqdm

from lib.utils import get_device

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass
class Recipe:
    """What a model file hands the command line: model, loss, data, and its training settings."""

    model: nn.Module
    loss_fn: LossFn
    batches: Callable[[int], Batch]
    val_batches: Callable[[int], Batch] | None
    settings: dict  # TrainConfig fields this model and preset prefer (lr, warmup_steps, ...)


@dataclass
class TrainConfig:
    """Everything that shapes a training run; validated on creation."""

    steps: int = 1000
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak (LLaMA: 10%)
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # max global gradient norm; None turns clipping off
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    eval_every: int = 0  # steps between evaluations; 0 evaluates only at the end
    eval_batches: int = 20
    checkpoint_every: int = 0  # steps between checkpoints; 0 saves only at the end
    out_dir: str | None = None  # None: no metrics file, no checkpoints
    resume: bool = False
    device: str | None = None  # None: CUDA when available, else CPU
    compile: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}"
            )
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(
                f"warmup_steps must lie in [0, steps={self.steps}], got {self.warmup_steps}"
            )
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be at least 1, got {self.grad_accum}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.resume and self.out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder holding the checkpoint")


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warmup, then cosine decay."""
    peak, floor = config.lr, config.lr * config.min_lr_ratio
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices; none on biases, norms and embeddings.

    Decay shrinks a weight toward zero every step. That regularizes the matrices that mix
    features, but for a bias or a norm's gain it only drags a learned offset or scale toward a
    worse value (a gain toward 0, not 1). Embeddings are left undecayed by convention (minGPT);
    in an untied table rare tokens' rows, seldom updated, would shrink most. nanoGPT decays them.
    """
    no_decay = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if isinstance(module, nn.Embedding) or param.dim() < 2:
                no_decay.add(id(param))
    unique = {id(p): p for p in model.parameters() if p.requires_grad}  # tied weights once
    decay = [p for i, p in unique.items() if i not in no_decay]
    rest = [p for i, p in unique.items() if i in no_decay]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


# --- distributed ------------------------------------------------------------------------------


def distributed_setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# --- checkpoints ------------------------------------------------------------------------------


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


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


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


# --- the loop ---------------------------------------------------------------------------------


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


def _train_step(
    model, raw, loss_fn, batches, optimizer, config, step, autocast, device, rank, world
) -> dict:
    """One optimizer step over `grad_accum` micro-batches; returns its metrics record."""
    began = time.perf_counter()
    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_sum, tokens = torch.zeros((), device=device), 0
    for micro in range(config.grad_accum):
        # Every process takes its own batch; together they see each index exactly once.
        batch = _to(batches((step * config.grad_accum + micro) * world + rank), device)
        sync = micro == config.grad_accum - 1 or world == 1
        with contextlib.nullcontext() if sync else model.no_sync(), autocast:
            loss = loss_fn(model, batch) / config.grad_accum
        loss.backward()
        loss_sum += loss.detach()
        tokens += batch[0].numel() * world
    if world > 1:  # log the loss averaged over all processes, not rank 0's alone
        dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
    clip = config.grad_clip if config.grad_clip is not None else math.inf
    grad_norm = nn.utils.clip_grad_norm_(raw.parameters(), clip).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - began
    return {
        "step": step + 1,
        "loss": loss_sum.item(),
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
) -> list[dict]:
    """Train `model` in place on `batches(i)` and return the metric records of the run."""
    device = get_device(config.device)
    rank, world = distributed_setup(device)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model.to(device).train()
    raw = model  # what is saved: the model, not its DDP or compiled wrapper
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )
    out = Path(config.out_dir) if config.out_dir else None
    start = load_checkpoint(out, model, optimizer) if config.resume else 0
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    if config.compile:
        model = torch.compile(model)
    log = MetricsLog(out if rank == 0 else None, start)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )

    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="train",
        mininterval=1.0,
        disable=not config.progress or rank != 0,
    )

    def evaluate_now(step: int) -> None:
        with autocast:
            val = evaluate(model, loss_fn, val_batches, config.eval_batches, device)
        log.write({"step": step, "val_loss": val})

    done = start
    try:
        for step in range(start, config.steps):
            rng = rng_state()  # kept so that Ctrl-C mid-step can save the state of the step start
            record = _train_step(
                model, raw, loss_fn, batches, optimizer, config, step, autocast, device, rank, world
            )
            done, rng = step + 1, None  # step finished: the current RNG state belongs to `done`
            log.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
            if val_batches is not None and config.eval_every and done % config.eval_every == 0:
                evaluate_now(done)
            if (
                out is not None
                and rank == 0
                and (
                    (config.checkpoint_every and done % config.checkpoint_every == 0)
                    or done == config.steps
                )
            ):
                save_checkpoint(out, done, raw, optimizer)
    except KeyboardInterrupt:
        if out is not None and rank == 0 and done > start:
            # Stopped by hand: keep every finished step. A crash instead falls back to the last
            # periodic checkpoint, since the state it leaves behind cannot be trusted.
            save_checkpoint(out, done, raw, optimizer, rng)
            bar.write(f"interrupted: saved step {done} in {out}; continue with resume")
        raise
    bar.close()
    evaluated_last = config.eval_every and config.steps % config.eval_every == 0
    if val_batches is not None and start < config.steps and not evaluated_last:
        evaluate_now(config.steps)
    if out is not None and rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return log.records


if __name__ == "__main__":
    from lib.cli import main

    raise SystemExit(main())
