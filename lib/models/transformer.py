"""The original encoder–decoder Transformer (Vaswani et al., 2017), assembled from lib's blocks.

Read top to bottom: the config with its presets, the model (embeddings, encoder stack, decoder
stack, output layer), greedy decoding, then the loss. What `python -m lib.train --model
transformer` trains is in `lib/recipes.py`. This file imports only the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lib.blocks import DecoderBlock, EncoderBlock, make_norm
from lib.embedding import LMHead, TokenEmbedding
from lib.positions import SinusoidalPositionalEncoding


@dataclass
class TransformerConfig:
    """Sizes of an encoder–decoder Transformer; the defaults are the paper's base model."""

    src_vocab_size: int = 37000
    tgt_vocab_size: int = 37000
    max_seq_len: int = 512
    d_model: int = 512
    n_heads: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    norm_first: bool = False  # the paper normalizes after each residual; pre-norm trains easier
    share_embeddings: bool = True  # one table for source, target and output (paper §3.4)
    norm_eps: float = 1e-5
    # The special tokens' ids in the vocabulary (lib.data's number-words task uses 0, 1, 2).
    pad_id: int = 0  # padding: masked out of attention and of the loss
    bos_id: int = 1  # starts every decoder input
    eos_id: int = 2  # ends every target; decoding stops there

    def __post_init__(self):
        sizes = ("src_vocab_size", "tgt_vocab_size", "max_seq_len", "d_model", "n_heads")
        for name in (*sizes, "n_encoder_layers", "n_decoder_layers", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "choose n_heads that divides d_model"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary, but src_vocab_size={self.src_vocab_size}"
                f" and tgt_vocab_size={self.tgt_vocab_size}; set share_embeddings=False"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        specials = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        bad = {name: i for name, i in specials.items() if not 0 <= i < vocab}
        if bad or len(set(specials.values())) < 3:
            raise ValueError(
                f"pad_id, bos_id and eos_id must be three different ids below the vocabulary "
                f"size {vocab}, got {specials}"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> TransformerConfig:
        """The config of a named size (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; the presets are {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    # The book's CPU size, pre-norm; and the paper's base model (Vaswani et al., table 3).
    "small": dict(
        d_model=64,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=256,
        dropout=0.0,
        norm_first=True,
    ),
    "base": dict(
        d_model=512,
        n_heads=8,
        n_encoder_layers=6,
        n_decoder_layers=6,
        d_ff=2048,
        dropout=0.1,
        norm_first=False,
    ),
}


class Transformer(nn.Module):
    """Encoder–decoder Transformer: `forward(src, tgt_in) -> logits (batch, tgt_len, vocab)`."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, scale=True)
        self.tgt_embed = (
            self.src_embed
            if c.share_embeddings
            else TokenEmbedding(c.tgt_vocab_size, c.d_model, scale=True)
        )
        self.positions = SinusoidalPositionalEncoding(c.max_seq_len, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        block = dict(
            d_model=c.d_model,
            n_heads=c.n_heads,
            d_ff=c.d_ff,
            dropout=c.dropout,
            norm_first=c.norm_first,
            norm_eps=c.norm_eps,
        )
        self.encoder = nn.ModuleList(EncoderBlock(**block) for _ in range(c.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(**block) for _ in range(c.n_decoder_layers))
        # A pre-norm stack leaves its output unnormalized, so it ends with one more norm.
        final_norm = partial(make_norm, "layernorm", c.d_model, c.norm_eps, bias=True)
        self.encoder_norm = final_norm() if c.norm_first else nn.Identity()
        self.decoder_norm = final_norm() if c.norm_first else nn.Identity()
        tie = self.tgt_embed if c.share_embeddings else None
        self.lm_head = LMHead(c.d_model, c.tgt_vocab_size, tie_to=tie)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform matrices and zero biases; embeddings N(0, 1/d_model), so that after
        the sqrt(d_model) scaling they have unit variance, like the positional encodings."""
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=module.embedding_dim**-0.5)
            elif isinstance(module, nn.Linear) and module.weight is not self.tgt_embed.weight:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Source ids (batch, src_len) -> memory (batch, src_len, d_model) and its padding mask."""
        # (batch, 1, 1, src_len): True = a real token, False = padding
        src_mask = (src != self.config.pad_id)[:, None, None, :]
        x = self.dropout(self.positions(self.src_embed(src)))
        for block in self.encoder:
            x = block(x, mask=src_mask)  # padded source tokens are never attended to
        return self.encoder_norm(x), src_mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Target ids so far (batch, tgt_len) -> next-token logits (batch, tgt_len, vocab).

        Self-attention is causal (in the block), so a real target position never sees the
        padding that follows it; cross-attention skips the padded source positions.
        """
        x = self.dropout(self.positions(self.tgt_embed(tgt_in)))
        for block in self.decoder:
            x = block(x, context=memory, context_mask=src_mask)
        return self.lm_head(self.decoder_norm(x))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, max_len: int) -> Tensor:
        """The most likely next token, one at a time: (batch, src_len) -> (batch, <= max_len)."""
        memory, src_mask = self.encode(src)
        out = torch.full((src.shape[0], 1), self.config.bos_id, dtype=torch.long, device=src.device)
        finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            next_id = self.decode(out, memory, src_mask)[:, -1].argmax(-1)
            next_id = next_id.masked_fill(finished, self.config.pad_id)  # nothing after <eos>
            out = torch.cat([out, next_id[:, None]], dim=1)
            finished |= next_id == self.config.eos_id
            if finished.all():
                break
        return out[:, 1:]


def translation_loss(model: Transformer, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of the next target token, padding excluded."""
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)
    pad = getattr(model, "module", model).config.pad_id  # DistributedDataParallel wraps .module
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad)
