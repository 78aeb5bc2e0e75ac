import pytest
import torch

from lib.data import BOS, EOS, PAD, number_words, number_words_task
from lib.models.transformer import Transformer, TransformerConfig
from lib.utils import count_params


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    sizes = dict(
        src_vocab_size=13,
        tgt_vocab_size=13,
        max_seq_len=16,
        d_model=16,
        n_heads=2,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=32,
        dropout=0.0,
    )
    return Transformer(TransformerConfig(**{**sizes, **kw})).eval()


def test_number_words():
    assert number_words(0) == ["zero"]
    assert " ".join(number_words(4021)) == "four thousand twenty one"
    assert " ".join(number_words(90_017)) == "ninety thousand seventeen"
    with pytest.raises(ValueError, match="0 to 999,999"):
        number_words(1_000_000)


def test_task_splits_are_disjoint_by_construction():
    task = number_words_task(max_number=1000)
    train, test = {s for s, _ in task.train}, {s for s, _ in task.test}
    assert len(train) == 900 and len(test) == 100 and not train & test
    src, tgt_in, tgt_out = task.tensors(task.test[:5])
    assert (tgt_in[:, 0] == BOS).all()
    assert torch.equal(tgt_in[:, 1:], tgt_out[:, :-1].masked_fill(tgt_out[:, :-1] == EOS, PAD))
    assert task.decode(tgt_out[0].tolist()) == task.test[0][1]
    assert (tgt_out == EOS).sum() == 5
    with pytest.raises(KeyError, match="not in the task's vocabulary"):
        task.encode(["eleventy"])


def test_shapes_and_tied_embeddings():
    model = tiny()
    src, tgt = torch.randint(3, 13, (3, 7)), torch.randint(3, 13, (3, 5))
    assert model(src, tgt).shape == (3, 5, 13)
    assert model.lm_head.weight is model.src_embed.weight is model.tgt_embed.weight
    untied = tiny(share_embeddings=False)
    assert count_params(untied) - count_params(model) == 2 * 13 * 16


def test_padding_the_source_changes_nothing():
    model = tiny()
    src, tgt = torch.randint(3, 13, (1, 6)), torch.randint(3, 13, (1, 4))
    padded = torch.cat([src, torch.full((1, 3), PAD)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


def test_decoder_is_causal():
    model = tiny(norm_first=True)
    src, tgt = torch.randint(3, 13, (2, 6)), torch.randint(3, 13, (2, 5))
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 10 + 3
    torch.testing.assert_close(model(src, tgt)[:, :3], model(src, changed)[:, :3])
    assert not torch.allclose(model(src, tgt)[:, 3:], model(src, changed)[:, 3:])


def test_greedy_decode_matches_step_by_step_argmax():
    model = tiny()
    src = torch.randint(3, 13, (2, 6))
    out = model.greedy_decode(src, max_len=4)
    assert out.shape[0] == 2 and out.shape[1] <= 4
    prefix = torch.cat([torch.full((2, 1), BOS), out[:, :-1]], dim=1)
    expected = model(src, prefix).argmax(-1)
    alive = torch.cumsum(out == EOS, dim=1) - (out == EOS).long() == 0  # up to and incl. <eos>
    assert torch.equal(out[alive], expected[alive])


def test_bad_configs_say_what_to_change():
    with pytest.raises(ValueError, match="choose n_heads that divides d_model"):
        TransformerConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="set share_embeddings=False"):
        TransformerConfig(src_vocab_size=5, tgt_vocab_size=6)
