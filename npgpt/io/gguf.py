"""GGUF, llama.cpp's model file: read by hand (memory-mapped), turned into an npgpt model, and
written back.

Shapes: C = embedding_length, V = vocabulary, F = feed_forward_length, H = head_count,
Hkv = head_count_kv, D = C / H. GGUF lists a tensor's dimensions fastest first (``dims[0]`` is
the row length), so a (rows, row length) NumPy array has ``shape = dims[::-1]``.

The file, little-endian throughout (versions 2 and 3 share this layout)::

    "GGUF"  u32 version  u64 tensor_count  u64 metadata_count
    metadata_count x  key (u64 length + UTF-8)  u32 value type  value
    tensor_count x    name  u32 n_dims  u64 dims[n_dims]  u32 ggml type  u64 offset
    padding to general.alignment (default 32), then the data section; each tensor's offset
    is relative to it and a multiple of the alignment.

    value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string (u64 length
    + UTF-8), 9 array (u32 item type, u64 count, items), 10 u64, 11 i64, 12 f64

Every count, length, dimension and offset is checked against the bytes left in the file
before anything is allocated, so a hostile file costs time and memory bounded by its size,
and fails with one :class:`CheckpointError` naming the field. The tensors' bytes are never
read into Python bytes: the file is memory-mapped and each tensor dequantised from the map
(:mod:`npgpt.io.gguf_quants`) a million weights at a time, straight into the model's arrays.

Metadata values come back as Python values: str, int, float, bool; a string array as a list
of str; a numeric or bool array as a NumPy array; an array of arrays as a list.

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

import mmap
import os
import re
import struct
import warnings

import numpy as np

from .errors import CheckpointError, short_repr
from .files import atomic_write, open_regular
from .gguf_quants import (DEQUANTIZERS, GGML_TYPES, dequantize, quantize_q8_0, type_name)

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NESTING = 4              # arrays of arrays, at most this deep
ARCHITECTURES = ("llama", "qwen2", "gpt2")

# value type -> (name, struct format or None for string/array)
_SCALARS = {0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"),
            4: ("uint32", "<I"), 5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<?"),
            10: ("uint64", "<Q"), 11: ("int64", "<q"), 12: ("float64", "<d")}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
          10: "<u8", 11: "<i8", 12: "<f8"}
STRING, ARRAY = 8, 9
_TYPE_NAMES = {**{t: n for t, (n, _) in _SCALARS.items()}, STRING: "string", ARRAY: "array"}


# ============================================================================ reading
class _Reader:
    """A position in a memory-mapped file; every read checks that the bytes exist."""

    def __init__(self, buffer, source):
        self.buffer, self.source, self.pos, self.size = buffer, source, 0, len(buffer)

    def fail(self, field, problem):
        raise CheckpointError(f"{self.source}: {field}: {problem}")

    def need(self, n, field):
        if n > self.size - self.pos:
            self.fail(field, f"needs {n} bytes at offset {self.pos} but the file has "
                             f"{self.size - self.pos} left (truncated or a wrong length)")

    def scalar(self, fmt, field):
        n = struct.calcsize(fmt)
        self.need(n, field)
        value = struct.unpack_from(fmt, self.buffer, self.pos)[0]
        self.pos += n
        return value

    def string(self, field):
        length = self.scalar("<Q", f"{field} length")
        self.need(length, f"{field} (a string of {length} bytes)")
        raw = bytes(self.buffer[self.pos:self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(field, f"not valid UTF-8: {short_repr(raw[:40])}")

    def value(self, kind, field, depth=0):
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind][1], field)
        if kind == STRING:
            return self.string(field)
        if kind != ARRAY:
            self.fail(field, f"unknown value type {kind}")
        if depth >= MAX_NESTING:
            self.fail(field, f"arrays nested more than {MAX_NESTING} deep")
        item = self.scalar("<I", f"{field} item type")
        count = self.scalar("<Q", f"{field} count")
        if item in _NUMPY:
            width = np.dtype(_NUMPY[item]).itemsize
            self.need(count * width, f"{field} ({count} {_TYPE_NAMES[item]} items)")
            out = np.frombuffer(self.buffer, _NUMPY[item], count, self.pos).copy()
            self.pos += count * width
            return out.astype(bool) if item == 7 else out
        if item not in (STRING, ARRAY):
            self.fail(f"{field} item type", f"unknown value type {item}")
        smallest = 8 if item == STRING else 12              # an empty string / empty array
        self.need(count * smallest, f"{field} ({count} {_TYPE_NAMES[item]} items)")
        return [self.value(item, f"{field}[{i}]", depth + 1) for i in range(count)]


def _header(reader):
    """(version, tensor count, metadata count), checked."""
    reader.need(24, "header (magic, version, tensor and metadata counts)")
    if bytes(reader.buffer[:4]) != MAGIC:
        reader.fail("magic", f"expected b'GGUF', got {bytes(reader.buffer[:4])!r}")
    reader.pos = 4
    version = reader.scalar("<I", "version")
    if version not in VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        hint = (" (a big-endian file, which npgpt does not read)" if swapped in VERSIONS
                else " (version 1 used 32-bit counts)" if version == 1 else "")
        reader.fail("version", f"{version} is not supported; npgpt reads GGUF {VERSIONS}{hint}")
    n_tensors = reader.scalar("<Q", "tensor_count")
    n_metadata = reader.scalar("<Q", "metadata_kv_count")
    reader.need(n_metadata * 13, f"metadata_kv_count={n_metadata}")     # 13: the smallest entry
    reader.need(n_tensors * 24, f"tensor_count={n_tensors}")            # 24: the smallest info
    return version, n_tensors, n_metadata


def _metadata(reader, count):
    out = {}
    for i in range(count):
        key = reader.string(f"metadata key {i}")
        if key in out:
            reader.fail(f"metadata key {short_repr(key)}", "appears twice")
        kind = reader.scalar("<I", f"metadata {short_repr(key)} value type")
        if kind not in _TYPE_NAMES:
            reader.fail(f"metadata {short_repr(key)}", f"unknown value type {kind}")
        out[key] = reader.value(kind, f"metadata {short_repr(key)}")
    return out


class TensorInfo:
    """One tensor of a GGUF file: ``name``, NumPy ``shape`` (dims reversed), ggml ``type``,
    ``offset`` in the data section and ``nbytes``.

    >>> TensorInfo("output.weight", (49152, 576), 3, 0, 49152 * 576 // 32 * 20)
    TensorInfo('output.weight', shape=(49152, 576), type=Q4_1)
    """

    __slots__ = ("name", "shape", "type", "offset", "nbytes")

    def __init__(self, name, shape, type_, offset, nbytes):
        self.name, self.shape, self.type, self.offset, self.nbytes = (
            name, shape, type_, offset, nbytes)

    def __repr__(self):
        return f"TensorInfo({self.name!r}, shape={self.shape}, type={type_name(self.type)})"


def _tensor_infos(reader, count, source):
    infos = {}
    for i in range(count):
        name = reader.string(f"tensor {i} name")
        field = f"tensor {short_repr(name)}"
        if name in infos:
            reader.fail(field, "appears twice")
        n_dims = reader.scalar("<I", f"{field} n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            reader.fail(f"{field} n_dims", f"{n_dims} is not in [1, {MAX_DIMS}]")
        dims = [reader.scalar("<Q", f"{field} dims[{d}]") for d in range(n_dims)]
        kind = reader.scalar("<I", f"{field} type")
        offset = reader.scalar("<Q", f"{field} offset")
        if any(d == 0 for d in dims):
            reader.fail(f"{field} dims", f"{dims} has a zero dimension")
        count_ = 1
        for d in dims:
            count_ *= d                      # Python ints: no overflow, compared below
        if count_ > reader.size * 256:       # no type stores more than 256 weights a byte
            reader.fail(f"{field} dims", f"{short_repr(dims)} hold {count_} weights, more "
                                         f"than a file of {reader.size} bytes can")
        if kind not in GGML_TYPES.values():
            reader.fail(f"{field} type", f"unknown ggml type {kind}")
        nbytes = None
        if kind in DEQUANTIZERS:
            _, per_block, block_bytes, _ = DEQUANTIZERS[kind]
            if dims[0] % per_block:
                reader.fail(f"{field} dims[0]", f"{dims[0]} is not a multiple of "
                                                f"{type_name(kind)}'s block of {per_block}")
            nbytes = count_ // per_block * block_bytes
        infos[name] = TensorInfo(name, tuple(int(d) for d in reversed(dims)), kind, offset,
                                 nbytes)
    return infos


def _alignment(metadata, source):
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (isinstance(value, bool) or not isinstance(value, int) or value <= 0
            or value & (value - 1) or value > 1 << 30):
        raise CheckpointError(f"{source}: general.alignment must be a power of two, got "
                              f"{short_repr(value)}")
    return value


def _check_layout(infos, data_start, size, alignment, source):
    """Each tensor inside the file, aligned, and no two overlapping."""
    spans = []
    for info in infos.values():
        field = f"{source}: tensor {short_repr(info.name)} offset"
        if info.offset % alignment:
            raise CheckpointError(f"{field} {info.offset} is not a multiple of "
                                  f"general.alignment={alignment}")
        if info.nbytes is None:
            continue                          # a type npgpt does not read: refused on load
        if info.offset > size - data_start - info.nbytes:
            raise CheckpointError(f"{field} {info.offset} + {info.nbytes} bytes runs past the "
                                  f"end of the file ({size - data_start} bytes of data)")
        spans.append((info.offset, info.offset + info.nbytes, info.name))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise CheckpointError(f"{source}: tensors {short_repr(a)} and {short_repr(b)} "
                                  f"overlap")


def _map(path):
    """(memory map of ``path`` as uint8 bytes, its size), refusing what is not a regular file."""
    source = os.fspath(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise CheckpointError(f"{source}: {size} bytes is too short for a GGUF header "
                                  f"(24 bytes)")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size


def read_gguf(path):
    """Read a GGUF file's metadata and tensor table; the tensors stay in the memory map.

    Returns
    -------
    metadata : dict, key -> value (see the module doc for the Python types)
    tensors : dict, name -> :class:`TensorInfo`
    data : uint8 ndarray over the memory-mapped data section (``data[info.offset:]``)

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> save_gguf(npgpt.GPT(cfg, seed=0), "tiny.gguf")
    >>> metadata, tensors, data = read_gguf("tiny.gguf")
    >>> metadata["general.architecture"], tensors["token_embd.weight"].shape
    ('gpt2', (10, 8))
    """
    source = os.fspath(path)
    buffer, size = _map(path)
    reader = _Reader(buffer, source)
    _, n_tensors, n_metadata = _header(reader)
    metadata = _metadata(reader, n_metadata)
    alignment = _alignment(metadata, source)
    infos = _tensor_infos(reader, n_tensors, source)
    data_start = -(-reader.pos // alignment) * alignment
    if infos and data_start > size:
        raise CheckpointError(f"{source}: the data section would start at {data_start}, past "
                              f"the end of the file ({size} bytes)")
    _check_layout(infos, data_start, size, alignment, source)
    data = np.frombuffer(buffer, np.uint8, max(0, size - data_start), min(data_start, size))
    return metadata, infos, data


def read_gguf_metadata(path) -> dict:
    """The metadata of a GGUF file (a vocab-only file too), without reading any tensor.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> save_gguf(npgpt.GPT(cfg, seed=0), "tiny.gguf")
    >>> read_gguf_metadata("tiny.gguf")["gpt2.block_count"]
    1
    """
    source = os.fspath(path)
    buffer, _ = _map(path)
    reader = _Reader(buffer, source)
    _, _, n_metadata = _header(reader)
    return _metadata(reader, n_metadata)


# ============================================================================ the model
_LLAMA_LAYER = {"attn_norm.weight": "norm1.weight", "ffn_norm.weight": "norm2.weight",
                "attn_q.weight": "attn.q_proj.weight", "attn_k.weight": "attn.k_proj.weight",
                "attn_v.weight": "attn.v_proj.weight", "attn_q.bias": "attn.q_proj.bias",
                "attn_k.bias": "attn.k_proj.bias", "attn_v.bias": "attn.v_proj.bias",
                "attn_output.weight": "attn.o_proj.weight", "ffn_gate.weight": "mlp.gate.weight",
                "ffn_up.weight": "mlp.up.weight", "ffn_down.weight": "mlp.down.weight"}
_LLAMA_TOP = {"token_embd.weight": "token_embedding.weight",
              "output_norm.weight": "norm_final.weight", "output.weight": "output_layer.weight"}
_GPT2_LAYER = {"attn_norm.weight": "ln1.weight", "attn_norm.bias": "ln1.bias",
               "ffn_norm.weight": "ln2.weight", "ffn_norm.bias": "ln2.bias",
               "attn_qkv.weight": "attn.in_proj_weight", "attn_qkv.bias": "attn.in_proj_bias",
               "attn_output.weight": "attn.out_proj.weight",
               "attn_output.bias": "attn.out_proj.bias",
               "ffn_up.weight": "ffn.0.weight", "ffn_up.bias": "ffn.0.bias",
               "ffn_down.weight": "ffn.2.weight", "ffn_down.bias": "ffn.2.bias"}
_GPT2_TOP = {"token_embd.weight": "token_embedding.weight",
             "position_embd.weight": "position_encoding.weight",
             "output_norm.weight": "ln_final.weight", "output_norm.bias": "ln_final.bias",
             "output.weight": "output_layer.weight"}
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


def _attach_tokenizer(model, metadata, source):
    """``npgpt.tokenizers.gguf.tokenizer_from_gguf(metadata)`` when that module exists;
    without it the model loads without a tokenizer, with a warning saying so."""
    if not any(key.startswith("tokenizer.ggml.") for key in metadata):
        return
    try:
        from ..tokenizers.gguf import tokenizer_from_gguf
    except ImportError:
        warnings.warn(f"{source}: npgpt.tokenizers.gguf is not available, so the file's "
                      f"tokenizer is not read; model.tokenizer stays None", stacklevel=4)
        return
    from . import _fitting_tokenizer
    try:
        tokenizer = tokenizer_from_gguf(metadata)
    except Exception as exc:        # the vocabulary is untrusted input: any failure is a bad file
        raise CheckpointError(f"{source}: the tokenizer in the metadata is invalid: "
                              f"{type(exc).__name__}: {str(exc)[:400]}") from None
    model.tokenizer = _fitting_tokenizer(tokenizer, model.config, source)


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
    from . import _SHAPE_FIELDS, _make_config
    from ..config import GPTConfig
    from ..model import GPT, block_parameter_shapes, column_major, parameter_shapes
    source = os.fspath(path)
    metadata, infos, data = read_gguf(path)
    fields = config_fields_from_gguf(metadata, infos, source)
    arch = metadata["general.architecture"]
    fixed = [f for f in _SHAPE_FIELDS if arch == "gpt2" or f != "context_length"]
    config = _make_config(fields, config_overrides, source, fixed)
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
    stub = GPTConfig(vocab_size=1, context_length=1, d_model=1, num_heads=1, num_layers=1)
    model = GPT(stub)                    # a few numbers; replaced wholesale below
    model.config, model.params = config, params
    _attach_tokenizer(model, metadata, source)
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


def _byte_level_token(data: bytes) -> str:
    from ..tokenizers.bpe import bytes_to_unicode
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


_PRE_NAMES = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2"}


def _tokenizer_metadata(tokenizer, vocab_size) -> dict:
    """``tokenizer.ggml.*`` keys (each (value type, value)) for ``tokenizer``, or a
    ValueError naming a tokenizer GGUF cannot carry.

    - BPETokenizer (byte-level): model ``gpt2``, every token's bytes in GPT-2's byte-to-
      character mapping, the merges in rank order, special tokens as control tokens, and
      ``pre`` naming its split pattern (``gpt-2``, ``llama-bpe``, ``qwen2``); ``<|endoftext|>``,
      when it has one, as both the BOS and the EOS token.
    - CharTokenizer whose characters are all ASCII: model ``gpt2`` with no merges, each
      character a one-byte token — llama.cpp's byte-level BPE then gives one token per
      character, as npgpt does. It has no end-of-text token. Other characters, and
      WordTokenizer, are refused.

    - HFTokenizer (a ``tokenizer.json``) of byte-level BPE: its vocabulary, merges and added
      tokens (special: control, others: user-defined); ``pre`` from its split regex
      (Llama 3's, Qwen2's, else GPT-2's). SentencePiece-style (``▁``) BPE is refused.

    ``add_bos_token`` is true, with ``bos_token_id``, when the tokenizer puts a control token
    before every text (a ``tokenizer.json`` post-processor, as Llama 3's), else false;
    ``<|endoftext|>``, when the vocabulary has it, is the EOS token.
    """
    kind = type(tokenizer).__name__
    tokens, types, merges, pre = None, None, [], "gpt-2"
    if kind == "CharTokenizer":
        if any(ord(c) > 127 for c in tokenizer.chars):
            raise ValueError("GGUF cannot carry a CharTokenizer with non-ASCII characters "
                             "(llama.cpp would split them into bytes); save without it")
        tokens = [_byte_level_token(c.encode("ascii")) for c in tokenizer.chars]
        types = [1] * len(tokens)
    elif kind == "BPETokenizer":
        derived = tokenizer._derive_merges()
        if derived is None:
            raise ValueError("GGUF needs merges, and this BPETokenizer has none that rebuild it")
        size = tokenizer.vocab_size
        tokens, types = [f"[PAD{i}]" for i in range(size)], [5] * size     # 5: unused
        for i in range(size):
            if i in tokenizer._decoder:
                tokens[i], types[i] = _byte_level_token(tokenizer._decoder[i]), 1
        for text, i in tokenizer.special_tokens.items():
            tokens[i], types[i] = text, 3                                   # 3: control
        merges = [f"{_byte_level_token(tokenizer._decoder[a])} "
                  f"{_byte_level_token(tokenizer._decoder[b])}" for a, b in derived[0]]
        pre = _PRE_NAMES.get(tokenizer.pattern, "default")
    elif kind == "HFTokenizer":
        tokens, types, merges, pre = _hf_vocabulary(tokenizer.to_dict()["tokenizer_json"])
    else:
        raise ValueError(f"GGUF cannot carry a {kind}; set model.tokenizer = None to save the "
                         f"weights alone")
    if len(tokens) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tokens)} tokens, more than vocab_size "
                         f"{vocab_size}")
    tokens += [f"[PAD{i}]" for i in range(len(tokens), vocab_size)]
    types += [5] * (vocab_size - len(types))
    out = {"tokenizer.ggml.model": (STRING, "gpt2"), "tokenizer.ggml.pre": (STRING, pre),
           "tokenizer.ggml.tokens": (ARRAY, (STRING, tokens)),
           "tokenizer.ggml.token_type": (ARRAY, (5, np.array(types, np.int32))),
           "tokenizer.ggml.merges": (ARRAY, (STRING, merges))}
    bos = _added_bos(tokenizer, types) if kind == "HFTokenizer" else None
    out["tokenizer.ggml.add_bos_token"] = (7, bos is not None)
    if bos is not None:
        out["tokenizer.ggml.bos_token_id"] = (4, bos)
    special = getattr(tokenizer, "special_tokens", None)
    end = special.get("<|endoftext|>") if isinstance(special, dict) else (
        tokens.index("<|endoftext|>") if "<|endoftext|>" in tokens else None)
    if end is not None:                                        # GPT-2's one special token
        out.setdefault("tokenizer.ggml.bos_token_id", (4, end))
        out["tokenizer.ggml.eos_token_id"] = (4, end)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        out["tokenizer.chat_template"] = (STRING, template)
    return out


def _hf_vocabulary(spec):
    """(tokens, token types, merges, pre) of a byte-level BPE ``tokenizer.json`` dict."""
    from ..tokenizers.patterns import LLAMA3_PATTERN, QWEN2_PATTERN
    model = spec.get("model") or {}
    text = str(spec.get("pre_tokenizer")) + str(spec.get("decoder"))
    if model.get("type") != "BPE" or "ByteLevel" not in text:
        raise ValueError("GGUF's gpt2 vocabulary needs a byte-level BPE tokenizer.json; this "
                         "HFTokenizer is not one (SentencePiece-style BPE is not written)")
    vocab = dict(model["vocab"])
    types = {i: 1 for i in vocab.values()}
    for added in spec.get("added_tokens") or []:
        vocab[added["content"]] = added["id"]
        types[added["id"]] = 3 if added.get("special") else 4
    size = max(vocab.values()) + 1
    tokens, kinds = [f"[PAD{i}]" for i in range(size)], [5] * size
    for token, i in vocab.items():
        tokens[i], kinds[i] = token, types[i]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    regexes = set(_split_regexes(spec.get("pre_tokenizer")))
    pre = ("llama-bpe" if LLAMA3_PATTERN in regexes else "qwen2" if QWEN2_PATTERN in regexes
           else "gpt-2")
    return tokens, kinds, merges, pre


def _added_bos(tokenizer, types):
    """The control token ``tokenizer`` puts before every text (encoding "" gives it), or None."""
    try:
        probe = tokenizer.encode("")
    except Exception:             # a tokenizer that refuses empty text adds nothing to it
        return None
    return probe[0] if len(probe) and types[probe[0]] == 3 else None


def _split_regexes(step):
    """Every ``Split`` regex in a pre_tokenizer (inside ``Sequence``s too)."""
    if isinstance(step, dict):
        if step.get("type") == "Split" and isinstance(step.get("pattern"), dict):
            yield step["pattern"].get("Regex")
        for inner in step.get("pretokenizers") or []:
            yield from _split_regexes(inner)


def _pack_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _pack_value(kind, value) -> bytes:
    if kind == STRING:
        return _pack_string(value)
    if kind == ARRAY:
        item, items = value
        head = struct.pack("<IQ", item, len(items))
        if item == STRING:
            return head + b"".join(_pack_string(s) for s in items)
        return head + np.asarray(items, _NUMPY[item]).tobytes()
    return struct.pack(_SCALARS[kind][1], value)


def _storage(value, dtype):
    """(ggml type, bytes) of how a float tensor is stored as ``dtype``: 1-D tensors (norms,
    biases) as F32; Q8_0 matrices whose rows are not a multiple of 32 long as F16."""
    if value.ndim == 1 or dtype == "f32":
        return GGML_TYPES["F32"], value.size * 4
    if dtype == "f16" or value.shape[-1] % 32:
        return GGML_TYPES["F16"], value.size * 2
    return GGML_TYPES["Q8_0"], value.size // 32 * 34


def _encoded(value, kind) -> bytes:
    """The bytes of ``value`` stored as ggml type ``kind`` (F32, F16 or Q8_0)."""
    value = np.ascontiguousarray(value, np.float32)
    if kind == GGML_TYPES["F32"]:
        return value.tobytes()
    if kind == GGML_TYPES["F16"]:
        return value.astype(np.float16).tobytes()
    return quantize_q8_0(value.reshape(-1, 32)).tobytes()


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
    order. The tokenizer is written as ``tokenizer.ggml.*`` (see :func:`_tokenizer_metadata`;
    a tokenizer GGUF cannot carry raises a ValueError naming it), with its
    ``chat_template`` when it has one. The file is written atomically.

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
    if tokenizer is not None:
        metadata.update(_tokenizer_metadata(tokenizer, config.vocab_size))
    tensors = []
    for name, value in model.params.items():
        value = np.asarray(value)
        if arch == "llama" and config.rope_layout == "half" and name.endswith(
                ("attn.q_proj.weight", "attn.k_proj.weight")):
            heads = config.num_heads if "q_proj" in name else config.kv_heads
            value = interleave_rows(value, heads)
        elif arch == "qwen2" and config.rope_layout == "interleaved" and name.endswith(
                ("attn.q_proj.weight", "attn.k_proj.weight", "attn.q_proj.bias",
                 "attn.k_proj.bias")):
            heads = config.num_heads if "q_proj" in name else config.kv_heads
            value = half_split_rows(value.reshape(value.shape[0], -1), heads).reshape(value.shape)
        tensors.append((gguf_name(name, arch), value))

    def write(f):
        f.write(MAGIC + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
        for key, (kind, value) in metadata.items():
            f.write(_pack_string(key) + struct.pack("<I", kind) + _pack_value(kind, value))
        kinds, offset = [], 0
        for name, value in tensors:
            kind, nbytes = _storage(value, dtype)
            f.write(_pack_string(name) + struct.pack("<I", value.ndim)
                    + struct.pack(f"<{value.ndim}Q", *reversed(value.shape))
                    + struct.pack("<IQ", kind, offset))
            kinds.append(kind)
            offset += -(-nbytes // DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
        f.write(bytes(-f.tell() % DEFAULT_ALIGNMENT))
        for (_, value), kind in zip(tensors, kinds):     # one tensor's bytes at a time
            raw = _encoded(value, kind)
            f.write(raw + bytes(-len(raw) % DEFAULT_ALIGNMENT))
    atomic_write(path, write)


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
        if re.search(r"attn\.[qk]_proj\.(weight|bias)$", name):
            heads = config.num_heads if ".q_proj." in name else config.kv_heads
            value = half_split_rows(np.asarray(value).reshape(len(value), -1), heads
                                    ).reshape(np.shape(value))
        params[name] = value
    other = object.__new__(GPT)
    other.__dict__.update(model.__dict__)
    other.config = config.replace(rope_layout="half")
    other.params = {k: np.array(v, order="K") for k, v in params.items()}
    return other
