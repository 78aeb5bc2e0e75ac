"""Converters between the book's models and Hugging Face `transformers`: configs and weights.

This is the one place in `lib` that knows Hugging Face's names (`transformer.h.0.attn.c_attn`,
`n_embd`, ...); every other module uses the book's own. Each converter is a name table plus
the few reshapes the two layouts need, and converts both ways, so that the parity tests can
load the same random weights into both implementations and compare logits.

`transformers` is imported inside the functions, not at the top: it is an optional extra
(`pip install -e '.[hf]'`) and costs ~7 s to import, which `import lib.hf` should not pay
(nor fail on) for a reader who never converts a model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lib.models.gpt import GPT, GPTConfig


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(
            "converting to or from Hugging Face needs the transformers package: "
            "pip install -e '.[hf]' (or pip install transformers)"
        ) from exc
    return transformers


# --- GPT-2 ------------------------------------------------------------------------------------
#
# HF's GPT2LMHeadModel keeps GPT-2's original TensorFlow layout: its `Conv1D` layers store the
# weight as (in_features, out_features), the transpose of nn.Linear's (out, in), and one fused
# `c_attn` projects to [q | k | v] at once: (d_model, 3 * d_model). Ours are four nn.Linear.

GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation


def gpt_config_from_hf(hf_config) -> GPTConfig:
    """The GPTConfig of a transformers GPT2Config; raises for what our GPT does not implement."""
    c = hf_config
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
    )


def gpt_config_to_hf(config: GPTConfig):
    """The transformers GPT2Config of a GPTConfig."""
    transformers = _transformers()
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
    config = gpt_config_from_hf(hf_model.config)
    hf = hf_model.state_dict()
    weight = hf["transformer.wte.weight"]
    state = {
        "tok_embed.weight": hf["transformer.wte.weight"],
        "pos_embed.weight": hf["transformer.wpe.weight"],
        "final_norm.weight": hf["transformer.ln_f.weight"],
        "final_norm.bias": hf["transformer.ln_f.bias"],
        "lm_head.weight": hf["lm_head.weight"],  # the same tensor as wte when tied
    }
    for i in range(config.n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        q, k, v = hf[h + "attn.c_attn.weight"].T.chunk(3)  # (3 d, d) -> three (d, d)
        q_bias, k_bias, v_bias = hf[h + "attn.c_attn.bias"].chunk(3)
        state |= {
            b + "self_attn_norm.weight": hf[h + "ln_1.weight"],
            b + "self_attn_norm.bias": hf[h + "ln_1.bias"],
            b + "self_attn.q_proj.weight": q,
            b + "self_attn.q_proj.bias": q_bias,
            b + "self_attn.k_proj.weight": k,
            b + "self_attn.k_proj.bias": k_bias,
            b + "self_attn.v_proj.weight": v,
            b + "self_attn.v_proj.bias": v_bias,
            b + "self_attn.o_proj.weight": hf[h + "attn.c_proj.weight"].T,
            b + "self_attn.o_proj.bias": hf[h + "attn.c_proj.bias"],
            b + "ffn_norm.weight": hf[h + "ln_2.weight"],
            b + "ffn_norm.bias": hf[h + "ln_2.bias"],
            b + "ffn.w1.weight": hf[h + "mlp.c_fc.weight"].T,
            b + "ffn.w1.bias": hf[h + "mlp.c_fc.bias"],
            b + "ffn.w2.weight": hf[h + "mlp.c_proj.weight"].T,
            b + "ffn.w2.bias": hf[h + "mlp.c_proj.bias"],
        }
    with torch.device(weight.device):
        model = GPT(config)
    model.load_state_dict(state)  # strict: every name present, every shape equal
    return model.to(weight.dtype).eval()


def gpt_to_hf(model: GPT):
    """A transformers GPT2LMHeadModel with the config and weights of a GPT (in eval mode).

    GPT-2 always has biases; a GPT built with bias=False converts exactly, with zero biases.
    """
    transformers = _transformers()
    config = model.config
    ours = model.state_dict()
    weight = ours["tok_embed.weight"]

    def bias(name: str, size: int) -> Tensor:
        return ours[name] if name in ours else weight.new_zeros(size)

    d = config.d_model
    hf = {
        "transformer.wte.weight": ours["tok_embed.weight"],
        "transformer.wpe.weight": ours["pos_embed.weight"],
        "transformer.ln_f.weight": ours["final_norm.weight"],
        "transformer.ln_f.bias": bias("final_norm.bias", d),
        "lm_head.weight": ours["lm_head.weight"],
    }
    for i in range(config.n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        qkv = [b + f"self_attn.{n}_proj" for n in "qkv"]
        hf |= {
            h + "ln_1.weight": ours[b + "self_attn_norm.weight"],
            h + "ln_1.bias": bias(b + "self_attn_norm.bias", d),
            h + "attn.c_attn.weight": torch.cat([ours[n + ".weight"] for n in qkv]).T,
            h + "attn.c_attn.bias": torch.cat([bias(n + ".bias", d) for n in qkv]),
            h + "attn.c_proj.weight": ours[b + "self_attn.o_proj.weight"].T,
            h + "attn.c_proj.bias": bias(b + "self_attn.o_proj.bias", d),
            h + "ln_2.weight": ours[b + "ffn_norm.weight"],
            h + "ln_2.bias": bias(b + "ffn_norm.bias", d),
            h + "mlp.c_fc.weight": ours[b + "ffn.w1.weight"].T,
            h + "mlp.c_fc.bias": bias(b + "ffn.w1.bias", config.d_ff),
            h + "mlp.c_proj.weight": ours[b + "ffn.w2.weight"].T,
            h + "mlp.c_proj.bias": bias(b + "ffn.w2.bias", d),
        }
    with torch.device(weight.device):
        hf_model = transformers.GPT2LMHeadModel(gpt_config_to_hf(config))
    hf_model.load_state_dict(hf)
    return hf_model.to(weight.dtype).eval()
