"""Reproduce nanoGPT's character-level Tiny Shakespeare results with lib's GPT and lib.train.

nanoGPT (github.com/karpathy/nanoGPT, README "quick start") reports two runs:

- CPU ("I only have a macbook"): 4 layers, 4 heads, d_model 128, context 64, batch 12,
  2000 iterations, dropout 0, lr 1e-3 -> 1e-4 cosine after 100 warmup steps, AdamW beta2 0.99,
  weight decay 0.1, clip 1.0: validation loss 1.88 (estimated over --eval_iters=20 batches);
- GPU (`--full` here): 6/6/384, context 256, batch 64, 5000 iterations, dropout 0.2, the same
  optimizer settings: validation loss 1.4697 on an A100 in about 3 minutes.

Both split the text as we do (first 90% train, last 10% validation) and model characters.
This script trains the same recipe through `lib.train.train` (the `gpt` recipe of
`python -m lib.train`), then reports the validation loss over --eval-batches (default 200)
fixed batches, the 20-batch estimate nanoGPT's CPU run prints, and the wall time; a full-length
run writes benchmarks/results/shakespeare_char_{cpu,gpu}.md.

    python benchmarks/shakespeare_char.py            # the CPU recipe (minutes on a laptop)
    python benchmarks/shakespeare_char.py --full     # the GPU recipe
    python benchmarks/shakespeare_char.py --seeds 0 1 2  # three runs: the spread of seeds
    python benchmarks/shakespeare_char.py --steps 50 # a quick smoke run (writes no results)
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from datetime import date
from pathlib import Path

from common import report_header

from lib.recipes import gpt
from lib.train import RunConfig, autocast_for, evaluate, train
from lib.utils import count_params, get_device

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = {
    # preset, iterations, nanoGPT's published validation loss
    "cpu": ("shakespeare-char", 2000, 1.88),
    "gpu": ("shakespeare-char-full", 5000, 1.4697),
}


def run(preset: str, steps: int, seed: int, args: argparse.Namespace) -> dict:
    """Train one seed of the recipe through lib.train; return its losses and timings."""
    r = gpt("tinyshakespeare", preset, seed=seed)
    config = dataclasses.replace(
        r.config, steps=steps, warmup_steps=min(r.config.warmup_steps, steps)
    )
    run = RunConfig(
        eval_every=r.eval_every,
        eval_batches=r.eval_batches,
        device=args.device,
        seed=seed,
        progress=not args.no_progress,
    )
    device = get_device(run.device)
    began = time.perf_counter()
    records = train(r.model, r.loss_fn, r.batches, config, r.val_batches, run)
    train_s = time.perf_counter() - began
    with autocast_for(device):
        val = evaluate(r.model, r.loss_fn, r.val_batches, args.eval_batches, device)
        # Training loss the same way, on windows of the training split the run never drew.
        train_loss = evaluate(
            r.model, r.loss_fn, lambda i: r.batches(steps + i), args.eval_batches, device
        )
    speeds = sorted(rec["tokens_per_s"] for rec in records if "tokens_per_s" in rec)
    return dict(
        seed=seed,
        val=val,
        curve=[(rec["step"], rec["val_loss"]) for rec in records if "val_loss" in rec],
        train_loss=train_loss,
        train_s=train_s,
        wall_s=time.perf_counter() - began,
        tokens_per_s=speeds[len(speeds) // 2],
        config=config,
        params=count_params(r.model),
        shape=tuple(r.batches(0)[0].shape),
        device=device,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/shakespeare_char.py",
        description="Train nanoGPT's character-level Tiny Shakespeare GPT with lib.train and "
        "compare its validation loss with nanoGPT's (1.88 on CPU, 1.4697 with --full).",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="nanoGPT's GPU recipe (6/6/384, context 256, batch 64, 5000 steps, dropout 0.2)",
    )
    p.add_argument("--steps", type=int, help="override the number of optimizer steps")
    p.add_argument(
        "--eval-batches",
        type=int,
        default=200,
        help="validation batches for the final loss (default 200)",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N; default: CUDA when available")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds for weights and batches, one run each (default: 0)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)

    kind = "gpu" if args.full else "cpu"
    preset, default_steps, reference = RUNS[kind]
    steps = args.steps or default_steps
    runs = []
    for seed in args.seeds:
        print(f"preset {preset}, seed {seed}: {steps} steps")
        runs.append(run(preset, steps, seed, args))
        res = runs[-1]
        print(
            f"seed {seed}: val loss {res['val']:.4f} over {args.eval_batches} batches, "
            f"{res['curve'][-1][1]:.4f} over {res['config'].eval_batches} (lib.train's "
            f"estimate); train loss {res['train_loss']:.4f}; wall time {res['wall_s']:.0f} s "
            f"({res['train_s']:.0f} s training)"
        )
    first, vals = runs[0], [res["val"] for res in runs]
    mean = sum(vals) / len(vals)
    verdict = "reaches" if mean <= reference else "misses"
    spread = f" (seeds {min(vals):.4f} to {max(vals):.4f})" if len(vals) > 1 else ""
    print(f"val loss {mean:.4f}{spread}: {verdict} nanoGPT's {reference}")

    if steps != default_steps:
        print(f"a shortened run ({steps} of {default_steps} steps): no results file written")
        return 0
    flags = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/shakespeare_char.py", *map(shlex.quote, flags)])
    config, n_est = first["config"], first["config"].eval_batches
    per_seed = "\n".join(
        f"| {res['seed']} | {res['val']:.4f} | {res['curve'][-1][1]:.4f} | "
        f"{res['train_loss']:.4f} | {res['wall_s']:.0f} s | {res['tokens_per_s']:,.0f} |"
        for res in runs
    )
    curve = "\n".join(f"| {step} | {loss:.4f} |" for step, loss in first["curve"])
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"shakespeare_char_{kind}.md"
    path.write_text(
        f"""# nanoGPT's Tiny Shakespeare ({kind.upper()} recipe) with lib's GPT

Validation loss after {steps} steps: **{mean:.4f}**{spread}, mean of {len(runs)} seed(s) over
{args.eval_batches} fixed validation batches each. nanoGPT reports {reference} (one run).

| seed | val loss, {args.eval_batches} batches | val loss, {n_est} batches | train loss, \
{args.eval_batches} batches | wall time | median tokens/s |
|---|---|---|---|---|---|
{per_seed}

The {n_est}-batch column is lib.train's periodic estimate, the estimator nanoGPT's CPU command
uses (`--eval_iters=20`); wall time counts training, the periodic estimates and the final
evaluation.

Preset `{preset}` ({first["params"]:,} parameters), batch {first["shape"][0]} x context
{first["shape"][1]}, {steps} steps; lr {config.lr:g} to {config.lr * config.min_lr_ratio:g}
(cosine after {config.warmup_steps} warmup steps), AdamW betas {config.betas}, weight decay
{config.weight_decay} on matrices (not on embeddings, norms, biases), clip {config.grad_clip}.

- command: `{command}`
{report_header(first["device"])}, {date.today().isoformat()}

Validation loss during training, seed {first["seed"]} ({n_est} batches each):

| step | val loss |
|---|---|
{curve}
"""
    )
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
