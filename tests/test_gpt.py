import json
import math
import subprocess
import sys

import pytest
import torch

from lib.feedforward import TanhGELU
from lib.generate import make_kv_caches
from lib.models.gpt import GPT, PRESETS, GPTConfig, lm_loss
from lib.utils import count_params

TINY = dict(vocab_size=23, max_seq_len=16, d_model=32, n_layers=3, n_heads=4, dropout=0.0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def gpt2_params(c: GPTConfig) -> int:
    """Parameters of a tied GPT-2 with biases, counted from the architecture by hand."""
    d = c.d_model
    per_layer = 2 * 2 * d + (4 * d * d + 4 * d) + (2 * d * c.d_ff + c.d_ff + d)  # 2 LN, attn, MLP
    return (c.vocab_size + c.max_seq_len) * d + c.n_layers * per_layer + 2 * d  # + final LN


def test_gpt2_small_has_124_439_808_parameters():
    config = GPTConfig.preset("124M")
    with torch.device("meta"):  # shapes only: no memory, no time
        model = GPT(config)
    assert count_params(model) == gpt2_params(config) == 124_439_808


@pytest.mark.parametrize(
    "name, expected",
    [("350M", 354_823_168), ("774M", 774_030_080), ("1.5B", 1_557_611_200)],
)
def test_larger_gpt2_presets_match_the_released_checkpoints(name, expected):
    config = GPTConfig.preset(name)
    assert (config.vocab_size, config.max_seq_len, config.d_ff) == (50257, 1024, 4 * config.d_model)
    with torch.device("meta"):
        assert count_params(GPT(config)) == gpt2_params(config) == expected


def test_shakespeare_presets_are_nanogpts_baby_gpts():
    cpu, gpu = GPTConfig.preset("shakespeare-char"), GPTConfig.preset("shakespeare-char-full")
    shape = lambda c: (c.n_layers, c.n_heads, c.d_model, c.max_seq_len, c.dropout)  # noqa: E731
    assert shape(cpu) == (4, 4, 128, 64, 0.0)
    assert shape(gpu) == (6, 6, 384, 256, 0.2)
    model = GPT(cpu)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())


def test_logits_shape_and_loss_at_init_is_uniform_guessing():
    model = GPT(GPTConfig(**TINY)).eval()
    x = torch.randint(23, (2, 16))
    logits = model(x)
    assert logits.shape == (2, 16, 23)
    # Small initial weights give nearly uniform predictions: a loss close to ln(vocab_size).
    loss = lm_loss(model, (x, torch.randint(23, (2, 16))))
    assert abs(loss.item() - math.log(23)) < 0.1


def test_later_tokens_do_not_change_earlier_logits():
    model = GPT(GPTConfig(**TINY)).eval()
    x = torch.randint(23, (1, 12))
    changed = x.clone()
    changed[:, 8:] = (x[:, 8:] + 1) % 23
    torch.testing.assert_close(model(changed)[:, :8], model(x)[:, :8], atol=0, rtol=0)
    assert not torch.allclose(model(changed)[:, 8:], model(x)[:, 8:])


def test_kv_cache_forward_equals_full_forward():
    model = GPT(GPTConfig(**TINY)).eval()
    x = torch.randint(23, (2, 10))
    caches = make_kv_caches(model, batch=2, max_len=10)
    steps = [model(x[:, :4], kv_caches=caches)]
    steps += [model(x[:, p : p + 1], kv_caches=caches, start_pos=p) for p in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(x), atol=1e-5, rtol=0)


def test_gpt2_initialisation():
    config = GPTConfig(vocab_size=500, max_seq_len=64, d_model=256, n_layers=8, n_heads=4)
    model = GPT(config)
    assert model.lm_head.weight is model.tok_embed.weight  # tied
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    for block in model.blocks:
        assert isinstance(block.ffn.act, TanhGELU)  # GPT-2's GELU
        assert abs(block.self_attn.o_proj.weight.std().item() - residual_std) < 0.1 * residual_std
        assert abs(block.ffn.w2.weight.std().item() - residual_std) < 0.1 * residual_std
        assert abs(block.ffn.w1.weight.std().item() - 0.02) < 0.002
        assert block.self_attn.q_proj.bias.abs().max() == 0
    assert abs(model.pos_embed.weight.std().item() - 0.02) < 0.002
    assert abs(model.tok_embed.weight.std().item() - 0.02) < 0.002


def test_untied_embeddings_are_separate_parameters():
    tied, untied = GPT(GPTConfig(**TINY)), GPT(GPTConfig(**TINY, tie_embeddings=False))
    assert untied.lm_head.weight is not untied.tok_embed.weight
    assert count_params(untied) - count_params(tied) == 23 * 32


def test_too_long_input_says_what_to_change():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="max_seq_len=16.*feed at most the last 16 tokens"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"reaches position 16 \(2 tokens from start_pos=15\)"):
        model(torch.zeros(1, 2, dtype=torch.long), make_kv_caches(model, 1, 17), start_pos=15)
    with pytest.raises(ValueError, match="got 1 KV caches for 3 layers"):
        model(torch.zeros(1, 2, dtype=torch.long), make_kv_caches(model, 1, 16)[:1])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(n_heads=5), "d_model=32 is not divisible by n_heads=5; choose n_heads"),
        (dict(n_layers=0), "n_layers must be a positive integer, got 0"),
        (dict(vocab_size=-1), "vocab_size must be a positive integer"),
        (dict(d_ff=2.5), "d_ff must be a positive integer"),
        (dict(dropout=1.0), r"dropout must lie in \[0, 1\)"),
        (dict(norm_eps=0.0), "norm_eps must be positive"),
        (dict(n_kv_heads=3), "n_heads=4 is not divisible by n_kv_heads=3"),
        (dict(norm="batchnorm"), "norm='batchnorm' is unknown"),
    ],
)
def test_bad_configs_say_what_to_change(change, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **change})


def test_presets_and_overrides():
    assert set(PRESETS) >= {"124M", "350M", "774M", "1.5B", "shakespeare-char"}
    config = GPTConfig.preset("shakespeare-char", vocab_size=100)
    assert (config.vocab_size, config.d_ff, config.n_kv_heads, config.head_dim) == (100, 512, 4, 32)
    with pytest.raises(KeyError, match="unknown preset '7B'"):
        GPTConfig.preset("7B")


# --- the command line -------------------------------------------------------------------


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "lib.train", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_trains_then_resumes(tmp_path):
    common = ["--model", "gpt", "--data", "tinyshakespeare", "--out", str(tmp_path)]
    common += ["--lr-decay-steps", "5"]  # a fixed horizon: the run may grow from 3 steps to 5
    first = run(*common, "--steps", "3")  # the book's command, with a horizon that may grow
    assert first.returncode == 0, first.stderr
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    resumed = run(*common, "--steps", "5", "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 5
    assert "val_loss" in records[-1]


def test_config_varies_what_the_chapters_compare():
    base = dict(vocab_size=11, max_seq_len=8, d_model=16, n_layers=2, n_heads=2, dropout=0.0)
    x = torch.randint(11, (2, 8))
    for positions in ("learned", "sinusoidal", "rope", "none"):
        model = GPT(GPTConfig(**base, positions=positions))
        assert model(x).shape == (2, 8, 11), positions
    assert GPT(GPTConfig(**base, positions="none")).pos_embed is None
    post = GPT(GPTConfig(**base, norm_first=False, ffn="relu", tie_embeddings=False))
    assert isinstance(post.final_norm, torch.nn.Identity)  # post-norm blocks end normalized
    assert not post.blocks[0].norm_first and isinstance(post.blocks[0].ffn.act, torch.nn.ReLU)
    assert post.lm_head.weight is not post.tok_embed.weight
    with pytest.raises(ValueError, match="ffn='tanh' is unknown"):
        GPTConfig(**base, ffn="tanh")
    with pytest.raises(ValueError, match="positions='alibi' is unknown"):
        GPTConfig(**base, positions="alibi")
