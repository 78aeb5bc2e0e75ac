"""Token embedding and output layer: a lookup is one-hot times a matrix; tying shares a tensor."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.embedding import LMHead, TokenEmbedding, check_token_ids
from lib.utils import count_params


def test_lookup_equals_one_hot_times_weight():
    torch.manual_seed(0)
    emb = TokenEmbedding(vocab_size=11, d_model=4)
    ids = torch.tensor([[0, 3, 10], [3, 3, 1]])  # (batch=2, seq=3)
    one_hot = F.one_hot(ids, num_classes=11).float()  # (2, 3, 11)
    assert emb(ids).shape == (2, 3, 4)
    torch.testing.assert_close(emb(ids), one_hot @ emb.weight)
    torch.testing.assert_close(emb(ids), emb.weight[ids])


def test_scaled_embedding_multiplies_by_sqrt_d_model():
    torch.manual_seed(0)
    plain = TokenEmbedding(7, 16)
    scaled = TokenEmbedding(7, 16, scale=True)
    scaled.load_state_dict(plain.state_dict())
    ids = torch.arange(7)
    torch.testing.assert_close(scaled(ids), plain(ids) * math.sqrt(16))
    assert "scale" in repr(scaled)


def test_lm_head_shapes_and_bias():
    head = LMHead(d_model=8, vocab_size=13)
    assert head.bias is None and head.weight.shape == (13, 8)
    assert head(torch.randn(2, 5, 8)).shape == (2, 5, 13)
    assert LMHead(8, 13, bias=True).bias.shape == (13,)


def test_tying_shares_storage_and_gradients():
    torch.manual_seed(0)
    emb = TokenEmbedding(10, 6)
    head = LMHead(6, 10, tie_to=emb)
    assert head.weight is emb.weight
    assert head.weight.data_ptr() == emb.weight.data_ptr()
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert count_params(model) == 10 * 6  # counted once
    assert count_params(nn.ModuleDict({"emb": TokenEmbedding(10, 6), "head": LMHead(6, 10)})) == 120

    ids = torch.tensor([[1, 2, 3]])
    logits = head(emb(ids))  # (1, 3, 10)
    loss = F.cross_entropy(logits.view(-1, 10), torch.tensor([2, 3, 4]))
    loss.backward()
    # One tensor, one gradient, with contributions from both ends.
    assert emb.weight.grad is not None and head.weight.grad is emb.weight.grad
    assert emb.weight.grad[9].abs().sum() > 0  # never looked up, but scored by the head

    # An optimizer step moves both ends together.
    with torch.no_grad():
        emb.weight -= 0.1 * emb.weight.grad
    torch.testing.assert_close(head.weight, emb.weight)


def test_tying_with_mismatched_shape_is_refused():
    emb = TokenEmbedding(10, 6)
    with pytest.raises(ValueError, match=r"\(vocab_size, d_model\) = \(12, 6\).*\(10, 6\)"):
        LMHead(6, 12, tie_to=emb)
    with pytest.raises(TypeError, match="nn.Embedding"):
        LMHead(6, 10, tie_to=nn.Linear(6, 10))


def test_out_of_range_ids_name_vocab_and_max_id():
    emb = TokenEmbedding(10, 4)
    with pytest.raises(IndexError, match=r"\[0, 10\).*max id 12"):
        emb(torch.tensor([1, 12]))
    with pytest.raises(IndexError, match="min id -1"):
        emb(torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match="torch.long"):
        emb(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        emb([1, 2])
    assert emb(torch.zeros(0, dtype=torch.long)).shape == (0, 4)
    check_token_ids(torch.tensor([0, 9], dtype=torch.int32), 10)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="positive"):
        TokenEmbedding(0, 4)
    with pytest.raises(ValueError, match="positive"):
        LMHead(4, 0)
    with pytest.raises(ValueError, match="last dimension d_model=8"):
        LMHead(8, 5)(torch.randn(2, 7))
