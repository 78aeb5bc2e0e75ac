"""Tokens per second of one full training step: lib's GPT against `transformers`' GPT-2.

A training step is what `lib.train` runs each step: forward, cross-entropy of every next token,
backward, AdamW step, zeroed gradients. Both models have identical configs and identical weights
(`lib.hf.gpt_to_hf` converts lib's model), no dropout, and each has its own AdamW with the same
settings. The two are timed in turns within every repeat (so a noisy neighbour slows both
alike), after warm-up steps, on a fixed number of threads; the report gives the median over
repeats and the ratio lib / HF (above 1: lib is faster).

    python benchmarks/train_throughput.py                # CPU, 2 threads: results/*_cpu.json
    python benchmarks/train_throughput.py --repeats 3 --out -   # quick, print only
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

from lib.hf import gpt_to_hf  # noqa: E402
from lib.models.gpt import GPT, GPTConfig  # noqa: E402

# The two sizes of the comparison: nanoGPT's CPU Shakespeare model, and a GPT-2-like small one.
CONFIGS = {
    "tiny": dict(n_layers=4, n_heads=4, d_model=128, batch=12, seq=64),
    "small": dict(n_layers=6, n_heads=6, d_model=384, batch=8, seq=256),
}
VOCAB = 65  # Tiny Shakespeare's characters


def models(size: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """lib's GPT and HF's GPT2LMHeadModel of one size, with the same weights."""
    c = CONFIGS[size]
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=VOCAB,
        max_seq_len=c["seq"],
        d_model=c["d_model"],
        n_layers=c["n_layers"],
        n_heads=c["n_heads"],
        dropout=0.0,
    )
    ours = GPT(config)
    theirs = gpt_to_hf(ours)
    theirs.config.use_cache = False  # training: no key/value cache to build
    return ours, theirs.train()


def step_fn(model: torch.nn.Module, hf: bool):
    """One training step of `model` on (x, y); returns nothing, like a timed call should."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        logits = model(x).logits if hf else model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(size: str, repeats: int, warmup: int, steps: int) -> dict:
    """Median tokens/s of each model over `repeats` turns of `steps` steps each."""
    c = CONFIGS[size]
    ours, theirs = models(size)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(VOCAB, (c["batch"], c["seq"]), generator=gen)
    y = torch.randint(VOCAB, (c["batch"], c["seq"]), generator=gen)
    steppers = {"lib": step_fn(ours, hf=False), "hf": step_fn(theirs, hf=True)}
    for step in steppers.values():
        for _ in range(warmup):
            step(x, y)
    seconds = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, step in steppers.items():
            began = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            seconds[name].append((time.perf_counter() - began) / steps)
    tokens = c["batch"] * c["seq"]
    result = {name: tokens / statistics.median(s) for name, s in seconds.items()}
    return {
        "config": c,
        "tokens_per_s": {k: round(v, 1) for k, v in result.items()},
        "lib_over_hf": round(result["lib"] / result["hf"], 3),
        "step_ms": {k: [round(1e3 * t, 2) for t in s] for k, s in seconds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=7, help="timed turns per model (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    p.add_argument("--steps", type=int, default=5, help="steps per timed turn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput_cpu.json")
    )
    args = p.parse_args(argv)
    if min(args.repeats, args.steps) < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeats, --steps and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)
    report = {
        "what": "tokens/s of forward + loss + backward + AdamW, lib GPT vs HF GPT2LMHeadModel",
        "device": f"cpu: {platform.processor() or platform.machine()}, {args.threads} threads",
        "torch": torch.__version__,
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "results": {},
    }
    for size in args.sizes:
        report["results"][size] = measure(size, args.repeats, args.warmup, args.steps)
        r = report["results"][size]
        print(
            f"{size}: lib {r['tokens_per_s']['lib']:.0f} tok/s, hf {r['tokens_per_s']['hf']:.0f}"
            f" tok/s, lib/hf {r['lib_over_hf']:.2f}x",
            flush=True,
        )
    text = json.dumps(report, indent=2) + "\n"
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
