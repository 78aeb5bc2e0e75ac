"""Scaled dot-product attention, its masks, multi-head attention (MHA, GQA, MQA) and the KV cache.

Mask convention, everywhere in this package: a **boolean** tensor, **True = may attend**, the same
as the boolean `attn_mask` of `F.scaled_dot_product_attention`. It broadcasts against the scores
(batch, n_heads, seq_q, seq_k): `causal_mask` gives (seq_q, seq_k), `padding_mask` gives
(batch, 1, 1, seq_k); combine them with `&`. (`torch.nn.MultiheadAttention` uses the opposite
sense for its boolean masks: there True means "may not attend".)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib.rope import RotaryEmbedding


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention softmax(q k^T / sqrt(d_k)) v; returns (output, weights).

    q (..., seq_q, d_k), k (..., seq_k, d_k), v (..., seq_k, d_v); `mask` is boolean, True = may
    attend, broadcastable to (..., seq_q, seq_k). Returns the output (..., seq_q, d_v) and the
    weights (..., seq_q, seq_k).
    """
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., seq_q, seq_k), Vaswani et al. eq. 1
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        # A query that may attend to nothing (a fully masked row) gets zero weights instead of
        # the NaN that softmax of all -inf gives, as F.scaled_dot_product_attention does.
        weights = weights.masked_fill(~mask, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


def causal_mask(
    seq_len: int, kv_len: int | None = None, device: torch.device | None = None
) -> Tensor:
    """Boolean (seq_len, kv_len) mask, True where query i may see key j: j <= i + kv_len - seq_len.

    With kv_len = seq_len (the default) this is the lower triangle. With a KV cache the queries are
    the last seq_len of kv_len positions (query i sits at absolute position start_pos + i, where
    start_pos = kv_len - seq_len), so each sees the keys up to and including its own position.
    """
    kv_len = seq_len if kv_len is None else kv_len
    ones = torch.ones(seq_len, kv_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=kv_len - seq_len)


def padding_mask(lengths: Tensor | list[int], seq_len: int) -> Tensor:
    """Boolean (batch, 1, 1, seq_len) mask, True for the first lengths[b] (real) tokens of row b."""
    lengths = torch.as_tensor(lengths)
    if int(lengths.max()) > seq_len:
        raise ValueError(
            f"a length of {int(lengths.max())} exceeds seq_len={seq_len}; "
            "pass the padded length of the batch as seq_len"
        )
    real = torch.arange(seq_len, device=lengths.device) < lengths[:, None]  # (batch, seq_len)
    return real[:, None, None, :]


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head of x (batch, n_kv_heads, seq, head_dim) n_rep times, in order."""
    if n_rep == 1:
        return x
    batch, n_kv_heads, seq_len, head_dim = x.shape
    x = x[:, :, None].expand(batch, n_kv_heads, n_rep, seq_len, head_dim)
    return x.reshape(batch, n_kv_heads * n_rep, seq_len, head_dim)  # head h uses kv head h // n_rep


class KVCache:
    """Preallocated keys and values of one attention layer, written at start_pos (Meta's LLaMA)."""

    def __init__(
        self,
        batch: int,
        max_seq_len: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        shape = (batch, n_kv_heads, max_seq_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def max_seq_len(self) -> int:
        return self.k.shape[2]

    def update(self, start_pos: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (batch, n_kv_heads, seq, head_dim) at start_pos; return all of them so far."""
        batch, end = k.shape[0], start_pos + k.shape[2]
        if end > self.max_seq_len:
            raise ValueError(
                f"writing {k.shape[2]} positions at start_pos={start_pos} reaches position "
                f"{end - 1}, past the KV cache of max_seq_len={self.max_seq_len}; "
                f"allocate the KVCache with max_seq_len >= {end}"
            )
        if batch > self.k.shape[0]:
            raise ValueError(
                f"a batch of {batch} does not fit a KV cache allocated for "
                f"batch={self.k.shape[0]}; allocate the KVCache with batch >= {batch}"
            )
        self.k[:batch, :, start_pos:end] = k
        self.v[:batch, :, start_pos:end] = v
        # (batch, n_kv_heads, end, head_dim): every position written so far
        return self.k[:batch, :, :end], self.v[:batch, :, :end]


class MultiHeadAttention(nn.Module):
    """Multi-head attention, self or cross; n_kv_heads < n_heads gives GQA (n_kv_heads=1: MQA).

    Separate q_proj, k_proj, v_proj, o_proj (the names of HF's LLaMA) rather than one fused qkv:
    cross-attention projects queries and keys/values from different inputs, GQA gives k/v fewer
    rows than q, and each HF checkpoint (fused GPT-2 `c_attn`, split BERT and LLaMA) maps onto
    four plain Linear layers with at most a `chunk`.

    `fused = True` (default) runs F.scaled_dot_product_attention; `fused = False` runs the
    reference `attention` above and keeps the weights of the last call in `attn_weights`
    (batch, n_heads, seq_q, seq_k) for plotting.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        rope: RotaryEmbedding | None = None,
    ):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                "choose n_heads that divides d_model"
            )
        if n_heads % n_kv_heads != 0:
            raise ValueError(
                f"n_heads={n_heads} is not divisible by n_kv_heads={n_kv_heads}; choose n_kv_heads "
                "that divides n_heads (n_heads: MHA, 1: MQA, in between: GQA)"
            )
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.n_rep = n_heads // n_kv_heads  # query heads that share one key/value head
        if rope is not None and rope.head_dim != self.head_dim:
            raise ValueError(
                f"the RotaryEmbedding has head_dim={rope.head_dim} but the heads have head_dim="
                f"{self.head_dim} (d_model={d_model} / n_heads={n_heads}); build it with "
                f"RotaryEmbedding({self.head_dim}, max_seq_len)"
            )
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)
        self.dropout = dropout  # on the attention weights
        self.rope = rope  # may be shared by all layers; it holds no parameters
        self.fused = True
        self.attn_weights: Tensor | None = None

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
        start_pos: int = 0,
        positions: Tensor | None = None,
    ) -> Tensor:
        """Attend from x (batch, seq, d_model) to itself, or to `context` (batch, seq_c, d_model).

        `mask`: boolean, True = may attend, broadcastable to (batch, n_heads, seq, seq_k).
        `is_causal`: also forbid attending to later positions. `kv_cache`, `start_pos`: x holds the
        positions start_pos .. start_pos+seq-1, and the keys/values of earlier positions come from
        the cache. `positions`: explicit RoPE positions (seq,) or (batch, seq) instead.
        """
        if context is not None and (kv_cache is not None or self.rope is not None):
            raise ValueError(
                "kv_cache and RoPE apply to self-attention only; call cross-attention without them"
            )
        batch, seq_len, _ = x.shape
        source = x if context is None else context
        q = self.q_proj(x).view(batch, seq_len, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(source).view(batch, -1, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(source).view(batch, -1, self.n_kv_heads, self.head_dim).transpose(1, 2)
        # q (batch, n_heads, seq, head_dim); k, v (batch, n_kv_heads, seq_k, head_dim)
        if self.rope is not None:
            q = self.rope(q, positions, start_pos)
            k = self.rope(k, positions, start_pos)
        if kv_cache is not None:
            k, v = kv_cache.update(start_pos, k, v)  # (batch, n_kv_heads, start_pos+seq, head_dim)
        k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)  # (batch, n_heads, seq_k, hd)

        kv_len = k.shape[2]
        # The fused kernel's own causal mask (is_causal=True) is the plain lower triangle: use it
        # only when the queries start at key 0 and no other mask applies; otherwise build the
        # (offset) causal mask explicitly.
        kernel_causal = self.fused and is_causal and mask is None and kv_len == seq_len
        if is_causal and not kernel_causal:
            causal = causal_mask(seq_len, kv_len, device=x.device)  # (seq, kv_len)
            mask = causal if mask is None else mask & causal
        dropout_p = self.dropout if self.training else 0.0
        if self.fused:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=kernel_causal
            )
            self.attn_weights = None
        else:
            out, weights = attention(q, k, v, mask, dropout_p)
            self.attn_weights = weights.detach()
        out = out.transpose(1, 2).reshape(batch, seq_len, self.n_heads * self.head_dim)
        return self.o_proj(out)  # (batch, seq, d_model)
