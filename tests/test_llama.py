"""lib's LLaMA: parity with transformers' LlamaForCausalLM on random weights (MHA, GQA, MQA; tied
and untied; other rope_theta and rms_norm_eps), equal greedy generation, exact round trips,
Meta's checkpoint layout, the paper's parameter counts, and what GQA saves."""

import pytest
import torch

from lib.generate import generate, make_kv_caches
from lib.models.gpt import GPT, GPTConfig, lm_loss
from lib.models.llama import Llama, LlamaConfig
from lib.rope import permute_to_meta
from lib.utils import count_params

transformers = pytest.importorskip("transformers")
from lib.hf.gpt2 import gpt_config_to_hf  # noqa: E402
from lib.hf.llama import (  # noqa: E402
    _name_map,
    llama_config_from_hf,
    llama_from_hf,
    llama_from_meta,
    llama_to_hf,
)

VOCAB = 97
TOL = 1e-5  # fp32: the same sums in other orders; the differences are ~1e-6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_llama(n_kv_heads: int = 4, tie: bool = False, **overrides):
    """A small transformers LlamaForCausalLM with random weights everywhere, norms included."""
    settings = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
        attn_implementation="sdpa",
    )
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**settings, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(mean=1.0 if "norm" in name else 0.0, std=0.2 if "norm" in name else 0.05)
    return model.eval()


CASES = {
    "MHA": dict(n_kv_heads=4),
    "GQA": dict(n_kv_heads=2),
    "MQA": dict(n_kv_heads=1),
    "GQA, tied": dict(n_kv_heads=2, tie=True),
    "theta and eps": dict(n_kv_heads=2, rope_theta=500000.0, rms_norm_eps=1e-5),
}


@pytest.mark.parametrize("case", CASES)
def test_logits_equal_hf(case):
    hf = random_llama(**CASES[case])
    ours = llama_from_hf(hf)
    ids = torch.randint(0, VOCAB, (2, 40))
    with torch.no_grad():
        difference = (ours(ids) - hf(ids).logits).abs().max()
    assert difference <= TOL, difference
    assert ours.config.tie_embeddings == (ours.lm_head.weight is ours.tok_embed.weight)


@pytest.mark.parametrize("case", ["GQA", "GQA, tied"])
def test_greedy_generation_equals_hf_and_the_cache_changes_nothing(case):
    hf = random_llama(**CASES[case])
    ours = llama_from_hf(hf)
    prompt = torch.randint(3, VOCAB, (1, 7))
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None)
    cached = generate(ours, prompt, 20, temperature=0)
    uncached = generate(ours, prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, theirs)  # the prompt, then the same 20 tokens
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("case", ["GQA", "GQA, tied"])
def test_round_trip_is_exact(case):
    hf = random_llama(**CASES[case])
    back = llama_to_hf(llama_from_hf(hf))
    theirs, again = hf.state_dict(), back.state_dict()
    assert theirs.keys() == again.keys()
    assert all(torch.equal(theirs[name], again[name]) for name in theirs)
    assert llama_config_from_hf(back.config) == llama_config_from_hf(hf.config)


def test_meta_layout_loads_to_the_same_model():
    """A synthetic checkpoint in Meta's layout (interleaved RoPE) gives the same logits."""
    hf = random_llama(n_kv_heads=2)
    ours = llama_from_hf(hf)
    c = ours.config
    meta = {}
    for name, _, meta_name in _name_map(c):
        tensor = ours.state_dict()[name]
        if meta_name.endswith("attention.wq.weight"):
            tensor = permute_to_meta(tensor, c.n_heads)
        elif meta_name.endswith("attention.wk.weight"):
            tensor = permute_to_meta(tensor, c.n_kv_heads)
        meta[meta_name] = tensor
    meta["rope.freqs"] = torch.zeros(c.head_dim // 2)  # in Meta's files; a function of the config
    from_meta = llama_from_meta(meta, c)
    ids = torch.randint(0, VOCAB, (1, 30))
    with torch.no_grad():
        assert torch.equal(from_meta(ids), ours(ids))
    with pytest.raises(KeyError, match="layers.0.attention.wq.weight is missing"):
        llama_from_meta({k: v for k, v in meta.items() if "wq" not in k}, c)


def test_presets_count_the_released_checkpoints():
    released = {
        "7B": 6_738_415_616,
        "13B": 13_015_864_320,
        "33B": 32_528_943_616,
        "65B": 65_285_660_672,
    }
    for name, n in released.items():
        with torch.device("meta"):  # shapes only: no memory
            assert count_params(Llama(LlamaConfig.preset(name))) == n, name


def test_gqa_changes_only_the_kv_projections_and_shrinks_the_cache():
    base = dict(vocab_size=VOCAB, max_seq_len=32, d_model=64, n_layers=2, n_heads=8)
    mha, gqa = Llama(LlamaConfig(**base)), Llama(LlamaConfig(**base, n_kv_heads=2))
    shapes = {n: p.shape for n, p in mha.named_parameters()}
    differ = {n for n, p in gqa.named_parameters() if p.shape != shapes[n]}
    assert differ == {f"blocks.{i}.self_attn.{k}_proj.weight" for i in range(2) for k in "kv"}
    cache_bytes = [
        sum(c.k.numel() + c.v.numel() for c in make_kv_caches(m, 1, 32)) for m in (mha, gqa)
    ]
    assert cache_bytes[0] == cache_bytes[1] * 8 // 2  # n_heads / n_kv_heads times smaller


def test_a_small_llama_trains():
    model = Llama(LlamaConfig.preset("shakespeare-char"))
    batch = torch.randint(0, 65, (4, 33))
    batch = (batch[:, :-1], batch[:, 1:])
    before = lm_loss(model, batch).item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(10):
        optimizer.zero_grad()
        lm_loss(model, batch).backward()
        optimizer.step()
    assert lm_loss(model, batch).item() < 0.8 * before


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="not divisible by n_kv_heads=3"):
        LlamaConfig(d_model=64, n_heads=4, n_kv_heads=3)
    with pytest.raises(KeyError, match="the presets are 7B, 13B"):
        LlamaConfig.preset("70B")
    with pytest.raises(TypeError, match="llama_from_hf converts a transformers LlamaForCausalLM"):
        llama_from_hf(
            transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2))
        )
    with pytest.raises(ValueError, match="hidden_act='silu'"):
        llama_config_from_hf(transformers.LlamaConfig(hidden_act="gelu"))
    model = Llama(LlamaConfig.preset("shakespeare-char"))
    with pytest.raises(ValueError, match="max_seq_len=64, but the input reaches position 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_gpt_with_llamas_changes_is_llama():
    """Chapter 9's ablation ends at LLaMA: GPT with RMSNorm, RoPE, SwiGLU, GQA, no biases and
    untied embeddings has Llama's parameters, name for name, and computes the same logits."""
    llama_config = LlamaConfig.preset("shakespeare-char", n_kv_heads=2)
    gpt_config = GPTConfig.preset(
        "shakespeare-char", norm="rmsnorm", positions="rope", ffn="swiglu", n_kv_heads=2,
        d_ff=llama_config.d_ff, norm_eps=llama_config.norm_eps, tie_embeddings=False,
    )  # fmt: skip
    llama, gpt = Llama(llama_config).eval(), GPT(gpt_config).eval()
    gpt.load_state_dict(llama.state_dict())  # strict: the same names and shapes
    x = torch.randint(0, 65, (2, 64))
    assert torch.equal(gpt(x), llama(x))
    with pytest.raises(ValueError, match="GPT2LMHeadModel cannot represent.*n_kv_heads=4"):
        gpt_config_to_hf(gpt_config)
