import lzma
import os
import shutil
import subprocess
import sys

import pytest
import torch

from lib import data
from lib.data import find_corpus, lm_batches, load_bytes, load_text, train_val_split


def test_load_text_verifies_known_corpora():
    text = load_text("tinyshakespeare")
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    poems = load_text("tang_poems")
    assert len(poems) == 1_985_255
    assert len(set(poems)) == 6_682
    assert load_text("sst2/test").splitlines()[0] == "sentence\tlabel"
    assert load_text("chnsenticorp").splitlines()[0] == "label,review"


CLONE_CHECK = """
import socket, sys

def no_network(*args, **kwargs):
    raise OSError("network used")

socket.socket.connect = socket.create_connection = no_network
from lib import data
assert data.ROOT.as_posix() == sys.argv[1], data.ROOT
for name in data.CORPORA:
    assert data.find_corpus(name).is_relative_to(data.ROOT / "data"), name
    data.load_bytes(name)
print(len(data.CORPORA))
"""


def test_every_corpus_loads_in_a_bare_clone_offline(tmp_path):
    """A clone with no ../shared beside it, no BOOK_DATA and no network finds every corpus."""
    clone = tmp_path / "clone"
    shutil.copytree(data.ROOT / "lib", clone / "lib")
    shutil.copytree(data.ROOT / "data", clone / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("BOOK_DATA", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", CLONE_CHECK, clone.as_posix()],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(data.CORPORA))
    assert not (tmp_path / "shared").exists()


def test_shipped_corpora_are_compressed_in_data():
    for corpus in data.CORPORA.values():
        assert (data.ROOT / "data" / f"{corpus.filename}.xz").is_file(), corpus.filename


def test_unknown_corpus_lists_what_exists():
    with pytest.raises(KeyError, match="chnsenticorp, sst2/dev"):
        load_text("wikipedia")


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare.txt").write_text("not shakespeare")
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="sha256 .* expected 86c4e6aa"):
        load_text("tinyshakespeare")


def test_corrupt_xz_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare.txt.xz").write_bytes(b"not xz at all")
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="not a valid xz file"):
        load_text("tinyshakespeare")


def test_book_data_comes_first_plain_or_compressed(tmp_path, monkeypatch):
    plain = tmp_path / "tinyshakespeare.txt"
    plain.write_bytes(load_bytes("tinyshakespeare"))
    dev = load_bytes("sst2/dev")
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    assert data.data_dirs()[0] == tmp_path
    assert find_corpus("tinyshakespeare") == plain
    assert len(load_text("tinyshakespeare")) == 1_115_394
    packed = tmp_path / "sst2" / "dev.tsv.xz"
    packed.parent.mkdir()
    packed.write_bytes(lzma.compress(dev))
    assert find_corpus("sst2/dev") == packed
    assert load_bytes("sst2/dev") == dev


def test_missing_corpus_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(data.corpora, "data_dirs", lambda: [tmp_path])
    with pytest.raises(FileNotFoundError, match="git checkout data"):
        find_corpus("tinyshakespeare")


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
        (torch.arange(50), 0, 4, "batch_size must be a positive integer, got 0"),
    ],
)
def test_lm_batches_bad_inputs(ids, batch, seq, message):
    with pytest.raises(ValueError, match=message):
        lm_batches(ids, batch, seq)
