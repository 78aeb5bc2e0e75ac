"""LayerNorm vs RMSNorm, forward + backward, side by side: PyTorch's modules and lib's.

Four implementations normalise the same input x of shape (batch, seq, d_model):

    torch LayerNorm   torch.nn.LayerNorm: one fused ATen kernel forward, one backward
    torch RMSNorm     torch.nn.RMSNorm: fused where PyTorch has a kernel for the device,
                      otherwise composed of elementwise ops and a reduction
    lib LayerNorm     lib.norm.LayerNorm: written from the definition (mean, variance, rsqrt)
    lib RMSNorm       lib.norm.RMSNorm: written from the definition (mean of squares, rsqrt)

Each timed call runs the forward pass and the backward pass (input and weight gradients).
The implementations are interleaved within every repeat, so a noisy neighbour slows them all
alike; the table reports the median over repeats as a ratio to torch LayerNorm.

    python benchmarks/norms.py                 # CPU, writes benchmarks/results/norms_cpu.md
    python benchmarks/norms.py --device cuda   # writes benchmarks/results/norms_cuda.md
    python benchmarks/norms.py --shapes 8x128x768 --repeats 5 --out -   # quick, print only
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from common import (
    add_device_options,
    device_from,
    interleaved_medians,
    report_header,
    rerun_command,
    write_report,
)
from torch import nn

from lib.norm import LayerNorm, RMSNorm

DEFAULT_SHAPES = ("1x128x768", "8x128x768", "8x384x2048")
NAMES = ("torch LayerNorm", "torch RMSNorm", "lib LayerNorm", "lib RMSNorm")


def parse_shape(text: str) -> tuple[int, int, int]:
    """'8x128x768' -> (batch, seq, d_model)."""
    try:
        batch, seq, d_model = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape {text!r} is not BATCHxSEQxD_MODEL, e.g. 8x128x768"
        ) from None
    if min(batch, seq, d_model) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs positive sizes")
    return batch, seq, d_model


def make_norms(d_model: int, device: torch.device) -> dict[str, nn.Module]:
    """The four implementations, with the same random gain (and zero bias for LayerNorm)."""
    gain = torch.rand(d_model) + 0.5
    norms = {
        "torch LayerNorm": nn.LayerNorm(d_model, eps=1e-5),
        "torch RMSNorm": nn.RMSNorm(d_model, eps=1e-5),
        "lib LayerNorm": LayerNorm(d_model, eps=1e-5),
        "lib RMSNorm": RMSNorm(d_model, eps=1e-5),
    }
    with torch.no_grad():
        for norm in norms.values():
            norm.weight.copy_(gain)
    return {name: norm.to(device) for name, norm in norms.items()}


def check_agreement(norms: dict[str, nn.Module], x: torch.Tensor) -> None:
    """Fail loudly if lib and torch disagree: a fast wrong answer is not a result."""
    for kind in ("LayerNorm", "RMSNorm"):
        ref, ours = norms[f"torch {kind}"](x), norms[f"lib {kind}"](x)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def is_fused(norm: nn.Module, x: torch.Tensor) -> bool:
    """Whether autograd sees one native norm op (fused) rather than a chain of small ops."""
    grad_fn = norm(x.detach().requires_grad_()).grad_fn
    return grad_fn is not None and "Norm" in type(grad_fn).__name__


def step_fn(norm: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """One forward + backward pass; the weight gradient is reset so it never accumulates."""

    def step() -> None:
        norm.zero_grad(set_to_none=True)
        x.grad = None
        norm(x).backward(grad)

    return step


def measure(
    shape: tuple[int, int, int], repeats: int, inner: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per forward + backward of each implementation, interleaved."""
    torch.manual_seed(0)
    batch, seq, d_model = shape
    x = (torch.randn(batch, seq, d_model) * 2 + 0.5).to(device).requires_grad_()
    grad = torch.randn(batch, seq, d_model).to(device)
    norms = make_norms(d_model, device)
    check_agreement(norms, x)
    steps = {name: step_fn(norm, x, grad) for name, norm in norms.items()}
    return interleaved_medians(steps, repeats, device, warmup=max(inner // 2, 1), inner=inner)


def table(results: dict[tuple[int, int, int], dict[str, float]]) -> str:
    """A markdown table: the baseline's time, then every implementation as a ratio to it."""
    head = "| x (batch, seq, d_model) | torch LayerNorm, ms | " + " | ".join(NAMES) + " |"
    rule = "|---|---:|" + "---:|" * len(NAMES)
    rows = [head, rule]
    for (batch, seq, d_model), t in results.items():
        base = t["torch LayerNorm"]
        ratios = " | ".join(f"{t[name] / base:.2f}" for name in NAMES)
        rows.append(f"| {batch} × {seq} × {d_model} | {base * 1e3:.3f} | {ratios} |")
    return "\n".join(rows)


def report(results, device: torch.device, repeats: int, inner: int, fused: dict) -> str:
    """The results file: what ran where, the table, and how to read it."""
    fused_text = ", ".join(f"{name}: {'fused' if f else 'composite'}" for name, f in fused.items())
    return (
        f"# LayerNorm vs RMSNorm, forward + backward ({device.type})\n\n"
        f"{report_header(device)}\n"
        f"- median of {repeats} interleaved repeats of {inner} calls each\n"
        f"- kernels as autograd sees them: {fused_text}\n\n"
        "Ratios are times relative to `torch.nn.LayerNorm` (lower is faster; 2.00 = half as "
        "fast).\n\n"
        f"{table(results)}\n\n"
        f"Command: `{rerun_command('norms', device)}`\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time LayerNorm and RMSNorm (torch.nn and lib.norm), forward + backward, "
        "and write a markdown table of ratios to torch.nn.LayerNorm."
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        default=[parse_shape(s) for s in DEFAULT_SHAPES],
        metavar="BxSxD",
        help=f"input shapes batch x seq x d_model (default: {' '.join(DEFAULT_SHAPES)})",
    )
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats (median)")
    parser.add_argument("--inner", type=int, default=10, help="calls per timed repeat")
    add_device_options(parser, "norms")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.inner < 1:
        parser.error("--repeats and --inner must be at least 1")
    device = device_from(parser, args)

    d_probe = args.shapes[0][2]
    probe = torch.randn(2, d_probe, device=device)
    fused = {name: is_fused(n, probe) for name, n in make_norms(d_probe, device).items()}
    results = {s: measure(s, args.repeats, args.inner, device) for s in args.shapes}
    text = report(results, device, args.repeats, args.inner, fused)
    write_report(text, args.out, "norms", device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
