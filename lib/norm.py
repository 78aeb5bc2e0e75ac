"""Normalisation layers written from their definitions: LayerNorm (Ba et al. 2016), RMSNorm
(Zhang & Sennrich 2019). Tested against torch.nn.LayerNorm and torch.nn.RMSNorm."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """Normalise each feature vector to zero mean and unit variance, then scale and shift."""

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        # Statistics in float32: in bf16/fp16 the variance of wide vectors loses too many digits.
        x32 = x.float()
        mean = x32.mean(dim=-1, keepdim=True)  # (..., 1)
        var = x32.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1), the biased variance
        y = ((x32 - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)
        y = y * self.weight
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """Divide each feature vector by its root mean square, then scale; no centring, no bias."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()  # float32 statistics, as in LLaMA's reference code
        rms_inv = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return (x32 * rms_inv).to(x.dtype) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
