"""Hand-built GGUF files for the tests: the format written out from its definition (see
npgpt/io/gguf_file.py's module doc), independently of npgpt's writer."""

import struct

import numpy as np

SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                  10: "<Q", 11: "<q", 12: "<d"}
NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
         10: "<u8", 11: "<i8", 12: "<f8"}


def string(text):
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def value(kind, v):
    """The bytes of a value of GGUF value type ``kind``; an array is (item type, items)."""
    if kind == 8:
        return string(v)
    if kind == 9:
        item, items = v
        out = struct.pack("<IQ", item, len(items))
        if item in NUMPY:
            return out + np.asarray(items, NUMPY[item]).tobytes()
        return out + b"".join(value(item, x) for x in items)
    return struct.pack(SCALAR_FORMATS[kind], v)


def gguf_bytes(metadata, tensors=(), version=3, alignment=32):
    """A GGUF file: ``metadata`` [(key, type, value)], ``tensors`` [(name, dims fastest
    first, ggml type, raw bytes)] laid out at multiples of ``alignment``."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, kind, v in metadata:
        out += string(key) + struct.pack("<I", kind) + value(kind, v)
    offset, data = 0, b""
    for name, dims, kind, raw in tensors:
        out += string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", kind, offset)
        padded = raw + bytes(-len(raw) % alignment)
        data += padded
        offset += len(padded)
    out += bytes(-len(out) % alignment)
    return out + data


def tiny_llama_gguf(arch="llama", seed=0, f32=True):
    """A tiny valid ``arch`` GGUF model (vocab 8, width 32, 1 layer, 2 heads) as bytes."""
    rng = np.random.default_rng(seed)
    C, V, F = 32, 8, 64
    meta = [("general.architecture", 8, arch), (f"{arch}.context_length", 4, 16),
            (f"{arch}.embedding_length", 4, C), (f"{arch}.block_count", 4, 1),
            (f"{arch}.feed_forward_length", 4, F), (f"{arch}.attention.head_count", 4, 2),
            (f"{arch}.attention.head_count_kv", 4, 1),
            (f"{arch}.attention.layer_norm_rms_epsilon", 6, 1e-5),
            (f"{arch}.rope.freq_base", 6, 10000.0)]
    shapes = {"token_embd.weight": (V, C), "output_norm.weight": (C,),
              "blk.0.attn_norm.weight": (C,), "blk.0.ffn_norm.weight": (C,),
              "blk.0.attn_q.weight": (C, C), "blk.0.attn_k.weight": (16, C),
              "blk.0.attn_v.weight": (16, C), "blk.0.attn_output.weight": (C, C),
              "blk.0.ffn_gate.weight": (F, C), "blk.0.ffn_up.weight": (F, C),
              "blk.0.ffn_down.weight": (C, F)}
    if arch == "qwen2":
        shapes.update({"blk.0.attn_q.bias": (C,), "blk.0.attn_k.bias": (16,),
                       "blk.0.attn_v.bias": (16,)})
    tensors = []
    for name, shape in shapes.items():
        x = (rng.standard_normal(shape) * 0.3).astype(np.float32)
        if len(shape) == 1 or f32:
            tensors.append((name, shape[::-1], 0, x.tobytes()))
        else:
            tensors.append((name, shape[::-1], 1, x.astype(np.float16).tobytes()))
    return gguf_bytes(meta, tensors)
