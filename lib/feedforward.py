"""Position-wise feed-forward networks: the Transformer's two-layer MLP (ReLU / GELU) and LLaMA's
SwiGLU (Shazeer 2020), with LLaMA's rule for the hidden size."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU,  # the original Transformer
    "gelu": nn.GELU,  # BERT
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),  # GPT-2's tanh approximation of GELU
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
