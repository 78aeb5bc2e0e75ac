"""Tokenizers: characters, and byte-level BPE derived from scratch and trained by HF tokenizers."""

from __future__ import annotations

import heapq
import json
import operator
import re
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Characters: one token per distinct character of the training text.
# ---------------------------------------------------------------------------------------------


class CharTokenizer:
    """One token per character seen in the training text, ids in sorted character order."""

    def __init__(self, chars: Iterable[str]):
        self.itos: list[str] = sorted(set(chars))  # sorted: the same text always gives the same ids
        if not self.itos:
            raise ValueError("a CharTokenizer needs at least one character")
        if any(len(c) != 1 for c in self.itos):
            raise ValueError("every entry of a CharTokenizer's vocabulary must be one character")
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the set of characters in `text`."""
        return cls(text)

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens."""
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, one per character."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            c = exc.args[0]
            raise ValueError(
                f"character {c!r} (U+{ord(c):04X}) is not in this CharTokenizer's vocabulary of "
                f"{self.vocab_size} characters; build it from a text that contains it"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids `ids`."""
        return "".join(self.itos[_check_id(i, self.vocab_size)] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def save(self, path: str | Path) -> None:
        """Write the vocabulary to a JSON file."""
        data = {"type": "CharTokenizer", "chars": "".join(self.itos)}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Read a tokenizer written by `save`."""
        data = _read_json(path, "CharTokenizer")
        chars = data.get("chars")
        if not isinstance(chars, str) or len(set(chars)) != len(chars):
            raise ValueError(f"{path}: 'chars' must be a string of distinct characters")
        return cls(chars)


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (Sennrich et al. 2016 on words; GPT-2 on UTF-8 bytes).
# ---------------------------------------------------------------------------------------------

# Pre-tokenization splits text into chunks (words with their leading space, numbers, runs of
# punctuation, runs of spaces) so that merges never cross a word boundary. This is GPT-2's
# pattern with \p{L} written as [^\W\d_] and \p{N} as \d, which the standard `re` module
# understands; a run of CJK characters counts as one word. The alternatives cover every
# character, so "".join(chunks) == text always.
GPT2_SPLIT = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
)

Pair = tuple[int, int]


def split_chunks(text: str, pattern: re.Pattern | None = GPT2_SPLIT) -> list[str]:
    """Pre-tokenize `text` into chunks that merges stay inside (no pattern: one chunk)."""
    if pattern is None:
        return [text] if text else []
    return pattern.findall(text)


def to_bytes(text: str) -> bytes:
    """UTF-8 bytes of `text`; lone surrogates pass through so that any Python str round-trips."""
    return text.encode("utf-8", errors="surrogatepass")


def merge_pair(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` in `ids` (left to right) by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def pair_counts(ids: list[int]) -> Counter[Pair]:
    """How often each adjacent pair occurs in `ids`."""
    return Counter(pairwise(ids))


class BPETokenizer:
    """Byte-level byte-pair encoding: 256 byte tokens plus one new token per learned merge."""

    def __init__(self, merges: Iterable[Pair] = (), pattern: str | None = GPT2_SPLIT.pattern):
        self.pattern = pattern
        self._split = re.compile(pattern) if pattern is not None else None
        self.merges: list[tuple[Pair, int]] = []  # ((a, b), new_id) in the order they were learned
        self.vocab: list[bytes] = [bytes([b]) for b in range(256)]  # id -> the bytes it stands for
        self.ranks: dict[Pair, int] = {}  # pair -> its new id; a lower id was learned earlier
        for pair in merges:
            self._add_merge(tuple(pair))
        self._cache: dict[str, list[int]] = {}

    def _add_merge(self, pair: Pair) -> int:
        a, b = pair
        if not (0 <= a < len(self.vocab) and 0 <= b < len(self.vocab)):
            raise ValueError(
                f"merge {pair} refers to a token not yet in the vocabulary of {len(self.vocab)}"
            )
        if pair in self.ranks:
            raise ValueError(f"merge {pair} appears twice")
        new_id = len(self.vocab)
        self.merges.append((pair, new_id))
        self.ranks[pair] = new_id
        self.vocab.append(self.vocab[a] + self.vocab[b])
        return new_id

    @property
    def vocab_size(self) -> int:
        """Number of tokens: 256 bytes plus one per merge."""
        return len(self.vocab)

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str | None = GPT2_SPLIT.pattern,
        min_count: int = 2,
    ) -> BPETokenizer:
        """Learn `vocab_size - 256` merges from `text`, most frequent adjacent pair first."""
        _check_vocab_size(vocab_size)
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        tok = cls(pattern=pattern)
        # Work on the table of distinct chunks and their frequencies, not on the raw text:
        # "the" occurs thousands of times but is merged once.
        freqs = Counter(split_chunks(text, tok._split))
        words = [list(to_bytes(w)) for w in freqs]  # each distinct chunk as a list of token ids
        counts = list(freqs.values())
        stats: Counter[Pair] = Counter()  # pair -> frequency-weighted count over all words
        where: dict[Pair, set[int]] = {}  # pair -> indices of the words that contain it
        for i, w in enumerate(words):
            for p in pairwise(w):
                stats[p] += counts[i]
                where.setdefault(p, set()).add(i)
        # A max-heap of (-count, pair): ties go to the smaller pair, so training is deterministic.
        # Counts change as we merge; stale heap entries are skipped when popped.
        heap = [(-c, p) for p, c in stats.items()]
        heapq.heapify(heap)
        while tok.vocab_size < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            if stats.get(pair, 0) != -neg:
                continue  # stale entry
            if -neg < min_count:
                break  # no pair occurs often enough to be worth a token
            new_id = tok._add_merge(pair)
            delta: Counter[Pair] = Counter()  # net change of each pair's count from this merge
            for i in where.pop(pair):
                old = words[i]
                words[i] = new = merge_pair(old, pair, new_id)
                for p in pairwise(old):  # the word's old pairs go ...
                    delta[p] -= counts[i]
                for p in pairwise(new):  # ... and its new pairs come
                    delta[p] += counts[i]
                    where.setdefault(p, set()).add(i)
            for p, d in delta.items():
                if d:
                    stats[p] += d
                    if stats[p] > 0:
                        heapq.heappush(heap, (-stats[p], p))
                    else:
                        del stats[p]
        return tok

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Token ids of one pre-tokenized chunk: apply learned merges, earliest learned first."""
        if chunk in self._cache:
            return self._cache[chunk]
        ids = list(to_bytes(chunk))
        while len(ids) >= 2:
            # The earliest-learned pair present; replaying merges in training order gives the same.
            pair = min(pairwise(ids), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = merge_pair(ids, pair, self.ranks[pair])
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        chunks = split_chunks(text, self._split)
        if sum(map(len, chunks)) != len(text):
            raise ValueError(f"the pre-tokenization pattern {self.pattern!r} skips characters")
        return [i for chunk in chunks for i in self._encode_chunk(chunk)]

    def token_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that token ids `ids` stand for."""
        return b"".join(self.vocab[_check_id(i, self.vocab_size)] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids `ids`; byte sequences that are not UTF-8 become U+FFFD."""
        data = self.token_bytes(ids)
        try:
            return data.decode("utf-8", errors="surrogatepass")
        except UnicodeDecodeError:
            # Arbitrary ids (e.g. sampled by a model) may cut a character in half.
            return data.decode("utf-8", errors="replace")

    def token_str(self, i: int) -> str:
        """A readable form of token `i`: its text, or its bytes if they are not whole UTF-8."""
        data = self.token_bytes([i])
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return repr(data)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"

    def save(self, path: str | Path) -> None:
        """Write the pattern and the merges, in order, to a JSON file."""
        data = {
            "type": "BPETokenizer",
            "pattern": self.pattern,
            "merges": [list(p) for p, _ in self.merges],
        }
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by `save`."""
        data = _read_json(path, "BPETokenizer")
        merges = data.get("merges")
        if not isinstance(merges, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(type(x) is int for x in m) for m in merges
        ):
            raise ValueError(f"{path}: 'merges' must be a list of [int, int] pairs")
        pattern = data.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(f"{path}: 'pattern' must be a regular expression string or null")
        try:
            return cls(merges=[tuple(m) for m in merges], pattern=pattern)
        except re.error as exc:
            raise ValueError(f"{path}: 'pattern' is not a regular expression ({exc})") from None


def _check_id(i: int, vocab_size: int) -> int:
    i = operator.index(i)  # ints, NumPy ints and 0-d integer tensors; not floats
    if not 0 <= i < vocab_size:
        raise ValueError(f"token id {i} is outside the vocabulary [0, {vocab_size})")
    return i


def _check_vocab_size(vocab_size: int) -> None:
    if vocab_size < 256:
        raise ValueError(
            f"a byte-level BPE vocabulary starts with the 256 bytes, so vocab_size must be "
            f">= 256, got {vocab_size}"
        )


def _read_json(path: str | Path, kind: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file ({exc}), so not a saved {kind}") from None
    if not isinstance(data, dict) or data.get("type") != kind:
        raise ValueError(f"{path} does not hold a saved {kind}")
    return data


# ---------------------------------------------------------------------------------------------
# The same algorithm in Hugging Face `tokenizers` (Rust), for speed and comparison.
# ---------------------------------------------------------------------------------------------


def train_hf_bpe(text: str | Iterable[str], vocab_size: int, min_count: int = 2):
    """A byte-level BPE `tokenizers.Tokenizer` trained in memory, as GPT-2's tokenizer is."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _check_vocab_size(vocab_size)
    tok = Tokenizer(models.BPE())
    # GPT-2's split into chunks, then each byte shown as a printable character (bytes_to_unicode)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_count,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        special_tokens=[],
        show_progress=False,
    )
    texts = [text] if isinstance(text, str) else text
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, which byte-level HF vocabularies use."""
    # Printable bytes stand for themselves; the rest (controls, space, ...) are moved to 256 + n.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}


def hf_merges(tok) -> list[tuple[bytes, bytes]]:
    """The merges of a byte-level HF `tokenizers.Tokenizer` in learned order, as pairs of bytes."""
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    merges = json.loads(tok.to_str())["model"]["merges"]
    pairs = [m if isinstance(m, list) else m.split(" ") for m in merges]  # format varies by version
    return [tuple(bytes(to_byte[c] for c in s) for s in pair) for pair in pairs]
