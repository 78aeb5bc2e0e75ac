"""What shapes a training run, in two parts: the hyperparameters, and the run's plumbing.

`TrainConfig` holds what changes the trained weights (steps, learning rate and its schedule,
AdamW, clipping, accumulation): a recipe or a paper states these. `RunConfig` holds where and
how the run happens (device, seed, output folder, checkpoints, evaluation, progress bar): the
person running it chooses these. Both validate on creation, with errors that say what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TrainConfig:
    """The hyperparameters of a run: what a recipe fixes and the trained weights depend on."""

    steps: int = 1000
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak (LLaMA: 10%)
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # max global gradient norm; None turns clipping off
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    # The cosine's horizon; None: `steps`. Set it to extend a run later on the same schedule
    # (nanoGPT's lr_decay_iters): the learning rate then stays at the floor after decay_steps.
    decay_steps: int | None = None

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(
                f"need a finite lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, "
                f"{self.min_lr_ratio}"
            )
        if not (self.weight_decay >= 0 and all(0 <= b < 1 for b in self.betas)):
            raise ValueError(
                f"need weight_decay >= 0 and betas in [0, 1), got {self.weight_decay}, {self.betas}"
            )
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"decay_steps must be at least 1 or None, got {self.decay_steps}")
        horizon = self.steps if self.decay_steps is None else self.decay_steps
        if not 0 <= self.warmup_steps <= horizon:
            raise ValueError(
                f"warmup_steps must lie in [0, {horizon}] (steps, or decay_steps where set), "
                f"got {self.warmup_steps}"
            )
        if self.decay_steps is not None and self.decay_steps < max(self.warmup_steps, 1):
            raise ValueError(
                f"decay_steps must be at least warmup_steps={self.warmup_steps} (and 1), "
                f"got {self.decay_steps}; None decays over all the steps"
            )
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be at least 1, got {self.grad_accum}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")


@dataclass
class RunConfig:
    """Where and how a run happens: device, seed, files, evaluation and the progress bar."""

    out_dir: str | None = None  # None: no metrics file, no checkpoints
    resume: bool = False  # continue the run in out_dir from its checkpoint
    overwrite: bool = False  # replace a run already in out_dir (otherwise refused)
    checkpoint_every: int = 0  # steps between checkpoints; 0 saves only at the end
    eval_every: int = 0  # steps between evaluations; 0 evaluates only at the end
    eval_batches: int = 20
    device: str | None = None  # None: CUDA when available, else CPU
    compile: bool = False
    seed: int = 0
    progress: bool = True
    # What the run is (model, data, preset, ...), kept with every checkpoint: a resume that
    # names another is refused. The command line fills it from the recipe.
    identity: dict | None = None

    def __post_init__(self):
        if self.out_dir == "":
            raise ValueError("out_dir is empty: give a folder, or None to save nothing")
        if self.resume and self.out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder holding the checkpoint")
        if self.resume and self.overwrite:
            raise ValueError(
                "resume and overwrite exclude each other: continue the run or replace it"
            )
        for name in ("checkpoint_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or positive, got {getattr(self, name)}")
        if self.eval_batches < 1:
            raise ValueError(f"eval_batches must be at least 1, got {self.eval_batches}")
