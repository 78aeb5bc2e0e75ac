"""Token embeddings: token ids to vectors, and the output layer back to logits (chapter 1).

Positions, the other half of what enters the first block, are in `lib/positions.py`."""

from __future__ import annotations

import math

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------
# Tokens: an embedding table in, an output projection (optionally the same table) out.
# ---------------------------------------------------------------------------------------------


def check_token_ids(input_ids: torch.Tensor, vocab_size: int, anywhere: bool = False) -> None:
    """Raise a clear error unless `input_ids` is an integer tensor of ids in [0, vocab_size)."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"token ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"token ids must be a torch.long (or int32) tensor, got {input_ids.dtype}")
    if not input_ids.numel() or torch.compiler.is_compiling() or not (anywhere or input_ids.is_cpu):
        return  # reading the ids would break a compiled graph, or stall an accelerator each step
    # Checked, a bad id fails here with a message that says what to fix, not deep in the lookup;
    # on the CPU that is free. lib.generate passes anywhere=True: one check per call, any device.
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= vocab_size:
        raise IndexError(
            f"token ids must lie in [0, {vocab_size}) for a vocabulary of {vocab_size}, "
            f"got min id {lo} and max id {hi}; was the text encoded with a different tokenizer?"
        )


class TokenEmbedding(nn.Embedding):
    """A table of `vocab_size` vectors of size `d_model`, looked up by id (optionally scaled)."""

    def __init__(self, vocab_size: int, d_model: int, scale: bool = False):
        if vocab_size < 1 or d_model < 1:
            raise ValueError(
                f"vocab_size and d_model must be positive, got {vocab_size}, {d_model}"
            )
        super().__init__(vocab_size, d_model)
        # Vaswani et al. (2017, sec. 3.4) multiply by sqrt(d_model) and give no reason; the usual
        # one (not the paper's): it brings std-1/sqrt(d) entries to the size of the positions.
        self.scale = scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Vectors of the tokens: (...,) int ids -> (..., d_model)."""
        check_token_ids(input_ids, self.num_embeddings)
        x = super().forward(input_ids)  # row input_ids[i] of self.weight: one-hot @ weight
        return x * math.sqrt(self.embedding_dim) if self.scale else x

    def extra_repr(self) -> str:
        return super().extra_repr() + (", scale=sqrt(d_model)" if self.scale else "")


class LMHead(nn.Linear):
    """The output layer: hidden states (..., d_model) -> logits (..., vocab_size)."""

    def __init__(
        self,
        d_model: int,
        vocab_size: int,
        bias: bool = False,
        tie_to: nn.Embedding | None = None,
    ):
        if vocab_size < 1 or d_model < 1:
            raise ValueError(
                f"vocab_size and d_model must be positive, got {vocab_size}, {d_model}"
            )
        super().__init__(d_model, vocab_size, bias=bias)
        if tie_to is not None:
            # Weight tying (Press & Wolf 2017): logits = h @ E^T with E the input embedding.
            # nn.Linear keeps its weight as (out, in) = (vocab_size, d_model), as nn.Embedding does.
            if not isinstance(tie_to, nn.Embedding):
                raise TypeError(f"tie_to must be an nn.Embedding, got {type(tie_to).__name__}")
            if tuple(tie_to.weight.shape) != (vocab_size, d_model):
                raise ValueError(
                    f"cannot tie an LMHead of (vocab_size, d_model) = ({vocab_size}, {d_model}) "
                    f"to an embedding of shape {tuple(tie_to.weight.shape)}; they must match"
                )
            self.weight = tie_to.weight  # the same Parameter: one tensor, one gradient

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits: (..., d_model) -> (..., vocab_size)."""
        if hidden.shape[-1] != self.in_features:
            raise ValueError(
                f"LMHead expects hidden states with last dimension d_model={self.in_features}, "
                f"got shape {tuple(hidden.shape)}"
            )
        return super().forward(hidden)
