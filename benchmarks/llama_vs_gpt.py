"""GPT-2 to LLaMA one change at a time, at a larger budget than chapter 9 can spend.

Every row of `lib.ablation` (GPT-2's architecture, then RMSNorm, RoPE, SwiGLU, no biases, an
untied output layer, which together are LLaMA, then GQA) trains with the `gpt` recipe's data,
batches and schedule for --steps steps, once per seed; the report gives each row's parameters,
validation loss (mean and the range over seeds), training tokens per second (median over seeds)
and KV cache per token, in benchmarks/results/llama_vs_gpt_{cpu,cuda}.md.

    python benchmarks/llama_vs_gpt.py                      # shakespeare-char, 2000 steps, 3 seeds
    python benchmarks/llama_vs_gpt.py --full --device cuda # shakespeare-char-full, 5000 steps
    python benchmarks/llama_vs_gpt.py --steps 20 --out -   # a quick smoke run (writes nothing)
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys

from common import add_device_options, device_from, report_header, write_report

from lib.ablation import run_ablation


def report(records: list[dict], preset: str, steps: int, seeds: list[int], header: str) -> str:
    """The markdown table: one line per row of the ablation, seeds summarised."""
    lines = [
        "# GPT-2 to LLaMA, one change at a time (lib.ablation)",
        "",
        header,
        f"- `{shlex.join(['python', 'benchmarks/llama_vs_gpt.py', *sys.argv[1:]])}`",
        f"- preset {preset}, {steps} steps, seeds {', '.join(map(str, seeds))}; each row adds "
        "one change to the row above; validation loss over the same 200 batches for every row",
        "",
        "| row | parameters | val loss (mean) | range over seeds | tokens/s | KV bytes/token |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["name"] for r in records):
        rows = [r for r in records if r["name"] == name]
        losses = [r["val_loss"] for r in rows]
        lines.append(
            f"| {name} | {rows[0]['params']:,} | {statistics.mean(losses):.4f} | "
            f"{min(losses):.4f}–{max(losses):.4f} | "
            f"{statistics.median(r['tokens_per_s'] for r in rows):,.0f} | "
            f"{rows[0]['kv_bytes_per_token']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the GPU preset and 5000 steps")
    parser.add_argument("--steps", type=int, default=None, help="steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-progress", action="store_true")
    add_device_options(parser, "llama_vs_gpt")
    args = parser.parse_args()
    device = device_from(parser, args)
    preset = "shakespeare-char-full" if args.full else "shakespeare-char"
    steps = args.steps or (5000 if args.full else 2000)
    records = run_ablation(
        preset, steps, tuple(args.seeds), eval_batches=200, device=str(device),
        progress=not args.no_progress,
    )  # fmt: skip
    text = report(records, preset, steps, args.seeds, report_header(device))
    write_report(text, args.out, "llama_vs_gpt", device)


if __name__ == "__main__":
    main()
