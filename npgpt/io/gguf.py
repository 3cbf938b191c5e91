"""GGUF, llama.cpp's model file, as an npgpt model: the tensor names and ``<arch>.*`` keys
mapped to npgpt's parameters and GPTConfig, the load, and the save. The container itself
(header, metadata, tensor table, memory map) is :mod:`npgpt.io.gguf_file`'s; the vocabulary
(``tokenizer.ggml.*``) :mod:`npgpt.io.gguf_tokenizer`'s.

Shapes: C = embedding_length, V = vocabulary, F = feed_forward_length, H = head_count,
Hkv = head_count_kv, D = C / H. Each tensor is dequantised from the map
(:mod:`npgpt.io.gguf_quants`) a million weights at a time, straight into the model's arrays.

Models: ``general.architecture`` ``llama`` (Llama 2/3, SmolLM, TinyLlama, Mistral), ``qwen2``
and ``gpt2``; any other is refused by name. Tensor names::

    token_embd (V, C), output_norm, output (absent: tied to token_embd)
    llama/qwen2: blk.N.{attn_norm, attn_q, attn_k, attn_v (qwen2: + .bias), attn_output,
                 ffn_norm, ffn_gate, ffn_up, ffn_down}
    gpt2:        position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm, ffn_up,
                 ffn_down} (each weight and bias), output_norm.bias

llama.cpp's converter permutes the rows of Llama's q and k projections so that the channels
rotated together are adjacent (pairs (2i, 2i+1)); npgpt loads them as stored and says
``rope_layout="interleaved"``, which computes the same function (:mod:`npgpt.nn.rope`).
Qwen2 is stored unpermuted (``rope_layout="half"``).
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..nn.attention import ATTENTION
from ..nn.gqa import GQA
from ..nn.layers import LAYERNORM, OUTPUT_WEIGHT, POSITION_TABLE, TOKEN_TABLE
from ..nn.mlp import MLP
from ..nn.rmsnorm import RMSNORM
from ..nn.swiglu import SWIGLU
from .build import SHAPE_FIELDS, make_config
from .errors import CheckpointError, short_repr
from .gguf_file import (MAGIC, VERSIONS, TensorInfo, read_gguf_metadata,  # noqa: F401 (re-exported)
                        DEFAULT_ALIGNMENT, STRING, read_gguf, typed_value, write_gguf)
from .gguf_quants import DEQUANTIZERS, dequantize, type_name
from .gguf_tokenizer import WRITABLE_TOKENIZERS, attach_tokenizer, tokenizer_metadata

ARCHITECTURES = ("llama", "qwen2", "gpt2")


# ============================================================================ the model
def _norm(part, place, kind="weight"):
    """A norm's parameter name: ``part.names[place]`` (0, 1: a block's two, 2: the final one)."""
    return f"{part.names[place]}.{kind}"


_LLAMA_LAYER = {"attn_norm.weight": _norm(RMSNORM, 0), "ffn_norm.weight": _norm(RMSNORM, 1),
                "attn_q.weight": GQA.names["q_weight"], "attn_k.weight": GQA.names["k_weight"],
                "attn_v.weight": GQA.names["v_weight"], "attn_q.bias": GQA.names["q_bias"],
                "attn_k.bias": GQA.names["k_bias"], "attn_v.bias": GQA.names["v_bias"],
                "attn_output.weight": GQA.names["out_weight"],
                "ffn_gate.weight": SWIGLU.names["gate_weight"],
                "ffn_up.weight": SWIGLU.names["up_weight"],
                "ffn_down.weight": SWIGLU.names["out_weight"]}
_LLAMA_TOP = {"token_embd.weight": TOKEN_TABLE, "output_norm.weight": _norm(RMSNORM, 2),
              "output.weight": OUTPUT_WEIGHT}
_GPT2_LAYER = {"attn_norm.weight": _norm(LAYERNORM, 0),
               "attn_norm.bias": _norm(LAYERNORM, 0, "bias"),
               "ffn_norm.weight": _norm(LAYERNORM, 1), "ffn_norm.bias": _norm(LAYERNORM, 1, "bias"),
               "attn_qkv.weight": ATTENTION.names["in_weight"],
               "attn_qkv.bias": ATTENTION.names["in_bias"],
               "attn_output.weight": ATTENTION.names["out_weight"],
               "attn_output.bias": ATTENTION.names["out_bias"],
               "ffn_up.weight": MLP.names["fc_weight"], "ffn_up.bias": MLP.names["fc_bias"],
               "ffn_down.weight": MLP.names["out_weight"], "ffn_down.bias": MLP.names["out_bias"]}
_GPT2_TOP = {"token_embd.weight": TOKEN_TABLE, "position_embd.weight": POSITION_TABLE,
             "output_norm.weight": _norm(LAYERNORM, 2),
             "output_norm.bias": _norm(LAYERNORM, 2, "bias"),
             "output.weight": OUTPUT_WEIGHT}
_BLOCK_RE = re.compile(r"^blk\.(\d{1,6})\.(.+)$")


def _names(arch):
    return (_GPT2_LAYER, _GPT2_TOP) if arch == "gpt2" else (_LLAMA_LAYER, _LLAMA_TOP)


def npgpt_name(gguf_name: str, arch: str):
    """npgpt's parameter name for a GGUF tensor name, or None when npgpt has none.

    >>> npgpt_name("blk.3.attn_q.weight", "llama"), npgpt_name("blk.0.attn_qkv.bias", "gpt2")
    ('blocks.3.attn.q_proj.weight', 'blocks.0.attn.in_proj_bias')
    """
    layer, top = _names(arch)
    match = _BLOCK_RE.match(gguf_name)
    if match:
        rest = layer.get(match.group(2))
        return None if rest is None else f"blocks.{int(match.group(1))}.{rest}"
    return top.get(gguf_name)


def gguf_name(name: str, arch: str) -> str:
    """The GGUF tensor name of npgpt's parameter ``name`` (inverse of :func:`npgpt_name`).

    >>> gguf_name("blocks.3.mlp.down.weight", "llama")
    'blk.3.ffn_down.weight'
    """
    layer, top = _names(arch)
    match = re.match(r"^blocks\.(\d+)\.(.+)$", name)
    if match:
        inverse = {ours: theirs for theirs, ours in layer.items()}
        return f"blk.{match.group(1)}.{inverse[match.group(2)]}"
    return {ours: theirs for theirs, ours in top.items()}[name]


def _get(metadata, key, source, kind="int", required=True, default=None):
    """``metadata[key]`` checked to be a positive int (kind="int") or a positive finite
    number (kind="float"), else a CheckpointError naming the key."""
    if key not in metadata:
        if required:
            raise CheckpointError(f"{source}: metadata {key} is missing")
        return default
    value = metadata[key]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > 2 ** 31 - 1:
            raise CheckpointError(f"{source}: metadata {key} must be a positive integer below "
                                  f"2**31, got {short_repr(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e300:
        raise CheckpointError(f"{source}: metadata {key} must be a positive number, got "
                              f"{short_repr(value)}")
    return float(value)


def _rope_scaling(metadata, arch, source):
    kind = metadata.get(f"{arch}.rope.scaling.type", "none")
    if not isinstance(kind, str):
        raise CheckpointError(f"{source}: metadata {arch}.rope.scaling.type must be a string, "
                              f"got {short_repr(kind)}")
    factor = metadata.get(f"{arch}.rope.scaling.factor")
    if kind == "none" or (kind == "linear" and isinstance(factor, (int, float)) and factor == 1):
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": _get(metadata, f"{arch}.rope.scaling.factor",
                                                      source, "float")}
    raise CheckpointError(f"{source}: metadata {arch}.rope.scaling.type={short_repr(kind)} is "
                          f"not supported (npgpt reads 'none' and 'linear')")


def config_fields_from_gguf(metadata: dict, tensors: dict, source: str = "GGUF") -> dict:
    """GPTConfig fields from a GGUF file's metadata (``<arch>.*`` keys) and tensor shapes.

    The vocabulary size is the token table's row count; ``output.weight`` absent means tied
    embeddings; Llama's q/k rows are interleaved (see the module doc). Refused, naming the
    key: another architecture, ``rope.dimension_count`` other than the head size (npgpt
    rotates whole heads), a rope scaling other than none/linear, Llama 3.1's
    ``rope_freqs`` factors.

    >>> meta = {"general.architecture": "llama", "llama.embedding_length": 64,
    ...         "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
    ...         "llama.context_length": 128, "llama.block_count": 2,
    ...         "llama.feed_forward_length": 96, "llama.attention.layer_norm_rms_epsilon": 1e-5}
    >>> fields = config_fields_from_gguf(meta, {"token_embd.weight": TensorInfo(
    ...     "token_embd.weight", (100, 64), 0, 0, 25600)})
    >>> fields["vocab_size"], fields["num_kv_heads"], fields["rope_layout"], fields["tie_embeddings"]
    (100, 2, 'interleaved', True)
    """
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise CheckpointError(f"{source}: general.architecture {short_repr(arch)} is not "
                              f"supported; npgpt reads {list(ARCHITECTURES)}")
    embd = tensors.get("token_embd.weight")
    if embd is None or len(embd.shape) != 2:
        raise CheckpointError(f"{source}: tensor token_embd.weight is missing or not 2-D")
    V, C = embd.shape
    if _get(metadata, f"{arch}.embedding_length", source) != C:
        raise CheckpointError(f"{source}: metadata {arch}.embedding_length="
                              f"{metadata[f'{arch}.embedding_length']} but token_embd.weight "
                              f"is {C} wide")
    vocab = _get(metadata, f"{arch}.vocab_size", source, required=False, default=V)
    if vocab != V:
        raise CheckpointError(f"{source}: metadata {arch}.vocab_size={vocab} but "
                              f"token_embd.weight has {V} rows")
    H = _get(metadata, f"{arch}.attention.head_count", source)
    fields = dict(vocab_size=V, d_model=C, num_heads=H,
                  context_length=_get(metadata, f"{arch}.context_length", source),
                  num_layers=_get(metadata, f"{arch}.block_count", source),
                  tie_embeddings="output.weight" not in tensors, output_bias=False, dropout=0.0,
                  residual="pre_norm")
    F = _get(metadata, f"{arch}.feed_forward_length", source)
    if arch == "gpt2":
        fields.update(gelu="tanh", layer_norm_eps=_get(
            metadata, "gpt2.attention.layer_norm_epsilon", source, "float"))
        if F != 4 * C:
            raise CheckpointError(f"{source}: metadata gpt2.feed_forward_length={F} is not "
                                  f"4 x embedding_length={4 * C} (npgpt's GPT-2 block)")
        return fields
    kv = _get(metadata, f"{arch}.attention.head_count_kv", source, required=False, default=H)
    head_dim = _get(metadata, f"{arch}.attention.key_length", source, required=False,
                    default=C // H)
    rot = _get(metadata, f"{arch}.rope.dimension_count", source, required=False,
               default=head_dim)
    if rot != head_dim:
        raise CheckpointError(f"{source}: metadata {arch}.rope.dimension_count={rot} differs "
                              f"from the head size {head_dim}; npgpt rotates whole heads")
    if "rope_freqs.weight" in tensors:
        raise CheckpointError(f"{source}: tensor rope_freqs.weight (Llama 3.1 frequency "
                              f"factors) is not supported")
    fields.update(norm="rmsnorm", positions="rope", mlp="swiglu", gelu="exact",
                  num_kv_heads=None if kv == H else kv,
                  head_dim=None if head_dim == C // H else head_dim,
                  ffn_dim=None if F == 4 * C else F, attention_bias=arch == "qwen2",
                  rope_layout="interleaved" if arch == "llama" else "half",
                  layer_norm_eps=_get(metadata, f"{arch}.attention.layer_norm_rms_epsilon",
                                      source, "float"),
                  rope_theta=_get(metadata, f"{arch}.rope.freq_base", source, "float",
                                  required=False, default=10000.0),
                  rope_scaling=_rope_scaling(metadata, arch, source))
    return fields


def _dequantized(info, data, order, source):
    """Tensor ``info`` as float32 in ``order`` ("C" or "F"), checked to be finite."""
    if info.type not in DEQUANTIZERS:
        supported = ", ".join(name for name, *_ in DEQUANTIZERS.values())
        raise CheckpointError(f"{source}: tensor {short_repr(info.name)} has type "
                              f"{type_name(info.type)}, which npgpt does not read "
                              f"(supported: {supported})")
    out = np.empty(info.shape, np.float32, order=order)
    raw = data[info.offset:info.offset + info.nbytes]
    with np.errstate(invalid="ignore", over="ignore"):
        dequantize(raw, info.type, info.shape, out=out)
    if not np.isfinite(out).all():
        raise CheckpointError(f"{source}: tensor {short_repr(info.name)} holds inf or NaN "
                              f"weights (an infinite or NaN scale)")
    return out




def load_gguf(path, **config_overrides):
    """An npgpt model from a GGUF file (``npgpt.load`` calls this for files starting ``GGUF``).

    Every tensor is dequantised to float32 from the memory-mapped file straight into the
    model's array (in the memory order the model keeps it), so loading peaks near the
    float32 model's size plus the mapped file. ``config_overrides`` may change fields the
    weights do not fix (e.g. a rotary model's ``context_length``, ``layer_norm_eps``).

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                       output_bias=False, num_kv_heads=1)
    >>> model = npgpt.GPT(cfg, seed=0)
    >>> save_gguf(model, "tiny-llama.gguf")
    >>> back = npgpt.load("tiny-llama.gguf")
    >>> back.config.rope_layout, bool(np.allclose(back([1, 2, 3]), model([1, 2, 3]), atol=1e-5))
    ('interleaved', True)
    """
    from ..config import GPTConfig
    from ..model import GPT, block_parameter_shapes, column_major, parameter_shapes, stack_groups
    source = os.fspath(path)
    metadata, infos, data = read_gguf(path)
    fields = config_fields_from_gguf(metadata, infos, source)
    arch = metadata["general.architecture"]
    fixed = [f for f in SHAPE_FIELDS if arch == "gpt2" or f != "context_length"]
    config = make_config(fields, config_overrides, source, fixed)
    per_block = len(block_parameter_shapes(config, 0))
    if per_block * config.num_layers > len(infos):       # before building a huge name table
        raise CheckpointError(f"{source}: metadata {arch}.block_count={config.num_layers} but "
                              f"the file holds only {len(infos)} tensors")
    expected = parameter_shapes(config)
    names = {}
    for name in infos:
        ours = npgpt_name(name, arch)
        if ours is None or ours not in expected:
            raise CheckpointError(f"{source}: tensor {short_repr(name)} has no place in a "
                                  f"{arch} model of this config")
        names[ours] = name
    missing = [gguf_name(n, arch) for n in expected if n not in names]
    if missing:
        raise CheckpointError(f"{source}: missing tensor(s) {short_repr(missing[:5])}")
    for ours, name in names.items():
        if infos[name].shape != tuple(expected[ours]):
            raise CheckpointError(f"{source}: tensor {short_repr(name)} has shape "
                                  f"{infos[name].shape}, the config needs {tuple(expected[ours])}")
    params = {ours: _dequantized(infos[names[ours]], data, "F" if column_major(ours, config)
                                 else "C", source) for ours in expected}
    params = stack_groups(params, config)            # q, k, v (gate, up) side by side
    stub = GPTConfig(vocab_size=1, context_length=1, d_model=1, num_heads=1, num_layers=1)
    model = GPT(stub)                    # a few numbers; replaced wholesale below
    model.config, model.params = config, params
    model.gguf_tokenizer = {k: v for k, v in metadata.items() if k.startswith("tokenizer.")}
    attach_tokenizer(model, metadata, source)
    return model




# ============================================================================ writing
_FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}        # general.file_type (llama_ftype)


def _architecture(config) -> str:
    """"gpt2", "llama" or "qwen2" for a config GGUF can express, else a ValueError."""
    gpt2 = dict(norm="layernorm", positions="learned", mlp="gelu", residual="pre_norm",
                gelu="tanh", output_bias=False)
    llama = dict(norm="rmsnorm", positions="rope", mlp="swiglu", residual="pre_norm",
                 output_bias=False)
    wanted = gpt2 if config.norm == "layernorm" else llama
    for field, value in wanted.items():
        if getattr(config, field) != value:
            raise ValueError(f"GGUF cannot express {field}={getattr(config, field)!r} (a "
                             f"{'GPT-2' if wanted is gpt2 else 'Llama'} model needs "
                             f"{field}={value!r}); save with model.save() instead")
    if wanted is gpt2:
        if config.ffn_size != 4 * config.d_model:
            raise ValueError(f"GGUF's gpt2 needs ffn_dim=4*d_model, got {config.ffn_size}")
        return "gpt2"
    scaling = config.rope_scaling
    if scaling is not None and scaling.get("rope_type") not in ("default", "linear"):
        raise ValueError(f"GGUF cannot express rope_scaling {scaling.get('rope_type')!r} "
                         f"(npgpt writes 'linear' only)")
    return "qwen2" if config.attention_bias else "llama"


def _config_metadata(config, arch) -> dict:
    """The ``<arch>.*`` keys, each as (value type, value)."""
    u32, f32 = 4, 6
    out = {f"{arch}.context_length": (u32, config.context_length),
           f"{arch}.embedding_length": (u32, config.d_model),
           f"{arch}.block_count": (u32, config.num_layers),
           f"{arch}.feed_forward_length": (u32, config.ffn_size),
           f"{arch}.attention.head_count": (u32, config.num_heads)}
    if arch == "gpt2":
        out["gpt2.attention.layer_norm_epsilon"] = (f32, config.layer_norm_eps)
        return out
    out.update({f"{arch}.attention.head_count_kv": (u32, config.kv_heads),
                f"{arch}.attention.layer_norm_rms_epsilon": (f32, config.layer_norm_eps),
                f"{arch}.rope.freq_base": (f32, config.rope_theta),
                f"{arch}.rope.dimension_count": (u32, config.head_size),
                f"{arch}.vocab_size": (u32, config.vocab_size)})
    if config.head_dim is not None:
        out[f"{arch}.attention.key_length"] = (u32, config.head_size)
        out[f"{arch}.attention.value_length"] = (u32, config.head_size)
    if config.rope_scaling and config.rope_scaling.get("rope_type") == "linear":
        out[f"{arch}.rope.scaling.type"] = (STRING, "linear")
        out[f"{arch}.rope.scaling.factor"] = (f32, float(config.rope_scaling["factor"]))
    return out


def interleave_rows(w, heads):
    """Rows of a q/k projection from the half-split rotary layout to the interleaved one
    (llama.cpp's permutation): within each head, row i + D/2 moves next to row i.

    (heads·D, C) -> (heads·D, C). :func:`half_split_rows` undoes it.

    >>> interleave_rows(np.arange(4.0).reshape(4, 1), 1).ravel().tolist()   # D = 4
    [0.0, 2.0, 1.0, 3.0]
    """
    rows, width = w.shape
    D = rows // heads
    return w.reshape(heads, 2, D // 2, width).swapaxes(1, 2).reshape(rows, width)


def half_split_rows(w, heads):
    """The inverse of :func:`interleave_rows`: (heads·D, C) -> (heads·D, C).

    >>> half_split_rows(np.array([[0.0], [2.0], [1.0], [3.0]]), 1).ravel().tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    rows, width = w.shape
    D = rows // heads
    return w.reshape(heads, D // 2, 2, width).swapaxes(1, 2).reshape(rows, width)


_QK = (GQA.names["q_weight"], GQA.names["k_weight"])          # the rotated projections
_QK_BIASES = (GQA.names["q_bias"], GQA.names["k_bias"])


def _as_stored(name, value, config, arch):
    """Parameter ``name``'s ``value`` with its q/k rows in the order GGUF's ``arch`` stores
    them: llama interleaved (:func:`interleave_rows`), qwen2 half-split (:func:`half_split_rows`).

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=4, num_heads=1,
    ...                       num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                       output_bias=False)
    >>> _as_stored("blocks.0.attn.q_proj.weight", np.arange(4.0).reshape(4, 1), cfg, "llama").ravel()
    array([0., 2., 1., 3.])
    """
    if arch == "llama" and config.rope_layout == "half" and name.endswith(_QK):
        heads = config.num_heads if name.endswith(_QK[0]) else config.kv_heads
        return interleave_rows(value, heads)
    if arch == "qwen2" and config.rope_layout == "interleaved" and name.endswith(_QK + _QK_BIASES):
        heads = config.num_heads if name.endswith((_QK[0], _QK_BIASES[0])) else config.kv_heads
        return half_split_rows(value.reshape(value.shape[0], -1), heads).reshape(value.shape)
    return value


def save_gguf(model, path, dtype="f32", architecture=None) -> None:
    """Write ``model`` as a GGUF file that llama.cpp, ollama, the ``gguf`` package,
    transformers (``from_pretrained(folder, gguf_file=...)``) and ``npgpt.load`` read.

    Parameters
    ----------
    model : npgpt.GPT, a GPT-2 block (``gelu="tanh"``, pre-norm, no output bias) or a
        Llama-family block (written as ``qwen2`` when it has q/k/v biases, else ``llama``).
    path : str or os.PathLike
    dtype : {"f32", "f16", "q8_0"}
        How the 2-D weights are stored; norms and biases are always F32. ``q8_0`` rounds
        exactly as ggml's ``quantize_row_q8_0_ref`` (and ``gguf.quants.quantize``); a matrix
        whose rows are not a multiple of 32 long is stored as F16 then.
    architecture : None, or "llama" / "qwen2" / "gpt2" to insist on one (a ValueError if the
        model is not of it).

    Llama's q/k rows are written in llama.cpp's interleaved order (permuted from the
    half-split layout when the model has ``rope_layout="half"``); Qwen2's in the half-split
    order. The tokenizer is written as ``tokenizer.ggml.*`` (see :func:`npgpt.io.gguf_tokenizer.tokenizer_metadata`;
    a tokenizer GGUF cannot carry raises a ValueError naming it), with its
    ``chat_template`` when it has one. A model loaded from a GGUF file keeps that file's
    ``tokenizer.*`` metadata (``model.gguf_tokenizer``), written back unchanged when its
    tokenizer is not one of the kinds above (or was not read), so GGUF -> GGUF keeps the
    vocabulary. The file is written atomically.

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=64, context_length=8, d_model=32, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> model = npgpt.GPT(cfg, seed=0)
    >>> save_gguf(model, "tiny-q8.gguf", dtype="q8_0")
    >>> back = npgpt.load("tiny-q8.gguf")
    >>> float(np.abs(back([1, 2]) - model([1, 2])).max()) < 0.05
    True
    """
    if dtype not in _FILE_TYPES:
        raise ValueError(f"dtype must be one of {sorted(_FILE_TYPES)}, got {dtype!r}")
    config = model.config
    arch = _architecture(config)
    if architecture is not None and architecture != arch:
        raise ValueError(f"architecture={architecture!r}, but the model is a {arch} model")
    metadata = {"general.architecture": (STRING, arch), "general.name": (STRING, "npgpt"),
                "general.alignment": (4, DEFAULT_ALIGNMENT),
                "general.file_type": (4, _FILE_TYPES[dtype]), **_config_metadata(config, arch)}
    tokenizer = getattr(model, "tokenizer", None)
    stored = getattr(model, "gguf_tokenizer", None)
    if stored and (tokenizer is None or type(tokenizer).__name__ not in WRITABLE_TOKENIZERS):
        metadata.update({key: typed_value(key, value) for key, value in stored.items()})
    elif tokenizer is not None:
        metadata.update(tokenizer_metadata(tokenizer, config.vocab_size))
    tensors = [(gguf_name(name, arch), _as_stored(name, np.asarray(value), config, arch))
               for name, value in model.params.items()]
    write_gguf(path, metadata, tensors, dtype)


def half_split_model(model):
    """``model`` (interleaved rotary pairs, as loaded from a Llama GGUF) as the same function
    in the half-split layout transformers uses: q/k rows (and biases) un-permuted with
    :func:`half_split_rows`, ``rope_layout="half"``. A new GPT; a half-split model is returned
    as it is. ``save_hf`` needs this layout.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                       output_bias=False, rope_layout="interleaved")
    >>> model = npgpt.GPT(cfg, seed=0)
    >>> half = half_split_model(model)
    >>> half.config.rope_layout, bool(np.allclose(half([1, 2, 3]), model([1, 2, 3]), atol=1e-5))
    ('half', True)
    """
    from ..model import GPT
    config = model.config
    if config.positions != "rope" or config.rope_layout == "half":
        return model
    params = {}
    for name, value in model.params.items():
        if name.endswith(_QK + _QK_BIASES):
            heads = config.num_heads if name.endswith((_QK[0], _QK_BIASES[0])) else config.kv_heads
            value = half_split_rows(np.asarray(value).reshape(len(value), -1), heads
                                    ).reshape(np.shape(value))
        params[name] = value
    other = object.__new__(GPT)
    other.__dict__.update(model.__dict__)
    other.config = config.replace(rope_layout="half")
    other.params = {k: np.array(v, order="K") for k, v in params.items()}
    return other
