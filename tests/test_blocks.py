import pytest
import torch

from lib.attention import KVCache, causal_mask, padding_mask
from lib.blocks import DecoderBlock, EncoderBlock
from lib.rope import RotaryEmbedding

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def additive(mask: torch.Tensor) -> torch.Tensor:
    """A boolean may-attend mask as the additive float mask HF layers take."""
    return torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)


def hidden(output) -> torch.Tensor:
    """The hidden states of an HF layer (transformers 4.x returns a tuple, 5.x the tensor)."""
    return output[0] if isinstance(output, tuple) else output


def load(block: torch.nn.Module, hf_state: dict, names: dict, transposed: tuple = ()) -> None:
    """Load HF tensors into `block`: names maps our parameter names to HF's."""
    state = {}
    for ours, theirs in names.items():
        tensor = hf_state[theirs]
        state[ours] = tensor.T if theirs in transposed else tensor
    block.load_state_dict(state)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("norm, ffn", [("layernorm", "relu"), ("rmsnorm", "swiglu")])
def test_output_shapes_for_odd_sizes(norm_first, norm, ffn):
    x, context = torch.randn(3, 7, 15), torch.randn(3, 5, 15)
    kw = dict(norm_first=norm_first, norm=norm, ffn=ffn, n_kv_heads=1)
    assert EncoderBlock(15, 3, 17, **kw)(x, mask=padding_mask([7, 3, 1], 7)).shape == (3, 7, 15)
    decoder = DecoderBlock(15, 3, 17, cross_attention=True, **kw)
    assert decoder(x, context, context_mask=padding_mask([5, 2, 4], 5)).shape == (3, 7, 15)
    assert DecoderBlock(15, 3, 17, cross_attention=False, **kw)(x).shape == (3, 7, 15)


def test_pre_norm_and_post_norm_differ():
    pre, post = EncoderBlock(8, 2, 16, norm_first=True), EncoderBlock(8, 2, 16, norm_first=False)
    post.load_state_dict(pre.state_dict())  # the same weights, wired differently
    x = torch.randn(2, 5, 8)
    assert not torch.allclose(pre(x), post(x))
    # Post-norm ends with a LayerNorm (unit weight, zero bias): each output vector is normalised.
    torch.testing.assert_close(post(x).mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_encoder_is_bidirectional_and_decoder_is_causal():
    encoder, decoder = EncoderBlock(8, 2, 16), DecoderBlock(8, 2, 16, cross_attention=False)
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 8)  # change the tokens after position 3
    torch.testing.assert_close(decoder(changed)[:, :4], decoder(x)[:, :4], atol=0, rtol=0)
    assert not torch.allclose(decoder(changed)[:, 4:], decoder(x)[:, 4:])
    assert not torch.allclose(encoder(changed)[:, :4], encoder(x)[:, :4])


def test_cross_attention_uses_the_context():
    decoder = DecoderBlock(8, 2, 16, cross_attention=True)
    x, context = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    out = decoder(x, context)
    assert not torch.allclose(decoder(x, torch.randn(2, 5, 8)), out)
    # Padded context positions are ignored.
    pad = padding_mask([5, 3], 5)
    changed = context.clone()
    changed[1, 3:] = torch.randn(2, 8)
    torch.testing.assert_close(
        decoder(x, changed, context_mask=pad), decoder(x, context, context_mask=pad), atol=0, rtol=0
    )
    with pytest.raises(ValueError, match="cross_attention=True needs a context"):
        decoder(x)
    with pytest.raises(ValueError, match="match context to the block"):
        DecoderBlock(8, 2, 16, cross_attention=False)(x, context)


def test_llama_style_block_with_kv_cache_equals_full_sequence():
    rope = RotaryEmbedding(4, 16)
    kw = dict(norm="rmsnorm", ffn="swiglu", n_kv_heads=2, bias=False, rope=rope)
    block = DecoderBlock(16, 4, 24, cross_attention=False, **kw).eval()
    x = torch.randn(2, 6, 16)
    cache = KVCache(2, 16, n_kv_heads=2, head_dim=4)
    steps = [block(x[:, :2], kv_cache=cache)]
    steps += [block(x[:, p : p + 1], kv_cache=cache, start_pos=p) for p in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), block(x), atol=ATOL, rtol=0)


def test_unknown_norm_or_ffn():
    with pytest.raises(ValueError, match="norm='batchnorm' is unknown; choose one of"):
        EncoderBlock(8, 2, 16, norm="batchnorm")
    with pytest.raises(ValueError, match="ffn='geglu' is unknown; choose one of"):
        DecoderBlock(8, 2, 16, ffn="geglu")


# --- the blocks of GPT-2, LLaMA and BERT, against transformers -------------------------------


def test_decoder_block_is_a_gpt2_block():
    transformers = pytest.importorskip("transformers")
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    config = transformers.GPT2Config(n_embd=32, n_head=4, attn_implementation="eager")
    hf = GPT2Block(config).eval()
    block = DecoderBlock(32, 4, 128, cross_attention=False, ffn="gelu_tanh").eval()
    hf_state = hf.state_dict()
    # GPT-2 fuses q, k, v into c_attn, and its Conv1D stores weights as (in, out).
    for i, name in enumerate(["q", "k", "v"]):
        hf_state[f"{name}.weight"] = hf_state["attn.c_attn.weight"].T.chunk(3)[i]
        hf_state[f"{name}.bias"] = hf_state["attn.c_attn.bias"].chunk(3)[i]
    names = {f"self_attn.{n}_proj.{p}": f"{n}.{p}" for n in "qkv" for p in ("weight", "bias")}
    names |= {
        "self_attn_norm.weight": "ln_1.weight",
        "self_attn_norm.bias": "ln_1.bias",
        "self_attn.o_proj.weight": "attn.c_proj.weight",
        "self_attn.o_proj.bias": "attn.c_proj.bias",
        "ffn_norm.weight": "ln_2.weight",
        "ffn_norm.bias": "ln_2.bias",
        "ffn.w1.weight": "mlp.c_fc.weight",
        "ffn.w1.bias": "mlp.c_fc.bias",
        "ffn.w2.weight": "mlp.c_proj.weight",
        "ffn.w2.bias": "mlp.c_proj.bias",
    }
    conv1d = ("attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    load(block, hf_state, names, transposed=conv1d)
    x = torch.randn(2, 7, 32)
    expected = hidden(hf(x, attention_mask=additive(causal_mask(7))))
    torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=0)


def test_decoder_block_is_a_llama_decoder_layer():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = transformers.LlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        max_position_embeddings=16,
        rms_norm_eps=1e-6,
        attn_implementation="eager",
    )
    hf = LlamaDecoderLayer(config, layer_idx=0).eval()
    block = DecoderBlock(
        32,
        4,
        48,
        cross_attention=False,
        norm="rmsnorm",
        ffn="swiglu",
        n_kv_heads=2,
        bias=False,
        rope=RotaryEmbedding(8, 16),
        norm_eps=1e-6,
    ).eval()
    names = {f"self_attn.{n}_proj.weight": f"self_attn.{n}_proj.weight" for n in "qkvo"}
    names |= {
        "self_attn_norm.weight": "input_layernorm.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
        "ffn.w1.weight": "mlp.gate_proj.weight",
        "ffn.w3.weight": "mlp.up_proj.weight",
        "ffn.w2.weight": "mlp.down_proj.weight",
    }
    load(block, hf.state_dict(), names)
    x = torch.randn(2, 7, 32)
    position_embeddings = LlamaRotaryEmbedding(config)(x, torch.arange(7)[None])
    expected = hidden(
        hf(x, attention_mask=additive(causal_mask(7)), position_embeddings=position_embeddings)
    )
    torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=0)


def test_encoder_block_is_a_bert_layer():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertLayer

    config = transformers.BertConfig(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, attn_implementation="eager"
    )
    hf = BertLayer(config).eval()
    block = EncoderBlock(32, 4, 64, norm_first=False, ffn="gelu", norm_eps=1e-12).eval()
    names = {}
    for ours, theirs in [
        ("self_attn.q_proj", "attention.self.query"),
        ("self_attn.k_proj", "attention.self.key"),
        ("self_attn.v_proj", "attention.self.value"),
        ("self_attn.o_proj", "attention.output.dense"),
        ("self_attn_norm", "attention.output.LayerNorm"),
        ("ffn.w1", "intermediate.dense"),
        ("ffn.w2", "output.dense"),
        ("ffn_norm", "output.LayerNorm"),
    ]:
        names |= {f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"}
    load(block, hf.state_dict(), names)
    x = torch.randn(2, 7, 32)
    mask = padding_mask([7, 4], 7)
    expected = hidden(hf(x, attention_mask=additive(mask)))
    torch.testing.assert_close(block(x, mask=mask), expected, atol=ATOL, rtol=0)
