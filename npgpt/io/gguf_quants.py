"""GGUF tensor types: from their bytes to float32 (and float32 to Q8_0), in NumPy.

Shapes: ``blocks`` (N, S) uint8 — N blocks of S bytes each (the type's block size in bytes);
every dequantiser returns (N, K) float32 — K weights per block (32, or 256 for the K-quants).

A quantised tensor is a run of blocks. A block stores K weights as small integers q and one or
two float16 numbers that scale them: ``x = d · q`` (symmetric types, q centred on zero) or
``x = d · q + m`` / ``x = d · q − m`` (types with a minimum). The K-quants (``Q2_K`` …
``Q6_K``) hold 256 weights in sub-blocks of 16 or 32, each with its own small integer scale
(and minimum) under the block's float16 super-scales ``d`` (and ``dmin``).

Each function below is written from the format's definition (ggml's ``block_*`` structs and
``dequantize_row_*``) and computes in float32 in the order those definitions do — scale
times sub-scale first, then times q, then the minimum — so the result equals ggml's and the
``gguf`` package's ``quants.dequantize`` bit for bit.

Special scales are not special: a zero scale gives zeros, a subnormal float16 scale its exact
(normal) float32 value, and an infinite or NaN scale gives inf/NaN weights (``inf · 0`` is
NaN), exactly as ggml. :func:`npgpt.io.gguf.load_gguf` refuses a model whose dequantised
weights are not all finite, naming the tensor.

Examples
--------
>>> block = np.zeros((1, 34), np.uint8)                       # one Q8_0 block
>>> block[0, :2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
>>> block[0, 2:] = np.arange(32, dtype=np.int8).view(np.uint8)
>>> dequantize_q8_0(block)[0, :4]
array([0. , 0.5, 1. , 1.5], dtype=float32)
"""

from __future__ import annotations

import numpy as np

# ggml's type numbers (``enum ggml_type``), every one a file may name: the loader names an
# unsupported type in its message instead of a bare number.
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_2", 5: "Q4_3", 6: "Q5_0",
                   7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K",
                   13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
                   18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
                   23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
                   29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4",
                   41: "Q1_0"}
GGML_TYPES = {name: number for number, name in GGML_TYPE_NAMES.items()}
QK = 32          # weights in a block of the simple types
QK_K = 256       # weights in a super-block of the K-quants


def _block(*pieces):
    """One block (1, S) uint8 from pieces: a float is its float16's two bytes, a list its bytes
    (for the examples)."""
    raw = b"".join(np.float16(p).tobytes() if isinstance(p, float) else bytes(p) for p in pieces)
    return np.frombuffer(raw, np.uint8).reshape(1, -1)


def _f16(blocks, start):
    """The float16 at byte ``start`` of each block, as float32 (N, 1) (exact)."""
    return blocks[:, start:start + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs):
    """(N, 16) bytes -> (N, 32) 4-bit values: the 16 low nibbles, then the 16 high ones."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _high_bits(qh_bytes, count):
    """(N, count/8) bytes -> (N, count) bits, bit j of the little-endian word = value j."""
    return np.unpackbits(qh_bytes, axis=1, bitorder="little")[:, :count]


# ------------------------------------------------------------------ plain floats
def dequantize_f32(blocks):
    """F32: 4 bytes a weight, IEEE binary32 little-endian. (N, 4) -> (N, 1).

    >>> dequantize_f32(_block(list(np.float32([1.5, -2.0]).tobytes())).reshape(2, 4)).ravel()
    array([ 1.5, -2. ], dtype=float32)
    """
    return blocks.copy().view(np.float32)


def dequantize_f16(blocks):
    """F16: 2 bytes a weight, IEEE binary16; widened exactly. (N, 2) -> (N, 1).

    >>> dequantize_f16(_block(1.5, -2.0).reshape(2, 2)).ravel()
    array([ 1.5, -2. ], dtype=float32)
    """
    return blocks.copy().view(np.float16).astype(np.float32)


def dequantize_bf16(blocks):
    """BF16: 2 bytes a weight, the upper half of a binary32: x = bits << 16. (N, 2) -> (N, 1).

    >>> dequantize_bf16(_block([0xC0, 0x3F])).ravel()                   # 0x3FC0 << 16
    array([1.5], dtype=float32)
    """
    return (blocks.copy().view(np.uint16).astype(np.uint32) << 16).view(np.float32)


# ------------------------------------------------------------------ 32-weight blocks
def dequantize_q8_0(blocks):
    """Q8_0, 34 bytes for 32 weights::

        d       f16        bytes 0-1
        qs[32]  int8       bytes 2-33     x_j = d · qs[j]

    >>> dequantize_q8_0(_block(0.5, list(range(32))))[0, :4]
    array([0. , 0.5, 1. , 1.5], dtype=float32)
    """
    d = _f16(blocks, 0)
    q = blocks[:, 2:].view(np.int8).astype(np.float32)
    return d * q


def dequantize_q4_0(blocks):
    """Q4_0, 18 bytes for 32 weights::

        d       f16        bytes 0-1
        qs[16]  nibbles    bytes 2-17     low nibble of qs[j] is q_j, high nibble q_{j+16}

    x_j = d · (q_j − 8).

    >>> dequantize_q4_0(_block(0.5, [0x1F] * 16))[0, [0, 16]]          # q = 15 and 1
    array([ 3.5, -3.5], dtype=float32)
    """
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 2:18]).astype(np.int8) - 8
    return d * q.astype(np.float32)


def dequantize_q4_1(blocks):
    """Q4_1, 20 bytes for 32 weights::

        d, m    f16, f16   bytes 0-3
        qs[16]  nibbles    bytes 4-19     as Q4_0

    x_j = d · q_j + m.

    >>> dequantize_q4_1(_block(2.0, -1.0, [0x30] * 16))[0, [0, 16]]     # q = 0 and 3
    array([-1.,  5.], dtype=float32)
    """
    d, m = _f16(blocks, 0), _f16(blocks, 2)
    q = _nibbles(blocks[:, 4:20]).astype(np.float32)
    return d * q + m


def dequantize_q5_0(blocks):
    """Q5_0, 22 bytes for 32 weights::

        d       f16        bytes 0-1
        qh      u32        bytes 2-5      bit j is the fifth bit of q_j
        qs[16]  nibbles    bytes 6-21     the four low bits, as Q4_0

    x_j = d · (q_j − 16).

    >>> dequantize_q5_0(_block(1.0, [1, 0, 2, 0], [0] * 16))[0, [0, 1, 17]]   # bits 0, 17 set
    array([  0., -16.,   0.], dtype=float32)
    """
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 6:22]) | (_high_bits(blocks[:, 2:6], 32) << 4)
    return d * (q.astype(np.int8) - 16).astype(np.float32)


def dequantize_q5_1(blocks):
    """Q5_1, 24 bytes for 32 weights::

        d, m    f16, f16   bytes 0-3
        qh      u32        bytes 4-7      as Q5_0
        qs[16]  nibbles    bytes 8-23

    x_j = d · q_j + m.

    >>> dequantize_q5_1(_block(0.25, 3.0, [0xFF] * 4, [0xFF] * 16))[0, [0, 31]]   # q = 31
    array([10.75, 10.75], dtype=float32)
    """
    d, m = _f16(blocks, 0), _f16(blocks, 2)
    q = _nibbles(blocks[:, 8:24]) | (_high_bits(blocks[:, 4:8], 32) << 4)
    return d * q.astype(np.float32) + m


# ------------------------------------------------------------------ K-quants (256 weights)
def _two_bit_planes(qs, n_halves):
    """(N, 32·h) bytes -> (N, 128·h) 2-bit values: for each 32-byte run, the four bit pairs
    (shift 0, 2, 4, 6) of its bytes one after the other — weight 32·j + l of a 128-weight
    half is bits 2j, 2j+1 of byte l."""
    N = qs.shape[0]
    runs = qs.reshape(N, n_halves, 1, 32)                                   # (N, h, 1, 32)
    shifts = np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
    return ((runs >> shifts) & 3).reshape(N, 128 * n_halves)                # (N, 128·h)


def dequantize_q2_k(blocks):
    """Q2_K, 84 bytes for 256 weights in 16 sub-blocks of 16::

        scales[16]  bytes 0-15    sub-block s: scale = low nibble, min = high nibble
        qs[64]      bytes 16-79   2-bit q: weight 128·h + 32·j + l is bits 2j.. of qs[32·h + l]
        d, dmin     f16, f16      bytes 80-83

    x = (d · scale_s) · q − (dmin · min_s), s = weight index // 16.

    >>> x = dequantize_q2_k(_block([0x21] * 16, [0b11100100] * 64, 0.5, 0.25))  # scale 1, min 2
    >>> x[0, [0, 32, 64, 96]]                                                   # q = 0, 1, 2, 3
    array([-0.5,  0. ,  0.5,  1. ], dtype=float32)
    """
    N = blocks.shape[0]
    scales = blocks[:, :16]
    q = _two_bit_planes(blocks[:, 16:80], 2).astype(np.float32).reshape(N, 16, 16)
    d, dmin = _f16(blocks, 80), _f16(blocks, 82)
    dl = (d * (scales & 0x0F).astype(np.float32)).reshape(N, 16, 1)
    ml = (dmin * (scales >> 4).astype(np.float32)).reshape(N, 16, 1)
    return (dl * q - ml).reshape(N, QK_K)


def dequantize_q3_k(blocks):
    """Q3_K, 110 bytes for 256 weights in 16 sub-blocks of 16::

        hmask[32]   bytes 0-31    third bit of q: weight 32·m + l is bit m of hmask[l]
        qs[64]      bytes 32-95   two low bits, laid out as Q2_K's
        scales[12]  bytes 96-107  16 six-bit scales: low 4 bits in nibbles of bytes 0-7
                                  (s < 8: low nibble of byte s; else high nibble of s − 8),
                                  top 2 bits in bytes 8-11 (bits 2·(s // 4) of byte 8 + s % 4)
        d           f16           bytes 108-109

    q = low2 − (0 if the hmask bit is set else 4), in [−4, 3];
    x = (d · (scale_s − 32)) · q, s = weight index // 16.

    >>> x = dequantize_q3_k(_block([0] * 32, [0b11100100] * 64, [0x11] * 8 + [0x22] * 4, 1.0))
    >>> x[0, [0, 32, 64, 96]]                    # q = -4, -3, -2, -1; scales 1, 1, -31, -31
    array([-4., -3., 62., 31.], dtype=float32)
    """
    N = blocks.shape[0]
    low = _two_bit_planes(blocks[:, 32:96], 2).astype(np.int8)                  # (N, 256)
    high = np.unpackbits(blocks[:, :32].reshape(N, 1, 32), axis=1, bitorder="little")
    q = low - 4 * (1 - high.reshape(N, QK_K).astype(np.int8))                    # (N, 256)
    packed = blocks[:, 96:108]
    low4 = np.concatenate([packed[:, :8] & 0x0F, packed[:, :8] >> 4], axis=1)    # (N, 16)
    top2 = (packed[:, 8:12].reshape(N, 1, 4)
            >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)) & 3            # (N, 4, 4)
    scale = (low4 | (top2.reshape(N, 16) << 4)).astype(np.int8) - 32
    dl = (_f16(blocks, 108) * scale.astype(np.float32)).reshape(N, 16, 1)
    return (dl * q.astype(np.float32).reshape(N, 16, 16)).reshape(N, QK_K)


def _scales_and_mins_k4(packed):
    """The 8 six-bit scales and 8 six-bit mins of Q4_K / Q5_K from their 12 bytes::

        s < 4:  scale = b[s] & 63,                      min = b[s+4] & 63
        s >= 4: scale = (b[s+4] & 15) | (b[s-4] >> 6) << 4,
                min   = (b[s+4] >> 4) | (b[s] >> 6) << 4

    (N, 12) -> two (N, 8) uint8.
    """
    a, b, c = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = np.concatenate([a & 63, (c & 0x0F) | ((a >> 6) << 4)], axis=1)
    mins = np.concatenate([b & 63, (c >> 4) | ((b >> 6) << 4)], axis=1)
    return scales, mins


def _k4_affine(blocks, q):
    """x = (d · scale_s) · q − (dmin · min_s) for 8 sub-blocks of 32 (Q4_K, Q5_K)."""
    N = blocks.shape[0]
    scales, mins = _scales_and_mins_k4(blocks[:, 4:16])
    dl = (_f16(blocks, 0) * scales.astype(np.float32)).reshape(N, 8, 1)
    ml = (_f16(blocks, 2) * mins.astype(np.float32)).reshape(N, 8, 1)
    return (dl * q.astype(np.float32).reshape(N, 8, 32) - ml).reshape(N, QK_K)


def _k4_nibbles(qs):
    """(N, 128) bytes -> (N, 256): each 32-byte run gives its 32 low nibbles, then its 32 high."""
    N = qs.shape[0]
    runs = qs.reshape(N, 4, 1, 32)
    return ((runs >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0x0F).reshape(N, QK_K)


def dequantize_q4_k(blocks):
    """Q4_K, 144 bytes for 256 weights in 8 sub-blocks of 32::

        d, dmin     f16, f16      bytes 0-3
        scales[12]  bytes 4-15    8 six-bit scales and 8 six-bit mins (_scales_and_mins_k4)
        qs[128]     bytes 16-143  4-bit q: run r of 32 bytes holds sub-block 2r in its low
                                  nibbles and sub-block 2r+1 in its high nibbles

    x = (d · scale_s) · q − (dmin · min_s), s = weight index // 32.

    >>> x = dequantize_q4_k(_block(1.0, 0.5, [1] * 4 + [2] * 4 + [0] * 4, [0x21] * 128))
    >>> x[0, [0, 32, 128]]                    # sub-blocks 0, 1: scale 1, min 2; 4: zero
    array([0., 1., 0.], dtype=float32)
    """
    return _k4_affine(blocks, _k4_nibbles(blocks[:, 16:144]))


def dequantize_q5_k(blocks):
    """Q5_K, 176 bytes for 256 weights in 8 sub-blocks of 32::

        d, dmin     f16, f16      bytes 0-3
        scales[12]  bytes 4-15    as Q4_K
        qh[32]      bytes 16-47   fifth bit: weight 32·s + l is bit s of qh[l]
        qs[128]     bytes 48-175  the four low bits, as Q4_K

    x = (d · scale_s) · q − (dmin · min_s), q in [0, 31].

    >>> x = dequantize_q5_k(_block(1.0, 0.5, [1] * 4 + [2] * 4 + [0] * 4, [0xFF] * 32,
    ...                            [0x21] * 128))
    >>> x[0, [0, 32]]                                           # q = 16 + 1 and 16 + 2
    array([16., 17.], dtype=float32)
    """
    N = blocks.shape[0]
    high = np.unpackbits(blocks[:, 16:48].reshape(N, 1, 32), axis=1, bitorder="little")
    q = _k4_nibbles(blocks[:, 48:176]) | (high.reshape(N, QK_K) << 4)
    return _k4_affine(blocks, q)


def dequantize_q6_k(blocks):
    """Q6_K, 210 bytes for 256 weights in 16 sub-blocks of 16::

        ql[128]     bytes 0-127    four low bits: weight 128·h + 32·j + l is the
                                   (low if j < 2 else high) nibble of ql[64·h + 32·(j % 2) + l]
        qh[64]      bytes 128-191  two high bits: bits 2j, 2j+1 of qh[32·h + l]
        scales[16]  int8           bytes 192-207
        d           f16            bytes 208-209

    x = (d · scale_s) · (q − 32), q in [0, 63], s = weight index // 16.

    >>> dequantize_q6_k(_block([0x21] * 128, [0] * 64, [1] * 16, 0.5))[0, [0, 64]]  # q = 1, 2
    array([-15.5, -15. ], dtype=float32)
    """
    N = blocks.shape[0]
    ql = blocks[:, :128].reshape(N, 2, 1, 2, 32)                     # (N, h, nibble, j%2, l)
    low = (ql >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1, 1)) & 0x0F
    high = _two_bit_planes(blocks[:, 128:192], 2)                     # (N, 256)
    q = (low.reshape(N, QK_K) | (high << 4)).astype(np.int8) - 32
    dl = (_f16(blocks, 208) * blocks[:, 192:208].view(np.int8).astype(np.float32)).reshape(N, 16, 1)
    return (dl * q.astype(np.float32).reshape(N, 16, 16)).reshape(N, QK_K)


# ------------------------------------------------------------------ the table
#: ggml type number -> (name, weights per block, bytes per block, dequantiser)
DEQUANTIZERS = {
    0: ("F32", 1, 4, dequantize_f32), 1: ("F16", 1, 2, dequantize_f16),
    30: ("BF16", 1, 2, dequantize_bf16), 8: ("Q8_0", QK, 34, dequantize_q8_0),
    2: ("Q4_0", QK, 18, dequantize_q4_0), 3: ("Q4_1", QK, 20, dequantize_q4_1),
    6: ("Q5_0", QK, 22, dequantize_q5_0), 7: ("Q5_1", QK, 24, dequantize_q5_1),
    10: ("Q2_K", QK_K, 84, dequantize_q2_k), 11: ("Q3_K", QK_K, 110, dequantize_q3_k),
    12: ("Q4_K", QK_K, 144, dequantize_q4_k), 13: ("Q5_K", QK_K, 176, dequantize_q5_k),
    14: ("Q6_K", QK_K, 210, dequantize_q6_k),
}
_CHUNK_WEIGHTS = 1 << 20       # weights dequantised at a time: bounds the temporaries


def type_name(ggml_type: int) -> str:
    """``"Q4_K"`` for 12; ``"unknown type 99"`` for a number ggml does not have.

    >>> type_name(12), type_name(99)
    ('Q4_K', 'unknown type 99')
    """
    return GGML_TYPE_NAMES.get(ggml_type, f"unknown type {ggml_type}")


def dequantize(data, ggml_type: int, shape, out=None):
    """The float32 values of a tensor stored as ``ggml_type`` in the bytes ``data``.

    Parameters
    ----------
    data : uint8 array, (n_bytes,) — e.g. a slice of a memory-mapped file, read in chunks
        of about a million weights so the temporaries stay small.
    ggml_type : int, a key of :data:`DEQUANTIZERS`.
    shape : tuple, the tensor's NumPy shape (rows, ..., row length); the row length must
        be a multiple of the block's weights, and ``data`` exactly the tensor's bytes.
    out : float32 array of ``shape`` or None; written in place (any memory order).

    Returns
    -------
    float32 ndarray of ``shape``.

    Examples
    --------
    >>> raw = np.frombuffer(np.array([1.5, -2.0], np.float16).tobytes(), np.uint8)
    >>> dequantize(raw, 1, (2,))
    array([ 1.5, -2. ], dtype=float32)
    """
    name, per_block, block_bytes, function = DEQUANTIZERS[ggml_type]
    shape = tuple(int(n) for n in shape)
    width = shape[-1] if shape else 1
    count = int(np.prod(shape, dtype=np.int64))
    if width % per_block or data.size != count // per_block * block_bytes:
        raise ValueError(f"{name}: {data.size} bytes do not hold a tensor of shape {shape}")
    if out is None:
        out = np.empty(shape, np.float32)
    rows = out.reshape(-1, width) if out.flags.c_contiguous or out.ndim <= 1 else out
    if rows.ndim != 2:
        raise ValueError(f"out must be C-contiguous or 2-D, got shape {out.shape}")
    blocks = data.reshape(-1, block_bytes)                         # (N, S)
    per_row = width // per_block
    step = max(1, _CHUNK_WEIGHTS // width)
    for start in range(0, rows.shape[0], step):
        stop = min(rows.shape[0], start + step)
        chunk = np.asarray(blocks[start * per_row:stop * per_row])
        rows[start:stop] = function(chunk).reshape(stop - start, width)
    return out


# ------------------------------------------------------------------ writing
def _round_half_away(x):
    """Round to the nearest integer, halves away from zero (C's ``roundf``), exactly:
    ``floor(|x|) + (|x| − floor(|x|) ≥ 0.5)``, with x's sign."""
    a = np.abs(x)
    whole = np.floor(a)
    return np.copysign(whole + (a - whole >= 0.5), x)


def quantize_q8_0(values):
    """float32 (N, 32) -> Q8_0 blocks (N, 34) uint8, as ggml's ``quantize_row_q8_0_ref``:
    d = max|x| / 127 (float32), q = round(x · (1/d)) (0 where d = 0), d stored as float16.

    >>> quantize_q8_0(np.full((1, 32), 127.0, np.float32))[0, :3]     # d = 1.0 = 0x3c00
    array([  0,  60, 127], dtype=uint8)
    """
    x = np.asarray(values, np.float32)
    d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)            # (N, 1)
    with np.errstate(divide="ignore"):
        inverse = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = _round_half_away(x * inverse).astype(np.int8)                      # (N, 32)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)
