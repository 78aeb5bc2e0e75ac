"""BERT's data (lib/data/bert.py): masking, next-sentence pairs, sentiment corpora, batches.

The statistical checks allow 5 standard deviations of the binomial estimate, sqrt(p(1-p)/n):
the odds that a correct implementation fails one of them by chance are below 1e-6 (the two-sided
normal tail beyond 5 sigma is 5.7e-7), and with the seeds fixed each outcome is reproducible.
"""

import math

import pytest
import torch

from lib.data import (
    IGNORE_INDEX,
    BertSpecials,
    batches_per_epoch,
    chnsenticorp,
    classification_batches,
    mask_tokens,
    nsp_batches,
    pad_batch,
    sst2,
)

SPECIALS = BertSpecials(pad_id=0, cls_id=1, sep_id=2, mask_id=3)
SPECIAL_IDS = (SPECIALS.pad_id, SPECIALS.cls_id, SPECIALS.sep_id)


def within_5_sigma(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) <= 5 * math.sqrt(p * (1 - p) / n)


# --- mask_tokens -------------------------------------------------------------------------------


def masked_sample(seed: int = 0):
    """(ids, masked, labels): 256 x 1000 ids, ordinary tokens in [4, 30000) with specials and a
    padded tail mixed in, so 200k-odd tokens are eligible."""
    vocab_size = 30_000
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(4, vocab_size, (256, 1000), generator=g)
    ids[:, 0] = SPECIALS.cls_id
    ids[:, 500] = SPECIALS.sep_id
    ids[:, -1] = SPECIALS.sep_id
    ids[:, 900:-1] = SPECIALS.pad_id  # the tail of each row is padding
    before = ids.clone()
    masked, labels = mask_tokens(
        ids, torch.Generator().manual_seed(seed), vocab_size, SPECIALS.mask_id, SPECIAL_IDS
    )
    assert torch.equal(ids, before), "mask_tokens must not modify its input"
    return ids, masked, labels, vocab_size


def test_mask_tokens_proportions():
    ids, masked, labels, vocab_size = masked_sample()
    eligible = ~torch.isin(ids, torch.tensor(SPECIAL_IDS))
    selected = labels != IGNORE_INDEX
    n = int(eligible.sum())
    assert n > 200_000
    assert within_5_sigma(int(selected.sum()), n, 0.15)
    # Of the selected: 80% [MASK], 10% another id, 10% unchanged. Ordinary ids are never 3, and a
    # random draw equals the original (or [MASK]) with odds 1/30000, far inside the bound.
    k = int(selected.sum())
    to_mask = selected & (masked == SPECIALS.mask_id)
    kept = selected & (masked == ids)
    to_random = selected & ~to_mask & ~kept
    assert within_5_sigma(int(to_mask.sum()), k, 0.8)
    assert within_5_sigma(int(to_random.sum()), k, 0.1)
    assert within_5_sigma(int(kept.sum()), k, 0.1)
    assert masked[to_random].min() >= 0 and masked[to_random].max() < vocab_size


def test_mask_tokens_labels_and_specials():
    ids, masked, labels, _ = masked_sample()
    selected = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(SPECIAL_IDS))
    assert not selected[special].any(), "specials and padding are never selected"
    assert torch.equal(masked[special], ids[special])
    assert torch.equal(labels[selected], ids[selected])
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert torch.equal(masked[~selected], ids[~selected]), "only selected tokens change"
    assert labels.shape == masked.shape == ids.shape and labels.dtype == ids.dtype


def test_mask_tokens_is_a_function_of_the_generator():
    _, m1, l1, _ = masked_sample(seed=5)
    _, m2, l2, _ = masked_sample(seed=5)
    _, m3, _, _ = masked_sample(seed=6)
    assert torch.equal(m1, m2) and torch.equal(l1, l2)
    assert not torch.equal(m1, m3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask_prob": 0.0}, "mask_prob must lie strictly between 0 and 1, got 0.0"),
        ({"mask_prob": 1.5}, "mask_prob must lie strictly between 0 and 1"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer, got 0"),
        ({"vocab_size": 8}, r"outside \[0, vocab_size=8\)"),
        ({"mask_id": 50}, r"mask_id must be an id in \[0, vocab_size=20\)"),
        ({"input_ids": torch.rand(2, 3)}, "tensor of integer ids, got torch.float32"),
        ({"input_ids": torch.tensor(5)}, "at least one dimension"),
    ],
)
def test_mask_tokens_bad_inputs(kwargs, message):
    args = {
        "input_ids": torch.arange(10, 20).view(2, 5),
        "generator": torch.Generator().manual_seed(0),
        "vocab_size": 20,
        "mask_id": 3,
        "special_ids": SPECIAL_IDS,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        mask_tokens(**args)


# --- nsp_batches -------------------------------------------------------------------------------

N_SENTENCES = 40
FIRST_ID = 10  # sentence k is FIRST_ID + k repeated: every token says which sentence it came from


def corpus(lengths=None) -> list[list[int]]:
    lengths = lengths or [1 + k % 4 for k in range(N_SENTENCES)]
    return [[FIRST_ID + k] * n for k, n in enumerate(lengths)]


def make_batches(sentences=None, batch_size=8, seq_len=12, seed=0):
    sentences = sentences or corpus()
    return nsp_batches(sentences, batch_size, seq_len, SPECIALS, FIRST_ID + len(sentences), seed)


def unmasked(input_ids, mlm_labels):
    """The ids before masking: the label where a token was masked, the input elsewhere."""
    return torch.where(mlm_labels != IGNORE_INDEX, mlm_labels, input_ids)


def pairs(batch):
    """Per example: (a, b, length of A, length of B) read back from the unmasked ids."""
    input_ids, token_type_ids, attention_mask, mlm_labels, _ = batch
    out = []
    for ids, types in zip(unmasked(input_ids, mlm_labels), token_type_ids, strict=True):
        real = ids[ids != SPECIALS.pad_id]
        a_tokens = real[1:][types[1 : len(real)] == 0][:-1]  # between [CLS] and the first [SEP]
        b_tokens = real[types[: len(real)] == 1][:-1]  # B before its [SEP]
        assert len(set(a_tokens.tolist())) == 1 and len(set(b_tokens.tolist())) == 1
        out.append(
            (int(a_tokens[0]) - FIRST_ID, int(b_tokens[0]) - FIRST_ID, len(a_tokens), len(b_tokens))
        )
    return out


def test_nsp_batches_shapes_and_dtypes():
    input_ids, token_type_ids, attention_mask, mlm_labels, nsp_labels = make_batches()(0)
    for t in (input_ids, token_type_ids, attention_mask, mlm_labels):
        assert t.shape == (8, 12) and t.dtype == torch.long
    assert nsp_labels.shape == (8,) and nsp_labels.dtype == torch.long
    assert set(nsp_labels.tolist()) <= {0, 1}


def test_nsp_batches_depend_only_on_seed_and_index():
    forward, backward = make_batches(seed=3), make_batches(seed=3)
    ahead = [forward(i) for i in range(5)]
    behind = [backward(i) for i in reversed(range(5))][::-1]
    for x, y in zip(ahead, behind, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(forward(2), ahead[2], strict=True))
    assert not torch.equal(ahead[0][0], ahead[1][0])
    assert not torch.equal(ahead[0][0], make_batches(seed=4)(0)[0])


def test_nsp_layout_cls_sep_types_and_padding():
    for index in range(10):
        input_ids, token_type_ids, attention_mask, mlm_labels, _ = make_batches()(index)
        ids = unmasked(input_ids, mlm_labels)
        for row, types, mask in zip(ids, token_type_ids, attention_mask, strict=True):
            n = int(mask.sum())
            assert torch.equal(mask, (torch.arange(12) < n).long()), "real tokens first, then pad"
            assert (row[n:] == SPECIALS.pad_id).all() and (types[n:] == 0).all()
            assert row[0] == SPECIALS.cls_id and (row == SPECIALS.cls_id).sum() == 1
            seps = (row == SPECIALS.sep_id).nonzero().flatten().tolist()
            assert len(seps) == 2 and seps[1] == n - 1
            assert (types[: seps[0] + 1] == 0).all(), "[CLS] A [SEP] has type 0"
            assert (types[seps[0] + 1 : n] == 1).all(), "B [SEP] has type 1"


def test_nsp_labels_say_whether_b_follows_a():
    batches = make_batches(batch_size=64)
    labels = []
    for index in range(100):
        batch = batches(index)
        for (a, b, _, _), label in zip(pairs(batch), batch[4].tolist(), strict=True):
            assert 0 <= a < N_SENTENCES - 1, "A is never the last sentence"
            assert (b == a + 1) == (label == 0), (a, b, label)
            labels.append(label)
    assert within_5_sigma(sum(labels), len(labels), 0.5)


def test_nsp_truncates_the_longer_sentence_from_its_end():
    lengths = [5 + (7 * k) % 11 for k in range(N_SENTENCES)]  # 5 to 15 tokens: any pair fills 9
    sentences, seq_len = corpus(lengths), 12
    batches = make_batches(sentences, batch_size=32, seq_len=seq_len)
    for index in range(5):
        batch = batches(index)
        for a, b, kept_a, kept_b in pairs(batch):
            len_a, len_b = lengths[a], lengths[b]
            while len_a + len_b > seq_len - 3:  # BERT's truncate_seq_pair; B loses a tie
                if len_a > len_b:
                    len_a -= 1
                else:
                    len_b -= 1
            assert (kept_a, kept_b) == (len_a, len_b)
        lengths_used = batch[2].sum(dim=1)
        assert (lengths_used == seq_len).all(), "every pair here is long enough to fill seq_len"


def test_nsp_masking_never_touches_specials_or_padding():
    batches = make_batches(batch_size=64)
    selected = 0
    for index in range(20):
        input_ids, _, attention_mask, mlm_labels, _ = batches(index)
        original = unmasked(input_ids, mlm_labels)
        special = torch.isin(original, torch.tensor(SPECIAL_IDS))
        assert (mlm_labels[special] == IGNORE_INDEX).all()
        assert torch.equal(input_ids[special], original[special])
        assert (mlm_labels[attention_mask == 0] == IGNORE_INDEX).all()
        selected += int((mlm_labels != IGNORE_INDEX).sum())
    assert selected > 0


def test_nsp_with_two_sentences_still_makes_both_labels():
    batch = make_batches([[10], [11, 11]], batch_size=64, seq_len=5)(0)
    assert set(batch[4].tolist()) == {0, 1}
    for (a, b, _, _), label in zip(pairs(batch), batch[4].tolist(), strict=True):
        assert a == 0 and b == (1 if label == 0 else 0)


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"seq_len": 4}, ValueError, "seq_len must be at least 5"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer, got 0"),
        ({"sentences": [[10, 11]]}, ValueError, "at least 2 sentences, got 1"),
        ({"sentences": [[10], [11], [], [12]]}, ValueError, "sentence 2 is empty"),
        ({"sentences": [[10], [99]]}, ValueError, r"sentence 1 holds ids in \[99, 99\]"),
        ({"vocab_size": 3}, ValueError, "specials.mask_id = 3 is not below vocab_size=3"),
        ({"mask_prob": 1.0}, ValueError, "mask_prob must lie strictly between 0 and 1"),
        ({"specials": (0, 1, 2, 3)}, TypeError, "specials must be a BertSpecials"),
    ],
)
def test_nsp_batches_bad_inputs(change, error, message):
    args = {
        "sentences": [[10], [11], [12]],
        "batch_size": 2,
        "seq_len": 8,
        "specials": SPECIALS,
        "vocab_size": 20,
    } | change
    with pytest.raises(error, match=message):
        nsp_batches(**args)


def test_nsp_batch_index_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="batch index must be an integer >= 0, got -1"):
        make_batches()(-1)


@pytest.mark.parametrize(
    "ids, message",
    [
        ((0, 1, 2, 2), "the four special ids must differ"),
        ((0, -1, 2, 3), "cls_id must be a non-negative integer, got -1"),
        ((0, 1, 2, True), "mask_id must be a non-negative integer, got True"),
    ],
)
def test_bert_specials_validation(ids, message):
    with pytest.raises(ValueError, match=message):
        BertSpecials(*ids)


# --- sentiment corpora -------------------------------------------------------------------------


@pytest.mark.parametrize("split, rows", [("train", 60_614), ("dev", 6_735), ("test", 872)])
def test_sst2_counts_and_labels(split, rows):
    sentences, labels = sst2(split)
    assert len(sentences) == len(labels) == rows
    assert set(labels) == {0, 1}
    assert all(s and s == s.strip() for s in sentences)


def test_sst2_unknown_split():
    with pytest.raises(KeyError, match="no split 'validation'; the splits are: train, dev, test"):
        sst2("validation")


def test_chnsenticorp_split_is_deterministic_and_disjoint():
    train, train_labels = chnsenticorp("train")
    test, test_labels = chnsenticorp("test")
    # 7,766 rows (5,322 positive, 2,444 negative); one negative row has an empty review.
    assert len(train) + len(test) == 7_765
    assert len(test) == int(7_765 * 0.2)
    assert sum(train_labels) + sum(test_labels) == 5_322
    assert len(train_labels) + len(test_labels) - 5_322 == 2_443
    assert set(train_labels) == set(test_labels) == {0, 1}
    assert all(review for review in train + test)
    assert any('"' in review for review in train + test), "doubled quotes are read as one"
    assert chnsenticorp("train") == (train, train_labels)
    assert chnsenticorp("test", seed=1) != (test, test_labels)
    assert len(set(train + test)) == 7_765, "the reviews are distinct, so the splits partition"
    with pytest.raises(KeyError, match="no split 'dev'; the splits are: train, test"):
        chnsenticorp("dev")
    with pytest.raises(ValueError, match="test_fraction must lie strictly between 0 and 1"):
        chnsenticorp("train", test_fraction=1.0)


# --- pad_batch, classification_batches ---------------------------------------------------------


def test_pad_batch_shapes():
    input_ids, attention_mask = pad_batch([[5, 6, 7], [8], [9, 9]], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 9, 0]]
    assert attention_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert input_ids.dtype == attention_mask.dtype == torch.long
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_batch([[5], []], pad_id=0)
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([], pad_id=0)


def test_batches_per_epoch():
    assert batches_per_epoch(10, 3) == 3
    assert batches_per_epoch(9, 3) == 3
    with pytest.raises(ValueError, match="2 examples make no full batch of 3"):
        batches_per_epoch(2, 3)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        batches_per_epoch(10, 0)


@pytest.mark.parametrize("bucket", [1, 2])
def test_classification_batches_cover_each_example_once_per_epoch(bucket):
    n, batch_size = 23, 5  # 4 batches an epoch; 3 examples left out of each
    sequences = [[100 + k] * (1 + k % 4) for k in range(n)]
    labels = [k % 2 for k in range(n)]
    batches = classification_batches(sequences, labels, batch_size, 0, seed=7, bucket=bucket)
    per_epoch = batches_per_epoch(n, batch_size)
    epochs = []
    for epoch in range(3):
        seen = []
        for step in range(per_epoch):
            input_ids, attention_mask, targets = batches(epoch * per_epoch + step)
            assert input_ids.shape == attention_mask.shape and input_ids.shape[0] == batch_size
            assert targets.shape == (batch_size,) and targets.dtype == torch.long
            for row, mask, y in zip(input_ids, attention_mask, targets.tolist(), strict=True):
                k = int(row[0]) - 100
                assert row[mask == 1].tolist() == sequences[k] and y == labels[k]
                seen.append(k)
        assert len(seen) == len(set(seen)) == per_epoch * batch_size
        epochs.append(seen)
    assert epochs[0] != epochs[1], "each epoch draws its own order"
    again = classification_batches(sequences, labels, batch_size, 0, seed=7, bucket=bucket)
    for index in (9, 0, 5):
        assert all(torch.equal(p, q) for p, q in zip(again(index), batches(index), strict=True))


def test_classification_batches_bad_inputs():
    with pytest.raises(ValueError, match="3 sequences but 2 labels"):
        classification_batches([[1], [2], [3]], [0, 1], 1, pad_id=0)
    with pytest.raises(ValueError, match="3 examples make no full batch of 4"):
        classification_batches([[1], [2], [3]], [0, 1, 0], 4, pad_id=0)
    with pytest.raises(ValueError, match="sequence 2 is empty"):
        classification_batches([[1], [2], []], [0, 1, 0], 1, pad_id=0)


def test_bucketing_sorts_by_length_and_pads_less():
    lengths = torch.randint(1, 40, (640,), generator=torch.Generator().manual_seed(0)).tolist()
    sequences = [[5] * n for n in lengths]
    labels = [0] * len(sequences)
    padded = {}
    for bucket in (1, 20):
        batches = classification_batches(sequences, labels, 32, pad_id=0, seed=0, bucket=bucket)
        padded[bucket] = sum(batches(i)[0].numel() for i in range(20))
    assert padded[20] < 0.7 * padded[1]  # sorted runs of 20 batches: 0.54 with this seed
    with pytest.raises(ValueError, match="bucket must be a positive integer"):
        classification_batches(sequences, labels, 32, pad_id=0, bucket=0)
