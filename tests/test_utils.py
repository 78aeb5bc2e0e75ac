import pytest
import torch
from torch import nn

from lib.utils import count_params, get_device, scale, set_seed, show_source


def test_set_seed_repeats_random_draws():
    set_seed(3)
    first = torch.rand(4)
    set_seed(3)
    assert torch.equal(first, torch.rand(4))


def test_get_device_defaults_to_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_refuses_missing_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device("cuda")


@pytest.mark.parametrize(
    "value, expected", [("small", "small"), ("full", "full"), (" FULL ", "full")]
)
def test_scale_follows_book_scale(monkeypatch, value, expected):
    monkeypatch.setenv("BOOK_SCALE", value)
    assert scale() == expected


def test_scale_defaults_to_device(monkeypatch):
    monkeypatch.delenv("BOOK_SCALE", raising=False)
    assert scale() == ("full" if torch.cuda.is_available() else "small")


def test_scale_rejects_unknown_value(monkeypatch):
    monkeypatch.setenv("BOOK_SCALE", "huge")
    with pytest.raises(ValueError, match="one of \\('small', 'full'\\)"):
        scale()


def test_count_params_counts_tied_weights_once():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert count_params(model) == 80
    head.weight = emb.weight
    assert count_params(model) == 40
    emb.weight.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 0


def test_show_source_labels_file_and_lines():
    source = show_source(count_params)
    assert source.code.startswith("def count_params(")
    assert source.where.startswith("lib/utils.py, lines ")
    markdown = source._repr_markdown_()
    assert "````python\ndef count_params(" in markdown
    assert repr(source).startswith("# lib/utils.py")


def test_show_source_unwraps_decorators():
    from lib.models.transformer import Transformer

    source = show_source(Transformer.greedy_decode)
    assert source.where.startswith("lib/models/transformer.py, lines ")
    assert "def greedy_decode(" in source.code


def test_show_source_never_prints_a_machine_path():
    assert show_source(pytest.raises).where.startswith("_pytest/raises.py, lines ")


def test_show_source_rejects_builtins():
    with pytest.raises(TypeError, match="defined in a file"):
        show_source(len)


def test_print_wrapped_breaks_between_items_and_counts_wide_characters_twice(capsys):
    from lib.utils import print_wrapped, text_columns

    assert text_columns("ab") == 2 and text_columns("歌辞") == 4
    print_wrapped("tokens:", ["歌辞"] * 12, width=40)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tokens: ['歌辞',") and lines[-1].endswith("'歌辞']")
    assert all(text_columns(line) <= 40 for line in lines) and len(lines) == 3
    assert all(line.startswith("    '") for line in lines[1:])
    assert eval("[" + "".join(line.split("[", 1)[-1] for line in lines)) == ["歌辞"] * 12
    print_wrapped("none:", [])
    assert capsys.readouterr().out == "none: []\n"
