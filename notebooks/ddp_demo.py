"""The chapter's tiny character-level language model, and the data-parallel run of chapter 6.

The notebook imports `CharLM` and `shakespeare_batches` from here. Run as a script under
torchrun, each process trains a copy of the model on its share of the batches with DDP and
saves its final weights, so the notebook can check that every copy ends up the same:

    python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_demo.py OUT STEPS
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_model
from torch import nn

from lib.blocks import DecoderBlock
from lib.data import lm_batches, load_text, train_val_split
from lib.embedding import LearnedPositionalEmbedding, LMHead, TokenEmbedding
from lib.norm import LayerNorm
from lib.train import TrainConfig, train

BATCH_SIZE, SEQ_LEN = 8, 64  # per process, in the DDP run
DDP_CONFIG = dict(lr=3e-3, warmup_steps=5, device="cpu", progress=False)  # gloo on CPU


class CharLM(nn.Module):
    """A GPT-style decoder-only model built from lib's parts: ids (batch, seq) -> logits."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        max_seq_len: int = 64,
    ):
        super().__init__()
        self.tok = TokenEmbedding(vocab_size, d_model)
        self.pos = LearnedPositionalEmbedding(max_seq_len, d_model)
        self.blocks = nn.ModuleList(
            DecoderBlock(d_model, n_heads, 4 * d_model, cross_attention=False)
            for _ in range(n_layers)
        )
        self.norm = LayerNorm(d_model)
        self.head = LMHead(d_model, vocab_size, tie_to=self.tok)
        for module in self.modules():  # GPT-2's initialisation: small normal weights, zero biases
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.pos(self.tok(input_ids))  # (batch, seq, d_model)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (batch, seq, vocab_size)


def lm_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean cross-entropy of the next character."""
    x, y = batch[0], batch[1]
    return nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())


def shakespeare_batches(batch_size: int, seq_len: int, seed: int = 0):
    """(vocabulary, train batches, validation batches) of Tiny Shakespeare, one id per character."""
    text = load_text("tinyshakespeare")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    train_ids, val_ids = train_val_split(ids)
    return (
        chars,
        lm_batches(train_ids, batch_size, seq_len, seed),
        lm_batches(val_ids, batch_size, seq_len, seed + 1),
    )


def main(out: Path, steps: int) -> None:
    """Train CharLM on this process's share of the batches; save the weights it ends with."""
    rank = int(os.environ["RANK"])
    chars, batches, _ = shakespeare_batches(BATCH_SIZE, SEQ_LEN)
    torch.manual_seed(0)
    model = CharLM(len(chars))
    config = TrainConfig(**DDP_CONFIG, steps=steps, out_dir=str(out / "run"))
    train(model, lm_loss, batches, config)  # joins the process group that torchrun set up
    save_model(model, str(out / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
