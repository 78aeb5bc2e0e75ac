"""LLaMA: lib's Llama and transformers' LlamaForCausalLM, configs and weights, both ways; and
Meta's original checkpoint layout.

HF's layout and ours differ only in names (both store every Linear as (out, in), both compute
RoPE in the rotate_half layout); `_name_map` lists every tensor once and `llama_from_hf` and
`llama_to_hf` both walk it. Meta's checkpoints (`consolidated.*.pth`: `wq`, `wk`, `wv`, `wo`,
`w1`, `w2`, `w3`, `attention_norm`, `ffn_norm`, `tok_embeddings`, `norm`, `output`) use RoPE's
interleaved layout, so their q and k rows are reordered with `lib.rope.permute_to_hf`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lib.hf.common import transformers_module
from lib.models.llama import Llama, LlamaConfig
from lib.rope import permute_to_hf

# (our name, HF's name, Meta's name) outside the blocks; lm_head is absent when tied.
_OUTSIDE_BLOCKS = (
    ("tok_embed.weight", "model.embed_tokens.weight", "tok_embeddings.weight"),
    ("final_norm.weight", "model.norm.weight", "norm.weight"),
    ("lm_head.weight", "lm_head.weight", "output.weight"),
)
# (our module, HF's module, Meta's module) in each block: blocks.i. / model.layers.i. / layers.i.
_IN_BLOCK = (
    ("self_attn_norm", "input_layernorm", "attention_norm"),
    ("self_attn.q_proj", "self_attn.q_proj", "attention.wq"),
    ("self_attn.k_proj", "self_attn.k_proj", "attention.wk"),
    ("self_attn.v_proj", "self_attn.v_proj", "attention.wv"),
    ("self_attn.o_proj", "self_attn.o_proj", "attention.wo"),
    ("ffn_norm", "post_attention_layernorm", "ffn_norm"),
    ("ffn.w1", "mlp.gate_proj", "feed_forward.w1"),  # the gate, through SiLU
    ("ffn.w3", "mlp.up_proj", "feed_forward.w3"),
    ("ffn.w2", "mlp.down_proj", "feed_forward.w2"),
)


def _name_map(config: LlamaConfig) -> list[tuple[str, str, str]]:
    """(our name, HF's name, Meta's name) of every weight of a Llama with `config`."""
    names = [n for n in _OUTSIDE_BLOCKS if not (config.tie_embeddings and n[0] == "lm_head.weight")]
    for i in range(config.n_layers):
        for ours, hf, meta in _IN_BLOCK:
            block = (f"blocks.{i}.", f"model.layers.{i}.", f"layers.{i}.")
            names.append(
                tuple(
                    f"{prefix}{name}.weight"
                    for prefix, name in zip(block, (ours, hf, meta), strict=True)
                )
            )
    return names


def llama_config_from_hf(hf_config) -> LlamaConfig:
    """The LlamaConfig of a transformers LlamaConfig; raises for what our Llama does not do."""
    c = hf_config
    if getattr(c, "model_type", None) != "llama":
        raise TypeError(
            f"llama_config_from_hf converts a LlamaConfig (model_type 'llama'), got "
            f"{type(c).__name__} with model_type {getattr(c, 'model_type', None)!r}"
        )
    rope = getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None) or {}
    unsupported = {
        "hidden_act": c.hidden_act != "silu",
        "attention_bias": c.attention_bias,
        "mlp_bias": getattr(c, "mlp_bias", False),
        "rope scaling": rope.get("rope_type", "default") != "default",
        "head_dim": getattr(c, "head_dim", None)
        not in (None, c.hidden_size // c.num_attention_heads),
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ValueError(
            f"this LLaMA config sets {', '.join(bad)} ({rope or ''}), which lib's Llama does not "
            "implement; it needs hidden_act='silu', no biases, plain RoPE and "
            "head_dim = hidden_size / num_attention_heads"
        )
    theta = rope.get("rope_theta", getattr(c, "rope_theta", None))
    return LlamaConfig(
        vocab_size=c.vocab_size,
        max_seq_len=c.max_position_embeddings,
        d_model=c.hidden_size,
        n_layers=c.num_hidden_layers,
        n_heads=c.num_attention_heads,
        n_kv_heads=c.num_key_value_heads,
        d_ff=c.intermediate_size,
        norm_eps=c.rms_norm_eps,
        rope_theta=float(theta if theta is not None else 10000.0),
        tie_embeddings=c.tie_word_embeddings,
        dropout=c.attention_dropout,
        bos_id=c.bos_token_id if c.bos_token_id is not None else 1,
        eos_id=c.eos_token_id if isinstance(c.eos_token_id, int) else 2,
    )


def llama_config_to_hf(config: LlamaConfig):
    """The transformers LlamaConfig of a LlamaConfig."""
    return transformers_module().LlamaConfig(
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_seq_len,
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads,
        intermediate_size=config.d_ff,
        hidden_act="silu",
        rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings,
        attention_dropout=config.dropout,
        attention_bias=False,
        bos_token_id=config.bos_id,
        eos_token_id=config.eos_id,
        pad_token_id=None,
    )


def llama_from_hf(hf_model) -> Llama:
    """A Llama with the config and weights of a transformers LlamaForCausalLM (in eval mode)."""
    if type(hf_model).__name__ != "LlamaForCausalLM":
        raise TypeError(
            f"llama_from_hf converts a transformers LlamaForCausalLM, got "
            f"{type(hf_model).__name__}; load the checkpoint with LlamaForCausalLM.from_pretrained"
        )
    config = llama_config_from_hf(hf_model.config)
    hf = hf_model.state_dict()
    state = {ours: hf[theirs] for ours, theirs, _ in _name_map(config)}
    return _build(config, state)


def llama_to_hf(model: Llama):
    """A transformers LlamaForCausalLM with the config and weights of a Llama (in eval mode)."""
    if not isinstance(model, Llama):
        raise TypeError(f"llama_to_hf converts a lib Llama, got {type(model).__name__}")
    ours = model.state_dict()
    hf = {theirs: ours[name] for name, theirs, _ in _name_map(model.config)}
    weight = ours["tok_embed.weight"]
    with torch.device(weight.device):
        hf_model = transformers_module().LlamaForCausalLM(llama_config_to_hf(model.config))
    hf_model.load_state_dict(hf, strict=not model.config.tie_embeddings)
    if model.config.tie_embeddings:
        hf_model.tie_weights()
    return hf_model.to(weight.dtype).eval()


def llama_from_meta(state_dict: dict[str, Tensor], config: LlamaConfig) -> Llama:
    """A Llama from a checkpoint in Meta's original layout (`consolidated.00.pth`'s names).

    Meta's RoPE pairs features (2i, 2i+1); ours pairs (i, i + head_dim/2), so the rows of each
    head's wq and wk are reordered (`permute_to_hf`) and the attention scores stay the same.
    Meta's `rope.freqs` buffer, a function of the config, is ignored.
    """
    state = {}
    for ours, _, meta in _name_map(config):
        if meta not in state_dict:
            raise KeyError(f"{meta} is missing: this is not a Meta LLaMA checkpoint for {config}")
        tensor = state_dict[meta]
        if meta.endswith("attention.wq.weight"):
            tensor = permute_to_hf(tensor, config.n_heads)
        elif meta.endswith("attention.wk.weight"):
            tensor = permute_to_hf(tensor, config.n_kv_heads)
        state[ours] = tensor
    return _build(config, state)


def _build(config: LlamaConfig, state: dict[str, Tensor]) -> Llama:
    """A Llama of `config` holding `state`, on the weights' device and in their dtype."""
    weight = state["tok_embed.weight"]
    with torch.device(weight.device):
        model = Llama(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = ["lm_head.weight"] if config.tie_embeddings else []
    if missing != tied or unexpected:
        raise RuntimeError(
            f"LLaMA name map out of date: missing {missing}, unexpected {unexpected}"
        )
    return model.to(weight.dtype).eval()
