"""Corpora and batches: read a corpus shipped in `data/`, split it, cut it into training windows.

The corpora ship with the repository, xz-compressed, in `data/` (sources and licences in
`data/README.md`). Nothing here touches the network. `$BOOK_DATA` names a folder searched first,
holding the same files plain or compressed (`tinyshakespeare.txt` or `tinyshakespeare.txt.xz`).
Whichever copy is found, its *decompressed* bytes must match the SHA-256 recorded below.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Corpus:
    """A corpus file the book knows: its path under `data/` (without `.xz`) and its checksum."""

    filename: str
    sha256: str


CORPORA = {
    "tinyshakespeare": Corpus(
        "tinyshakespeare.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    ),
    "tang_poems": Corpus(
        "tang_poems.txt", "40bf2e4fae1db0995bf5cd1c730f2267d76bc51e2689fbdb2843bb7420b2551e"
    ),
    "sst2/train": Corpus(
        "sst2/train.tsv", "920e317b2c52e12cd22db1da2c6708312bd7dc4f3712b9bbf1b50ee6c2c792ba"
    ),
    "sst2/dev": Corpus(
        "sst2/dev.tsv", "92353770071a2a889f75d000a38a9e541ea8f0a5499e50f040b17917a5cbf66f"
    ),
    "sst2/test": Corpus(
        "sst2/test.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"
    ),
    "chnsenticorp": Corpus(
        "chnsenticorp/ChnSentiCorp_htl_all.csv",
        "1d414b9c65caf3a836abdb4efded621968502ad3338e1a9d885ae131c86083f0",
    ),
}


def data_dirs() -> list[Path]:
    """Folders searched for corpora, in order: `$BOOK_DATA` (when set), then the shipped `data/`."""
    dirs = [Path(os.environ["BOOK_DATA"])] if os.environ.get("BOOK_DATA") else []
    return dirs + [ROOT / "data"]


def find_corpus(name: str) -> Path:
    """The first file holding corpus `name`: plain or `.xz`, in the folders of `data_dirs()`."""
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; the corpora are: {', '.join(sorted(CORPORA))}")
    filename = CORPORA[name].filename
    for folder in data_dirs():
        for path in (folder / filename, folder / f"{filename}.xz"):
            if path.is_file():
                return path
    searched = ", ".join(str(d) for d in data_dirs())
    raise FileNotFoundError(
        f"corpus {name!r} ({filename} or {filename}.xz) is in none of {searched}; the repository "
        "ships it in data/, so restore that folder (git checkout data) or point BOOK_DATA at a copy"
    )


def load_bytes(name: str) -> bytes:
    """The bytes of corpus `name`, decompressed and checked against its SHA-256."""
    path = find_corpus(name)
    raw = path.read_bytes()
    if path.suffix == ".xz":
        try:
            raw = lzma.decompress(raw)
        except lzma.LZMAError as exc:
            raise ValueError(f"{path} is not a valid xz file ({exc}); restore it from git") from exc
    digest = hashlib.sha256(raw).hexdigest()
    expected = CORPORA[name].sha256
    if digest != expected:
        raise ValueError(
            f"{path} holds content with sha256 {digest}, expected {expected}: the file is corrupt "
            "or a different version; restore it from git (git checkout data) or fix BOOK_DATA"
        )
    return raw


def load_text(name: str) -> str:
    """The full text of corpus `name` (one of `CORPORA`), checksum verified."""
    return load_bytes(name).decode("utf-8")


def train_val_split(data, val_fraction: float = 0.1):
    """Split a sequence by position: the first part trains, the last `val_fraction` validates."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    cut = int(len(data) * (1.0 - val_fraction))
    return data[:cut], data[cut:]


def lm_batches(
    ids: torch.Tensor, batch_size: int, seq_len: int, seed: int = 0
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """A function from batch index to random windows of `ids`: inputs `x`, next-token targets `y`.

    Batch `i` depends only on `(seed, i)`, never on which batches came before, so a resumed
    run, or each process of a distributed one, can ask for exactly the batch it needs.
    """
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
    if len(ids) < seq_len + 1:
        raise ValueError(
            f"a window needs seq_len + 1 = {seq_len + 1} tokens but the data has {len(ids)}; "
            "use a shorter seq_len or more data"
        )
    offsets = torch.arange(seq_len + 1)

    def batch(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**63)
        starts = torch.randint(len(ids) - seq_len, (batch_size,), generator=generator)
        windows = ids[starts[:, None] + offsets]  # (batch, seq_len + 1)
        return windows[:, :-1], windows[:, 1:]

    return batch


# --- a toy translation task: numbers written in digits -> the same numbers in English words ---

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """English words for 0 <= n < 1,000,000: 4021 -> four thousand twenty one."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words covers 0 to 999,999, got {n}")
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    if n < 1000:
        return [ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    return number_words(n // 1000) + ["thousand"] + (number_words(n % 1000) if n % 1000 else [])


@dataclass(frozen=True)
class TranslationTask:
    """Pairs of token sequences (source, target) over one shared vocabulary, split train/test."""

    vocab: tuple[str, ...]
    train: list[tuple[tuple[str, ...], tuple[str, ...]]]
    test: list[tuple[tuple[str, ...], tuple[str, ...]]]

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.vocab)}

    def encode(self, tokens) -> list[int]:
        unknown = [t for t in tokens if t not in self.index]
        if unknown:
            raise KeyError(f"tokens {unknown} are not in the task's vocabulary")
        return [self.index[t] for t in tokens]

    def decode(self, ids) -> tuple[str, ...]:
        """Tokens of `ids` up to the first <eos>, skipping <pad> and <bos>."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.vocab[i])
        return tuple(out)

    def pad(self, sequences: list[list[int]]) -> torch.Tensor:
        """Right-pad id lists with <pad> into one (batch, longest) tensor."""
        longest = max(len(s) for s in sequences)
        return torch.tensor([s + [PAD] * (longest - len(s)) for s in sequences])

    def tensors(self, pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source, decoder input <bos> + target, decoder output target + <eos>), padded."""
        src = [self.encode(s) for s, _ in pairs]
        tgt = [self.encode(t) for _, t in pairs]
        return self.pad(src), self.pad([[BOS] + t for t in tgt]), self.pad([t + [EOS] for t in tgt])

    def batches(self, batch_size: int, seed: int = 0) -> Callable[[int], tuple]:
        """Batch i: `batch_size` training pairs drawn with a generator seeded by (seed, i)."""

        def batch(index: int):
            generator = torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**63)
            picks = torch.randint(len(self.train), (batch_size,), generator=generator)
            return self.tensors([self.train[i] for i in picks.tolist()])

        return batch


def number_words_task(
    max_number: int = 100_000, test_fraction: float = 0.1, seed: int = 0
) -> TranslationTask:
    """Digits to English words (4021 -> four thousand twenty one); test numbers never train."""
    if not 10 <= max_number <= 1_000_000:
        raise ValueError(f"max_number must lie in [10, 1,000,000], got {max_number}")
    order = torch.randperm(max_number, generator=torch.Generator().manual_seed(seed)).tolist()
    pairs = [(tuple(str(n)), tuple(number_words(n))) for n in order]
    n_test = max(1, int(max_number * test_fraction))
    vocab = SPECIALS + tuple("0123456789") + tuple(ONES) + tuple(TENS[2:]) + ("hundred", "thousand")
    return TranslationTask(vocab, train=pairs[n_test:], test=pairs[:n_test])
