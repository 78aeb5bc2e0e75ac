import pytest
import torch
import torch.nn.functional as F

from lib.feedforward import FeedForward, SwiGLU, TanhGELU, llama_hidden_dim


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "d_model, multiple_of, ffn_dim_multiplier, expected",
    [
        (4096, 256, None, 11008),  # LLaMA-7B
        (5120, 256, None, 13824),  # LLaMA-13B
        (8192, 4096, 1.3, 28672),  # Llama-2-70B
    ],
)
def test_llama_hidden_dim(d_model, multiple_of, ffn_dim_multiplier, expected):
    assert llama_hidden_dim(d_model, multiple_of, ffn_dim_multiplier) == expected


@pytest.mark.parametrize(
    "activation, act",
    [
        ("relu", F.relu),
        ("gelu", F.gelu),
        ("gelu_tanh", lambda h: F.gelu(h, approximate="tanh")),
    ],
)
def test_feedforward_activations_match_torch(activation, act):
    ffn = FeedForward(6, 11, activation=activation)
    x = torch.randn(3, 5, 6)
    expected = F.linear(act(F.linear(x, ffn.w1.weight, ffn.w1.bias)), ffn.w2.weight, ffn.w2.bias)
    out = ffn(x)
    assert out.shape == (3, 5, 6)
    # gelu_tanh runs TanhGELU: the same function as PyTorch's kernel, computed another way,
    # so equal within float32 rounding (a few ulps), not bit for bit.
    exact = activation != "gelu_tanh"
    torch.testing.assert_close(out, expected, atol=0 if exact else 1e-6, rtol=0 if exact else 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_tanh_gelu_equals_pytorchs_kernel_in_value_and_gradient(dtype):
    """TanhGELU (through the sigmoid on the CPU) against F.gelu(approximate="tanh"), including
    the tails where tanh saturates, and its hand-written backward against autograd's."""
    x = torch.cat([torch.randn(4000), torch.linspace(-12, 12, 1001)]).to(dtype).requires_grad_()
    grad = torch.randn_like(x)
    ours = TanhGELU()(x)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    theirs = F.gelu(x, approximate="tanh")
    (theirs_grad,) = torch.autograd.grad(theirs, x, grad)
    # float32: a few ulps of the result (measured 4.8e-7 absolute on values up to 12);
    # float64 agrees to 1e-12; bfloat16 takes PyTorch's kernel itself, so is exact.
    tol = {torch.float32: 2e-6, torch.float64: 1e-12, torch.bfloat16: 0.0}[dtype]
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)
    torch.testing.assert_close(ours_grad, theirs_grad, atol=tol * 4, rtol=tol * 4)
    x64 = torch.randn(50, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(TanhGELU(), (x64,))  # backward = the finite differences


def test_feedforward_without_bias_and_unknown_activation():
    assert FeedForward(6, 11, bias=False).w1.bias is None
    with pytest.raises(ValueError, match="activation='swish' is unknown; choose one of"):
        FeedForward(6, 11, activation="swish")


def test_swiglu_formula_and_default_width():
    swiglu = SwiGLU(10, multiple_of=8)
    assert swiglu.w1.out_features == llama_hidden_dim(10, 8) == 32  # int(80 / 3) = 26 -> 32
    assert swiglu.w1.bias is None
    x = torch.randn(3, 5, 10)
    expected = swiglu.w2(F.silu(swiglu.w1(x)) * swiglu.w3(x))
    torch.testing.assert_close(swiglu(x), expected, atol=0, rtol=0)
    assert SwiGLU(10, hidden_dim=13).w3.out_features == 13


def test_swiglu_matches_hugging_face_llama_mlp():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaMLP

    config = transformers.LlamaConfig(hidden_size=12, num_attention_heads=2, intermediate_size=20)
    mlp = LlamaMLP(config)
    swiglu = SwiGLU(12, hidden_dim=20)
    swiglu.w1.weight.data.copy_(mlp.gate_proj.weight)
    swiglu.w3.weight.data.copy_(mlp.up_proj.weight)
    swiglu.w2.weight.data.copy_(mlp.down_proj.weight)
    x = torch.randn(2, 3, 12)
    torch.testing.assert_close(swiglu(x), mlp(x), atol=1e-6, rtol=0)
