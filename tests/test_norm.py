import pytest
import torch
from torch import nn

from lib.norm import LayerNorm, RMSNorm


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_same_values_and_grads(ours: nn.Module, ref: nn.Module, shape: tuple[int, ...]) -> None:
    """Same outputs, input gradients and parameter gradients for a random input and loss."""
    with torch.no_grad():  # non-trivial affine parameters, the same in both
        for p_ours, p_ref in zip(ours.parameters(), ref.parameters(), strict=True):
            p_ref.copy_(torch.randn_like(p_ref))
            p_ours.copy_(p_ref)
    x = (torch.randn(shape) * 3 + 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = ours(x), ref(x_ref)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    out_ref.backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    for p_ours, p_ref in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p_ours.grad, p_ref.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_equals_torch(bias):
    ours, ref = LayerNorm(7, eps=1e-5, bias=bias), nn.LayerNorm(7, eps=1e-5, bias=bias)
    assert len(list(ours.parameters())) == (2 if bias else 1)
    assert_same_values_and_grads(ours, ref, (3, 5, 7))


def test_rmsnorm_equals_torch():
    assert_same_values_and_grads(RMSNorm(7, eps=1e-6), nn.RMSNorm(7, eps=1e-6), (3, 5, 7))


def test_definitions():
    x = torch.randn(4, 9) * 5 + 2
    y = LayerNorm(9)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    z = RMSNorm(9)(x)
    torch.testing.assert_close(z.pow(2).mean(-1), torch.ones(4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", [LayerNorm(64), RMSNorm(64)])
def test_bfloat16_module_returns_bfloat16_close_to_float32(norm):
    x = torch.randn(2, 64) * 100 + 1000
    out = norm.to(torch.bfloat16)(x.bfloat16())
    assert out.dtype == torch.bfloat16
    expected = norm.float()(x.bfloat16().float())
    torch.testing.assert_close(out.float(), expected, atol=0.02, rtol=0.01)


def test_blocks_and_models_run_pytorchs_norm_modules():
    """The fast path by default: lib.norm's layers, written from the definitions, are the
    references the fused modules are tested against above; the models use PyTorch's."""
    from lib.blocks import make_norm
    from lib.models.gpt import GPT, GPTConfig
    from lib.models.transformer import Transformer, TransformerConfig

    assert type(make_norm("rmsnorm", 8, 1e-6, bias=False)) is nn.RMSNorm
    gpt = GPT(GPTConfig(vocab_size=11, max_seq_len=8, d_model=16, n_layers=2, n_heads=2))
    small = dict(d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32)
    transformer = Transformer(TransformerConfig(20, 20, 8, norm_first=True, **small))
    for model in (gpt, transformer):
        norms = [m for m in model.modules() if "Norm" in type(m).__name__]
        assert norms and all(type(m) is nn.LayerNorm for m in norms), {type(m) for m in norms}
