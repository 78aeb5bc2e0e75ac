"""Tokenizers: characters and byte-level BPE round-trip any text, save, load, reject bad input."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.data import load_text
from lib.tokenizer import (
    GPT2_SPLIT,
    BPETokenizer,
    CharTokenizer,
    hf_merges,
    merge_pair,
    pair_counts,
    split_chunks,
    train_hf_bpe,
)

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "秦川雄帝宅，函谷壮皇居。绮殿千寻起，离宫百雉余。\n"
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
    "Emoji too: 😀😀 🎉🎉 👍🏽 and numbers 12345, 2024; the the the theatre.\n"
) * 20

EXAMPLES = [
    "",
    " ",
    "Hello, world!",
    "To be, or not to be: that is the question.",
    "床前明月光，疑是地上霜。",
    "😀🎉👍🏽 family: 👨‍👩‍👧",
    "mixed 中文 and English 123 ... \t\n\r\n  end  ",
    "caf\u00e9 vs cafe\u0301",  # precomposed and combining accent
    "\x00\x01 control \x7f",
    "lone surrogate \ud800 survives",
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(SAMPLE, vocab_size=256 + 60)


# ---- characters ------------------------------------------------------------------------------


def test_char_tokenizer_round_trip_and_sorted_ids():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == 8
    assert tok.itos == sorted(set("hello world"))
    ids = tok.encode("hello")
    assert ids == [tok.stoi[c] for c in "hello"]
    assert tok.decode(ids) == "hello"
    assert tok.decode([]) == "" and tok.encode("") == []


def test_char_tokenizer_unknown_character_is_named():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\)"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"token id 3 is outside the vocabulary \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="at least one character"):
        CharTokenizer("")


def test_char_tokenizer_save_load(tmp_path):
    tok = CharTokenizer.from_text("床前明月光 moon")
    tok.save(tmp_path / "chars.json")
    back = CharTokenizer.load(tmp_path / "chars.json")
    assert back.itos == tok.itos
    assert back.encode("明月 moon") == tok.encode("明月 moon")


# ---- the BPE building blocks -----------------------------------------------------------------


def test_pair_counts_and_merge_pair():
    ids = [1, 2, 1, 2, 3, 1, 2]
    assert pair_counts(ids)[(1, 2)] == 3
    assert merge_pair(ids, (1, 2), 9) == [9, 9, 3, 9]
    assert merge_pair([5, 5, 5], (5, 5), 7) == [7, 5]  # left to right, no overlap
    assert merge_pair([], (1, 2), 9) == [] and merge_pair([1], (1, 2), 9) == [1]


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_split_chunks_cover_the_text(text):
    assert "".join(split_chunks(text)) == text


def test_split_chunks_keep_leading_space_with_word():
    assert split_chunks("Hello world, it's 2024!") == [
        "Hello",
        " world",
        ",",
        " it",
        "'s",
        " 2024",
        "!",
    ]
    assert split_chunks("床前明月光，疑是地上霜。") == ["床前明月光", "，", "疑是地上霜", "。"]
    assert split_chunks("abc", pattern=None) == ["abc"]


# ---- BPE -------------------------------------------------------------------------------------


def test_bpe_learns_merges_in_order(bpe):
    assert bpe.vocab_size == 256 + 60 == len(bpe.vocab)
    assert [new for _, new in bpe.merges] == list(range(256, 316))
    for (a, b), new in bpe.merges:
        assert a < new and b < new  # a merge only uses tokens that exist before it
        assert bpe.vocab[new] == bpe.vocab[a] + bpe.vocab[b]
    # The most frequent pair in SAMPLE's chunks is learned first and then shown as text.
    assert bpe.token_str(256) == bpe.vocab[256].decode("utf-8")


def test_bpe_first_merge_is_the_most_frequent_pair():
    text = "aaab aaab aaab xy"
    tok = BPETokenizer.train(text, vocab_size=257)
    assert tok.merges == [((ord("a"), ord("a")), 256)]


def test_bpe_training_is_deterministic():
    one = BPETokenizer.train(SAMPLE, vocab_size=300)
    two = BPETokenizer.train(SAMPLE, vocab_size=300)
    assert one.merges == two.merges


def test_bpe_reproduces_training_segmentation():
    # Encoding a training chunk replays the merges, so it equals merging in learned order.
    tok = BPETokenizer.train(SAMPLE, vocab_size=300)
    for chunk in ["First", " speak", "秦川雄帝宅", " the"]:
        ids = list(chunk.encode("utf-8"))
        for pair, new in tok.merges:
            ids = merge_pair(ids, pair, new)
        assert tok.encode(chunk) == ids


@pytest.mark.parametrize("text", EXAMPLES)
def test_bpe_round_trips_examples(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_bpe_round_trips_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@given(st.text(alphabet=st.characters(codec="utf-8")))
@settings(max_examples=100, deadline=None)
def test_bpe_without_pretokenization_round_trips(text):
    tok = BPETokenizer(merges=[], pattern=None)
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text


def test_bpe_merges_reduce_length(bpe):
    text = "Before we proceed any further, hear me speak. 床前明月光，疑是地上霜。"
    n_bytes = len(text.encode("utf-8"))
    assert len(bpe.encode(text)) < n_bytes
    assert len(BPETokenizer().encode(text)) == n_bytes  # no merges: one token per byte
    lengths = [
        len(BPETokenizer(merges=[p for p, _ in bpe.merges[:k]]).encode(SAMPLE))
        for k in (0, 10, 30, 60)
    ]
    assert lengths == sorted(lengths, reverse=True) and lengths[-1] < lengths[0]


def test_bpe_decode_of_arbitrary_ids_replaces_broken_bytes(bpe):
    middle_of_character = list("明".encode())[1:]
    assert bpe.decode(middle_of_character) == "\ufffd\ufffd"
    assert bpe.decode([]) == ""


def test_bpe_save_load_round_trip(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    back = BPETokenizer.load(path)
    assert back.merges == bpe.merges and back.vocab == bpe.vocab and back.pattern == bpe.pattern
    for text in EXAMPLES:
        assert back.encode(text) == bpe.encode(text)
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "BPETokenizer"


def test_bpe_bad_inputs(bpe, tmp_path):
    with pytest.raises(ValueError, match="vocab_size must be >= 256, got 100"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(ValueError, match=r"token id 316 is outside the vocabulary \[0, 316\)"):
        bpe.decode([316])
    with pytest.raises(ValueError, match="token id -1"):
        bpe.decode([-1])
    with pytest.raises(TypeError):
        bpe.decode([1.5])
    with pytest.raises(TypeError, match="encode takes a str"):
        bpe.encode(b"bytes")
    with pytest.raises(ValueError, match="not yet in the vocabulary"):
        BPETokenizer(merges=[(0, 256)])
    with pytest.raises(ValueError, match="appears twice"):
        BPETokenizer(merges=[(1, 2), (1, 2)])
    with pytest.raises(ValueError, match="skips characters"):
        BPETokenizer(pattern=r"[a-z]+").encode("abc def")
    (tmp_path / "other.json").write_text('{"type": "CharTokenizer", "chars": "ab"}')
    with pytest.raises(ValueError, match="does not hold a saved BPETokenizer"):
        BPETokenizer.load(tmp_path / "other.json")
    (tmp_path / "bad.json").write_text('{"type": "BPETokenizer", "merges": [[1, "x"]]}')
    with pytest.raises(ValueError, match="list of \\[int, int\\] pairs"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_bpe_stops_when_no_pair_repeats():
    tok = BPETokenizer.train("abcdef", vocab_size=1000)  # every pair occurs once
    assert tok.vocab_size == 256
    assert BPETokenizer.train("", vocab_size=300).vocab_size == 256


# ---- Hugging Face tokenizers -----------------------------------------------------------------


def test_hf_bpe_trains_and_round_trips():
    hf = train_hf_bpe(SAMPLE, vocab_size=300)
    assert hf.get_vocab_size() == 300
    assert len(hf_merges(hf)) == 300 - 256
    for text in EXAMPLES[:-1]:  # HF cannot encode a lone surrogate
        assert hf.decode(hf.encode(text).ids) == text


def test_hf_bpe_learns_the_same_merges_as_ours():
    try:
        text = load_text("tinyshakespeare")[:50_000]
    except FileNotFoundError:
        pytest.skip("Tiny Shakespeare is not available offline here")
    ours, hf = BPETokenizer.train(text, vocab_size=400), train_hf_bpe(text, vocab_size=400)
    mine = [(ours.vocab[a], ours.vocab[b]) for (a, b), _ in ours.merges]
    theirs = hf_merges(hf)
    # Same algorithm, same counts: the same merges, up to the order of pairs tied in count.
    assert mine[:10] == theirs[:10]
    assert len(set(mine) & set(theirs)) >= 0.95 * len(mine)
    assert len(ours.encode(text)) == pytest.approx(len(hf.encode(text).ids), rel=0.01)


def test_hf_bpe_rejects_small_vocab():
    with pytest.raises(ValueError, match="vocab_size must be >= 256"):
        train_hf_bpe("abc", vocab_size=10)


def test_gpt2_split_is_a_compiled_pattern():
    assert GPT2_SPLIT.findall("I'll go") == ["I", "'ll", " go"]
