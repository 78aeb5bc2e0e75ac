"""What the benchmark scripts share: timing, naming the hardware, the device options, the report.

Importing this module puts the repository root on sys.path, so a script run as
`python benchmarks/x.py` from any folder, without installing the package, can import `lib`;
a script therefore imports from here before it imports from `lib`. The scripts find this module
because Python puts a script's own folder (benchmarks/) on sys.path.

Conventions: times are in seconds, per call of the timed function; a timed function takes no
arguments (bind them with functools.partial or a closure) and what it returns is ignored;
`device` is the torch.device the work runs on, synchronised around every timing on CUDA.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository root
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA runs asynchronously, the CPU does not."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device, inner: int = 1) -> float:
    """Seconds per call, averaged over `inner` back-to-back calls, synced before and after."""
    sync(device)
    began = time.perf_counter()
    for _ in range(inner):
        fn()
    sync(device)
    return (time.perf_counter() - began) / inner


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    device: torch.device,
    warmup: int = 1,
    inner: int = 1,
) -> dict[str, float]:
    """Median over `repeats` of each function's seconds per call, the functions interleaved.

    Each function is first called `warmup` times untimed (allocator, kernels, caches); then
    every repeat times each function in turn, over `inner` calls, so that a noisy neighbour
    slows them all alike. The order alternates between repeats: none is always first or last.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name in list(fns) if r % 2 == 0 else reversed(list(fns)):
            times[name].append(time_once(fns[name], device, inner))
    return {name: statistics.median(ts) for name, ts in times.items()}


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The CUDA device's name, or the CPU's model name and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def report_header(device: torch.device) -> str:
    """A results file's two lines on where it ran: '- device: ...' and '- torch ..., Python ...'.

    No newline at the end: a script may add to the versions line (a dtype, the date).
    """
    return (
        f"- device: {device_name(device)}\n"
        f"- torch {torch.__version__}, Python {platform.python_version()}"
    )


def add_device_options(parser: argparse.ArgumentParser, stem: str) -> None:
    """--device, --threads and --out, whose default is benchmarks/results/STEM_DEVICE.md."""
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"markdown file to write (default: benchmarks/results/{stem}_DEVICE.md; '-' = none)",
    )


def device_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """The device of --device (a usage error where CUDA is absent), after applying --threads."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but CUDA is not available here")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return device


def rerun_command(stem: str, device: torch.device) -> str:
    """The command that writes benchmarks/STEM.py's default results file on this kind of device."""
    return f"python benchmarks/{stem}.py" + (" --device cuda" if device.type == "cuda" else "")


def write_report(text: str, out: str | None, stem: str, device: torch.device) -> None:
    """Print the report, then write it to `out`: '-' is nowhere, None the default path."""
    print(text, end="")
    if out == "-":
        return
    path = Path(out) if out else ROOT / "benchmarks" / "results" / f"{stem}_{device.type}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path.name
    print(f"\nwrote {shown}")
