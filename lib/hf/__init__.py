"""Converters between the book's models and Hugging Face `transformers`: configs and weights.

This package is the one place in `lib` that knows Hugging Face's names
(`transformer.h.0.attn.c_attn`, `n_embd`, ...); every other module uses the book's own. It holds
one module per model family: `lib.hf.gpt2` (GPT-2), `lib.hf.bert` (BERT, and the pretrained
all-MiniLM-L6-v2) and `lib.hf.llama` (LLaMA, and Meta's checkpoint layout). Each converter is
one name map plus the few reshapes the two layouts need, and it drives both directions, so that
the parity tests can load the same random weights into both implementations and compare logits,
and a round trip gives back every tensor exactly.

`transformers` is an optional extra (`pip install -e '.[hf]'`); the converters import it only when
called (`lib.hf.common.transformers_module`), so `import lib.hf` neither pays for it nor fails
without it.
"""

from lib.hf.bert import bert_config_from_hf, bert_config_to_hf, bert_from_hf, bert_to_hf
from lib.hf.gpt2 import gpt_config_from_hf, gpt_config_to_hf, gpt_from_hf, gpt_to_hf
from lib.hf.llama import (
    llama_config_from_hf,
    llama_config_to_hf,
    llama_from_hf,
    llama_from_meta,
    llama_to_hf,
)

__all__ = [
    "bert_config_from_hf",
    "bert_config_to_hf",
    "bert_from_hf",
    "bert_to_hf",
    "gpt_config_from_hf",
    "gpt_config_to_hf",
    "gpt_from_hf",
    "gpt_to_hf",
    "llama_config_from_hf",
    "llama_config_to_hf",
    "llama_from_hf",
    "llama_from_meta",
    "llama_to_hf",
]
