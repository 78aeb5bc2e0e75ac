"""Run by test_train under torchrun: two processes train TinyLM with DDP, each saves its weights."""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_model
from tiny_lm import batches, lm_loss, make_model

from lib.train import RunConfig, TrainConfig, train

out = Path(sys.argv[1])
model = make_model()
rank = int(__import__("os").environ["RANK"])
if rank == 0:
    save_model(model, str(out / "initial.safetensors"))
config = TrainConfig(steps=4, warmup_steps=1, lr=1e-2)
train(model, lm_loss, batches, config, run=RunConfig(progress=False, out_dir=str(out / "out")))
save_model(model, str(out / f"rank{rank}.safetensors"))
dist.destroy_process_group()
