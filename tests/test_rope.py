import pytest
import torch

from lib.rope import (
    RotaryEmbedding,
    apply_rope,
    apply_rope_interleaved,
    permute_to_hf,
    permute_to_meta,
    precompute_freqs_cis,
    rope_frequencies,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, seq, n_heads * head_dim) -> (batch, n_heads, seq, head_dim)."""
    batch, seq_len, width = t.shape
    return t.view(batch, seq_len, n_heads, width // n_heads).transpose(1, 2)


def test_frequencies_and_cache():
    freqs = rope_frequencies(8, theta=100.0)
    torch.testing.assert_close(freqs, 100.0 ** (-torch.arange(0, 8, 2) / 8))
    rope = RotaryEmbedding(8, max_seq_len=5, theta=100.0)
    assert rope.cos.shape == rope.sin.shape == (5, 8)
    assert rope.state_dict() == {}  # a cache, not weights
    # Pair i sits at features i and i + head_dim/2 (rotate_half layout).
    torch.testing.assert_close(rope.cos[3], torch.cos(3 * freqs).repeat(2))
    # Meta's complex table holds the same angles.
    freqs_cis = precompute_freqs_cis(8, 5, theta=100.0)
    torch.testing.assert_close(freqs_cis.real, rope.cos[:, :4])
    torch.testing.assert_close(freqs_cis.imag, rope.sin[:, :4])


def test_position_zero_is_identity():
    rope = RotaryEmbedding(6, 4)
    x = torch.randn(2, 3, 1, 6)
    assert torch.equal(rope(x), x)
    assert torch.equal(apply_rope_interleaved(x, precompute_freqs_cis(6, 4)), x)


def test_rotation_preserves_norms():
    rope = RotaryEmbedding(16, 64)
    x = torch.randn(2, 3, 64, 16)
    torch.testing.assert_close(rope(x).norm(dim=-1), x.norm(dim=-1))


def test_score_depends_only_on_relative_position():
    rope = RotaryEmbedding(16, 128)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        q_m = rope(q, positions=torch.tensor([m]))
        k_n = rope(k, positions=torch.tensor([n]))
        return (q_m * k_n).sum()

    for offset in (0, 3, -5):
        scores = torch.stack([score(n + offset, n) for n in (5, 17, 40, 100)])
        torch.testing.assert_close(scores, scores[0].expand(4), atol=1e-5, rtol=1e-5)
    assert not torch.isclose(score(3, 0), score(0, 3))


def test_start_pos_and_positions_agree():
    rope = RotaryEmbedding(8, 16)
    x = torch.randn(2, 2, 4, 8)
    from_start = rope(x, start_pos=5)
    torch.testing.assert_close(from_start, rope(x, positions=torch.arange(5, 9)))
    per_row = torch.stack([torch.arange(5, 9), torch.arange(5, 9)])  # (batch, seq)
    torch.testing.assert_close(from_start, rope(x, positions=per_row))
    full = rope(torch.cat([torch.randn(2, 2, 5, 8), x], dim=2))
    torch.testing.assert_close(from_start, full[:, :, 5:])


def test_matches_hugging_face_llama():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = transformers.LlamaConfig(
        hidden_size=48, num_attention_heads=3, max_position_embeddings=64, rope_theta=500000.0
    )
    hf_rope = LlamaRotaryEmbedding(config)
    rope = RotaryEmbedding(head_dim=16, max_seq_len=64, theta=500000.0)
    q, k = torch.randn(2, 3, 5, 16), torch.randn(2, 3, 5, 16)
    position_ids = torch.tensor([[0, 1, 2, 3, 4], [7, 30, 31, 50, 63]])
    cos, sin = hf_rope(q, position_ids)  # (batch, seq, head_dim)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(rope(q, positions=position_ids), q_hf, atol=1e-6, rtol=0)
    torch.testing.assert_close(rope(k, positions=position_ids), k_hf, atol=1e-6, rtol=0)


@pytest.mark.parametrize("start", ["meta", "hf"])
def test_conventions_agree_after_permuting_projection_rows(start):
    d_model, n_heads, n_kv_heads, head_dim, seq_len = 16, 4, 2, 4, 6
    w_q, w_k = torch.randn(n_heads * head_dim, d_model), torch.randn(n_kv_heads * head_dim, d_model)
    if start == "meta":
        w_q_meta, w_k_meta = w_q, w_k
        w_q_hf, w_k_hf = permute_to_hf(w_q, n_heads), permute_to_hf(w_k, n_kv_heads)
    else:
        w_q_hf, w_k_hf = w_q, w_k
        w_q_meta, w_k_meta = permute_to_meta(w_q, n_heads), permute_to_meta(w_k, n_kv_heads)
    x = torch.randn(2, seq_len, d_model)
    freqs_cis, rope = precompute_freqs_cis(head_dim, seq_len), RotaryEmbedding(head_dim, seq_len)
    q_meta = apply_rope_interleaved(split_heads(x @ w_q_meta.T, n_heads), freqs_cis)
    k_meta = apply_rope_interleaved(split_heads(x @ w_k_meta.T, n_kv_heads), freqs_cis)
    q_hf = rope(split_heads(x @ w_q_hf.T, n_heads))
    k_hf = rope(split_heads(x @ w_k_hf.T, n_kv_heads))

    # The same rotated features, in a different order within each head ...
    order = permute_to_hf(torch.arange(head_dim), n_heads=1)  # HF feature r = Meta feature order[r]
    assert order.tolist() == [0, 2, 1, 3]
    torch.testing.assert_close(q_hf, q_meta[..., order], atol=1e-5, rtol=0)
    torch.testing.assert_close(k_hf, k_meta[..., order], atol=1e-5, rtol=0)
    # ... so the attention scores are the same (query heads 2h, 2h+1 share key head h).
    k_meta, k_hf = k_meta.repeat_interleave(2, dim=1), k_hf.repeat_interleave(2, dim=1)
    scores_meta, scores_hf = q_meta @ k_meta.transpose(-2, -1), q_hf @ k_hf.transpose(-2, -1)
    torch.testing.assert_close(scores_hf, scores_meta, atol=1e-4, rtol=1e-5)


def test_permutations_are_inverse():
    w = torch.randn(24, 7)
    assert torch.equal(permute_to_meta(permute_to_hf(w, 3), 3), w)
    assert torch.equal(permute_to_hf(permute_to_meta(w, 3), 3), w)
    assert not torch.equal(permute_to_hf(w, 3), w)
    bias = torch.randn(24)  # a q/k bias follows its rows
    torch.testing.assert_close(permute_to_hf(bias, 3), permute_to_hf(bias[:, None], 3)[:, 0])


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="head_dim must be even, got head_dim=5"):
        RotaryEmbedding(5, 8)
    rope = RotaryEmbedding(4, 8)
    with pytest.raises(ValueError, match="length 9 .* max_seq_len=8; .* max_seq_len >= 9"):
        rope(torch.randn(1, 1, 9, 4))
    with pytest.raises(ValueError, match="start_pos=7 reaches position 8, .* max_seq_len >= 9"):
        rope(torch.randn(1, 1, 2, 4), start_pos=7)
    with pytest.raises(ValueError, match="position 8 is past the RoPE cache of 8 positions"):
        rope(torch.randn(1, 1, 2, 4), positions=torch.tensor([3, 8]))
    with pytest.raises(ValueError, match="longer than the RoPE cache of 8 positions"):
        apply_rope(torch.randn(1, 1, 9, 4), rope.cos, rope.sin)
    with pytest.raises(ValueError, match="positions must be >= 0, got position -1"):
        rope(torch.randn(1, 1, 2, 4), positions=torch.tensor([-1, 0]))  # would wrap to 7
    with pytest.raises(ValueError, match="start_pos must be >= 0, got start_pos=-1"):
        rope(torch.randn(1, 1, 2, 4), start_pos=-1)
    with pytest.raises(ValueError, match="cannot hold n_heads=4 heads"):
        permute_to_hf(torch.randn(12, 3), n_heads=4)
