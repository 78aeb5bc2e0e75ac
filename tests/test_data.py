import pytest
import torch

from lib import data
from lib.data import find_corpus, lm_batches, load_text, train_val_split


def test_load_text_verifies_known_corpora():
    text = load_text("tinyshakespeare")
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    poems = load_text("tang_poems")
    assert len(poems) == 1_985_255
    assert len(set(poems)) == 6_682


def test_unknown_corpus_lists_what_exists():
    with pytest.raises(KeyError, match="tang_poems, tinyshakespeare"):
        load_text("wikipedia")


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare.txt").write_text("not shakespeare")
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="sha256 .* expected 86c4e6aa"):
        load_text("tinyshakespeare")


def test_book_data_comes_first(tmp_path, monkeypatch):
    copy = tmp_path / "tinyshakespeare.txt"
    copy.write_bytes(find_corpus("tinyshakespeare").read_bytes())
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    assert data.data_dirs()[0] == tmp_path
    assert find_corpus("tinyshakespeare") == copy


def test_missing_corpus_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "data_dirs", lambda: [tmp_path])
    with pytest.raises(FileNotFoundError, match="is not in"):
        find_corpus("tinyshakespeare", download=False)
    with pytest.raises(FileNotFoundError, match="no download URL"):
        find_corpus("tang_poems")


def test_train_val_split_by_position():
    train, val = train_val_split(list(range(100)), 0.1)
    assert train == list(range(90)) and val == list(range(90, 100))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        train_val_split([1, 2, 3], 1.0)


def test_lm_batches_shift_targets_by_one():
    x, y = lm_batches(torch.arange(50), batch_size=4, seq_len=8)(0)
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)


def test_lm_batches_depend_only_on_seed_and_index():
    ids = torch.arange(1000)
    a, b = lm_batches(ids, 2, 5, seed=1), lm_batches(ids, 2, 5, seed=1)
    later = b(7)
    assert all(torch.equal(p, q) for p, q in zip(a(7), later, strict=True))
    assert not torch.equal(a(7)[0], a(8)[0])
    assert not torch.equal(a(7)[0], lm_batches(ids, 2, 5, seed=2)(7)[0])


@pytest.mark.parametrize(
    "ids, batch, seq, message",
    [
        (torch.arange(5), 2, 8, "needs seq_len \\+ 1 = 9 tokens"),
        (torch.zeros(2, 3, dtype=torch.long), 2, 1, "1-D tensor"),
        (torch.arange(50), 0, 4, "must be positive"),
    ],
)
def test_lm_batches_bad_inputs(ids, batch, seq, message):
    with pytest.raises(ValueError, match=message):
        lm_batches(ids, batch, seq)


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url, filename):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "data_dirs", lambda: [tmp_path])
    monkeypatch.setattr(data, "ROOT", tmp_path)
    monkeypatch.setattr(data.urllib.request, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match="downloading it from https://.* failed"):
        find_corpus("tinyshakespeare")
