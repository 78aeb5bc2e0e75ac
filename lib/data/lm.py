"""Language-model data: split a corpus by position, cut it into windows, or take it as characters.

Batches are functions of their index, `batches(i)`: batch i depends only on (seed, i).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lib.data.corpora import load_text
from lib.tokenizer import CharTokenizer
from lib.utils import check_positive_int


def train_val_split(data, val_fraction: float = 0.1):
    """Split a sequence by position: the first part trains, the last `val_fraction` validates."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    cut = int(len(data) * (1.0 - val_fraction))
    return data[:cut], data[cut:]


def batch_generator(seed: int, index: int) -> torch.Generator:
    """The random generator of batch `index` of a run seeded `seed`: a function of the two alone."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**63)


def lm_batches(
    ids: torch.Tensor, batch_size: int, seq_len: int, seed: int = 0
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """A function from batch index to random windows of `ids`: inputs `x`, next-token targets `y`.

    Batch `i` depends only on `(seed, i)`, never on which batches came before, so a resumed
    run, or each process of a distributed one, can ask for exactly the batch it needs.
    """
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    if len(ids) < seq_len + 1:
        raise ValueError(
            f"a window needs seq_len + 1 = {seq_len + 1} tokens but the data has {len(ids)}; "
            "use a shorter seq_len or more data"
        )
    offsets = torch.arange(seq_len + 1)

    def batch(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = batch_generator(seed, index)
        starts = torch.randint(len(ids) - seq_len, (batch_size,), generator=generator)
        windows = ids[starts[:, None] + offsets]  # (batch, seq_len + 1)
        return windows[:, :-1], windows[:, 1:]

    return batch


def char_data(
    name: str, val_fraction: float = 0.1
) -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """A corpus as characters: the tokenizer of the whole text, then train and validation ids.

    The vocabulary is a function of the corpus alone, so a checkpoint written by
    `python -m lib.train --model gpt` is read back with the tokenizer this rebuilds. The first
    1 - val_fraction of the text trains, the rest validates.
    """
    text = load_text(name)
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, val_fraction)
    return tokenizer, train_ids, val_ids
