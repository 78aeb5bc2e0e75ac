"""BERT's data: masked-language-model masking, next-sentence pairs, and the sentiment corpora.

Token ids arrive already tokenized (Python lists or tensors); nothing here tokenizes. Labels
follow Hugging Face's `BertForPreTraining`: an MLM label is the original id at a masked position
and IGNORE_INDEX (-100, what `F.cross_entropy` skips) everywhere else; an NSP label is 0 when
sentence B follows A and 1 when B is a random sentence. Masks are 1 on real tokens, 0 on padding.

Batches are functions of their index, `batches(i)`: batch i depends only on (seed, i).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from lib.data.corpora import load_text
from lib.data.lm import batch_generator
from lib.models.bert import IGNORE_INDEX
from lib.utils import check_positive_int

SST2_SPLITS = {"train": "sst2/train", "dev": "sst2/dev", "test": "sst2/test"}
CHNSENTICORP_SPLITS = ("train", "test")
ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_mask_prob(mask_prob: object) -> float:
    if isinstance(mask_prob, bool) or not isinstance(mask_prob, (int, float)):
        raise ValueError(f"mask_prob must be a number strictly between 0 and 1, got {mask_prob!r}")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must lie strictly between 0 and 1, got {mask_prob!r}")
    return mask_prob


def _check_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"a batch index must be an integer >= 0, got {index!r}")
    return index


@dataclass(frozen=True)
class BertSpecials:
    """The ids of BERT's special tokens that the batches place: [PAD], [CLS], [SEP], [MASK]."""

    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    def __post_init__(self):
        ids = {name: getattr(self, name) for name in ("pad_id", "cls_id", "sep_id", "mask_id")}
        for name, value in ids.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if len(set(ids.values())) != 4:
            raise ValueError(f"the four special ids must differ, got {ids}")


def mask_tokens(
    input_ids: Tensor,
    generator: torch.Generator,
    vocab_size: int,
    mask_id: int,
    special_ids: Sequence[int],
    mask_prob: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """BERT's masking: (masked_input_ids, labels), both shaped like `input_ids` (labels long).

    Each token whose id is not in `special_ids` is selected with probability `mask_prob`,
    independently (as Hugging Face's `DataCollatorForLanguageModeling`). Of the selected, 80%
    become `mask_id`, 10% a token drawn uniformly from [0, vocab_size), 10% stay as they are.
    `labels` holds the original id at selected positions and IGNORE_INDEX elsewhere. The input
    is not modified; the draws come from `generator` alone, so the result is a function of it.
    """
    check_positive_int("vocab_size", vocab_size)
    _check_mask_prob(mask_prob)
    if not isinstance(input_ids, Tensor) or input_ids.dtype not in ID_DTYPES:
        got = input_ids.dtype if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a tensor of integer ids, got {got}")
    if input_ids.dim() < 1:
        raise ValueError("input_ids must have at least one dimension, got a 0-d tensor")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be an id in [0, vocab_size={vocab_size}), got {mask_id}")
    if input_ids.numel() and not 0 <= int(input_ids.min()) <= int(input_ids.max()) < vocab_size:
        raise ValueError(
            f"input_ids hold ids in [{int(input_ids.min())}, {int(input_ids.max())}], outside "
            f"[0, vocab_size={vocab_size}); pass the tokenizer's vocabulary size"
        )
    # Draw on the generator's device, then move: the draws are the same wherever the ids live.
    shape, where = input_ids.shape, generator.device
    select = torch.rand(shape, generator=generator, device=where) < mask_prob
    action = torch.rand(shape, generator=generator, device=where)
    random_ids = torch.randint(vocab_size, shape, generator=generator, device=where)
    select, action = select.to(input_ids.device), action.to(input_ids.device)
    random_ids = random_ids.to(input_ids.device, input_ids.dtype)

    specials = torch.tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device)
    select &= ~torch.isin(input_ids, specials)
    to_mask = select & (action < 0.8)
    to_random = select & (action >= 0.8) & (action < 0.9)  # the last 10% keep their token

    labels = torch.where(select, input_ids.long(), IGNORE_INDEX)  # long, as cross_entropy wants
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


def _truncate_pair(a: list[int], b: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer of `a`, `b` until both fit in `max_tokens`.

    BERT's `truncate_seq_pair`: on a tie, `b` loses the token.
    """
    a, b = list(a), list(b)
    while len(a) + len(b) > max_tokens:
        (a if len(a) > len(b) else b).pop()
    return a, b


def nsp_batches(
    sentences: Sequence[Sequence[int]],
    batch_size: int,
    seq_len: int,
    specials: BertSpecials,
    vocab_size: int,
    seed: int = 0,
    mask_prob: float = 0.15,
) -> Callable[[int], tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
    """A function from batch index to BERT pre-training examples: sentence pairs, masked.

    `sentences` are token-id lists in document order. Each example takes a sentence A at random
    (any but the last); half the time B is the sentence after it (NSP label 0), otherwise B is
    drawn uniformly from the sentences other than the next one (label 1). The example is
    `[CLS] A [SEP] B [SEP]`, the longer of A, B cut from its end until it fits `seq_len`, then
    padded. Batch i returns, all of dtype long,

        input_ids       (batch, seq_len)  masked by `mask_tokens`; specials and padding never are
        token_type_ids  (batch, seq_len)  0 on [CLS] A [SEP] and padding, 1 on B [SEP]
        attention_mask  (batch, seq_len)  1 on real tokens, 0 on padding
        mlm_labels      (batch, seq_len)  the original id where masked, IGNORE_INDEX elsewhere
        nsp_labels      (batch,)          0: B follows A, 1: B is random

    Batch `i` depends only on `(seed, i)`, never on which batches came before.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    check_positive_int("vocab_size", vocab_size)
    _check_mask_prob(mask_prob)  # now, not at the first batch
    if not isinstance(specials, BertSpecials):
        raise TypeError(f"specials must be a BertSpecials, got {type(specials).__name__}")
    if seq_len < 5:
        raise ValueError(
            f"seq_len must be at least 5 ([CLS], [SEP], [SEP] and a token of each sentence), "
            f"got {seq_len}"
        )
    if len(sentences) < 2:
        raise ValueError(f"next-sentence pairs need at least 2 sentences, got {len(sentences)}")
    pad, cls, sep = specials.pad_id, specials.cls_id, specials.sep_id
    for name in ("pad_id", "cls_id", "sep_id", "mask_id"):
        if getattr(specials, name) >= vocab_size:
            raise ValueError(
                f"specials.{name} = {getattr(specials, name)} is not below vocab_size={vocab_size}"
            )
    sentences = [[int(t) for t in s] for s in sentences]
    for k, s in enumerate(sentences):
        if not s:
            raise ValueError(f"sentence {k} is empty; drop empty lines before making pairs")
        if not 0 <= min(s) <= max(s) < vocab_size:
            raise ValueError(
                f"sentence {k} holds ids in [{min(s)}, {max(s)}], outside [0, vocab_size="
                f"{vocab_size}); pass the tokenizer's vocabulary size"
            )
    n = len(sentences)

    def batch(index: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        generator = batch_generator(seed, _check_index(index))
        first = torch.randint(n - 1, (batch_size,), generator=generator)
        is_next = torch.rand(batch_size, generator=generator) < 0.5
        # Uniform over the n - 1 sentences other than first + 1: draw from n - 1, skip first + 1.
        other = torch.randint(n - 1, (batch_size,), generator=generator)
        other = other + (other >= first + 1).long()
        second = torch.where(is_next, first + 1, other)

        input_ids = torch.full((batch_size, seq_len), pad, dtype=torch.long)
        token_type_ids = torch.zeros(batch_size, seq_len, dtype=torch.long)
        attention_mask = torch.zeros(batch_size, seq_len, dtype=torch.long)
        for row, (a, b) in enumerate(zip(first.tolist(), second.tolist(), strict=True)):
            tokens_a, tokens_b = _truncate_pair(sentences[a], sentences[b], seq_len - 3)
            ids = [cls, *tokens_a, sep, *tokens_b, sep]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            token_type_ids[row, len(tokens_a) + 2 : len(ids)] = 1
            attention_mask[row, : len(ids)] = 1
        input_ids, mlm_labels = mask_tokens(
            input_ids, generator, vocab_size, specials.mask_id, (pad, cls, sep), mask_prob
        )
        nsp_labels = (~is_next).long()  # (batch,)
        return input_ids, token_type_ids, attention_mask, mlm_labels, nsp_labels

    return batch


def sst2(split: str) -> tuple[list[str], list[int]]:
    """SST-2 sentences and labels (1 positive, 0 negative): split "train", "dev" or "test".

    60,614 / 6,735 / 872 rows: GLUE's train split re-divided into train and dev, GLUE's dev set
    as test (data/README.md). The files end each sentence with a space; it is stripped.
    """
    if split not in SST2_SPLITS:
        raise KeyError(f"SST-2 has no split {split!r}; the splits are: {', '.join(SST2_SPLITS)}")
    lines = load_text(SST2_SPLITS[split]).splitlines()
    if lines[0] != "sentence\tlabel":
        raise ValueError(
            f"{SST2_SPLITS[split]} should start with 'sentence\\tlabel', not {lines[0]!r}"
        )
    sentences, labels = [], []
    for line in lines[1:]:
        sentence, label = line.rsplit("\t", 1)
        sentences.append(sentence.strip())
        labels.append(int(label))
    return sentences, labels


def chnsenticorp(
    split: str, test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[int]]:
    """ChnSentiCorp hotel reviews and labels (1 positive, 0 negative): split "train" or "test".

    The file holds 7,766 reviews (5,322 positive, 2,444 negative); one, a negative, is empty and
    skipped, leaving 7,765. A permutation seeded by `seed` puts the first `test_fraction` of
    them in "test" and the rest in "train", each in permuted order, so the two never overlap.
    """
    if split not in CHNSENTICORP_SPLITS:
        splits = ", ".join(CHNSENTICORP_SPLITS)
        raise KeyError(f"ChnSentiCorp has no split {split!r}; the splits are: {splits}")
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    # Reviews hold commas and doubled quotes ("" inside a quoted field): the csv module reads them.
    rows = list(csv.reader(io.StringIO(load_text("chnsenticorp"), newline="")))
    if rows[0] != ["label", "review"]:
        raise ValueError(f"chnsenticorp should start with the header label,review, not {rows[0]}")
    pairs = [(review, int(label)) for label, review in rows[1:] if review.strip()]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, int(len(pairs) * test_fraction))
    picked = order[:n_test] if split == "test" else order[n_test:]
    return [pairs[k][0] for k in picked], [pairs[k][1] for k in picked]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad id lists to the longest: (input_ids, attention_mask), each (batch, longest)."""
    if len(sequences) == 0:
        raise ValueError("pad_batch needs at least one sequence, got none")
    for k, s in enumerate(sequences):
        if len(s) == 0:
            raise ValueError(f"sequence {k} is empty; an example needs at least one token")
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    for row, s in enumerate(sequences):
        input_ids[row, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        attention_mask[row, : len(s)] = 1
    return input_ids, attention_mask


def batches_per_epoch(n_examples: int, batch_size: int) -> int:
    """Full batches in one pass over `n_examples`: the last partial batch is dropped."""
    check_positive_int("batch_size", batch_size)
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 0:
        raise ValueError(f"n_examples must be a non-negative integer, got {n_examples!r}")
    if n_examples < batch_size:
        raise ValueError(
            f"{n_examples} examples make no full batch of {batch_size}; use a smaller batch_size"
        )
    return n_examples // batch_size


def classification_batches(
    sequences: Sequence[Sequence[int]],
    labels: Sequence[int],
    batch_size: int,
    pad_id: int,
    seed: int = 0,
    bucket: int = 1,
) -> Callable[[int], tuple[Tensor, Tensor, Tensor]]:
    """A function from batch index to (input_ids, attention_mask, labels), epoch by epoch.

    Batch i is batch i % per_epoch of epoch e = i // per_epoch, where per_epoch is
    `batches_per_epoch(len(sequences), batch_size)` and epoch e visits the examples in a
    permutation drawn from a generator seeded by (seed, e); the remainder that fills no batch
    is left out of that epoch. input_ids and attention_mask are (batch, longest in the batch),
    labels (batch,), all long. Batch `i` depends only on `(seed, i)`.

    `bucket` > 1 sorts each run of `bucket` batches of the permutation by length before cutting
    it into batches, then shuffles the batches: each batch then holds inputs of about one length
    and pads little, which for short sentences of mixed length saves most of the compute.
    """
    check_positive_int("bucket", bucket)
    if len(sequences) != len(labels):
        raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels; give one each")
    per_epoch = batches_per_epoch(len(sequences), batch_size)
    sequences = [list(s) for s in sequences]
    for k, s in enumerate(sequences):
        if not s:
            raise ValueError(f"sequence {k} is empty; an example needs at least one token")
    targets = torch.tensor([int(y) for y in labels], dtype=torch.long)

    lengths = torch.tensor([len(s) for s in sequences])

    @lru_cache(maxsize=2)  # a function of the epoch alone, so caching keeps batches pure
    def epoch_batches(epoch: int) -> list[Tensor]:
        generator = batch_generator(seed, epoch)
        order = torch.randperm(len(sequences), generator=generator)[: per_epoch * batch_size]
        if bucket > 1:
            runs = order.split(bucket * batch_size)
            order = torch.cat([run[lengths[run].argsort(stable=True)] for run in runs])
        batches = order.split(batch_size)
        if bucket > 1:
            batches = [batches[k] for k in torch.randperm(per_epoch, generator=generator)]
        return list(batches)

    def batch(index: int) -> tuple[Tensor, Tensor, Tensor]:
        epoch, step = divmod(_check_index(index), per_epoch)
        picks = epoch_batches(epoch)[step]
        input_ids, attention_mask = pad_batch([sequences[k] for k in picks.tolist()], pad_id)
        return input_ids, attention_mask, targets[picks]

    return batch
