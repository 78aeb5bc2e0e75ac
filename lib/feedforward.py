"""Position-wise feed-forward networks: the Transformer's two-layer MLP (ReLU / GELU) and LLaMA's
SwiGLU (Shazeer 2020), LLaMA's rule for the hidden size, and GPT-2's GELU, fast on the CPU."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, autograd, nn

ACTIVATIONS = {
    "relu": nn.ReLU,  # the original Transformer
    "gelu": nn.GELU,  # BERT
    "gelu_tanh": lambda: TanhGELU(),  # GPT-2's tanh approximation of GELU (at the end)
    "silu": nn.SiLU,  # ungated; LLaMA uses it as SwiGLU's gate
}


class FeedForward(nn.Module):
    """w2(act(w1 x)), applied to each position alone (Vaswani et al. eq. 2).

    `dropout` acts on the hidden activations (as in The Annotated Transformer); the paper's
    dropout on the sublayer output is applied by the block, around the residual.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is unknown; choose one of {list(ACTIVATIONS)}"
            )
        self.w1 = nn.Linear(d_model, d_ff, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.w2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(self.dropout(self.act(self.w1(x))))  # (..., d_model)


def llama_hidden_dim(
    d_model: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None
) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4 * d_model, times the multiplier, rounded up to multiple_of."""
    # Two thirds keep the parameter count of a 4 * d_model two-matrix MLP with three matrices.
    hidden_dim = int(2 * 4 * d_model / 3)
    if ffn_dim_multiplier is not None:
        hidden_dim = int(ffn_dim_multiplier * hidden_dim)
    return multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x): LLaMA's gated feed-forward network (w1 gate, w3 up, w2 down)."""

    def __init__(
        self,
        d_model: int,
        hidden_dim: int | None = None,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        bias: bool = False,
    ):
        super().__init__()
        if hidden_dim is None:
            hidden_dim = llama_hidden_dim(d_model, multiple_of, ffn_dim_multiplier)
        self.w1 = nn.Linear(d_model, hidden_dim, bias=bias)
        self.w3 = nn.Linear(d_model, hidden_dim, bias=bias)
        self.w2 = nn.Linear(hidden_dim, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (..., d_model)


# ---------------------------------------------------------------------------------------------
# GPT-2's GELU, fast on the CPU. 0.5 (1 + tanh(z)) = sigmoid(2 z), so the tanh approximation
#   0.5 x (1 + tanh(z)),  z = sqrt(2/pi) (x + 0.044715 x^3)      (Hendrycks & Gimpel 2016)
# is x * sigmoid(2 z): the same function, written with a sigmoid. PyTorch's CPU kernel computes
# an accurate tanh, which costs several times an exp; the sigmoid form, forward and backward
# written out below, is faster than F.gelu(approximate="tanh") (benchmarks/gelu.py) and equal
# to it within float32 rounding (tests/test_feedforward.py). It keeps the sigmoid for the
# backward pass, one more saved tensor per layer: worth it on the CPU's small models. In float32
# and float64 only (16-bit floats keep the kernel's float32 arithmetic) and on the CPU only (on
# a GPU F.gelu is one fused kernel).
# ---------------------------------------------------------------------------------------------

_A = 1.5957691216057308  # 2 sqrt(2 / pi), so that 2 z = _A (x + _B x^3)
_B = 0.044715


class _SigmoidGELU(autograd.Function):
    """x * sigmoid(2 z), with its derivative written out; saves x and the sigmoid."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        s = (x * x).mul_(_A * _B).add_(_A).mul_(x).sigmoid_()  # sigmoid(_A (x + _B x^3))
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # d/dx x s = s + x s (1 - s) d(2z)/dx,  where d(2z)/dx = _A (1 + 3 _B x^2)
        x, s = ctx.saved_tensors
        u = (x * x).mul_(3 * _A * _B).add_(_A).mul_(x).mul_(s)  # x s d(2z)/dx
        return u.addcmul_(s, u, value=-1).add_(s).mul_(grad)  # (u (1 - s) + s) grad


class TanhGELU(nn.Module):
    """GELU's tanh approximation (GPT-2's): F.gelu(x, approximate="tanh"), faster on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.is_floating_point() and x.element_size() >= 4:
            return _SigmoidGELU.apply(x)
        return F.gelu(x, approximate="tanh")
