"""llama2.c checkpoints (``model.bin``): the header, the weights in ``run.c``'s order, npgpt's
names and GPTConfig.

Shapes: C = dim, F = hidden_dim, L = n_layers, H = n_heads, Hkv = n_kv_heads, D = C / H,
V = vocab_size, S = seq_len. Every weight is stored as PyTorch's ``nn.Linear`` keeps it
(out, in), row-major, little-endian, so only the names change::

    tok_embeddings      (V, C)        token_embedding.weight
    attention_norm      (L, C)        blocks.N.norm1.weight
    wq / wk / wv        (L, H·D, C) / (L, Hkv·D, C)   blocks.N.attn.q_proj / k_proj / v_proj
    wo                  (L, C, H·D)   blocks.N.attn.o_proj.weight
    ffn_norm            (L, C)        blocks.N.norm2.weight
    w1 / w3             (L, F, C)     blocks.N.mlp.gate / up.weight
    w2                  (L, C, F)     blocks.N.mlp.down.weight
    norm                (C,)          norm_final.weight
    output              (V, C)        output_layer.weight (absent when shared)

Three layouts (llama2.c's ``export.py``, read by ``run.c`` / ``runq.c``):

- **legacy** (version 0): 7 int32 -- dim, hidden_dim, n_layers, n_heads, n_kv_heads,
  vocab_size (negative: the classifier is not shared with the token table), seq_len -- then
  float32 tok_embeddings, attention_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, norm, two
  tables of S × D/2 floats (old rotary frequencies, skipped), and output if not shared;
- **version 1**: uint32 magic ``0x616b3432`` ("ak42"), int32 version 1, the 7 int32 (vocab
  size positive), a byte ``shared_classifier``, zeros to 256 bytes; then float32
  attention_norm, ffn_norm, norm, tok_embeddings, wq, wk, wv, wo, w1, w2, w3 (output);
- **version 2** (Q8_0): the same header plus int32 ``group_size`` after the flag byte; the
  three norms in float32, then each other weight (tok_embeddings, each layer's wq, ..., w3,
  output) as its int8 values followed by its float32 scales, one per group of
  ``group_size`` consecutive values: w = q · scale.

The model is npgpt's Llama-family block: ``norm="rmsnorm"``, ``positions="rope"`` with
``rope_layout="interleaved"`` (``run.c`` rotates channels (2i, 2i + 1)), ``rope_theta``
10000, ``mlp="swiglu"``, ε = 1e-5, no biases. ``runq.c`` also quantizes the activations to
int8 in every matmul; npgpt only dequantizes the weights, so a version-2 file gives
npgpt's float32 forward of the dequantized weights.

The file's size is checked against the header before any array is read: a header that
claims more than the file holds is a :class:`CheckpointError` naming the field.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np

from ..nn.gqa import GQA
from ..nn.layers import OUTPUT_WEIGHT, TOKEN_TABLE
from ..nn.rmsnorm import RMSNORM
from ..nn.swiglu import SWIGLU
from .build import MAX_DIMENSION
from .errors import CheckpointError
from .files import open_regular

MAGIC = 0x616B3432                       # "ak42", the first uint32 of versions 1 and 2
HEADER_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                 "seq_len")
VERSIONED_HEADER = 256                   # bytes of a version 1 / 2 header
_NORM1, _NORM2, _NORM_FINAL = RMSNORM.names
_LAYER_NAMES = {"attention_norm": f"{_NORM1}.weight", "ffn_norm": f"{_NORM2}.weight",
                "wq": GQA.names["q_weight"], "wk": GQA.names["k_weight"],
                "wv": GQA.names["v_weight"], "wo": GQA.names["out_weight"],
                "w1": SWIGLU.names["gate_weight"], "w2": SWIGLU.names["out_weight"],
                "w3": SWIGLU.names["up_weight"]}
_TOP_NAMES = {"tok_embeddings": TOKEN_TABLE, "norm": f"{_NORM_FINAL}.weight",
              "output": OUTPUT_WEIGHT}


def read_header(head, size, source="model.bin"):
    """The header of a llama2.c checkpoint from its first bytes and the file's size.

    Returns
    -------
    dict with the 7 fields of :data:`HEADER_FIELDS` (``vocab_size`` positive), ``version``
    (0, 1 or 2), ``shared`` (the classifier is the token table), ``group_size`` (version 2)
    and ``offset`` (where the weights begin).

    Examples
    --------
    >>> head = struct.pack("<7i", 64, 172, 5, 8, 4, -512, 512)
    >>> h = read_header(head, 10**6)
    >>> h["version"], h["vocab_size"], h["shared"], h["offset"]
    (0, 512, False, 28)
    >>> read_header(struct.pack("<7i", 64, 172, 5, 8, 3, 512, 512), 10**6)
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: model.bin: n_kv_heads=3 must divide n_heads=8
    """
    versioned = len(head) >= 4 and struct.unpack_from("<I", head)[0] == MAGIC
    if versioned:
        if len(head) < 41 or size < VERSIONED_HEADER:
            raise CheckpointError(f"{source}: {size} bytes, too short for llama2.c's "
                                  f"{VERSIONED_HEADER}-byte header")
        version = struct.unpack_from("<i", head, 4)[0]
        if version not in (1, 2):
            raise CheckpointError(f"{source}: llama2.c version {version} is not supported "
                                  f"(npgpt reads the legacy layout and versions 1 and 2)")
        values = struct.unpack_from("<7i", head, 8)
        shared_flag = head[36]
        if shared_flag not in (0, 1):
            raise CheckpointError(f"{source}: shared_classifier must be 0 or 1, got {shared_flag}")
        header = dict(zip(HEADER_FIELDS, values), version=version, shared=bool(shared_flag),
                      offset=VERSIONED_HEADER, group_size=None)
        if version == 2:
            header["group_size"] = struct.unpack_from("<i", head, 37)[0]
        if header["vocab_size"] <= 0:
            raise CheckpointError(f"{source}: vocab_size must be positive in version {version}, "
                                  f"got {header['vocab_size']}")
    else:
        if len(head) < 28:
            raise CheckpointError(f"{source}: {size} bytes, too short for llama2.c's header "
                                  f"(7 int32)")
        values = struct.unpack_from("<7i", head)
        header = dict(zip(HEADER_FIELDS, values), version=0, shared=values[5] > 0, offset=28,
                      group_size=None)
        header["vocab_size"] = abs(values[5])
    for name in HEADER_FIELDS:
        if not 0 < header[name] <= MAX_DIMENSION:
            raise CheckpointError(f"{source}: {name} must be a positive int32, got "
                                  f"{header[name]}")
    C, H, Hkv = header["dim"], header["n_heads"], header["n_kv_heads"]
    if C % H or (C // H) % 2:
        raise CheckpointError(f"{source}: dim={C} must be n_heads={H} times an even head size")
    if H % Hkv:
        raise CheckpointError(f"{source}: n_kv_heads={Hkv} must divide n_heads={H}")
    if header["version"] == 2 and not 0 < header["group_size"] <= MAX_DIMENSION:
        raise CheckpointError(f"{source}: group_size must be positive, got "
                              f"{header['group_size']}")
    return header


def tensor_layout(header):
    """The tensors of the file in order: ``[(name, shape, kind)]``, kind "f32" or "q8"
    (int8 values then float32 scales), names as llama2.c's (``wq.3`` is layer 3's wq);
    ``None`` names the skipped frequency tables.

    >>> h = dict(dim=8, hidden_dim=16, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=5,
    ...          seq_len=4, version=1, shared=True)
    >>> [name for name, _, _ in tensor_layout(h)][:4]
    ['attention_norm.0', 'ffn_norm.0', 'norm', 'tok_embeddings']
    """
    C, F, L, V = header["dim"], header["hidden_dim"], header["n_layers"], header["vocab_size"]
    D = C // header["n_heads"]
    kv = header["n_kv_heads"] * D
    shapes = {"attention_norm": (C,), "ffn_norm": (C,), "wq": (C, C), "wk": (kv, C),
              "wv": (kv, C), "wo": (C, C), "w1": (F, C), "w2": (C, F), "w3": (F, C)}

    def layers(name, kind="f32"):
        return [(f"{name}.{i}", shapes[name], kind) for i in range(L)]
    matrices = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")
    output = [] if header["shared"] else [("output", (V, C), "f32")]
    if header["version"] == 0:
        out = [("tok_embeddings", (V, C), "f32")] + layers("attention_norm")
        for name in ("wq", "wk", "wv", "wo"):
            out += layers(name)
        out += layers("ffn_norm")
        for name in ("w1", "w2", "w3"):
            out += layers(name)
        half = header["seq_len"] * D // 2
        return out + [("norm", (C,), "f32"), (None, (half,), "f32"),
                      (None, (half,), "f32")] + output
    out = layers("attention_norm") + layers("ffn_norm") + [("norm", (C,), "f32")]
    kind = "f32" if header["version"] == 1 else "q8"
    out.append(("tok_embeddings", (V, C), kind))
    for name in matrices:
        out += layers(name, kind)
    return out + [(name, shape, kind) for name, shape, _ in output]


def _nbytes(shape, kind, group_size):
    n = math.prod(shape)
    return 4 * n if kind == "f32" else n + 4 * (n // group_size)


def expected_size(header):
    """The file size in bytes that the header implies (Python ints: never overflows; one
    layer's tensors are counted n_layers times, so a header claiming 2**31 layers costs
    nothing).

    >>> h = read_header(struct.pack("<7i", 64, 172, 5, 8, 4, 512, 512), 10**6)
    >>> expected_size(h)                     # stories260K.bin
    1056540
    """
    one_layer = tensor_layout({**header, "n_layers": 1})
    return header["offset"] + sum(
        _nbytes(shape, kind, header["group_size"]) * (header["n_layers"] if name and name.endswith(
            ".0") else 1) for name, shape, kind in one_layer)


def looks_like_llama2c(head, size):
    """Whether a file starting with ``head`` (at least 41 bytes if it has them) and ``size``
    bytes long is a llama2.c checkpoint: the "ak42" magic, or a legacy header whose implied
    size is exactly ``size``.

    >>> head = struct.pack("<7i", 64, 172, 5, 8, 4, 512, 512)
    >>> looks_like_llama2c(head, 1056540), looks_like_llama2c(head, 1056541)
    (True, False)
    """
    if len(head) >= 4 and struct.unpack_from("<I", head)[0] == MAGIC:
        return True
    try:
        header = read_header(head, size)
    except CheckpointError:
        return False
    return header["version"] == 0 and expected_size(header) == size


def read_llama2c(path):
    """(header, state_dict in npgpt's names, float32) of a llama2.c checkpoint.

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=6, context_length=4, d_model=8, num_heads=2,
    ...                       num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                       output_bias=False, num_kv_heads=1, ffn_dim=12,
    ...                       rope_layout="interleaved", tie_embeddings=True)
    >>> write_llama2c(npgpt.GPT(cfg, seed=0), "tiny.bin")
    >>> header, state = read_llama2c("tiny.bin")
    >>> header["version"], state["blocks.0.attn.k_proj.weight"].shape
    (1, (4, 8))
    """
    source = os.fspath(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        header = read_header(f.read(VERSIONED_HEADER), size, source)
        expected = expected_size(header)
        if expected != size:
            raise CheckpointError(
                f"{source}: the header (dim={header['dim']}, hidden_dim={header['hidden_dim']}, "
                f"n_layers={header['n_layers']}, vocab_size={header['vocab_size']}, "
                f"seq_len={header['seq_len']}, version {header['version']}) implies "
                f"{expected:,} bytes, the file has {size:,}")
        if header["version"] == 2:
            for name, shape, kind in tensor_layout(header):
                if kind == "q8" and math.prod(shape) % header["group_size"]:
                    raise CheckpointError(f"{source}: group_size={header['group_size']} does "
                                          f"not divide the {math.prod(shape)} values of "
                                          f"{name}")
        f.seek(header["offset"])
        state = {}
        for name, shape, kind in tensor_layout(header):
            n = math.prod(shape)
            if kind == "f32":
                value = np.fromfile(f, dtype="<f4", count=n)
            else:
                q = np.fromfile(f, dtype=np.int8, count=n)
                scales = np.fromfile(f, dtype="<f4", count=n // header["group_size"])
                value = (q.reshape(-1, header["group_size"]).astype(np.float32)
                         * scales[:, None]).ravel()
            if name is not None:
                state[_npgpt_name(name)] = value.astype(np.float32, copy=False).reshape(shape)
    return header, state


def _npgpt_name(name):
    base, _, layer = name.partition(".")
    if layer:
        return f"blocks.{layer}.{_LAYER_NAMES[base]}"
    return _TOP_NAMES[base]


def config_fields(header):
    """GPTConfig fields of a llama2.c header.

    >>> h = dict(dim=64, hidden_dim=172, n_layers=5, n_heads=8, n_kv_heads=4,
    ...          vocab_size=512, seq_len=512, shared=True)
    >>> f = config_fields(h)
    >>> f["num_kv_heads"], f["ffn_dim"], f["rope_layout"], f["tie_embeddings"]
    (4, 172, 'interleaved', True)
    """
    C, H, Hkv = header["dim"], header["n_heads"], header["n_kv_heads"]
    return dict(vocab_size=header["vocab_size"], context_length=header["seq_len"], d_model=C,
                num_heads=H, num_layers=header["n_layers"],
                num_kv_heads=None if Hkv == H else Hkv,
                ffn_dim=None if header["hidden_dim"] == 4 * C else header["hidden_dim"],
                norm="rmsnorm", positions="rope", mlp="swiglu", residual="pre_norm",
                gelu="exact", output_bias=False, rope_layout="interleaved",
                rope_theta=10000.0, layer_norm_eps=1e-5, dropout=0.0,
                tie_embeddings=header["shared"])


def write_llama2c(model, path):
    """Write ``model`` as a llama2.c version-1 checkpoint (float32), which ``run.c`` reads.

    Only what llama2.c runs can be written: the Llama-family block with interleaved rotary
    pairs, rope_theta 10000, ε 1e-5, no biases, D = C / H; anything else is a ValueError
    naming the field.

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.load("stories260K")
    >>> write_llama2c(model, "copy.bin")
    >>> back = npgpt.load("copy.bin")
    >>> back.config == model.config, np.array_equal(back([1, 403]), model([1, 403]))
    (True, True)
    """
    from .files import atomic_write
    cfg = model.config
    for field, wanted in (("norm", "rmsnorm"), ("positions", "rope"), ("mlp", "swiglu"),
                          ("residual", "pre_norm"), ("output_bias", False),
                          ("attention_bias", False), ("rope_layout", "interleaved"),
                          ("rope_theta", 10000.0), ("layer_norm_eps", 1e-5),
                          ("rope_scaling", None)):
        if getattr(cfg, field) != wanted:
            raise ValueError(f"llama2.c cannot express {field}={getattr(cfg, field)!r} (it "
                             f"needs {field}={wanted!r})")
    if cfg.head_size * cfg.num_heads != cfg.d_model:
        raise ValueError(f"llama2.c needs head_dim = d_model / num_heads, got head_dim="
                         f"{cfg.head_size}")
    header = dict(dim=cfg.d_model, hidden_dim=cfg.ffn_size, n_layers=cfg.num_layers,
                  n_heads=cfg.num_heads, n_kv_heads=cfg.kv_heads, vocab_size=cfg.vocab_size,
                  seq_len=cfg.context_length, version=1, shared=cfg.tie_embeddings)
    params = model.state_dict()
    parts = [struct.pack("<Ii7iB", MAGIC, 1, *(header[k] for k in HEADER_FIELDS),
                         int(cfg.tie_embeddings))]
    parts.append(b"\0" * (VERSIONED_HEADER - len(parts[0])))
    for name, _, _ in tensor_layout(header):
        parts.append(np.ascontiguousarray(params[_npgpt_name(name)], dtype="<f4").tobytes())
    atomic_write(path, b"".join(parts))
