"""The command line of `python -m lib.train`: pick a model, its data and preset, and train it.

The models it knows, and what each trains with, are the recipes in `lib/recipes.py`. Under
`torchrun --nproc_per_node=N -m lib.train ...` every process runs this, and `lib.train.train`
splits the batches between them (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from lib.recipes import RECIPES
from lib.train import CheckpointError, NonFiniteLossError, RunConfig, train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m lib.train",
        allow_abbrev=False,  # else --lr would silently mean --lr-decay-steps
        description="Train one of the book's models with the book's training recipe. "
        "Metrics go to OUT/metrics.jsonl, checkpoints to OUT/.",
    )
    p.add_argument("--model", required=True, choices=sorted(RECIPES), help="which model to train")
    p.add_argument("--data", help="data set or corpus name; default: the model's own default")
    p.add_argument(
        "--preset",
        help="model size preset; default: chosen from the scale "
        "(small on CPU, full on CUDA, BOOK_SCALE overrides)",
    )
    p.add_argument("--steps", type=int, required=True, help="optimizer steps to train in total")
    p.add_argument(
        "--lr-decay-steps",
        type=int,
        help="steps over which the learning rate decays (default: --steps); fix it to be able "
        "to extend the run later with --resume --steps",
    )
    p.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        help="micro-batches summed into each optimizer step (default 1)",
    )
    p.add_argument("--out", required=True, help="folder for metrics.jsonl and checkpoints")
    p.add_argument(
        "--resume", action="store_true", help="continue from OUT's last checkpoint up to --steps"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a run already in OUT (else refused)"
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N; default: CUDA when available")
    p.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, data and dropout")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="steps between checkpoints (default: only at the end)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        recipe = RECIPES[args.model](args.data, args.preset, args.seed)
        config = dataclasses.replace(
            recipe.config,
            steps=args.steps,
            # a run shorter than the recipe's warmup warms up over all of its horizon
            warmup_steps=max(0, min(recipe.config.warmup_steps, args.lr_decay_steps or args.steps)),
            grad_accum=args.grad_accum,
            decay_steps=args.lr_decay_steps,
        )
        run = RunConfig(
            out_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            checkpoint_every=args.checkpoint_every,
            eval_every=recipe.eval_every,
            eval_batches=recipe.eval_batches,
            device=args.device,
            compile=args.compile,
            seed=args.seed,
            progress=not args.no_progress,
            identity=recipe.identity,
        )
        records = train(
            recipe.model, recipe.loss_fn, recipe.batches, config, recipe.val_batches, run
        )
    except KeyboardInterrupt:
        return 130  # what was saved has been said; no traceback
    except (
        ValueError,
        TypeError,
        KeyError,
        OSError,
        CheckpointError,
        NonFiniteLossError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"python -m lib.train: error: {message}", file=sys.stderr)
        return 1
    final = {k: v for record in records for k, v in record.items()}  # the latest of each metric
    print(" ".join(f"{k}={final[k]:.4f}" for k in ("loss", "val_loss") if k in final))
    return 0
