"""Data: the corpora shipped in `data/`, language-model batches, and chapter 5's task.

corpora.py      the corpus registry (names, files, SHA-256) and load_text / load_bytes
lm.py           train_val_split, lm_batches (batches as a function of their index), char_data
translation.py  the number-words translation task (digits -> English words)
"""

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
    "ONES",
    "PAD",
    "ROOT",
    "SPECIALS",
    "TENS",
    "Corpus",
    "TranslationTask",
    "char_data",
    "data_dirs",
    "find_corpus",
    "lm_batches",
    "load_bytes",
    "load_text",
    "number_words",
    "number_words_task",
    "train_val_split",
]
