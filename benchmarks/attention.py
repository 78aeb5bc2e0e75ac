"""Naive against fused attention, side by side: lib's reference, PyTorch's kernel, and the layer.

Four timings at each sequence length, without a mask and with the causal mask:

    naive             lib.attention.attention: scores, softmax and weighted sum as three
                      tensor operations, the (seq, seq) matrices written to memory
    fused             F.scaled_dot_product_attention: PyTorch's fused kernel (a FlashAttention-
                      style tiled kernel where the device has one), same inputs
    MHA unfused       lib.attention.MultiHeadAttention with fused = False (projections + naive)
    MHA fused         lib.attention.MultiHeadAttention with fused = True (projections + fused)

Forward pass only, under torch.inference_mode. The four are interleaved within every repeat
(in alternating order), so a noisy neighbour slows them alike; the table reports medians and,
above all, the ratios naive / fused and MHA unfused / MHA fused (above 1: the fused one wins).

    python benchmarks/attention.py                # CPU: writes benchmarks/results/attention_cpu.md
    python benchmarks/attention.py --device cuda  # writes benchmarks/results/attention_cuda.md
    python benchmarks/attention.py --lengths 256 1024 --repeats 3 --out -   # quick, print only
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
import torch.nn.functional as F
from common import (
    add_device_options,
    device_from,
    interleaved_medians,
    report_header,
    rerun_command,
    write_report,
)

from lib.attention import MultiHeadAttention, attention, causal_mask

DEFAULT_LENGTHS = (128, 512, 1024, 2048)
NAMES = ("naive", "fused", "MHA unfused", "MHA fused")


def measure(
    seq_len: int,
    is_causal: bool,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, float]:
    """Median seconds of the four implementations at one sequence length and mask."""
    torch.manual_seed(0)
    d_model = args.heads * args.head_dim
    shape = (args.batch, args.heads, seq_len, args.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    x = torch.randn(args.batch, seq_len, d_model, device=device, dtype=dtype)
    mask = causal_mask(seq_len, device=device) if is_causal else None
    unfused = MultiHeadAttention(d_model, args.heads).to(device, dtype).eval()
    fused = MultiHeadAttention(d_model, args.heads).to(device, dtype).eval()
    fused.load_state_dict(unfused.state_dict())
    unfused.fused, fused.fused = False, True
    fns = {
        "naive": partial(attention, q, k, v, mask),
        "fused": partial(F.scaled_dot_product_attention, q, k, v, is_causal=is_causal),
        "MHA unfused": partial(unfused, x, is_causal=is_causal),
        "MHA fused": partial(fused, x, is_causal=is_causal),
    }
    with torch.inference_mode():
        # A fast wrong answer is not a result: the pairs must agree before they are timed.
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(fns["naive"]()[0], fns["fused"](), atol=tol, rtol=tol)
        torch.testing.assert_close(fns["MHA unfused"](), fns["MHA fused"](), atol=tol, rtol=tol)
        return interleaved_medians(fns, args.repeats, device)


def table(results: dict[tuple[int, bool], dict[str, float]]) -> str:
    """A markdown table: ratios first (the result), then the median times they come from."""
    rows = [
        "| seq | mask | naive / fused | MHA unfused / MHA fused | naive, ms | fused, ms "
        "| MHA unfused, ms | MHA fused, ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (seq_len, is_causal), t in results.items():
        times = " | ".join(f"{t[name] * 1e3:.2f}" for name in NAMES)
        rows.append(
            f"| {seq_len} | {'causal' if is_causal else 'none'} "
            f"| {t['naive'] / t['fused']:.2f} | {t['MHA unfused'] / t['MHA fused']:.2f} | {times} |"
        )
    return "\n".join(rows)


def report(results, device: torch.device, args: argparse.Namespace, seconds: float) -> str:
    """The results file: what ran where, the table, and how to read it."""
    d_model = args.heads * args.head_dim
    return (
        f"# Naive against fused attention, forward pass ({device.type})\n\n"
        f"{report_header(device)}, {args.dtype}\n"
        f"- batch {args.batch}, {args.heads} heads of head_dim {args.head_dim} "
        f"(MHA: d_model {d_model}); median of {args.repeats} interleaved repeats\n"
        f"- whole run: {seconds:.0f} s\n\n"
        "Ratios are the slower path's time over the fused path's (above 1: fused is faster). "
        "`naive` is `lib.attention.attention`, `fused` is `F.scaled_dot_product_attention`; "
        "the MHA columns are `lib.attention.MultiHeadAttention` with `fused` off and on, "
        "projections included.\n\n"
        f"{table(results)}\n\n"
        f"Command: `{rerun_command('attention', device)}`\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time naive attention (lib.attention.attention) against "
        "F.scaled_dot_product_attention, and MultiHeadAttention with fused off and on, at "
        "several sequence lengths without and with a causal mask; print and write a markdown "
        "table of ratios."
    )
    parser.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        default=list(DEFAULT_LENGTHS),
        metavar="SEQ",
        help=f"sequence lengths (default: {' '.join(map(str, DEFAULT_LENGTHS))})",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    parser.add_argument("--heads", type=int, default=8, help="attention heads (default: 8)")
    parser.add_argument("--head-dim", type=int, default=64, help="head dimension (default: 64)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="tensor dtype (default: float32)",
    )
    add_device_options(parser, "attention")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.lengths) < 1 or min(args.batch, args.heads, args.head_dim) < 1:
        parser.error("--repeats, --lengths, --batch, --heads and --head-dim must be positive")
    device = device_from(parser, args)
    dtype = getattr(torch, args.dtype)

    began = time.perf_counter()
    results = {
        (seq_len, is_causal): measure(seq_len, is_causal, args, device, dtype)
        for seq_len in args.lengths
        for is_causal in (False, True)
    }
    text = report(results, device, args, time.perf_counter() - began)
    write_report(text, args.out, "attention", device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
