import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lib.generate import (
    generate,
    make_kv_caches,
    sample_next,
    stream,
    top_k_filter,
    top_p_filter,
)
from lib.models.gpt import GPT, GPTConfig

VOCAB = 31


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_gpt(dropout: float = 0.0) -> GPT:
    config = GPTConfig(
        vocab_size=VOCAB, max_seq_len=40, d_model=32, n_layers=2, n_heads=4, dropout=dropout
    )
    model = GPT(config)
    with torch.no_grad():  # larger matrices than GPT-2's init: peaked, varied predictions
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return model.eval()


def prompt(batch: int = 2, seq: int = 5) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, seq))


def test_greedy_tokens_are_the_same_with_and_without_the_cache():
    model, x = tiny_gpt(), prompt()
    cached = generate(model, x, 30, temperature=0)
    assert cached.shape == (2, 35) and torch.equal(cached[:, :5], x)
    assert torch.equal(generate(model, x, 30, temperature=0, use_cache=False), cached)
    assert len(set(cached[0, 5:].tolist())) > 3  # a varied sequence, not one repeated token


def test_temperature_zero_is_argmax_of_the_full_forward():
    model, ids = tiny_gpt(), prompt()
    out = generate(model, ids, 10, temperature=0)
    for t in range(5, 15):
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_sampling_is_reproducible_and_cache_independent_with_a_seeded_generator():
    model, x = tiny_gpt(), prompt()

    def sample(use_cache):
        g = torch.Generator().manual_seed(7)
        return generate(model, x, 25, temperature=1.0, top_k=10, use_cache=use_cache, generator=g)

    assert torch.equal(sample(True), sample(True))
    assert torch.equal(sample(True), sample(False))


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(temperature=0.8, top_p=0.9)])
def test_stream_yields_what_generate_returns(kwargs):
    model, x = tiny_gpt(), prompt()
    streamed = list(stream(model, x, 12, generator=torch.Generator().manual_seed(3), **kwargs))
    assert len(streamed) == 12 and streamed[0].shape == (2,)
    out = generate(model, x, 12, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(torch.stack(streamed, dim=1), out[:, 5:])


def test_top_k_never_samples_outside_the_k_most_likely():
    logits = torch.randn(4, VOCAB)
    allowed = logits.topk(5, dim=-1).indices  # (4, 5)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, top_k=5, generator=g) for _ in range(2000)], dim=1)
    for row in range(4):
        assert set(draws[row].tolist()) == set(allowed[row].tolist())  # all of them, no other
    assert torch.equal(sample_next(logits, top_k=1), logits.argmax(-1))


def test_top_p_keeps_the_smallest_set_holding_p():
    probs = torch.tensor([[0.125, 0.5, 0.125, 0.25]])
    logits = probs.log()
    kept = {p: top_p_filter(logits, p).isfinite()[0].tolist() for p in (0.4, 0.6, 0.8, 1.0)}
    assert kept[0.4] == [False, True, False, False]
    assert kept[0.6] == [False, True, False, True]
    assert sum(kept[0.8]) == 3 and kept[0.8][1] and kept[0.8][3]  # one of the two 0.125 ties
    assert kept[1.0] == [True] * 4
    assert top_k_filter(logits, 2).isfinite()[0].tolist() == [False, True, False, True]


def test_top_p_never_samples_outside_the_nucleus():
    logits = torch.randn(4, VOCAB) * 2
    probs = logits.softmax(-1)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, top_p=0.7, generator=g) for _ in range(2000)], dim=1)
    for row in range(4):
        order = probs[row].argsort(descending=True)
        mass = probs[row][order].cumsum(0)
        size = int((mass < 0.7).sum()) + 1  # tokens until the running total reaches 0.7
        nucleus = set(order[:size].tolist())
        assert set(draws[row].tolist()) == nucleus
        assert probs[row][list(nucleus)].sum() >= 0.7


def test_temperature_sharpens_and_flattens():
    logits = torch.randn(1, VOCAB)
    g = torch.Generator().manual_seed(0)

    def distinct(temperature):
        return len({sample_next(logits, temperature, generator=g).item() for _ in range(500)})

    assert distinct(0.05) <= 2 < distinct(1.0) < distinct(100.0)


def test_without_the_cache_generation_slides_past_max_seq_len():
    model = tiny_gpt()
    out = generate(model, prompt(1, 30), 20, temperature=0, use_cache=False)  # 50 > 40
    assert out.shape == (1, 50)
    # The last token is predicted from the last 40 tokens only.
    assert out[0, -1] == model(out[:, -41:-1])[0, -1].argmax()


def test_generation_runs_in_eval_mode_and_restores_the_mode():
    model, x = tiny_gpt(dropout=0.5), prompt()
    model.train()
    cached = generate(model, x, 10, temperature=0)
    assert model.training
    assert torch.equal(cached, generate(model, x, 10, temperature=0, use_cache=False))
    assert torch.equal(generate(model, x, 0), x)


def test_kv_caches_follow_the_config():
    caches = make_kv_caches(tiny_gpt(), batch=3, max_len=12)
    assert len(caches) == 2 and caches[0].k.shape == (3, 4, 12, 8)

    class GQAModel(nn.Module):  # the config of a LLaMA-like model with grouped KV heads
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
            self.config = SimpleNamespace(n_layers=5, n_heads=8, n_kv_heads=2, d_model=64)

    caches = make_kv_caches(GQAModel(), batch=1, max_len=9)
    assert len(caches) == 5 and caches[0].v.shape == (1, 2, 9, 8)
    assert caches[0].k.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_new_tokens=36), "35 new tokens, or pass use_cache=False"),
        (dict(temperature=-1.0), "temperature must be a finite number >= 0"),
        (dict(temperature=math.nan), "temperature must be a finite number >= 0"),
        (dict(top_k=0), "top_k must be a positive integer or None, got 0"),
        (dict(top_k=2.5), "top_k must be a positive integer"),
        (dict(top_p=0.0), r"top_p must lie in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must lie in \(0, 1\]"),
        (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
        (dict(input_ids=torch.zeros(5, dtype=torch.long)), r"pass ids\[None\]"),
    ],
)
def test_bad_arguments_say_what_to_change(kwargs, message):
    args = dict(input_ids=prompt(), max_new_tokens=5) | kwargs
    model = tiny_gpt()
    with pytest.raises(ValueError, match=message):
        generate(model, **args)
    with pytest.raises(ValueError, match=message):
        stream(model, **args)  # at once, before the first token is asked for
