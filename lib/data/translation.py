"""Chapter 5's toy translation task: numbers written in digits -> the same numbers in words.

The vocabulary starts with the special tokens <pad>, <bos>, <eos> (ids PAD, BOS, EOS = 0, 1, 2),
which `lib.recipes.transformer` hands to the model's config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

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
