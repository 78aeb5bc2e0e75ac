import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.attention import (
    KVCache,
    MultiHeadAttention,
    attention,
    causal_mask,
    padding_mask,
    repeat_kv,
)
from lib.rope import RotaryEmbedding

ATOL = 1e-6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def load_from_torch(mha: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """Copy torch.nn.MultiheadAttention's fused in_proj and out_proj into q/k/v/o_proj."""
    w_q, w_k, w_v = ref.in_proj_weight.chunk(3)
    b_q, b_k, b_v = ref.in_proj_bias.chunk(3)
    with torch.no_grad():
        for proj, w, b in [(mha.q_proj, w_q, b_q), (mha.k_proj, w_k, b_k), (mha.v_proj, w_v, b_v)]:
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        mha.o_proj.weight.copy_(ref.out_proj.weight)
        mha.o_proj.bias.copy_(ref.out_proj.bias)


def gqa_as_mha(gqa: MultiHeadAttention) -> MultiHeadAttention:
    """An MHA module whose key/value heads are those of `gqa`, repeated for each query head."""
    d_model = gqa.q_proj.in_features
    mha = MultiHeadAttention(d_model, gqa.n_heads)
    state = gqa.state_dict()
    for name in ("k_proj", "v_proj"):
        w = state[f"{name}.weight"].view(gqa.n_kv_heads, gqa.head_dim, d_model)
        state[f"{name}.weight"] = w.repeat_interleave(gqa.n_rep, dim=0).reshape(-1, d_model)
        b = state[f"{name}.bias"].view(gqa.n_kv_heads, gqa.head_dim)
        state[f"{name}.bias"] = b.repeat_interleave(gqa.n_rep, dim=0).reshape(-1)
    mha.load_state_dict(state)
    return mha


# --- the function ----------------------------------------------------------------------------


@pytest.mark.parametrize("masked", ["none", "bool", "causal"])
def test_attention_equals_sdpa(masked):
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    mask = {
        "none": None,
        "bool": torch.rand(2, 1, 5, 7) > 0.3,
        "causal": causal_mask(5, 7),
    }[masked]
    if mask is not None:
        mask[..., 0] = True  # every query may attend somewhere
    out, weights = attention(q, k, v, mask)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0
    )
    assert weights.shape == (2, 3, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))


def test_fully_masked_query_gets_zero_output_like_sdpa():
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[False, False, False], [True, True, False]])
    out, weights = attention(q, k, v, mask)
    assert not out.isnan().any()
    assert torch.equal(weights[0, 0, 0], torch.zeros(3))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_masks_shapes_and_values():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    # Two queries at positions 2 and 3 of four keys (a KV cache with start_pos=2).
    assert torch.equal(causal_mask(2, 4), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool())
    mask = padding_mask([3, 1], 4)
    assert mask.shape == (2, 1, 1, 4)
    assert torch.equal(mask[:, 0, 0], torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]).bool())
    with pytest.raises(ValueError, match="length of 5 exceeds seq_len=4"):
        padding_mask([5, 2], 4)


def test_repeat_kv_matches_repeat_interleave():
    x = torch.randn(2, 3, 5, 4)
    assert torch.equal(repeat_kv(x, 2), x.repeat_interleave(2, dim=1))
    assert repeat_kv(x, 1) is x


# --- MultiHeadAttention against torch.nn.MultiheadAttention ----------------------------------


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("masked", ["none", "padding", "causal", "both"])
def test_mha_equals_torch_multihead_attention(fused, masked):
    batch, seq_len, d_model, n_heads = 3, 7, 12, 3
    ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True).eval()
    mha = MultiHeadAttention(d_model, n_heads).eval()
    load_from_torch(mha, ref)
    mha.fused = fused
    x = torch.randn(batch, seq_len, d_model)
    lengths = torch.tensor([7, 4, 2])
    pad = padding_mask(lengths, seq_len) if masked in ("padding", "both") else None
    is_causal = masked in ("causal", "both")
    # torch.nn.MultiheadAttention's boolean masks mean the opposite: True = may NOT attend.
    expected, _ = ref(
        x,
        x,
        x,
        key_padding_mask=None if pad is None else ~pad[:, 0, 0],
        attn_mask=~causal_mask(seq_len) if is_causal else None,
        need_weights=False,
    )
    out = mha(x, mask=pad, is_causal=is_causal)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


def test_cross_attention_equals_torch_multihead_attention():
    ref = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    mha = MultiHeadAttention(8, 2).eval()
    load_from_torch(mha, ref)
    x, context = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    pad = padding_mask([5, 2], 5)
    expected, _ = ref(x, context, context, key_padding_mask=~pad[:, 0, 0], need_weights=False)
    torch.testing.assert_close(mha(x, context, mask=pad), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("masked", ["none", "padding", "causal", "both"])
def test_fused_path_equals_reference_path(masked):
    mha = MultiHeadAttention(12, 4, n_kv_heads=2).eval()
    x = torch.randn(2, 5, 12)
    pad = padding_mask([5, 3], 5) if masked in ("padding", "both") else None
    is_causal = masked in ("causal", "both")
    fused = mha(x, mask=pad, is_causal=is_causal)
    assert mha.attn_weights is None
    mha.fused = False
    reference = mha(x, mask=pad, is_causal=is_causal)
    torch.testing.assert_close(fused, reference, atol=ATOL, rtol=0)
    assert mha.attn_weights.shape == (2, 4, 5, 5)


def test_gqa_with_n_kv_heads_equal_to_n_heads_is_mha():
    mha = MultiHeadAttention(12, 4)
    gqa = MultiHeadAttention(12, 4, n_kv_heads=4)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), atol=0, rtol=0)


@pytest.mark.parametrize("n_kv_heads", [1, 2])  # MQA, GQA
def test_gqa_and_mqa_equal_mha_with_repeated_key_value_heads(n_kv_heads):
    gqa = MultiHeadAttention(16, 4, n_kv_heads=n_kv_heads).eval()
    assert gqa.k_proj.out_features == n_kv_heads * 4
    mha = gqa_as_mha(gqa).eval()
    x = torch.randn(2, 6, 16)
    pad = padding_mask([6, 4], 6)
    torch.testing.assert_close(gqa(x, mask=pad), mha(x, mask=pad), atol=ATOL, rtol=0)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), atol=ATOL, rtol=0)


# --- masks at work ---------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [True, False])
def test_causal_attention_ignores_later_positions(fused):
    mha = MultiHeadAttention(8, 2).eval()
    mha.fused = fused
    x = torch.randn(1, 6, 8)
    t = 2
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn(1, 6 - t - 1, 8)
    out, out_changed = mha(x, is_causal=True), mha(changed, is_causal=True)
    torch.testing.assert_close(out[:, : t + 1], out_changed[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(out[:, t + 1 :], out_changed[:, t + 1 :])


def test_padded_keys_receive_zero_attention():
    mha = MultiHeadAttention(8, 2).eval()
    mha.fused = False
    x = torch.randn(2, 5, 8)
    pad = padding_mask([5, 3], 5)
    out = mha(x, mask=pad)
    assert torch.equal(mha.attn_weights[1, :, :, 3:], torch.zeros(2, 5, 2))
    changed = x.clone()
    changed[1, 3:] = torch.randn(2, 8)  # new content in the padding
    torch.testing.assert_close(mha(changed, mask=pad)[1, :3], out[1, :3], atol=0, rtol=0)


# --- KV cache --------------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n_kv_heads, use_rope", [(4, False), (2, False), (1, True), (2, True)])
def test_kv_cache_step_by_step_equals_full_sequence(n_kv_heads, use_rope, fused):
    batch, seq_len, d_model, n_heads = 2, 7, 16, 4
    rope = RotaryEmbedding(d_model // n_heads, max_seq_len=16) if use_rope else None
    mha = MultiHeadAttention(d_model, n_heads, n_kv_heads, rope=rope).eval()
    mha.fused = fused
    x = torch.randn(batch, seq_len, d_model)
    full = mha(x, is_causal=True)

    cache = KVCache(batch, 10, n_kv_heads, d_model // n_heads)
    # A prompt of 3 tokens at once, then one token at a time.
    steps = [mha(x[:, :3], is_causal=True, kv_cache=cache, start_pos=0)]
    for pos in range(3, seq_len):
        steps.append(mha(x[:, pos : pos + 1], is_causal=True, kv_cache=cache, start_pos=pos))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


def test_kv_cache_chunk_after_start_sees_the_right_keys():
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 6, 8)
    full = mha(x, is_causal=True)
    cache = KVCache(1, 6, 2, 4)
    mha(x[:, :2], is_causal=True, kv_cache=cache, start_pos=0)
    chunk = mha(x[:, 2:6], is_causal=True, kv_cache=cache, start_pos=2)  # 4 queries, 6 keys
    torch.testing.assert_close(chunk, full[:, 2:6], atol=ATOL, rtol=0)


def test_kv_cache_refuses_to_write_past_its_end():
    cache = KVCache(batch=1, max_seq_len=4, n_kv_heads=2, head_dim=3)
    k = torch.randn(1, 2, 2, 3)
    k_all, _ = cache.update(2, k, k)
    assert k_all.shape == (1, 2, 4, 3)
    with pytest.raises(ValueError, match=r"reaches position 4, past the KV cache of max_seq_len=4"):
        cache.update(3, k, k)
    with pytest.raises(ValueError, match="allocate the KVCache with batch >= 2"):
        cache.update(0, torch.randn(2, 2, 1, 3), torch.randn(2, 2, 1, 3))


# --- shapes and errors -----------------------------------------------------------------------


def test_shapes_for_odd_sizes():
    mha = MultiHeadAttention(15, 5, n_kv_heads=1, bias=False)
    assert mha(torch.randn(3, 7, 15)).shape == (3, 7, 15)
    assert mha(torch.randn(3, 7, 15), context=torch.randn(3, 11, 15)).shape == (3, 7, 15)
    assert mha.q_proj.bias is None


def test_bad_configs_say_what_to_change():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="n_heads=4 is not divisible by n_kv_heads=3"):
        MultiHeadAttention(12, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match=r"build it with RotaryEmbedding\(3, max_seq_len\)"):
        MultiHeadAttention(12, 4, rope=RotaryEmbedding(4, 8))
    mha = MultiHeadAttention(8, 2, rope=RotaryEmbedding(4, 8))
    with pytest.raises(ValueError, match="self-attention only"):
        mha(torch.randn(1, 2, 8), context=torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="max_seq_len >= 9"):
        mha(torch.randn(1, 9, 8))
