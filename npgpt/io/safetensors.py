"""Read and write the safetensors format by hand (no ``safetensors`` package needed).

Shapes: every tensor is stored contiguous, row-major, little-endian; ``shape`` may be any
tuple (``()`` for a scalar).

Layout of a file::

    [8 bytes: N, unsigned little-endian 64-bit]
    [N bytes: UTF-8 JSON header]   {"name": {"dtype": "F32", "shape": [2, 3],
                                              "data_offsets": [begin, end]}, ...,
                                     "__metadata__": {"key": "value", ...}}   (optional)
    [data buffer]                  offsets are relative to its start; together they cover
                                   it exactly, without gaps or overlap

The reader trusts nothing: every length is checked against the file size before anything
is allocated, and any inconsistency raises :class:`~npgpt.io.CheckpointError`.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from .errors import CheckpointError, reject_repeated_keys, short_repr
from .files import atomic_write, open_regular

MAX_HEADER_BYTES = 100 * 1024 * 1024   # 100 MB: far more than any real header needs
MAX_NDIM = 64

# safetensors dtype -> (numpy little-endian dtype as stored, bytes per element)
_DTYPES = {
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1),
    "U64": ("<u8", 8), "U32": ("<u4", 4), "U16": ("<u2", 2), "U8": ("u1", 1),
    "BOOL": ("?", 1),
}
# numpy dtype -> safetensors dtype, for writing
_WRITE_DTYPES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint64): "U64", np.dtype(np.uint32): "U32",
    np.dtype(np.uint16): "U16", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
}


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, any shape) -> float32 of the same shape.

    A bfloat16 is the top half of a float32, so ``f32_bits = bf16_bits << 16`` is exact.

    Examples
    --------
    >>> bfloat16_to_float32(np.array([0x3F80, 0xC000, 0x3EAA], dtype=np.uint16))  # 1, -2, ≈1/3
    array([ 1.        , -2.        ,  0.33203125], dtype=float32)
    """
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _parse_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"safetensors header: {what} must be a non-negative integer, "
                              f"got {short_repr(value)}")
    return value


def _header_json(header_bytes: bytes) -> dict:
    """The header decoded as UTF-8 JSON: an object, without duplicate keys or NaN/Infinity."""
    try:
        text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"safetensors header is not valid UTF-8: {exc}") from None
    if not text.lstrip().startswith("{"):
        raise CheckpointError("safetensors header does not start with '{' (not JSON object)")
    try:
        header = json.loads(text, object_pairs_hook=reject_repeated_keys,
                            parse_constant=lambda c: c)   # NaN/Infinity stay strings -> rejected
    except CheckpointError as exc:
        raise CheckpointError(f"safetensors header: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header must be a JSON object")
    return header


def _parse_entry(name: str, info, buffer_size: int):
    """(name, dtype_name, shape, begin, end) of one tensor's header entry, all checked: a
    known dtype, a shape of non-negative integers, offsets inside the buffer spanning
    exactly shape x dtype bytes."""
    what = f"safetensors tensor {short_repr(name)}"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(f"{what}: expected exactly the keys dtype, shape, "
                              f"data_offsets, got {short_repr(info)}")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise CheckpointError(f"{what}: unknown or unsupported dtype {short_repr(dtype)}; "
                              f"supported: {', '.join(_DTYPES)}")
    shape = info["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise CheckpointError(f"{what}: shape must be a list of at most {MAX_NDIM} integers, "
                              f"got {short_repr(shape)}")
    shape = tuple(_parse_int(s, f"tensor {short_repr(name)} shape entry") for s in shape)
    if any(s >= 2 ** 62 for s in shape):
        raise CheckpointError(f"{what}: shape {short_repr(list(shape))} has an impossibly "
                              f"large dimension")
    offsets = info["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise CheckpointError(f"{what}: data_offsets must be [begin, end], got "
                              f"{short_repr(offsets)}")
    begin, end = (_parse_int(o, f"tensor {short_repr(name)} data offset") for o in offsets)
    if begin > end or end > buffer_size:
        raise CheckpointError(
            f"{what}: data_offsets [{short_repr(begin)}, {short_repr(end)}] out of range "
            f"for a data buffer of {buffer_size} bytes")
    numel = 1
    for s in shape:
        numel *= s
    nbytes = numel * _DTYPES[dtype][1]
    if nbytes != end - begin:
        raise CheckpointError(
            f"{what}: shape {short_repr(list(shape))} x {dtype} needs {short_repr(nbytes)} "
            f"bytes but data_offsets [{begin}, {end}] span {end - begin}")
    return name, dtype, shape, begin, end


def _check_tiling(entries, buffer_size: int) -> None:
    """The tensors' byte ranges, sorted, cover the buffer exactly: no overlap, gap or tail."""
    position = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin < position:
            raise CheckpointError(f"safetensors tensor {short_repr(name)}: data_offsets "
                                  f"[{begin}, {end}] overlap the previous tensor (which ends "
                                  f"at {position})")
        if begin > position:
            raise CheckpointError(f"safetensors data buffer has a gap: bytes {position}..{begin} "
                                  f"belong to no tensor (before {short_repr(name)})")
        position = end
    if position != buffer_size:
        raise CheckpointError(f"safetensors data buffer has {buffer_size - position} trailing "
                              f"bytes that belong to no tensor")


def parse_header(header_bytes: bytes, buffer_size: int):
    """Validate a safetensors JSON header against a data buffer of ``buffer_size`` bytes.

    Returns
    -------
    entries : list of (name, dtype_name, shape tuple, begin, end), in file order of names
    metadata : dict str -> str (empty when absent)

    Raises CheckpointError for non-UTF-8 / non-JSON headers, unknown dtypes, shapes whose
    byte size differs from their offsets, offsets out of range, overlapping or leaving gaps.

    Examples
    --------
    Two float32 tensors in a 24-byte data buffer: ``w`` (2, 2) in bytes 0..16, ``b`` (2,)
    in bytes 16..24.

    >>> header = (b'{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},'
    ...           b' "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},'
    ...           b' "__metadata__": {"format": "pt"}}')
    >>> parse_header(header, 24)
    ([('w', 'F32', (2, 2), 0, 16), ('b', 'F32', (2,), 16, 24)], {'format': 'pt'})
    >>> try:
    ...     parse_header(header, 32)          # 8 bytes more than the tensors need
    ... except CheckpointError as err:
    ...     print(err)
    safetensors data buffer has 8 trailing bytes that belong to no tensor
    """
    header = _header_json(header_bytes)
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError("safetensors __metadata__ must map strings to strings")
    entries = [_parse_entry(name, info, buffer_size) for name, info in header.items()]
    _check_tiling(entries, buffer_size)
    return entries, metadata


def read_safetensors(path):
    """Read a safetensors file into NumPy arrays, validating everything.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    tensors : dict name -> ndarray (writeable, native byte order), in header order.
        F64/F32/F16 and the integer/bool types keep their dtype; BF16 becomes float32.
    metadata : dict str -> str, the ``__metadata__`` (empty when absent).

    Raises
    ------
    CheckpointError
        Truncated file, header length past the end or above 100 MB, non-JSON header,
        unknown dtype, shape x dtype != byte length, offsets out of range / overlapping /
        leaving gaps; the message starts with ``path`` and names the tensor.

    Examples
    --------
    >>> write_safetensors("t.safetensors", {"w": np.eye(2, dtype=np.float32)}, {"note": "hi"})
    >>> read_safetensors("t.safetensors")
    ({'w': array([[1., 0.],
           [0., 1.]], dtype=float32)}, {'note': 'hi'})
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise CheckpointError(f"{os.fspath(path)}: file of {size} bytes is too short for "
                                  f"safetensors (needs an 8-byte header length)")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{os.fspath(path)}: safetensors header length {n} exceeds "
                                  f"the {MAX_HEADER_BYTES}-byte limit")
        if n > size - 8:
            raise CheckpointError(f"{os.fspath(path)}: safetensors header length {n} runs past "
                                  f"the end of the {size}-byte file (truncated?)")
        header_bytes = f.read(n)
        buffer = bytearray(size - 8 - n)
        got = f.readinto(buffer)
        if len(header_bytes) != n or got != len(buffer):
            raise CheckpointError(f"{os.fspath(path)}: file shrank while being read")
    try:
        entries, metadata = parse_header(header_bytes, len(buffer))
    except CheckpointError as exc:       # which file: one shard of many, say
        raise CheckpointError(f"{os.fspath(path)}: {exc}") from None
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        stored, itemsize = _DTYPES[dtype]
        flat = np.frombuffer(buffer, dtype=stored, count=(end - begin) // itemsize, offset=begin)
        if dtype == "BF16":
            array = bfloat16_to_float32(flat)
        elif not flat.dtype.isnative:                                 # a big-endian machine
            array = flat.astype(flat.dtype.newbyteorder("="))
        else:
            array = flat
        try:
            tensors[name] = array.reshape(shape)
        except ValueError as exc:   # e.g. a zero-size shape whose other dimensions overflow
            raise CheckpointError(f"{os.fspath(path)}: safetensors tensor {short_repr(name)}: shape "
                                  f"{short_repr(list(shape))}: {exc}") from None
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None) -> None:
    """Write NumPy arrays as a safetensors file, atomically (temporary file + rename).

    Parameters
    ----------
    path : str or os.PathLike
    tensors : dict name -> ndarray; float64/32/16, (u)int64/32/16/8 or bool; written
        contiguous and little-endian in the dict's order.
    metadata : dict str -> str or None, stored as ``__metadata__``.

    Raises
    ------
    ValueError
        An unsupported dtype, a name ``__metadata__``, or non-string metadata.

    Examples
    --------
    >>> write_safetensors("t.safetensors", {"w": np.eye(2, dtype=np.float32)}, {"note": "hi"})
    >>> with open("t.safetensors", "rb") as f:
    ...     n = struct.unpack("<Q", f.read(8))[0]      # the header's length, then the header
    ...     header, data = f.read(n), f.read()
    >>> header.decode().rstrip()                       # padded with spaces to 8-byte alignment
    '{"__metadata__":{"note":"hi"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    >>> np.frombuffer(data, "<f4")                     # the tensor's bytes, row-major
    array([1., 0., 0., 1.], dtype=float32)
    """
    header = {}
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must be a dict mapping str to str")
        header["__metadata__"] = dict(metadata)
    arrays = []
    offset = 0
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor names must be strings other than '__metadata__', "
                             f"got {name!r}")
        array = np.asarray(value)
        kind = _WRITE_DTYPES.get(array.dtype.newbyteorder("="))   # native-order lookup
        if kind is None:
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} cannot be written to "
                             f"safetensors")
        data = np.ascontiguousarray(array, dtype=_DTYPES[kind][0]).tobytes()   # little-endian
        header[name] = {"dtype": kind, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        arrays.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)   # pad so the data starts 8-byte aligned
    atomic_write(path, [struct.pack("<Q", len(header_bytes)), header_bytes] + arrays)
