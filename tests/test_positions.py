import math

import pytest
import torch

from lib.positions import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positions,
)


@pytest.mark.parametrize("d_model", [8, 7, 1])
def test_sinusoidal_table_follows_the_formula(d_model):
    table = sinusoidal_positions(11, d_model)
    assert table.shape == (11, d_model)
    for pos in (0, 1, 10):
        for dim in range(d_model):
            i = dim // 2  # dims 2i and 2i+1 share the frequency 1 / 10000^(2i/d)
            angle = pos / 10000 ** (2 * i / d_model)
            expected = math.sin(angle) if dim % 2 == 0 else math.cos(angle)
            assert table[pos, dim].item() == pytest.approx(expected, abs=1e-6)


def test_sinusoidal_module_adds_positions():
    pe = SinusoidalPositionalEncoding(max_seq_len=10, d_model=6)
    assert pe.state_dict() == {}  # a formula, not weights
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(pe(x), x + sinusoidal_positions(10, 6)[:4])
    torch.testing.assert_close(pe(x, start_pos=3)[1] - x[1], pe.positions(4, start_pos=3))
    assert pe.positions(4, start_pos=3).shape == (4, 6)


def test_learned_positions_add_trained_rows():
    pos = LearnedPositionalEmbedding(max_seq_len=10, d_model=6)
    assert pos.weight.shape == (10, 6) and pos.weight.requires_grad
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(pos(x), x + pos.weight[:4])
    torch.testing.assert_close(pos(x, start_pos=6), x + pos.weight[6:10])


@pytest.mark.parametrize(
    "module", [LearnedPositionalEmbedding(8, 4), SinusoidalPositionalEncoding(8, 4)]
)
def test_past_max_seq_len_says_what_to_change(module):
    with pytest.raises(ValueError, match="length 9 .* max_seq_len=8 .* max_seq_len >= 9"):
        module(torch.randn(1, 9, 4))
    with pytest.raises(ValueError, match="start_pos=6 needs positions up to 8, .* >= 9"):
        module(torch.randn(1, 3, 4), start_pos=6)


@pytest.mark.parametrize(
    "module", [LearnedPositionalEmbedding(8, 4), SinusoidalPositionalEncoding(8, 4)]
)
def test_negative_start_pos_is_an_error_not_a_wrap(module):
    with pytest.raises(ValueError, match="start_pos must be >= 0, got start_pos=-5"):
        module(torch.randn(1, 2, 4), start_pos=-5)  # would silently read rows 3 and 4
