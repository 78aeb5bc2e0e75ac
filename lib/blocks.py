"""Transformer blocks: the encoder block (self-attention, feed-forward) and the decoder block
(causal self-attention, optional cross-attention, feed-forward), each sublayer wrapped in a
residual connection with pre- or post-normalisation.

The same two classes build every model of the book:
- original Transformer: post-norm (`norm_first=False`), LayerNorm, ReLU, cross-attention;
- BERT: `EncoderBlock`, post-norm, GELU;
- GPT-2: `DecoderBlock` without cross-attention, pre-norm, GELU (tanh);
- LLaMA: `DecoderBlock` without cross-attention, pre-norm, RMSNorm, SwiGLU, GQA, RoPE, no biases.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor, nn

from lib.attention import KVCache, MultiHeadAttention
from lib.feedforward import ACTIVATIONS, FeedForward, SwiGLU
from lib.rope import RotaryEmbedding

NORMS = ("layernorm", "rmsnorm")
FFNS = (*ACTIVATIONS, "swiglu")


def make_norm(norm: str, d_model: int, eps: float, bias: bool) -> nn.Module:
    """PyTorch's LayerNorm (with a bias if `bias`) or RMSNorm of width d_model: its fused kernels
    where the device has them. lib.norm's layers, written from the definitions, are tested equal."""
    if norm == "layernorm":
        return nn.LayerNorm(d_model, eps=eps, bias=bias)
    if norm == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm={norm!r} is unknown; choose one of {NORMS}")


def make_ffn(ffn: str, d_model: int, d_ff: int, bias: bool) -> nn.Module:
    """A FeedForward with activation `ffn`, or a SwiGLU of hidden size d_ff if ffn="swiglu"."""
    if ffn == "swiglu":
        return SwiGLU(d_model, hidden_dim=d_ff, bias=bias)
    if ffn in ACTIVATIONS:
        return FeedForward(d_model, d_ff, activation=ffn, bias=bias)
    raise ValueError(f"ffn={ffn!r} is unknown; choose one of {FFNS}")


def residual(
    x: Tensor, f: Callable[[Tensor], Tensor], norm: nn.Module, dropout: nn.Module, norm_first: bool
) -> Tensor:
    """Sublayer f with its residual: x + f(norm(x)) (pre-norm) or norm(x + f(x)) (post-norm)."""
    if norm_first:
        return x + dropout(f(norm(x)))
    return norm(x + dropout(f(x)))  # as in the original Transformer


class EncoderBlock(nn.Module):
    """Bidirectional self-attention, then a feed-forward network, each with a residual."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        norm: str = "layernorm",
        ffn: str = "relu",
        n_kv_heads: int | None = None,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn_norm = make_norm(norm, d_model, norm_eps, bias)
        self.self_attn = MultiHeadAttention(d_model, n_heads, n_kv_heads, bias, dropout, rope)
        self.ffn_norm = make_norm(norm, d_model, norm_eps, bias)
        self.ffn = make_ffn(ffn, d_model, d_ff, bias)
        self.dropout = nn.Dropout(dropout)  # on each sublayer's output (Vaswani et al. §5.4)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (batch, seq, d_model) -> (batch, seq, d_model); `mask` as in MultiHeadAttention."""
        self_attn = partial(self.self_attn, mask=mask)
        x = residual(x, self_attn, self.self_attn_norm, self.dropout, self.norm_first)
        return residual(x, self.ffn, self.ffn_norm, self.dropout, self.norm_first)


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to `context` (optional), then a feed-forward net."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        cross_attention: bool = True,
        norm_first: bool = True,
        norm: str = "layernorm",
        ffn: str = "relu",
        n_kv_heads: int | None = None,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn_norm = make_norm(norm, d_model, norm_eps, bias)
        self.self_attn = MultiHeadAttention(d_model, n_heads, n_kv_heads, bias, dropout, rope)
        if cross_attention:
            self.cross_attn_norm = make_norm(norm, d_model, norm_eps, bias)
            self.cross_attn = MultiHeadAttention(d_model, n_heads, n_kv_heads, bias, dropout)
        else:
            self.cross_attn_norm = self.cross_attn = None
        self.ffn_norm = make_norm(norm, d_model, norm_eps, bias)
        self.ffn = make_ffn(ffn, d_model, d_ff, bias)
        self.dropout = nn.Dropout(dropout)  # on each sublayer's output (Vaswani et al. §5.4)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        kv_cache: KVCache | None = None,
        start_pos: int = 0,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (batch, seq, d_model) -> same shape; cross-attends to context (batch, seq_c, d_model).

        `mask` restricts the (always causal) self-attention further, e.g. padding; `context_mask`
        (batch, 1, 1, seq_c) marks the real context tokens; `kv_cache`, `start_pos`, `positions`
        as in MultiHeadAttention.
        """
        if (self.cross_attn is None) != (context is None):
            raise ValueError(
                "a DecoderBlock with cross_attention=True needs a context (the encoder output), "
                "and one with cross_attention=False takes none; match context to the block"
            )
        self_attn = partial(
            self.self_attn,
            mask=mask,
            is_causal=True,
            kv_cache=kv_cache,
            start_pos=start_pos,
            positions=positions,
        )
        x = residual(x, self_attn, self.self_attn_norm, self.dropout, self.norm_first)
        if self.cross_attn is not None:
            cross_attn = partial(self.cross_attn, context=context, mask=context_mask)
            x = residual(x, cross_attn, self.cross_attn_norm, self.dropout, self.norm_first)
        return residual(x, self.ffn, self.ffn_norm, self.dropout, self.norm_first)
