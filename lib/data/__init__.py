"""Data: the corpora shipped in `data/`, language-model batches, chapter 5's task, BERT's data.

bert.py         BERT's masking (mask_tokens), next-sentence pairs, the sentiment corpora, batches
corpora.py      the corpus registry (names, files, SHA-256) and load_text / load_bytes
lm.py           train_val_split, lm_batches (batches as a function of their index), char_data
translation.py  the number-words translation task (digits -> English words)
"""

from lib.data.bert import (
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
from lib.data.corpora import CORPORA, ROOT, Corpus, data_dirs, find_corpus, load_bytes, load_text
from lib.data.lm import char_data, lm_batches, train_val_split
from lib.data.translation import (
    BOS,
    EOS,
    ONES,
    PAD,
    SPECIALS,
    TENS,
    TranslationTask,
    number_words,
    number_words_task,
)

__all__ = [
    "BOS",
    "CORPORA",
    "EOS",
    "IGNORE_INDEX",
    "ONES",
    "PAD",
    "ROOT",
    "SPECIALS",
    "TENS",
    "BertSpecials",
    "Corpus",
    "TranslationTask",
    "batches_per_epoch",
    "char_data",
    "chnsenticorp",
    "classification_batches",
    "data_dirs",
    "find_corpus",
    "lm_batches",
    "load_bytes",
    "load_text",
    "mask_tokens",
    "nsp_batches",
    "number_words",
    "number_words_task",
    "pad_batch",
    "sst2",
    "train_val_split",
]
