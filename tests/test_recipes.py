"""The recipes of `python -m lib.train`: what each model trains with, and clear refusals."""

import pytest
import torch

from lib import recipes
from lib.models.gpt import GPTConfig
from lib.models.llama import LlamaConfig
from lib.models.transformer import translation_loss


def test_every_recipe_builds_and_its_loss_is_finite():
    for name, make in recipes.RECIPES.items():
        r = make(None, None, seed=0)
        assert torch.isfinite(r.loss_fn(r.model, r.batches(0))), name
        assert r.eval_every > 0 and r.eval_batches > 0, name


def test_transformer_recipe_takes_its_special_ids_from_the_task():
    r = recipes.transformer(None, "small", seed=0)
    c = r.model.config
    assert (c.pad_id, c.bos_id, c.eos_id) == (0, 1, 2)  # <pad>, <bos>, <eos> in the task's vocab
    src, tgt_in, _ = r.batches(0)
    assert (tgt_in[:, 0] == c.bos_id).all()


def test_gpt_recipe_is_nanogpts_cpu_recipe(monkeypatch):
    monkeypatch.setenv("BOOK_SCALE", "small")
    r = recipes.gpt(None, None, seed=0)
    assert r.model.config == GPTConfig.preset("shakespeare-char")  # 65 characters
    x, y = r.batches(0)
    assert x.shape == y.shape == (12, 64)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    c = r.config
    assert (c.lr, c.min_lr_ratio, c.warmup_steps) == (1e-3, 0.1, 100)
    assert (c.betas, c.weight_decay, c.grad_clip) == ((0.9, 0.99), 0.1, 1.0)
    assert (r.eval_every, r.eval_batches) == (250, 20)
    vx, _ = r.val_batches(0)
    assert vx.shape == (12, 64)


def test_recipe_trains_on_tang_poems_and_rejects_the_rest():
    r = recipes.gpt("tang_poems", "shakespeare-char", seed=0)
    assert r.model.config.vocab_size > 1000  # one token per distinct character
    assert torch.isfinite(r.loss_fn(r.model, r.batches(0)))
    with pytest.raises(KeyError, match="gpt trains on tinyshakespeare, tang_poems, not 'wiki'"):
        recipes.gpt("wiki", None)
    with pytest.raises(KeyError, match="unknown preset '124M'; the command line trains"):
        recipes.gpt(None, "124M")


def test_transformer_recipe_trains_a_little():
    r = recipes.transformer(None, "small", seed=0)
    batch = r.batches(0)
    before = translation_loss(r.model, batch).item()
    opt = torch.optim.AdamW(r.model.parameters(), lr=3e-3)
    for _ in range(10):
        opt.zero_grad()
        translation_loss(r.model, batch).backward()
        opt.step()
    assert translation_loss(r.model, batch).item() < 0.7 * before
    with pytest.raises(KeyError, match="presets are small, base"):
        recipes.transformer(None, "huge")


def test_bert_recipe_pretrains_with_minilms_vocabulary(monkeypatch):
    monkeypatch.setenv("BOOK_SCALE", "small")
    r = recipes.bert(None, None, seed=0)
    c = r.model.config
    assert r.identity == {"model": "bert", "data": "tinyshakespeare", "preset": "small"}
    tokenizer = recipes.minilm_tokenizer()
    assert c.vocab_size == tokenizer.get_vocab_size() == 30522
    named = {name: tokenizer.token_to_id(f"[{name.removesuffix('_id').upper()}]")
             for name in c.special_ids}  # fmt: skip
    assert named == c.special_ids  # [PAD] 0, [CLS] 101, [SEP] 102, [MASK] 103
    input_ids, types, mask, mlm_labels, nsp_labels = r.batches(0)
    assert input_ids.shape == types.shape == mask.shape == mlm_labels.shape == (32, 32)
    assert (input_ids[:, 0] == c.cls_id).all() and set(nsp_labels.tolist()) == {0, 1}
    assert r.val_batches(0)[0].shape == (32, 32)
    with pytest.raises(KeyError, match="base and large are for loading weights"):
        recipes.bert(None, "base")


def test_llama_recipe_is_gpts_recipe_with_llamas_architecture(monkeypatch):
    monkeypatch.setenv("BOOK_SCALE", "small")
    llama, gpt = recipes.llama(None, None, seed=0), recipes.gpt(None, None, seed=0)
    assert llama.model.config == LlamaConfig.preset("shakespeare-char")
    assert llama.identity == {**gpt.identity, "model": "llama"}
    assert llama.config == gpt.config and llama.eval_batches == gpt.eval_batches
    assert all(torch.equal(a, b) for a, b in zip(llama.batches(3), gpt.batches(3), strict=True))
    with pytest.raises(KeyError, match="llama trains on tinyshakespeare, tang_poems, not 'wiki'"):
        recipes.llama("wiki", None)
