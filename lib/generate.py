"""Text generation from any causal language model of the book: greedy, temperature, top-k, top-p.

A model qualifies if it has `forward(input_ids, kv_caches=None, start_pos=0) -> logits` and a
`config` with `n_layers`, `n_heads`, `d_model`, `max_seq_len` (and `n_kv_heads`, `head_dim` when
they differ from `n_heads` and `d_model // n_heads`): GPT and LLaMA share this one loop.

`stream` yields each new token as soon as it is chosen; `generate` collects them after the prompt.
With `use_cache=True` the prompt is run once to fill one KV cache per layer, and every later step
feeds only the newest token; without it every step re-reads the whole text so far.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

import torch
from torch import Tensor, nn

from lib.attention import KVCache
from lib.embedding import check_token_ids


def make_kv_caches(model: nn.Module, batch: int, max_len: int) -> list[KVCache]:
    """One empty KVCache per layer of `model`, for `batch` sequences of up to `max_len` tokens."""
    c = model.config
    n_kv_heads = getattr(c, "n_kv_heads", None) or c.n_heads
    head_dim = getattr(c, "head_dim", None) or c.d_model // c.n_heads
    weight = next(model.parameters())  # the cache lives where the weights live, in their dtype
    return [
        KVCache(batch, max_len, n_kv_heads, head_dim, dtype=weight.dtype, device=weight.device)
        for _ in range(c.n_layers)
    ]


# --- choosing the next token ------------------------------------------------------------------


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (..., vocab); set the others to -inf."""
    k = min(k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least p
    (nucleus sampling, Holtzman et al. 2020); set the other logits to -inf."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each
    drop_sorted = mass_before >= p  # the set already holds p without it; the top token stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The next token of each row from last-position logits (batch, vocab) -> ids (batch,)."""
    if torch.isnan(logits).any():  # argmax would pick a NaN, and softmax spread it to every token
        raise ValueError("the model's logits hold NaN: its weights or its input are broken")
    if temperature == 0:
        return logits.argmax(dim=-1)  # greedy: the limit of temperature -> 0
    logits = logits.float() / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a clear error for a temperature, top_k or top_p that does not define a sampler."""
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)) or temperature < 0:
        raise ValueError(
            f"temperature must be a finite number >= 0, got {temperature!r}; "
            "0 is greedy decoding, 1 samples from the model's own distribution"
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise ValueError(f"top_p must lie in (0, 1] or be None, got {top_p!r}; 1 keeps every token")


# --- the loop ---------------------------------------------------------------------------------


def stream(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yield the next token ids (batch,) of the prompts `input_ids` (batch, seq), one step at a
    time, `max_new_tokens` times. The model runs in eval mode meanwhile (no dropout)."""
    # Checked here, not inside the generator below, so that a bad call fails at once rather
    # than at the first next().
    check_sampling(temperature, top_k, top_p)
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids)
        raise ValueError(
            f"input_ids must be a (batch, seq) tensor with at least one token, got {shape}; "
            "for a single prompt pass ids[None]"
        )
    # The forward passes check ids only where that is free (lib.embedding): here, once per call.
    check_token_ids(input_ids, model.config.vocab_size, anywhere=True)
    if type(max_new_tokens) is not int or max_new_tokens < 0:  # bool and float refused too
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    prompt_len, max_seq_len = input_ids.shape[1], model.config.max_seq_len
    if use_cache and prompt_len + max_new_tokens > max_seq_len:
        raise ValueError(
            f"a prompt of {prompt_len} tokens plus max_new_tokens={max_new_tokens} makes "
            f"{prompt_len + max_new_tokens} positions, past the model's max_seq_len="
            f"{max_seq_len}; ask for at most {max(max_seq_len - prompt_len, 0)} new tokens, or "
            f"pass use_cache=False, which slides a window of the last {max_seq_len} tokens"
        )
    sample = partial(
        sample_next, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    steps = _cached_steps if use_cache else _uncached_steps
    return steps(model, input_ids, max_new_tokens, sample)


@torch.no_grad()
def _cached_steps(model, input_ids, max_new_tokens, sample) -> Iterator[Tensor]:
    """Run the prompt once into the KV caches, then feed back one new token per step."""
    batch, prompt_len = input_ids.shape
    was_training = model.training
    model.eval()
    try:
        caches = make_kv_caches(model, batch, prompt_len + max_new_tokens)
        logits = model(input_ids, kv_caches=caches, start_pos=0)  # (batch, prompt_len, vocab)
        for step in range(max_new_tokens):
            next_id = sample(logits[:, -1])  # (batch,)
            yield next_id
            if step + 1 < max_new_tokens:  # the newest token is the only new position
                logits = model(next_id[:, None], kv_caches=caches, start_pos=prompt_len + step)
    finally:
        model.train(was_training)


@torch.no_grad()
def _uncached_steps(model, input_ids, max_new_tokens, sample) -> Iterator[Tensor]:
    """Re-read the whole text at every step, cropped to the last max_seq_len tokens."""
    max_seq_len = model.config.max_seq_len
    was_training = model.training
    model.eval()
    try:
        ids = input_ids
        for _ in range(max_new_tokens):
            next_id = sample(model(ids[:, -max_seq_len:])[:, -1])  # (batch,)
            yield next_id
            ids = torch.cat([ids, next_id[:, None]], dim=1)
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The prompts (batch, seq) followed by max_new_tokens generated tokens: (batch, seq + new).

    temperature=0 is greedy decoding; otherwise each token is sampled from softmax(logits / T),
    restricted first to the top_k most likely tokens and then to the top_p nucleus when given.
    """
    new = list(
        stream(
            model,
            input_ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            use_cache=use_cache,
            generator=generator,
        )
    )
    if not new:
        return input_ids.clone()
    return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)
