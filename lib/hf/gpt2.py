"""GPT-2: lib's GPT and transformers' GPT2LMHeadModel, configs and weights, both ways.

HF keeps GPT-2's original TensorFlow layout, which differs from ours in two ways:

- its `Conv1D` layers store the weight as (in_features, out_features), the transpose of
  nn.Linear's (out_features, in_features), so those weights are transposed on the way through;
  their biases, and LayerNorm's parameters, have one layout in both;
- one fused `attn.c_attn` projects to [q | k | v] at once, weight (d_model, 3 d_model) and bias
  (3 d_model,), where we have three nn.Linear `self_attn.q_proj`, `k_proj`, `v_proj` of
  (d_model, d_model): going to HF concatenates ours along the output features, coming back
  splits HF's into three.

Every other tensor maps one to one. `_name_map` lists them all, and `gpt_from_hf` and
`gpt_to_hf` both walk it, so the two directions cannot disagree.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lib.hf.common import transformers_module
from lib.models.gpt import GPT, GPTConfig

GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation

# The GPTConfig fields that vary what GPT-2 fixes, at GPT-2's values.
GPT2_ARCHITECTURE = {
    "norm_first": True,
    "norm": "layernorm",
    "ffn": "gelu_tanh",
    "positions": "learned",
}

# (our name, HF's name) of the tensors outside the blocks; none is a Conv1D weight.
_OUTSIDE_BLOCKS = (
    ("tok_embed.weight", "transformer.wte.weight"),
    ("pos_embed.weight", "transformer.wpe.weight"),
    ("final_norm.weight", "transformer.ln_f.weight"),
    ("final_norm.bias", "transformer.ln_f.bias"),
    ("lm_head.weight", "lm_head.weight"),  # the same tensor as the token embedding when tied
)

# (our modules, HF's module, whether HF's is a Conv1D) in each block: blocks.i. / transformer.h.i.
_IN_BLOCK = (
    (("self_attn_norm",), "ln_1", False),
    (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "attn.c_attn", True),
    (("self_attn.o_proj",), "attn.c_proj", True),
    (("ffn_norm",), "ln_2", False),
    (("ffn.w1",), "mlp.c_fc", True),
    (("ffn.w2",), "mlp.c_proj", True),
)


def _name_map(n_layers: int) -> list[tuple[tuple[str, ...], str, bool]]:
    """(our names, HF's name, whether HF's is transposed) of every tensor of a GPT-2.

    HF's tensor is ours, or for `attn.c_attn` ours concatenated along the output features; it is
    transposed if it is a Conv1D's weight.
    """
    names = [((ours,), theirs, False) for ours, theirs in _OUTSIDE_BLOCKS]
    for i in range(n_layers):
        for ours, theirs, conv1d in _IN_BLOCK:
            for param in ("weight", "bias"):
                our_names = tuple(f"blocks.{i}.{module}.{param}" for module in ours)
                hf_name = f"transformer.h.{i}.{theirs}.{param}"
                names.append((our_names, hf_name, conv1d and param == "weight"))
    return names


def gpt_config_from_hf(hf_config) -> GPTConfig:
    """The GPTConfig of a transformers GPT2Config; raises for what our GPT does not implement."""
    c = hf_config
    if getattr(c, "model_type", None) != "gpt2":
        raise TypeError(
            f"gpt_config_from_hf converts GPT-2 (a GPT2Config, model_type 'gpt2'), got "
            f"{type(c).__name__} with model_type {getattr(c, 'model_type', None)!r}"
        )
    unsupported = {
        "activation_function": c.activation_function not in GPT2_ACTIVATIONS,
        "scale_attn_weights": not c.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx": c.scale_attn_by_inverse_layer_idx,
        "add_cross_attention": c.add_cross_attention,
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ValueError(
            f"this GPT-2 config sets {', '.join(f'{n}={getattr(c, n)!r}' for n in bad)}, which "
            f"lib's GPT does not implement; it needs activation_function in {GPT2_ACTIVATIONS}, "
            "scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, "
            "add_cross_attention=False"
        )
    return GPTConfig(
        vocab_size=c.vocab_size,
        max_seq_len=c.n_positions,
        d_model=c.n_embd,
        n_layers=c.n_layer,
        n_heads=c.n_head,
        d_ff=c.n_inner or 4 * c.n_embd,
        dropout=c.resid_pdrop,  # GPT-2 uses one rate for all three (embd, attn, resid)
        norm_eps=c.layer_norm_epsilon,
        bias=True,
        tie_embeddings=c.tie_word_embeddings,
        **GPT2_ARCHITECTURE,
    )


def gpt_config_to_hf(config: GPTConfig):
    """The transformers GPT2Config of a GPTConfig; raises for what GPT-2 cannot represent."""
    bad = {name: need for name, need in GPT2_ARCHITECTURE.items() if getattr(config, name) != need}
    if config.n_kv_heads != config.n_heads:
        bad["n_kv_heads"] = config.n_heads  # GPT-2 has one key/value head per query head
    if bad:
        raise ValueError(
            f"this GPTConfig sets {', '.join(f'{n}={getattr(config, n)!r}' for n in bad)}, which "
            "GPT2LMHeadModel cannot represent; GPT-2 needs "
            f"{', '.join(f'{n}={need!r}' for n, need in bad.items())}"
        )
    transformers = transformers_module()
    # <|endoftext|> (id 50256) exists only in GPT-2's own vocabulary.
    eos = 50256 if config.vocab_size == 50257 else None
    return transformers.GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.max_seq_len,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        n_inner=config.d_ff,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.norm_eps,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=eos,
        eos_token_id=eos,
    )


def gpt_from_hf(hf_model) -> GPT:
    """A GPT with the config and weights of a transformers GPT2LMHeadModel (in eval mode)."""
    if type(hf_model).__name__ != "GPT2LMHeadModel":
        raise TypeError(
            f"gpt_from_hf converts a transformers GPT2LMHeadModel, got {type(hf_model).__name__}"
            "; load the checkpoint with GPT2LMHeadModel.from_pretrained"
        )
    config = gpt_config_from_hf(hf_model.config)
    hf = hf_model.state_dict()
    state = {}
    for our_names, hf_name, transposed in _name_map(config.n_layers):
        tensor = hf[hf_name].T if transposed else hf[hf_name]
        state.update(zip(our_names, tensor.chunk(len(our_names)), strict=True))  # c_attn -> q, k, v
    weight = hf["transformer.wte.weight"]
    with torch.device(weight.device):
        model = GPT(config)
    model.load_state_dict(state)  # strict: every name present, every shape equal
    return model.to(weight.dtype).eval()


def gpt_to_hf(model: GPT):
    """A transformers GPT2LMHeadModel with the config and weights of a GPT (in eval mode).

    GPT-2 always has biases; a GPT built with bias=False converts exactly, with zero biases.
    """
    hf_config = gpt_config_to_hf(model.config)
    ours = model.state_dict()

    def ours_or_zero_bias(name: str) -> Tensor:
        if name in ours:
            return ours[name]
        weight = ours[name.removesuffix(".bias") + ".weight"]  # only biases may be missing
        return weight.new_zeros(weight.shape[0])

    hf = {}
    for our_names, hf_name, transposed in _name_map(model.config.n_layers):
        tensor = torch.cat([ours_or_zero_bias(n) for n in our_names])  # q, k, v -> c_attn
        hf[hf_name] = tensor.T if transposed else tensor
    weight = ours["tok_embed.weight"]
    with torch.device(weight.device):
        hf_model = transformers_module().GPT2LMHeadModel(hf_config)
    hf_model.load_state_dict(hf)
    return hf_model.to(weight.dtype).eval()
