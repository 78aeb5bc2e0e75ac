"""Print the environment of make test's second numerics profile for this CPU, as `NAME=value` words.

Strict nbval runs every notebook twice: natively, then under these settings, which make PyTorch
take other kernels on the same machine, so a saved output or an assert that depends on one CPU's
last bits fails here rather than on a reader's laptop. `benchmarks/numerics_profiles.py`
measures what each setting changes; `book/setup.md` explains the choice:

- ATen's vectorised kernels one instruction set below the native one (AVX512 -> AVX2, else the
  portable default), as on a CPU of another generation;
- MKL's conditional-numerical-reproducibility path `COMPATIBLE`, which changes matmul bits;
- one thread, which splits large reductions differently.
"""

import torch

native = torch.backends.cpu.get_cpu_capability()
aten = "avx2" if native.startswith("AVX512") else "default"
print(f"ATEN_CPU_CAPABILITY={aten} MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1")
