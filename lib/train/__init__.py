"""The training recipe every model in the book uses: AdamW, warmup + cosine, clipping, checkpoints.

`train(model, loss_fn, batches, config, val_batches, run)` runs the loop; `python -m lib.train`
runs it from the command line (`lib/cli.py`, with the recipes of `lib/recipes.py`). The package:

    config.py      TrainConfig (hyperparameters) and RunConfig (device, seed, files, evaluation)
    optim.py       lr_at (warmup + cosine), param_groups (what is decayed), make_optimizer
    checkpoint.py  atomic checkpoints (safetensors + weights-only state) and metrics.jsonl
    loop.py        train_step (one optimizer step) and train (the loop, DDP under torchrun)
    __main__.py    `python -m lib.train`: hands over to lib.cli
"""

from lib.train.checkpoint import (
    CheckpointError,
    MetricsLog,
    RunLock,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from lib.train.config import RunConfig, TrainConfig
from lib.train.loop import (
    Batch,
    LossFn,
    NonFiniteLossError,
    autocast_for,
    distributed_setup,
    evaluate,
    train,
    train_step,
)
from lib.train.optim import lr_at, make_optimizer, param_groups

__all__ = [
    "Batch",
    "CheckpointError",
    "LossFn",
    "MetricsLog",
    "NonFiniteLossError",
    "RunConfig",
    "RunLock",
    "TrainConfig",
    "autocast_for",
    "distributed_setup",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "make_optimizer",
    "param_groups",
    "rng_state",
    "save_checkpoint",
    "train",
    "train_step",
]
