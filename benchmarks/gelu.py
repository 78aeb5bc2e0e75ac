"""What the GELU a model computes costs on this machine: forward + backward of each kind.

GPT-2 (and so HF's GPT2LMHeadModel and lib's GPT) uses GELU's tanh approximation; nanoGPT's
`model.py` uses the exact GELU (with erf), another function. This times lib's TanhGELU (the
tanh form through the sigmoid, what lib's GPT runs on the CPU), PyTorch's kernel for each
function, and transformers' NewGELUActivation (the tanh form written out), on one feed-forward
activation of the tiny throughput config (batch 12 x 64 tokens, 4 x 128 = 512 wide).

    python benchmarks/gelu.py          # CPU, 2 threads: results/gelu_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from common import ROOT, cpu_name, interleaved_medians
from torch.nn import functional as F
from transformers.activations import NewGELUActivation

from lib.feedforward import TanhGELU

LIB = "tanh approximation, through the sigmoid (lib's TanhGELU, GPT-2)"
KINDS = {
    LIB: TanhGELU(),
    "tanh approximation, F.gelu (PyTorch's kernel)": lambda x: F.gelu(x, approximate="tanh"),
    "tanh approximation, written out (HF)": NewGELUActivation(),
    "exact, F.gelu (nanoGPT)": F.gelu,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gelu_cpu.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(12 * 64, 512, requires_grad=True)
    grad = torch.randn_like(x)
    steps = {name: (lambda f=f: f(x).backward(grad)) for name, f in KINDS.items()}
    seconds = interleaved_medians(steps, args.repeats, torch.device("cpu"), warmup=5, inner=50)
    base = seconds[LIB]
    report = {
        "what": "microseconds of forward + backward of one GELU on a (768, 512) float32 tensor",
        "device": f"cpu: {cpu_name()}, 2 threads",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "microseconds": {name: round(s * 1e6, 1) for name, s in seconds.items()},
        "over_lib": {name: round(base / s, 3) for name, s in seconds.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out != "-":
        with open(args.out, "w") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()
