"""Tokens per second of one full training step: lib's GPT against `transformers`' GPT-2, and what
each of lib's fast paths is worth.

A training step is what `lib.train` runs each step: forward, cross-entropy of every next token,
backward, AdamW step, zeroed gradients. Every variant starts from the same weights (HF's model
is converted with `lib.hf.gpt_to_hf`), has no dropout, and steps with the AdamW that
`lib.train.make_optimizer` builds (its parameter groups, PyTorch's fused kernel):

    lib                     lib's GPT as it trains by default: nn.LayerNorm, SDPA, TanhGELU
                            (GPT-2's GELU through the sigmoid), fused AdamW
    lib, reference norms    every LayerNorm swapped for lib.norm.LayerNorm (from the definition)
    lib, unfused attention  MultiHeadAttention.fused = False: lib.attention.attention, by hand
    lib, for-loop AdamW     torch.optim.AdamW's loop over parameters instead of the fused kernel
    lib, tanh GELU kernel   TanhGELU swapped for nn.GELU(approximate="tanh"): the same function
                            in PyTorch's kernel
    lib, exact GELU         ffn="gelu": the erf GELU that nanoGPT uses, not GPT-2's tanh one
    hf                      GPT2LMHeadModel with the same weights and the fused AdamW
    hf, tanh GELU kernel    HF's model with activation_function="gelu_pytorch_tanh": the same
                            function as its default "gelu_new", in PyTorch's kernel, as lib runs it

The GELU rows separate the model from its activation: GPT-2's tanh GELU is a different
function from the exact one, and PyTorch's CPU kernel for it is slower than the exact one's
and than lib's TanhGELU (benchmarks/gelu.py), so a model's speed depends on which GELU it
computes as well as how.

The variants are timed in turns within every repeat (so a noisy neighbour slows all alike),
after warm-up steps, on a fixed number of threads; the report gives the median over repeats,
the ratio lib / HF (above 1: lib is faster) and each variant's speed relative to lib.

    python benchmarks/train_throughput.py               # CPU, 2 threads: results/*_cpu.json
    python benchmarks/train_throughput.py --repeats 3 --out -    # quick, print only
    python benchmarks/train_throughput.py --profile tiny         # the top ops of lib and HF
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from common import ROOT, cpu_name, interleaved_medians
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN

from lib.hf import gpt_to_hf
from lib.models.gpt import GPT, GPTConfig
from lib.norm import LayerNorm
from lib.train import TrainConfig, make_optimizer, param_groups

# The two sizes of the comparison: nanoGPT's CPU Shakespeare model, and a GPT-2-like small one.
CONFIGS = {
    "tiny": dict(n_layers=4, n_heads=4, d_model=128, batch=12, seq=64),
    "small": dict(n_layers=6, n_heads=6, d_model=384, batch=8, seq=256),
}
VOCAB = 65  # Tiny Shakespeare's characters
HYPER = TrainConfig(lr=1e-3)  # weight decay 0.1 on the matrices, betas (0.9, 0.95)


def lib_gpt(size: str, ffn: str = "gelu_tanh") -> GPT:
    """lib's GPT of one size, seeded: every variant starts from these weights."""
    c = CONFIGS[size]
    torch.manual_seed(0)
    shape = dict(n_layers=c["n_layers"], n_heads=c["n_heads"], d_model=c["d_model"])
    return GPT(GPTConfig(vocab_size=VOCAB, max_seq_len=c["seq"], dropout=0.0, ffn=ffn, **shape))


def hf_gpt2(size: str, activation: str = "gelu_new") -> nn.Module:
    """HF's GPT2LMHeadModel with lib_gpt's weights, its MLPs computing `activation`."""
    hf = gpt_to_hf(lib_gpt(size))
    hf.config.use_cache = False  # training: no key/value cache to build
    hf.config.activation_function = activation
    for block in hf.transformer.h:
        block.mlp.act = ACT2FN[activation]
    return hf


def with_reference_norms(model: nn.Module) -> nn.Module:
    """The model with each nn.LayerNorm replaced by lib.norm.LayerNorm holding the same values."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.LayerNorm):
                ref = LayerNorm(child.normalized_shape[0], child.eps, bias=child.bias is not None)
                ref.load_state_dict(child.state_dict())
                setattr(parent, name, ref)
    return model


def unfused_attention(model: GPT) -> GPT:
    for block in model.blocks:
        block.self_attn.fused = False
    return model


def tanh_gelu_kernel(model: GPT) -> GPT:
    for block in model.blocks:
        block.ffn.act = nn.GELU(approximate="tanh")
    return model


def for_loop_adamw(model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, HYPER.weight_decay)
    return torch.optim.AdamW(groups, lr=HYPER.lr, betas=HYPER.betas, fused=False, foreach=False)


def variants(size: str) -> dict[str, tuple[nn.Module, torch.optim.Optimizer, bool]]:
    """name -> (model in training mode, its optimizer, whether it is HF's)."""
    fused = partial(make_optimizer, config=HYPER)
    built = {
        "lib": (lib_gpt(size), fused, False),
        "lib, reference norms": (with_reference_norms(lib_gpt(size)), fused, False),
        "lib, unfused attention": (unfused_attention(lib_gpt(size)), fused, False),
        "lib, for-loop AdamW": (lib_gpt(size), for_loop_adamw, False),
        "lib, tanh GELU kernel": (tanh_gelu_kernel(lib_gpt(size)), fused, False),
        "lib, exact GELU": (lib_gpt(size, ffn="gelu"), fused, False),
        "hf": (hf_gpt2(size), fused, True),
        "hf, tanh GELU kernel": (hf_gpt2(size, "gelu_pytorch_tanh"), fused, True),
    }
    return {name: (m.train(), opt(m), is_hf) for name, (m, opt, is_hf) in built.items()}


def step_fn(model, optimizer, hf: bool, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One training step of `model` on (x, y), as a function of no arguments."""

    def step() -> None:
        logits = model(x).logits if hf else model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def batch(size: str) -> tuple[torch.Tensor, torch.Tensor]:
    c = CONFIGS[size]
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(VOCAB, (c["batch"], c["seq"]), generator=gen) for _ in range(2))
    return x, y


def measure(size: str, repeats: int, warmup: int, steps: int) -> dict:
    """Median tokens/s of each variant over `repeats` turns of `steps` steps each."""
    x, y = batch(size)
    steps_of = {name: step_fn(m, opt, hf, x, y) for name, (m, opt, hf) in variants(size).items()}
    seconds = interleaved_medians(steps_of, repeats, torch.device("cpu"), warmup, inner=steps)
    tokens = x.numel()
    speed = {name: tokens / s for name, s in seconds.items()}
    return {
        "config": CONFIGS[size],
        "tokens_per_s": {k: round(v, 1) for k, v in speed.items()},
        "lib_over_hf": round(speed["lib"] / speed["hf"], 3),
        "over_lib": {k: round(v / speed["lib"], 3) for k, v in speed.items() if k != "lib"},
    }


def profile(size: str, steps: int = 5) -> None:
    """Print the 12 ops that take the most CPU time in `steps` steps of lib's GPT and of HF's."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x, y = batch(size)
    chosen = {k: v for k, v in variants(size).items() if k in ("lib", "hf")}
    for name, (model, optimizer, hf) in chosen.items():
        step = step_fn(model, optimizer, hf, x, y)
        for _ in range(3):
            step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step()
        print(f"== {name}, {size}, {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=7, help="timed turns per variant (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--steps", type=int, default=5, help="steps per timed turn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", choices=list(CONFIGS), help="print the top ops of one size, only")
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput_cpu.json")
    )
    args = p.parse_args(argv)
    if min(args.repeats, args.steps) < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeats, --steps and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.profile)
        return 0
    report = {
        "what": "tokens/s of forward + loss + backward + AdamW: lib's GPT, four of its fast "
        "paths turned off one at a time, lib with the exact GELU, and HF's GPT2LMHeadModel "
        "with its default GELU and with PyTorch's tanh GELU kernel",
        "device": f"cpu: {cpu_name()}, {args.threads} threads",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "results": {},
    }
    for size in args.sizes:
        r = report["results"][size] = measure(size, args.repeats, args.warmup, args.steps)
        others = ", ".join(f"{k} {v:.2f}x" for k, v in r["over_lib"].items())
        print(f"{size}: lib {r['tokens_per_s']['lib']:.0f} tok/s; relative to lib: {others}")
        print(f"{size}: lib / hf = {r['lib_over_hf']:.2f}", flush=True)
    text = json.dumps(report, indent=2) + "\n"
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
