"""lib.ablation: chapter 9's rows from GPT-2 to LLaMA, and the runner that trains them."""

import dataclasses
import math

import pytest
import torch

from lib.ablation import CHANGES, ablation_configs, kv_bytes_per_token, run_ablation
from lib.models.gpt import GPT
from lib.models.llama import Llama, LlamaConfig


def test_each_row_adds_one_change_and_the_llama_row_is_llama():
    rows = ablation_configs()
    assert [name for name, _ in rows] == ["GPT-2", *CHANGES]
    first = rows[0][1]
    assert (first.norm, first.positions, first.ffn, first.bias, first.tie_embeddings) == (
        "layernorm", "learned", "gelu_tanh", True, True,
    )  # fmt: skip
    for (_, before), (name, after) in zip(rows, rows[1:], strict=False):
        changed = {
            f.name
            for f in dataclasses.fields(after)
            if getattr(before, f.name) != getattr(after, f.name)
        }
        assert changed and changed <= {"norm", "norm_eps", "positions", "ffn", "d_ff", "bias",
                                       "tie_embeddings", "n_kv_heads"}, name  # fmt: skip
    llama_row = dict(rows)["untied output = LLaMA"]
    llama = Llama(LlamaConfig.preset("shakespeare-char"))
    GPT(llama_row).load_state_dict(llama.state_dict())  # strict: LLaMA's names and shapes
    assert dict(rows)["GQA"].n_kv_heads == llama_row.n_heads // 2


def test_kv_bytes_per_token():
    rows = dict(ablation_configs())
    assert kv_bytes_per_token(rows["GPT-2"]) == 2 * 4 * 4 * 32 * 4  # k and v, layers, heads, dim
    assert kv_bytes_per_token(rows["GQA"], torch.bfloat16) == 2 * 4 * 2 * 32 * 2


def test_run_ablation_trains_every_row_per_seed():
    records = run_ablation(steps=2, seeds=(0, 1), eval_batches=1, progress=False, d_model=32,
                           n_layers=1, n_heads=2)  # fmt: skip
    assert len(records) == 2 * (1 + len(CHANGES))
    assert all(math.isfinite(r["val_loss"]) and r["tokens_per_s"] > 0 for r in records)
    by_row = {}
    for r in records:
        by_row.setdefault(r["name"], set()).add((r["params"], r["kv_bytes_per_token"]))
    assert all(len(v) == 1 for v in by_row.values())  # a row's size does not depend on the seed


def test_bad_arguments_say_what_to_change():
    with pytest.raises(ValueError, match="need steps >= 1"):
        run_ablation(steps=0)
    with pytest.raises(ValueError, match="choose another preset"):
        ablation_configs(max_seq_len=128)
