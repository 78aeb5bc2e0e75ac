"""What `python -m lib.train --model NAME` trains: one recipe per model, all of them here.

A recipe builds everything a run needs but the run's plumbing: the model, its loss, the data as
`batches(i)` functions, and the hyperparameters (a `TrainConfig`) with how often and how long
to evaluate. The command line (`lib/cli.py`) adds the steps, device, seed and output folder.
A chapter that adds a trainable model adds its recipe function and one line in `RECIPES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lib.data import (
    BertSpecials,
    char_data,
    lm_batches,
    load_text,
    nsp_batches,
    number_words_task,
    train_val_split,
)
from lib.hf.bert import minilm_tokenizer
from lib.models.bert import BertConfig, BertForPreTraining, bert_pretraining_loss
from lib.models.gpt import GPT, GPTConfig, lm_loss
from lib.models.llama import Llama, LlamaConfig
from lib.models.transformer import Transformer, TransformerConfig, translation_loss
from lib.train import Batch, LossFn, TrainConfig
from lib.utils import scale


@dataclass
class Recipe:
    """A model with its loss, its data and the hyperparameters it trains with."""

    model: nn.Module
    loss_fn: LossFn
    batches: Callable[[int], Batch]
    val_batches: Callable[[int], Batch] | None
    config: TrainConfig  # its `steps` is the recipe's default; the command line sets its own
    eval_every: int  # steps between evaluations
    eval_batches: int  # validation batches per evaluation
    identity: dict[str, str]  # what it trains (model, data, preset): a resume must name the same


# --- GPT and LLaMA: nanoGPT's shakespeare_char recipe on a character corpus --------------------

GPT_DATASETS = ("tinyshakespeare", "tang_poems")
GPT_PRESETS = ("shakespeare-char", "shakespeare-char-full")
# Batch size and evaluation differ between nanoGPT's CPU run (--eval_iters=20) and its GPU run.
GPT_BATCH = {"shakespeare-char": (12, 20), "shakespeare-char-full": (64, 200)}


def gpt(data: str | None = None, preset: str | None = None, seed: int = 0) -> Recipe:
    """A character-level GPT on a corpus, with nanoGPT's shakespeare_char settings."""
    return _char_lm("gpt", data, preset, seed)


def llama(data: str | None = None, preset: str | None = None, seed: int = 0) -> Recipe:
    """A character-level LLaMA on a corpus, trained exactly as `gpt` trains GPT: chapter 9
    compares the two at about equal size, on the same data and schedule."""
    return _char_lm("llama", data, preset, seed)


CHAR_MODELS = {"gpt": (GPT, GPTConfig), "llama": (Llama, LlamaConfig)}


def _char_lm(model: str, data: str | None, preset: str | None, seed: int) -> Recipe:
    """nanoGPT's shakespeare_char recipe for the decoder `model` ("gpt" or "llama")."""
    data = data or GPT_DATASETS[0]
    if data not in GPT_DATASETS:
        raise KeyError(f"{model} trains on {', '.join(GPT_DATASETS)}, not {data!r}")
    preset = preset or ("shakespeare-char" if scale() == "small" else "shakespeare-char-full")
    if preset not in GPT_PRESETS:
        raise KeyError(
            f"unknown preset {preset!r}; the command line trains the character-level presets "
            f"{', '.join(GPT_PRESETS)}"
        )
    tokenizer, train_ids, val_ids = char_data(data)
    model_class, config_class = CHAR_MODELS[model]
    config = config_class.preset(preset, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(seed)
    batch_size, eval_batches = GPT_BATCH[preset]
    return Recipe(
        model=model_class(config),
        loss_fn=lm_loss,
        batches=lm_batches(train_ids, batch_size, config.max_seq_len, seed=seed),
        val_batches=lm_batches(val_ids, batch_size, config.max_seq_len, seed=seed),
        config=TrainConfig(
            steps=5000,  # nanoGPT's max_iters
            lr=1e-3,
            min_lr_ratio=0.1,  # cosine down to 1e-4
            warmup_steps=100,
            betas=(0.9, 0.99),  # beta2 0.99: "the number of tokens per iteration is small"
            weight_decay=0.1,
            grad_clip=1.0,
        ),
        eval_every=250,
        eval_batches=eval_batches,
        identity={"model": model, "data": data, "preset": preset},
    )


# --- the Transformer: digits to English number words ------------------------------------------

TRANSFORMER_DATASETS = ("number_words",)


def transformer(data: str | None = None, preset: str | None = None, seed: int = 0) -> Recipe:
    """The encoder-decoder Transformer on chapter 5's number-words task."""
    data = data or TRANSFORMER_DATASETS[0]
    if data not in TRANSFORMER_DATASETS:
        raise KeyError(f"the transformer trains on {', '.join(TRANSFORMER_DATASETS)}, not {data!r}")
    preset = preset or ("small" if scale() == "small" else "base")
    task = number_words_task(seed=seed)
    torch.manual_seed(seed)
    config = TransformerConfig.preset(
        preset,
        src_vocab_size=len(task.vocab),
        tgt_vocab_size=len(task.vocab),
        max_seq_len=16,
        pad_id=task.index["<pad>"],
        bos_id=task.index["<bos>"],
        eos_id=task.index["<eos>"],
    )
    test = task.tensors(task.test)
    return Recipe(
        model=Transformer(config),
        loss_fn=translation_loss,
        batches=task.batches(batch_size=64, seed=seed),
        val_batches=lambda i: test,
        config=TrainConfig(
            steps=2000,
            lr=3e-3 if preset == "small" else 5e-4,
            warmup_steps=100,
            weight_decay=0.01,
            betas=(0.9, 0.98),
        ),
        eval_every=200,
        eval_batches=1,
        identity={"model": "transformer", "data": data, "preset": preset},
    )


# --- BERT: masked-LM and next-sentence pre-training on the lines of a corpus ------------------

BERT_DATASETS = ("tinyshakespeare",)
BERT_PRESETS = ("small", "medium")


def bert_sentences(data: str, tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """The non-empty lines of a corpus as WordPiece ids (no specials), split 90/10 by position.

    A line is BERT's "sentence": next-sentence prediction asks whether one line follows another.
    """
    lines = [line for line in load_text(data).splitlines() if line.strip()]
    ids = [e.ids for e in tokenizer.encode_batch(lines, add_special_tokens=False)]
    return train_val_split([s for s in ids if s])


def bert(data: str | None = None, preset: str | None = None, seed: int = 0) -> Recipe:
    """A small BERT pre-trained from scratch, masked LM + next sentence, with MiniLM's WordPiece
    vocabulary (so that chapter 8 fine-tunes it beside the pretrained MiniLM on equal terms)."""
    data = data or BERT_DATASETS[0]
    if data not in BERT_DATASETS:
        raise KeyError(f"bert trains on {', '.join(BERT_DATASETS)}, not {data!r}")
    preset = preset or ("small" if scale() == "small" else "medium")
    if preset not in BERT_PRESETS:
        raise KeyError(
            f"unknown preset {preset!r}; the command line pre-trains the presets "
            f"{', '.join(BERT_PRESETS)} (base and large are for loading weights)"
        )
    tokenizer = minilm_tokenizer()
    train_sentences, val_sentences = bert_sentences(data, tokenizer)
    config = BertConfig.preset(preset, vocab_size=tokenizer.get_vocab_size())
    specials = BertSpecials(config.pad_id, config.cls_id, config.sep_id, config.mask_id)
    torch.manual_seed(seed)
    batch = dict(batch_size=32, seq_len=config.max_seq_len, specials=specials,
                 vocab_size=config.vocab_size, seed=seed)  # fmt: skip
    return Recipe(
        model=BertForPreTraining(config),
        loss_fn=bert_pretraining_loss,
        batches=nsp_batches(train_sentences, **batch),
        val_batches=nsp_batches(val_sentences, **batch),
        config=TrainConfig(
            steps=2000,
            lr=1e-3 if preset == "small" else 5e-4,
            warmup_steps=100,
            weight_decay=0.01,  # BERT's (Devlin et al., appendix A.2), as is beta2 0.999
            betas=(0.9, 0.999),
            grad_clip=1.0,
        ),
        eval_every=250,
        eval_batches=10,
        identity={"model": "bert", "data": data, "preset": preset},
    )


RECIPES: dict[str, Callable[..., Recipe]] = {
    "transformer": transformer,
    "gpt": gpt,
    "llama": llama,
    "bert": bert,
}
