"""From GPT to LLaMA one change at a time: the ablation of chapter 9 and benchmarks/llama_vs_gpt.py.

`CHANGES` lists what LLaMA changed in GPT-2's architecture, in the order the ablation applies
them; `ablation_configs(preset)` turns them into one `GPTConfig` per row, each row adding one
change to the row before. The row "LLaMA" is exactly `lib.models.llama.Llama` (a test loads one
into the other), and the last row adds grouped-query attention, as LLaMA-2's largest models did.

`run_ablation` trains every row under one budget: the data, batches, optimizer and schedule of
`python -m lib.train --model gpt` (`lib.recipes.gpt`), with only the number of steps changed
(and the warmup, in a run shorter than ten warmups),
and the same seeds for every row, so that row k and row k+1 see the same batches in the same
order. It measures the validation loss, training tokens per second and the KV cache per token.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from tqdm.auto import tqdm

from lib.feedforward import llama_hidden_dim
from lib.models.gpt import GPT, GPTConfig, lm_loss
from lib.recipes import gpt as gpt_recipe
from lib.train import RunConfig, evaluate, train
from lib.utils import count_params, get_device


def _changes(config: GPTConfig) -> list[tuple[str, dict]]:
    """(row name, the fields it changes) for each of LLaMA's changes to a GPT of this size."""
    return [
        ("RMSNorm", dict(norm="rmsnorm", norm_eps=1e-6)),  # LLaMA's eps (params.json)
        ("RoPE", dict(positions="rope")),  # rotations in attention replace the position table
        # Meta's width rule, rounded to 32 at this size: about the 4x MLP's weight count.
        ("SwiGLU", dict(ffn="swiglu", d_ff=llama_hidden_dim(config.d_model, multiple_of=32))),
        ("no biases", dict(bias=False)),
        ("untied output = LLaMA", dict(tie_embeddings=False)),
        ("GQA", dict(n_kv_heads=max(1, config.n_heads // 2))),  # half as many K/V heads
    ]


CHANGES = [name for name, _ in _changes(GPTConfig())]


def ablation_configs(preset: str = "shakespeare-char", vocab_size: int = 65, **size) -> list:
    """[(row name, GPTConfig)]: GPT-2's architecture at a `lib.models.gpt` preset's size (with
    biases and tied embeddings, as GPT-2), then each of LLaMA's changes added to the row before.

    `size` overrides the preset's sizes (d_model, n_layers, n_heads), not its max_seq_len.
    """
    if "max_seq_len" in size:
        raise ValueError("the ablation trains on the preset's windows; choose another preset")
    config = GPTConfig.preset(preset, vocab_size=vocab_size, bias=True, tie_embeddings=True, **size)
    rows = [("GPT-2", config)]
    for name, change in _changes(config):
        config = dataclasses.replace(config, **change)
        rows.append((name, config))
    return rows


def kv_bytes_per_token(config: GPTConfig, dtype: torch.dtype = torch.float32) -> int:
    """What the KV cache stores per token: a key and a value per layer and KV head."""
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * config.n_layers * config.n_kv_heads * config.head_dim * element


def run_ablation(
    preset: str = "shakespeare-char",
    steps: int = 200,
    seeds: tuple[int, ...] = (0, 1),
    eval_batches: int = 50,
    device: str | None = None,
    progress: bool = True,
    **size,
) -> list[dict]:
    """Train every row of `ablation_configs(preset, **size)` for `steps` steps with each seed.

    Returns one record per (row, seed): name, seed, params, val_loss (mean over the same
    `eval_batches` validation batches for every row), tokens_per_s (training steps only, wall
    clock), kv_bytes_per_token. Rows of one seed start from the same RNG state and batches.
    """
    if steps < 1 or not seeds:
        raise ValueError(f"need steps >= 1 and at least one seed, got steps={steps}, seeds={seeds}")
    device = get_device(device)
    records = []
    runs = [
        (name, config, seed) for seed in seeds for name, config in ablation_configs(preset, **size)
    ]
    for name, config, seed in tqdm(runs, desc="ablation", disable=not progress):
        recipe = gpt_recipe(preset=preset, seed=seed)  # its data and schedule; its model unused
        torch.manual_seed(seed)
        model = GPT(config)
        warmup = min(recipe.config.warmup_steps, steps // 10)  # a short run warms up for 10%
        schedule = dataclasses.replace(recipe.config, steps=steps, warmup_steps=warmup)
        run = RunConfig(device=str(device), seed=seed, progress=False)
        began = time.perf_counter()
        train(model, lm_loss, recipe.batches, schedule, run=run)
        seconds = time.perf_counter() - began
        x, _ = recipe.batches(0)
        val = evaluate(model, lm_loss, recipe.val_batches, eval_batches, device)
        records.append(
            dict(
                name=name,
                seed=seed,
                params=count_params(model),
                val_loss=val,
                tokens_per_s=steps * x.numel() / seconds,
                kv_bytes_per_token=kv_bytes_per_token(config),
            )
        )
    return records
