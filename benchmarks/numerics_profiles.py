"""Which environment settings make PyTorch take other CPU kernels, and how far results move.

The book's saved outputs must hold on any CPU, so `make test` re-runs every notebook under a
second *numerics profile*: settings that send PyTorch down other code paths on the same
machine. This script measures, for each candidate setting, whether a small GPT's logits, loss and
gradients (and a few single ops) come out bit for bit as natively, and how far they move:

    ATEN_CPU_CAPABILITY   ATen's own vectorised kernels (default, avx2, avx512)
    MKL_CBWR              MKL's code path for matmuls (AVX2, COMPATIBLE, ...)
    ONEDNN_MAX_CPU_ISA    the widest instructions oneDNN may use
    OMP_NUM_THREADS       how reductions are split across threads

Each setting runs in a fresh subprocess (they are read when torch loads), computes the same
tensors from the same seed, and the parent compares them with the native run's.

    python benchmarks/numerics_profiles.py          # writes results/numerics_profiles_cpu.md
    python benchmarks/numerics_profiles.py --out -  # print only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import ROOT, cpu_name

PROFILES = {
    "native": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def compute(out_path: str) -> None:
    """In a subprocess: the tensors to compare, saved with their names."""
    from safetensors.torch import save_file

    from lib.data import lm_batches, load_text
    from lib.models.gpt import GPT, GPTConfig
    from lib.tokenizer import CharTokenizer

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, max_seq_len=64, d_model=128, n_layers=2, n_heads=4)
    config.dropout = 0.0
    model = GPT(config)
    ids = torch.randint(65, (8, 64), generator=torch.Generator().manual_seed(1))
    logits = model(ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    gradients = torch.cat([p.grad.flatten() for p in model.parameters()])
    # 100 AdamW steps on Tiny Shakespeare: do last-bit differences grow as a model trains?
    text = load_text("tinyshakespeare")[:200_000]
    tokenizer = CharTokenizer.from_text(text)
    batches = lm_batches(torch.tensor(tokenizer.encode(text)), 8, 64, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(100):
        x, y = batches(step)
        optimizer.zero_grad()
        lm_loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        lm_loss.backward()
        optimizer.step()
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(2))
    tensors = {
        "gpt logits": logits.detach(),
        "gpt loss": loss.detach().reshape(1),
        "gpt gradients": gradients,
        "loss after 100 steps": lm_loss.detach().reshape(1),
        "weights after 100 steps": torch.cat([p.detach().flatten() for p in model.parameters()]),
        "matmul 256x256": a @ a.T,
        "softmax": torch.softmax(a, dim=-1),
        "layer_norm": torch.nn.functional.layer_norm(a, (256,)),
        "exp": a.exp(),
        "sum of 1M": torch.randn(1_000_000, generator=torch.Generator().manual_seed(3)).sum()[None],
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_path)
    capability = torch.backends.cpu.get_cpu_capability()
    print(json.dumps({"capability": capability}))


def second_profile() -> dict[str, str]:
    """The settings of make test's second nbval pass on this CPU (tests/numerics_profile.py)."""
    script = ROOT / "tests" / "numerics_profile.py"
    words = subprocess.run([sys.executable, script], capture_output=True, text=True, check=True)
    return dict(word.split("=", 1) for word in words.stdout.split())


def run_profile(settings: dict[str, str], folder: Path, name: str) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    path = folder / f"{len(list(folder.iterdir()))}.safetensors"
    env = {**os.environ, **settings}
    command = [sys.executable, __file__, "--compute", str(path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return load_file(path), json.loads(result.stdout.strip().splitlines()[-1])


def compare(native: dict, other: dict) -> str:
    """'same' when bit-identical, else how many elements moved and the largest move."""
    moved = []
    for key, ref in native.items():
        diff = (other[key] - ref).abs()
        if diff.max() > 0:
            fraction = (diff > 0).float().mean().item()
            moved.append(f"{key} ({fraction:.0%}, max {diff.max().item():.1e})")
    return "bit-identical" if not moved else "; ".join(moved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/numerics_profiles_cpu.md"))
    parser.add_argument("--compute", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compute:
        compute(args.compute)
        return
    lines = [
        "# Numerics profiles on this CPU",
        "",
        f"`python benchmarks/numerics_profiles.py` on {cpu_name()}"
        f", torch {torch.__version__}, {os.cpu_count()} cores. Each row is one fresh process; "
        "'moved' lists the tensors whose bits differ from the native run (share of elements "
        "changed, largest absolute change). The GPT is 2 layers, 128 wide, on a fixed batch of "
        "8 x 64 tokens; the 100 steps train it with AdamW on Tiny Shakespeare.",
        "",
        "| profile | ATen kernels | what moved |",
        "|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        native, _ = run_profile({}, Path(folder), "native")
        profiles = {**PROFILES, "make test's second pass": second_profile()}
        for name, settings in profiles.items():
            tensors, info = run_profile(settings, Path(folder), name)
            row = f"| {name} | {info['capability']} | {compare(native, tensors)} |"
            lines.append(row)
            print(row, flush=True)
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
