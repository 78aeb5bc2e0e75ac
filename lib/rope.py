"""Rotary position embedding (RoPE, Su et al. 2021): rotate each pair of q/k features by an angle
proportional to the token's position, so that the score q_m · k_n depends only on m - n.

Two layouts of "pair" exist in the wild, and the same model must be loaded with the right one:

- **Meta's interleaved layout** (the original LLaMA code, `freqs_cis`): features (2i, 2i+1) form a
  pair, i.e. one complex number, and rotation is a complex multiplication.
- **Hugging Face's rotate_half layout** (`transformers`' LLaMA): features (i, i + head_dim/2) form
  a pair; rotation is `x * cos + rotate_half(x) * sin`.

Both rotate pair i by the angle `position * freqs[i]`; they differ only in where the two features
of a pair sit inside a head. Reordering the rows of the q and k projection weights head by head
(`permute_to_hf`, `permute_to_meta`, as `convert_llama_weights_to_hf.py` does) turns one layout
into the other, and the attention scores are unchanged. This package computes in the HF layout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rope_frequencies(head_dim: int, theta: float = 10000.0) -> Tensor:
    """Rotation frequencies theta^(-2i/head_dim), i = 0 .. head_dim/2 - 1 (RoFormer eq. 15)."""
    if head_dim % 2 != 0:
        raise ValueError(
            f"RoPE rotates features in pairs, so head_dim must be even, got head_dim={head_dim}; "
            "choose d_model and n_heads so that d_model // n_heads is even"
        )
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rotate_half(x: Tensor) -> Tensor:
    """Map each pair (x_i, x_{i+d/2}) to (-x_{i+d/2}, x_i): a 90° turn in the rotate_half layout."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, positions: Tensor | None = None) -> Tensor:
    """Rotate x (batch, n_heads, seq, head_dim) to its positions, in HF's rotate_half layout.

    `cos` and `sin` are tables (n_positions, head_dim) indexed by position; `positions` is a
    LongTensor (seq,) or (batch, seq) of absolute positions, or None for 0 .. seq-1.
    """
    seq_len, n_positions = x.shape[-2], cos.shape[0]
    if positions is None:
        if seq_len > n_positions:
            raise ValueError(
                f"sequence of length {seq_len} is longer than the RoPE cache of {n_positions} "
                f"positions; build RotaryEmbedding with max_seq_len >= {seq_len}"
            )
        cos, sin = cos[:seq_len], sin[:seq_len]  # (seq, head_dim)
    else:
        first, last = int(positions.min()), int(positions.max())
        if first < 0:  # a negative index would wrap to the end of the cache, silently
            raise ValueError(f"RoPE positions must be >= 0, got position {first}")
        if last >= n_positions:
            raise ValueError(
                f"position {last} is past the RoPE cache of {n_positions} positions "
                f"(0 .. {n_positions - 1}); build RotaryEmbedding with max_seq_len >= {last + 1}"
            )
        cos, sin = cos[positions], sin[positions]  # (seq, head_dim) or (batch, seq, head_dim)
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, seq, head_dim)
    # RoFormer eq. 34: each pair (x_i, x_{i+d/2}) turns by the angle position * freqs[i].
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Cos/sin tables for positions 0 .. max_seq_len-1, computed once; applies RoPE to q or k."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.max_seq_len, self.theta = head_dim, max_seq_len, theta
        freqs = rope_frequencies(head_dim, theta)  # (head_dim/2,)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), freqs)
        angles = torch.cat((angles, angles), dim=-1)  # (max_seq_len, head_dim): pair i at i, i+d/2
        # Non-persistent buffers: they move with .to(device) but stay out of the state dict,
        # since they are a function of (head_dim, max_seq_len, theta), not learned.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor | None = None, start_pos: int = 0) -> Tensor:
        """Rotate x (batch, n_heads, seq, head_dim) to `positions`, else to start_pos + 0, 1, ..."""
        if positions is not None:
            return apply_rope(x, self.cos, self.sin, positions)
        if start_pos < 0:
            raise ValueError(f"start_pos must be >= 0, got start_pos={start_pos}")
        end = start_pos + x.shape[-2]
        if end > self.max_seq_len:
            raise ValueError(
                f"sequence of length {x.shape[-2]} from start_pos={start_pos} reaches position "
                f"{end - 1}, past the RoPE cache of max_seq_len={self.max_seq_len}; "
                f"build RotaryEmbedding (or the model) with max_seq_len >= {end}"
            )
        # Slicing (not indexing with a tensor) keeps generation free of device syncs.
        return apply_rope(x, self.cos[start_pos:end], self.sin[start_pos:end])

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, max_seq_len={self.max_seq_len}, theta={self.theta}"


# --- Meta's interleaved layout ---------------------------------------------------------------


def precompute_freqs_cis(head_dim: int, max_seq_len: int, theta: float = 10000.0) -> Tensor:
    """Unit complex numbers e^(i * position * freqs), (max_seq_len, head_dim/2), as Meta's LLaMA."""
    positions = torch.arange(max_seq_len, dtype=torch.float32)
    angles = torch.outer(positions, rope_frequencies(head_dim, theta))  # (max_seq_len, head_dim/2)
    return torch.polar(torch.ones_like(angles), angles)  # complex64 (max_seq_len, head_dim/2)


def apply_rope_interleaved(x: Tensor, freqs_cis: Tensor, positions: Tensor | None = None) -> Tensor:
    """Rotate x (batch, n_heads, seq, head_dim) in Meta's layout: pair (2i, 2i+1) * freqs_cis.

    `freqs_cis` comes from precompute_freqs_cis; `positions` is a LongTensor (seq,), or None for
    0 .. seq-1.
    """
    seq_len = x.shape[-2]
    freqs_cis = freqs_cis[:seq_len] if positions is None else freqs_cis[positions]
    x_complex = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (..., seq, hd/2)
    return torch.view_as_real(x_complex * freqs_cis).flatten(-2).to(x.dtype)  # (..., seq, head_dim)


def _check_rows(w: Tensor, n_heads: int) -> int:
    """The head_dim of a q/k projection weight (or bias) with n_heads heads stacked in its rows."""
    if w.shape[0] % (2 * n_heads) != 0:
        raise ValueError(
            f"a q/k projection with {w.shape[0]} rows cannot hold n_heads={n_heads} heads of even "
            f"head_dim; pass the number of heads of this projection (n_kv_heads for k_proj)"
        )
    return w.shape[0] // n_heads


def permute_to_hf(w: Tensor, n_heads: int) -> Tensor:
    """Reorder q/k projection rows from Meta's interleaved pairs to HF's rotate_half layout.

    Within each head, row 2i+j (pair i, member j) moves to row j * head_dim/2 + i. Works on a
    weight (n_heads * head_dim, d_model) or a bias (n_heads * head_dim,); for k_proj pass
    n_heads=n_kv_heads.
    """
    head_dim = _check_rows(w, n_heads)
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute_to_meta(w: Tensor, n_heads: int) -> Tensor:
    """Reorder q/k projection rows from HF's rotate_half layout back to Meta's interleaved pairs."""
    head_dim = _check_rows(w, n_heads)
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
