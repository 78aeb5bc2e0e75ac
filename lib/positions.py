"""Positions (chapter 2): the sinusoidal table of the original Transformer, and learned positions.

Both add a (seq, d_model) table to the token embeddings, at positions start_pos .. start_pos +
seq - 1 (start_pos > 0 when a KV cache holds the earlier positions). RoPE, which rotates queries
and keys instead, is in `lib/rope.py`.
"""

from __future__ import annotations

import torch
from torch import nn


def sinusoidal_positions(max_seq_len: int, d_model: int) -> torch.Tensor:
    """The (max_seq_len, d_model) table of Vaswani et al. §3.5: sin on even, cos on odd dims."""
    positions = torch.arange(max_seq_len, dtype=torch.float32)  # (max_seq_len,)
    freqs = 1.0 / (10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model))
    angles = torch.outer(positions, freqs)  # (max_seq_len, ceil(d_model / 2))
    # PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))
    table = torch.zeros(max_seq_len, d_model)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # odd d_model: one cos fewer than sin
    return table


def check_positions(seq_len: int, start_pos: int, max_seq_len: int) -> None:
    """Raise a clear error unless positions start_pos .. start_pos+seq_len-1 are < max_seq_len."""
    if start_pos < 0:  # a negative start would index the table from its end, silently
        raise ValueError(f"start_pos must be >= 0, got start_pos={start_pos}")
    end = start_pos + seq_len
    if end > max_seq_len:
        raise ValueError(
            f"a sequence of length {seq_len} from start_pos={start_pos} needs positions up to "
            f"{end - 1}, but the position table has max_seq_len={max_seq_len} rows; build it "
            f"(or the model) with max_seq_len >= {end}, or feed shorter sequences"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal positions added to token embeddings, as in the original Transformer."""

    def __init__(self, max_seq_len: int, d_model: int):
        super().__init__()
        # A non-persistent buffer: it follows .to(device) but, being a formula, not the state dict.
        self.register_buffer("pe", sinusoidal_positions(max_seq_len, d_model), persistent=False)

    def positions(self, seq_len: int, start_pos: int = 0) -> torch.Tensor:
        """The encodings (seq_len, d_model) of positions start_pos .. start_pos+seq_len-1."""
        check_positions(seq_len, start_pos, self.pe.shape[0])
        return self.pe[start_pos : start_pos + seq_len]

    def forward(self, x: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """x (batch, seq, d_model) plus the encodings of its positions."""
        return x + self.positions(x.shape[1], start_pos).to(x.dtype)


class LearnedPositionalEmbedding(nn.Embedding):
    """One trained vector per position 0 .. max_seq_len-1, added to token embeddings (BERT, GPT)."""

    def __init__(self, max_seq_len: int, d_model: int):
        super().__init__(max_seq_len, d_model)  # an embedding table indexed by position
        nn.init.normal_(self.weight, std=0.02)  # BERT's and HF GPT-2's; OpenAI's GPT-2 used 0.01

    def positions(self, seq_len: int, start_pos: int = 0) -> torch.Tensor:
        """The embeddings (seq_len, d_model) of positions start_pos .. start_pos+seq_len-1."""
        check_positions(seq_len, start_pos, self.weight.shape[0])
        return self.weight[start_pos : start_pos + seq_len]

    def forward(self, x: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """x (batch, seq, d_model) plus the embeddings of its positions."""
        return x + self.positions(x.shape[1], start_pos)
