"""GPT: a decoder-only Transformer trained to predict the next token (Radford et al. 2018, 2019).

Read top to bottom: the config with its presets (GPT-2's four sizes and the small character-level
models the book trains), the model (token and position embeddings, a stack of causal decoder
blocks, a final LayerNorm, the output layer tied to the token embedding), its weight
initialisation, then its loss. What `python -m lib.train --model gpt` trains is in
`lib/recipes.py`.

The defaults are GPT-2's architecture: learned positions, pre-LayerNorm, GELU with the tanh
approximation, a final LayerNorm, residual projections initialised smaller by
1/sqrt(2 * n_layers), and tied embeddings; `lib.hf.gpt_from_hf` loads OpenAI's weights into it.
The config also varies what the chapters compare (`norm_first`, `ffn`, `positions`,
`tie_embeddings`), so every chapter trains this one GPT.

This file imports only the layers (`lib.blocks`, `lib.embedding`, `lib.positions`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lib.attention import KVCache
from lib.blocks import FFNS, NORMS, DecoderBlock, make_norm
from lib.embedding import LMHead, TokenEmbedding
from lib.positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from lib.rope import RotaryEmbedding

POSITIONS = ("learned", "sinusoidal", "rope", "none")


@dataclass
class GPTConfig:
    """Sizes of a GPT; the defaults are GPT-2 small (124M parameters)."""

    vocab_size: int = 50257  # GPT-2's byte-level BPE: 256 bytes + 50,000 merges + <|endoftext|>
    max_seq_len: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int | None = None  # None: n_heads (multi-head attention); fewer: GQA, 1: MQA
    d_ff: int | None = None  # None: 4 * d_model, as in GPT-2
    dropout: float = 0.1
    norm_eps: float = 1e-5
    bias: bool = True  # biases in every Linear and LayerNorm (GPT-2 has them; nanoGPT drops them)
    tie_embeddings: bool = True  # the output layer reuses the token embedding (Press & Wolf 2017)
    norm_first: bool = True  # pre-norm, as GPT-2; False: post-norm, as the original Transformer
    norm: str = "layernorm"  # or "rmsnorm", as LLaMA
    ffn: str = "gelu_tanh"  # any of lib.blocks.FFNS; GPT-2 uses GELU's tanh approximation
    positions: str = "learned"  # "learned" (GPT-2), "sinusoidal" (Vaswani et al.), "rope", "none"
    rope_theta: float = 10000.0  # RoPE's base, used when positions="rope"

    def __post_init__(self):
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        names = (
            "vocab_size",
            "max_seq_len",
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "d_ff",
        )
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "choose n_heads that divides d_model"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}; 0 turns it off")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}; GPT-2 uses 1e-5")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}; "
                "choose n_kv_heads that divides n_heads"
            )
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} is unknown; choose one of {NORMS}")
        if self.ffn not in FFNS:
            raise ValueError(f"ffn={self.ffn!r} is unknown; choose one of {FFNS}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions={self.positions!r} is unknown; choose one of {POSITIONS}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        """The config of a named size (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; the presets are {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    # GPT-2 (Radford et al. 2019, table 2; the sizes of OpenAI's released checkpoints).
    "124M": dict(d_model=768, n_layers=12, n_heads=12),
    "350M": dict(d_model=1024, n_layers=24, n_heads=16),
    "774M": dict(d_model=1280, n_layers=36, n_heads=20),
    "1.5B": dict(d_model=1600, n_layers=48, n_heads=25),
    # nanoGPT's "baby GPT" on Tiny Shakespeare characters: its CPU recipe, and its GPU recipe
    # (config/train_shakespeare_char.py). nanoGPT trains without biases (bias=False in its
    # train.py); 65 is the number of distinct characters in Tiny Shakespeare.
    "shakespeare-char": dict(
        vocab_size=65, max_seq_len=64, d_model=128, n_layers=4, n_heads=4, dropout=0.0, bias=False
    ),
    "shakespeare-char-full": dict(
        vocab_size=65, max_seq_len=256, d_model=384, n_layers=6, n_heads=6, dropout=0.2, bias=False
    ),
}


class GPT(nn.Module):
    """Decoder-only Transformer: `forward(input_ids) -> next-token logits (batch, seq, vocab)`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = self.config = config
        self.tok_embed = TokenEmbedding(c.vocab_size, c.d_model)
        self.pos_embed = {
            "learned": LearnedPositionalEmbedding,
            "sinusoidal": SinusoidalPositionalEncoding,
            "rope": lambda *_: None,  # RoPE rotates q and k inside attention instead
            "none": lambda *_: None,  # causal attention alone still tells positions apart
        }[c.positions](c.max_seq_len, c.d_model)
        self.rope = (
            RotaryEmbedding(c.head_dim, c.max_seq_len, c.rope_theta)
            if c.positions == "rope"
            else None
        )
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(
                c.d_model,
                c.n_heads,
                c.d_ff,
                dropout=c.dropout,
                cross_attention=False,
                norm_first=c.norm_first,  # GPT-2 moved the norm to each sublayer's input (§2.3)
                norm=c.norm,
                ffn=c.ffn,
                n_kv_heads=c.n_kv_heads,
                bias=c.bias,
                rope=self.rope,
                norm_eps=c.norm_eps,
            )
            for _ in range(c.n_layers)
        )
        # A pre-norm stack leaves the residual stream unnormalized, so one more LayerNorm
        # follows it (GPT-2 §2.3); a post-norm stack already ends with a norm.
        self.final_norm = (
            make_norm(c.norm, c.d_model, c.norm_eps, c.bias) if c.norm_first else nn.Identity()
        )
        tie = self.tok_embed if c.tie_embeddings else None
        self.lm_head = LMHead(c.d_model, c.vocab_size, bias=False, tie_to=tie)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit norms, and the
        projections that write into the residual stream (o_proj, ffn.w2) N(0, 0.02/sqrt(2 L))."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.weight is not self.tok_embed.weight:
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.LayerNorm | nn.RMSNorm):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        # Each of the 2 L residual branches adds to the stream; scaling them keeps the variance
        # of the stream at the top about what it is at the bottom (GPT-2 §2.3).
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.self_attn.o_proj.weight, std=residual_std)
            nn.init.normal_(block.ffn.w2.weight, std=residual_std)

    def forward(
        self, input_ids: Tensor, kv_caches: list[KVCache] | None = None, start_pos: int = 0
    ) -> Tensor:
        """Token ids (batch, seq) -> logits (batch, seq, vocab_size) of the token after each.

        With `kv_caches` (one KVCache per layer) the ids hold positions start_pos ..
        start_pos+seq-1 and the keys and values of the earlier positions come from the caches.
        """
        batch, seq_len = input_ids.shape
        end = start_pos + seq_len
        if end > self.config.max_seq_len:
            raise ValueError(
                f"this GPT was built with max_seq_len={self.config.max_seq_len}, but the input "
                f"reaches position {end - 1} ({seq_len} tokens from start_pos={start_pos}); feed "
                f"at most the last {self.config.max_seq_len} tokens, or build the model with "
                f"max_seq_len >= {end}"
            )
        if kv_caches is not None and len(kv_caches) != self.config.n_layers:
            raise ValueError(
                f"got {len(kv_caches)} KV caches for {self.config.n_layers} layers; "
                "pass one per layer (lib.generate.make_kv_caches builds them)"
            )
        x = self.tok_embed(input_ids)  # (batch, seq, d_model)
        if self.pos_embed is not None:
            x = self.pos_embed(x, start_pos)
        x = self.dropout(x)
        for i, block in enumerate(self.blocks):
            cache = None if kv_caches is None else kv_caches[i]
            x = block(x, kv_cache=cache, start_pos=start_pos)
        return self.lm_head(self.final_norm(x))  # (batch, seq, vocab_size)


def lm_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of each next token: the causal language-modelling loss."""
    x, y = batch  # (batch, seq) inputs and the same windows shifted left by one
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())
