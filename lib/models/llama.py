"""LLaMA: a decoder-only Transformer with what changed after GPT-2 (Touvron et al. 2023).

Read top to bottom: the config with its presets (the paper's four sizes and the small models
the book trains), then the model: a token embedding, a stack of pre-norm decoder blocks with
RMSNorm, rotary positions (RoPE) on queries and keys, grouped-query attention where
`n_kv_heads < n_heads`, a SwiGLU feed-forward network and no biases, a final RMSNorm and the
output layer. The loss is `lib.models.gpt.lm_loss`, the same next-token cross-entropy, and
`lib.generate` serves it with the same KV cache as GPT. What `python -m lib.train --model
llama` trains is in `lib/recipes.py`; `lib.hf.llama` and `lib.gguf` load weights into it.

RoPE is computed in Hugging Face's rotate_half layout (`lib/rope.py`); Meta's checkpoints use
the interleaved one, and `lib.hf.llama.llama_from_meta` reorders their q/k rows.

This file imports only the layers (`lib.blocks`, `lib.embedding`, `lib.feedforward`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lib.attention import KVCache
from lib.blocks import DecoderBlock, make_norm
from lib.embedding import LMHead, TokenEmbedding
from lib.feedforward import llama_hidden_dim
from lib.rope import RotaryEmbedding
from lib.utils import check_positive_int


@dataclass
class LlamaConfig:
    """Sizes of a LLaMA; the defaults are LLaMA-7B (Touvron et al. 2023, table 2)."""

    vocab_size: int = 32000  # LLaMA's SentencePiece BPE
    max_seq_len: int = 2048  # the context it was trained with; RoPE's tables have this many rows
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None  # None: n_heads (multi-head attention); fewer: GQA; 1: MQA
    d_ff: int | None = None  # None: Meta's rule, llama_hidden_dim(d_model, multiple_of, ...)
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-6  # LLaMA-1's RMSNorm epsilon (LLaMA-2 and SmolLM2 use 1e-5)
    rope_theta: float = 10000.0
    tie_embeddings: bool = False  # LLaMA has a separate output matrix; small models often tie
    dropout: float = 0.0  # LLaMA trains without dropout
    bos_id: int = 1  # <s>: starts every text
    eos_id: int = 2  # </s>: generation stops there

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = llama_hidden_dim(self.d_model, self.multiple_of, self.ffn_dim_multiplier)
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layers", "n_heads", "n_kv_heads"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("d_ff", self.d_ff)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "choose n_heads that divides d_model"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}; "
                "choose n_kv_heads that divides n_heads (n_heads: MHA, 1: MQA, between: GQA)"
            )
        if self.head_dim % 2:
            raise ValueError(f"RoPE rotates pairs of features: head_dim={self.head_dim} is odd")
        if not (self.norm_eps > 0 and self.rope_theta > 0 and math.isfinite(self.rope_theta)):
            raise ValueError(
                f"norm_eps and rope_theta must be positive, got {self.norm_eps}, {self.rope_theta}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides) -> LlamaConfig:
        """The config of a named size (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; the presets are {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    # LLaMA-1 (Touvron et al. 2023, table 2): dimension, heads, layers; d_ff by Meta's rule.
    "7B": dict(d_model=4096, n_heads=32, n_layers=32),
    "13B": dict(d_model=5120, n_heads=40, n_layers=40),
    "33B": dict(d_model=6656, n_heads=52, n_layers=60),
    "65B": dict(d_model=8192, n_heads=64, n_layers=80),
    # SmolLM2-135M, the LLaMA-architecture model lib.gguf loads (GQA: 9 query, 3 KV heads).
    "smollm2-135M": dict(
        vocab_size=49152,
        max_seq_len=8192,
        d_model=576,
        n_layers=30,
        n_heads=9,
        n_kv_heads=3,
        d_ff=1536,
        norm_eps=1e-5,
        rope_theta=100000.0,
        tie_embeddings=True,
        bos_id=1,
        eos_id=2,
    ),
    # What the book trains on Tiny Shakespeare characters: GPT's shakespeare-char sizes (Meta's
    # rule with multiple_of=32 gives SwiGLU as many weights as GPT's 4x MLP, within 3%).
    # A character corpus has no special tokens: id 0 (the newline) stands in for bos and eos.
    "shakespeare-char": dict(
        vocab_size=65,
        max_seq_len=64,
        d_model=128,
        n_layers=4,
        n_heads=4,
        multiple_of=32,
        bos_id=0,
        eos_id=0,
    ),
    "shakespeare-char-full": dict(
        vocab_size=65,
        max_seq_len=256,
        d_model=384,
        n_layers=6,
        n_heads=6,
        multiple_of=32,
        dropout=0.2,
        bos_id=0,
        eos_id=0,
    ),
}


class Llama(nn.Module):
    """LLaMA: `forward(input_ids) -> next-token logits (batch, seq, vocab_size)`."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        c = self.config = config
        self.tok_embed = TokenEmbedding(c.vocab_size, c.d_model)  # no position table: RoPE
        self.rope = RotaryEmbedding(c.head_dim, c.max_seq_len, c.rope_theta)  # shared, no weights
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(
                c.d_model,
                c.n_heads,
                c.d_ff,
                dropout=c.dropout,
                cross_attention=False,
                norm_first=True,
                norm="rmsnorm",
                ffn="swiglu",
                n_kv_heads=c.n_kv_heads,
                bias=False,
                rope=self.rope,
                norm_eps=c.norm_eps,
            )
            for _ in range(c.n_layers)
        )
        self.final_norm = make_norm("rmsnorm", c.d_model, c.norm_eps, bias=False)
        tie = self.tok_embed if c.tie_embeddings else None
        self.lm_head = LMHead(c.d_model, c.vocab_size, bias=False, tie_to=tie)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.02) for every matrix and the embedding, unit RMSNorm gains (HF's LLaMA init)."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)

    def forward(
        self, input_ids: Tensor, kv_caches: list[KVCache] | None = None, start_pos: int = 0
    ) -> Tensor:
        """Token ids (batch, seq) -> logits (batch, seq, vocab_size) of the token after each.

        With `kv_caches` (one KVCache per layer) the ids hold positions start_pos ..
        start_pos+seq-1 and the keys and values of the earlier positions come from the caches.
        """
        end = start_pos + input_ids.shape[1]
        if end > self.config.max_seq_len:
            raise ValueError(
                f"this Llama was built with max_seq_len={self.config.max_seq_len}, but the input "
                f"reaches position {end - 1}; feed at most the last {self.config.max_seq_len} "
                f"tokens, or build the model with max_seq_len >= {end}"
            )
        if kv_caches is not None and len(kv_caches) != self.config.n_layers:
            raise ValueError(
                f"got {len(kv_caches)} KV caches for {self.config.n_layers} layers; "
                "pass one per layer (lib.generate.make_kv_caches builds them)"
            )
        x = self.dropout(self.tok_embed(input_ids))  # (batch, seq, d_model)
        for i, block in enumerate(self.blocks):
            cache = None if kv_caches is None else kv_caches[i]
            x = block(x, kv_cache=cache, start_pos=start_pos)  # RoPE inside the attention
        return self.lm_head(self.final_norm(x))  # (batch, seq, vocab_size)
