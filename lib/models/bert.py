"""BERT: an encoder-only, bidirectional Transformer pre-trained to fill in masked tokens and to
tell whether one sentence follows another (Devlin et al. 2019).

Read top to bottom: the config with its presets (the paper's base and large, MiniLM's size, and
the small models the book trains), the encoder (token + position + segment embeddings, a stack
of post-LayerNorm encoder blocks with GELU, and the pooler over [CLS]), the two task models
(pre-training: a masked-LM head tied to the token embedding and a next-sentence head;
classification: one Linear on the pooled [CLS]), the initialisation, then the losses. What
`python -m lib.train --model bert` trains is in `lib/recipes.py`; the masking and sentence pairs
are in `lib/data/bert.py`.

Every token attends to every other (no causal mask); padding is the only thing the attention
mask hides. `lib.hf.bert_from_hf` loads Hugging Face's weights into these classes.

This file imports only the layers (`lib.blocks`, `lib.embedding`, `lib.positions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lib.blocks import EncoderBlock, make_norm
from lib.embedding import LMHead, TokenEmbedding, check_token_ids
from lib.positions import LearnedPositionalEmbedding
from lib.utils import check_positive_int

IGNORE_INDEX = -100  # the label of a position the masked-LM loss skips (F.cross_entropy's default)


@dataclass
class BertConfig:
    """Sizes of a BERT; the defaults are BERT-base, uncased (110M parameters)."""

    vocab_size: int = 30522  # BERT's uncased WordPiece vocabulary (MiniLM shares it)
    max_seq_len: int = 512  # rows of the position table: no input may be longer
    type_vocab_size: int = 2  # segments: sentence A and sentence B
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int | None = None  # None: 4 * d_model
    dropout: float = 0.1  # on embeddings, attention weights and each sublayer's output
    norm_eps: float = 1e-12  # BERT's LayerNorm epsilon
    # The special tokens' ids; these are the uncased WordPiece vocabulary's.
    pad_id: int = 0  # [PAD]
    cls_id: int = 101  # [CLS], first of every input; its final vector is the pooled summary
    sep_id: int = 102  # [SEP], ends each sentence
    mask_id: int = 103  # [MASK], what the masked-LM task hides tokens behind

    def __post_init__(self):
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        sizes = ("vocab_size", "max_seq_len", "type_vocab_size", "d_model", "n_layers", "n_heads")
        for name in (*sizes, "d_ff"):
            check_positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "choose n_heads that divides d_model"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}; 0 turns it off")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}; BERT uses 1e-12")
        specials = self.special_ids
        if len(set(specials.values())) < 4 or not all(
            isinstance(i, int) and 0 <= i < self.vocab_size for i in specials.values()
        ):
            raise ValueError(
                f"pad_id, cls_id, sep_id and mask_id must be four different ids below "
                f"vocab_size={self.vocab_size}, got {specials}"
            )

    @property
    def special_ids(self) -> dict[str, int]:
        """The four special tokens' ids by field name."""
        names = ("pad_id", "cls_id", "sep_id", "mask_id")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def preset(cls, name: str, **overrides) -> BertConfig:
        """The config of a named size (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; the presets are {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    # Devlin et al. (2019), section 3: BERT-base (L=12, H=768, A=12) and BERT-large (24, 1024, 16).
    "base": dict(d_model=768, n_layers=12, n_heads=12),
    "large": dict(d_model=1024, n_layers=24, n_heads=16),
    # all-MiniLM-L6-v2, the pretrained BERT the book loads (6 layers, 384 wide, 12 heads).
    "minilm": dict(d_model=384, n_layers=6, n_heads=12, d_ff=1536),
    # What the book pre-trains from scratch: on a CPU in a minute, and on a GPU. Two lines of
    # Tiny Shakespeare take 21 WordPiece tokens on average, so 32 positions hold most pairs.
    "small": dict(max_seq_len=32, d_model=128, n_layers=2, n_heads=2, dropout=0.0),
    "medium": dict(max_seq_len=128, d_model=256, n_layers=4, n_heads=4),
}


class Bert(nn.Module):
    """The encoder: `forward(input_ids, token_type_ids, attention_mask) -> hidden states`."""

    def __init__(self, config: BertConfig):
        super().__init__()
        c = self.config = config
        self.tok_embed = TokenEmbedding(c.vocab_size, c.d_model)
        self.pos_embed = LearnedPositionalEmbedding(c.max_seq_len, c.d_model)
        self.type_embed = nn.Embedding(c.type_vocab_size, c.d_model)  # which sentence, A or B
        self.embed_norm = make_norm("layernorm", c.d_model, c.norm_eps, bias=True)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                c.d_model,
                c.n_heads,
                c.d_ff,
                dropout=c.dropout,
                norm_first=False,  # post-norm, as in the original Transformer
                ffn="gelu",  # the exact GELU (erf), not GPT-2's tanh approximation
                norm_eps=c.norm_eps,
            )
            for _ in range(c.n_layers)
        )
        self.pooler = nn.Linear(c.d_model, c.d_model)  # tanh(W h_[CLS] + b): see `pool`
        init_weights(self)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Token ids (batch, seq) -> hidden states (batch, seq, d_model), one per token.

        `token_type_ids` (batch, seq): 0 for sentence A, 1 for B; None: all A.
        `attention_mask` (batch, seq): 1 (or True) for a real token, 0 for padding; None: no
        padding. Padding is never attended to; the hidden states at padded positions are
        computed but mean nothing.
        """
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        check_token_ids(token_type_ids, self.config.type_vocab_size)
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq): keys to attend
        x = self.pos_embed(self.tok_embed(input_ids)) + self.type_embed(token_type_ids)
        x = self.dropout(self.embed_norm(x))
        for block in self.blocks:
            x = block(x, mask=mask)
        return x

    def pool(self, hidden: Tensor) -> Tensor:
        """The pooled summary of each input: tanh of a Linear of [CLS]'s final vector (batch, d)."""
        return torch.tanh(self.pooler(hidden[:, 0]))


class BertForPreTraining(nn.Module):
    """BERT with its two pre-training heads: masked-LM logits and next-sentence logits."""

    def __init__(self, config: BertConfig):
        super().__init__()
        c = self.config = config
        self.bert = Bert(config)
        # The masked-LM head: Linear, GELU, LayerNorm, then logits through the token embedding.
        self.mlm_dense = nn.Linear(c.d_model, c.d_model)
        self.mlm_norm = make_norm("layernorm", c.d_model, c.norm_eps, bias=True)
        self.mlm_head = LMHead(c.d_model, c.vocab_size, bias=True, tie_to=self.bert.tok_embed)
        self.nsp_head = nn.Linear(c.d_model, 2)  # 0: B follows A; 1: B is a random sentence
        init_weights(self)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        predict: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(mlm_logits (batch, seq, vocab), nsp_logits (batch, 2)).

        `predict` (batch, seq) boolean: compute masked-LM logits only where it is True, as
        (n_true, vocab) in row-major order. The loss needs no more, and for a small BERT the
        vocabulary-wide output layer is most of the cost of a step.
        """
        hidden = self.bert(input_ids, token_type_ids, attention_mask)
        nsp_logits = self.nsp_head(self.bert.pool(hidden))
        if predict is not None:
            hidden = hidden[predict]  # (n_predicted, d_model)
        h = self.mlm_norm(F.gelu(self.mlm_dense(hidden)))
        return self.mlm_head(h), nsp_logits


class BertForSequenceClassification(nn.Module):
    """BERT with a classifier on the pooled [CLS]: `forward(...) -> logits (batch, n_classes)`."""

    def __init__(self, config: BertConfig, n_classes: int = 2):
        super().__init__()
        self.config = config
        self.n_classes = check_positive_int("n_classes", n_classes)
        self.bert = Bert(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, n_classes)
        init_weights(self)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        hidden = self.bert(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(self.bert.pool(hidden)))


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """BERT's initialisation: N(0, 0.02) weights and embeddings, zero biases, unit norms."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """The mean of each input's hidden states over its real tokens: (batch, seq, d) -> (batch, d).

    Sentence-transformers embed a sentence this way (then L2-normalise it), rather than by the
    pooled [CLS].
    """
    weights = attention_mask.to(hidden.dtype)[..., None]  # (batch, seq, 1): 1 real, 0 padding
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def bert_pretraining_loss(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    """Masked-LM cross-entropy over the masked positions plus next-sentence cross-entropy.

    `batch` is what `lib.data.nsp_batches` gives: (input_ids, token_type_ids, attention_mask,
    mlm_labels, nsp_labels), with mlm_labels IGNORE_INDEX wherever nothing was masked.
    """
    input_ids, token_type_ids, attention_mask, mlm_labels, nsp_labels = batch
    predict = mlm_labels != IGNORE_INDEX
    mlm_logits, nsp_logits = model(input_ids, token_type_ids, attention_mask, predict=predict)
    return F.cross_entropy(mlm_logits, mlm_labels[predict]) + F.cross_entropy(
        nsp_logits, nsp_labels
    )


def classification_loss(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Cross-entropy of the class of each input; `batch` is (input_ids, attention_mask, labels)."""
    input_ids, attention_mask, labels = batch
    return F.cross_entropy(model(input_ids, attention_mask=attention_mask), labels)
