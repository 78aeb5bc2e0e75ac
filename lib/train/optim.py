"""The optimizer and its schedule: AdamW with decoupled weight decay, warmup, then cosine."""

from __future__ import annotations

import math

import torch
from torch import nn

from lib.train.config import TrainConfig


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warmup, then cosine decay to
    the floor at `decay_steps` (by default the last step), and the floor after it."""
    peak, floor = config.lr, config.lr * config.min_lr_ratio
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    horizon = config.steps if config.decay_steps is None else config.decay_steps
    span = max(horizon - config.warmup_steps, 1)
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


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups`, with PyTorch's fused kernel (one pass over all parameters)."""
    return torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas, fused=True
    )
