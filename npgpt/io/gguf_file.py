"""GGUF, llama.cpp's model file, as a container: the header, the metadata, the tensor table,
read by hand from a memory map; and the same layout written back. What the tensors and keys
mean for an npgpt model is :mod:`npgpt.io.gguf`'s.

Shapes: GGUF lists a tensor's dimensions fastest first (``dims[0]`` is the row length), so a
(rows, row length) NumPy array has ``shape = dims[::-1]``.

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
read into Python bytes: the file is memory-mapped and the tensors stay in the map.

Metadata values come back as Python values: str, int, float, bool; a string array as a list
of str; a numeric or bool array as a NumPy array; an array of arrays as a list.
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

from .errors import CheckpointError, short_repr
from .files import atomic_write, open_regular
from .gguf_quants import DEQUANTIZERS, GGML_TYPES, quantize_q8_0, type_name

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NESTING = 4              # arrays of arrays, at most this deep


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
        if item == STRING:
            return self.strings(count, field)
        return [self.value(item, f"{field}[{i}]", depth + 1) for i in range(count)]

    def strings(self, count, field):
        """``count`` strings in a row (a vocabulary: tens of thousands), each checked as
        :meth:`string` does, the field named only when one is wrong."""
        out, buffer = [], self.buffer
        for i in range(count):
            self.need(8, f"{field}[{i}] length")
            length = struct.unpack_from("<Q", buffer, self.pos)[0]
            self.pos += 8
            if length > self.size - self.pos:
                self.need(length, f"{field}[{i}] (a string of {length} bytes)")
            raw = buffer[self.pos:self.pos + length]
            self.pos += length
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.fail(f"{field}[{i}]", f"not valid UTF-8: {short_repr(raw[:40])}")
        return out


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


def _tensor_infos(reader, count):
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
        weights = 1
        for d in dims:
            weights *= d                     # Python ints: no overflow, compared below
        if weights > reader.size * 256:      # no type stores more than 256 weights a byte
            reader.fail(f"{field} dims", f"{short_repr(dims)} hold {weights} weights, more "
                                         f"than a file of {reader.size} bytes can")
        if kind not in GGML_TYPES.values():
            reader.fail(f"{field} type", f"unknown ggml type {kind}")
        nbytes = None
        if kind in DEQUANTIZERS:
            _, per_block, block_bytes, _ = DEQUANTIZERS[kind]
            if dims[0] % per_block:
                reader.fail(f"{field} dims[0]", f"{dims[0]} is not a multiple of "
                                                f"{type_name(kind)}'s block of {per_block}")
            nbytes = weights // per_block * block_bytes
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
    >>> from npgpt.io import save_gguf
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
    infos = _tensor_infos(reader, n_tensors)
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
    >>> from npgpt.io import save_gguf
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


# ============================================================================ writing
_ARRAY_TYPES = {np.dtype(t): kind for kind, t in _NUMPY.items() if kind != 7}


def typed_value(key, value):
    """(value type, value) to write a metadata value as :func:`read_gguf` returned it.

    >>> typed_value("general.name", "npgpt"), typed_value("llama.block_count", 30)
    ((8, 'npgpt'), (4, 30))
    """
    if isinstance(value, bool):
        return 7, value
    if isinstance(value, str):
        return STRING, value
    if isinstance(value, int):
        return (4, value) if 0 <= value < 2 ** 32 else (11, value)
    if isinstance(value, float):
        return 6, value
    if isinstance(value, np.ndarray) and value.dtype == bool:
        return ARRAY, (7, value.astype(np.uint8))
    if isinstance(value, np.ndarray) and value.dtype in _ARRAY_TYPES:
        return ARRAY, (_ARRAY_TYPES[value.dtype], value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ARRAY, (STRING, value)
    raise ValueError(f"metadata {key}: cannot write {short_repr(value)}")


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



def write_gguf(path, metadata: dict, tensors: list, dtype: str = "f32") -> None:
    """Write a GGUF file (version 3) atomically: ``metadata`` {key: (value type, value)} in
    order, then the table of ``tensors`` [(name, float array)] and their bytes, each stored
    as ``dtype`` says (:func:`_storage`: F32, F16 or Q8_0), aligned to
    :data:`DEFAULT_ALIGNMENT` (which ``metadata`` should name as ``general.alignment``).

    >>> write_gguf("two.gguf", {"general.alignment": typed_value("", DEFAULT_ALIGNMENT)},
    ...            [("a", np.arange(4.0)), ("b", np.ones((2, 32)))], dtype="q8_0")
    >>> metadata, tensors, data = read_gguf("two.gguf")
    >>> tensors["a"], tensors["b"], tensors["b"].offset
    (TensorInfo('a', shape=(4,), type=F32), TensorInfo('b', shape=(2, 32), type=Q8_0), 32)
    """
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
