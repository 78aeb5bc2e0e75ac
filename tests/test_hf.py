import pytest
import torch

from lib.generate import generate
from lib.models.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
from lib.hf import gpt_config_to_hf, gpt_from_hf, gpt_to_hf  # noqa: E402

VOCAB = 61


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_gpt2(attn_implementation: str = "eager", **overrides):
    """A tiny GPT2LMHeadModel with random weights everywhere, norms included."""
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=48,
        n_embd=32,
        n_layer=3,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation=attn_implementation,
        **overrides,
    )
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(mean=1.0 if "ln" in name and name.endswith("weight") else 0.0, std=0.2)
    return model.eval()


def tiny_config(**overrides) -> GPTConfig:
    return GPTConfig(
        vocab_size=VOCAB, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, **overrides
    )


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("overrides", [{}, dict(n_inner=48), dict(tie_word_embeddings=False)])
def test_logits_match_gpt2(attn_implementation, overrides):
    hf = random_gpt2(attn_implementation, **overrides)
    assert hf.config._attn_implementation == attn_implementation
    model = gpt_from_hf(hf)
    x = torch.randint(VOCAB, (3, 48))
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff <= 1e-5


def test_greedy_generation_matches_gpt2_generate():
    hf = random_gpt2()
    model = gpt_from_hf(hf)
    x = torch.randint(1, VOCAB, (2, 6))  # no id 0, the pad id, so nothing looks like padding
    ours = generate(model, x, 20, temperature=0)
    theirs = hf.generate(
        x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=20, pad_token_id=0
    )
    assert torch.equal(ours, theirs)
    assert len(set(ours[:, 6:].flatten().tolist())) > 1  # not one token over and over


@pytest.mark.parametrize("overrides", [{}, dict(tie_word_embeddings=False)])
def test_round_trip_through_lib_is_exact(overrides):
    hf = random_gpt2(**overrides)
    back = gpt_to_hf(gpt_from_hf(hf))
    assert state_dicts_equal(back.state_dict(), hf.state_dict())
    assert back.config.tie_word_embeddings == hf.config.tie_word_embeddings
    for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        assert getattr(back.config, name) == getattr(hf.config, name)


@pytest.mark.parametrize("overrides", [{}, dict(d_ff=48), dict(tie_embeddings=False)])
def test_round_trip_through_hf_is_exact(overrides):
    model = GPT(tiny_config(**overrides))
    assert state_dicts_equal(gpt_from_hf(gpt_to_hf(model)).state_dict(), model.state_dict())


def test_bias_free_models_convert_with_zero_biases():
    # GPT-2 always has biases: a model without them converts with zero biases, exactly.
    no_bias = GPT(tiny_config(bias=False, dropout=0.0)).eval()
    hf = gpt_to_hf(no_bias)
    biases = [p for name, p in hf.named_parameters() if name.endswith(".bias")]
    assert biases and all(not p.any() for p in biases)
    x = torch.randint(VOCAB, (2, 32))
    with torch.no_grad():
        assert (no_bias(x) - hf(x).logits).abs().max() <= 1e-5


def test_unsupported_gpt2_variants_are_refused():
    with pytest.raises(ValueError, match="activation_function='relu'.*lib's GPT does not"):
        gpt_from_hf(random_gpt2(activation_function="relu"))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True"):
        gpt_from_hf(random_gpt2(scale_attn_by_inverse_layer_idx=True))


@pytest.mark.parametrize(
    "field, value, need",
    [
        ("norm_first", False, "True"),
        ("ffn", "relu", "'gelu_tanh'"),
        ("positions", "sinusoidal", "'learned'"),
    ],
)
def test_gpts_that_gpt2_cannot_represent_are_refused(field, value, need):
    config = tiny_config(**{field: value})
    message = rf"{field}={value!r}, which GPT2LMHeadModel cannot .* needs {field}={need}$"
    with pytest.raises(ValueError, match=message):
        gpt_config_to_hf(config)
    with pytest.raises(ValueError, match=message):
        gpt_to_hf(GPT(config))


def test_every_field_gpt2_cannot_represent_is_named():
    config = tiny_config(norm_first=False, ffn="relu")
    with pytest.raises(ValueError, match="norm_first=False, ffn='relu'.*norm_first=True, ffn="):
        gpt_config_to_hf(config)
