"""The two files a SentencePiece vocabulary comes in, read by hand: pieces, scores, types.

- a SentencePiece ``tokenizer.model``, a protobuf ``ModelProto`` (:func:`read_model_proto`:
  varints and length-delimited fields, nothing else; :func:`encode_varint` for writing one);
- llama2.c's ``tokenizer.bin`` (:func:`read_llama2c_tokenizer`): the maximum token length,
  then score, length and bytes per token.

Every malformed file (truncated, a bad varint, a length past the end) is a
:class:`~npgpt.io.CheckpointError` naming the field, with no more memory than the file's
size; :func:`read_tokenizer_file` refuses a file larger than any tokenizer.
"""

from __future__ import annotations

import os
import struct

from ..io.errors import CheckpointError
from ..io.files import open_regular
from .pieces import NORMAL, TYPE_NAMES

UNK_SURFACE = " \u2047 "                # " ⁇ ", the library's text for the unknown piece
MAX_MODEL_BYTES = 256 * 1024 * 1024     # a tokenizer file larger than this is refused
_MODEL_TYPES = {1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}


# ----------------------------------------------------------------------------------------
# The protobuf wire format: just enough to read a ModelProto
# ----------------------------------------------------------------------------------------

def _varint(data, pos, where):
    """(value, next position) of the base-128 varint at ``data[pos:]`` (at most 10 bytes)."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                raise CheckpointError(f"{where}: a varint larger than 64 bits")
            return value, i + 1
        shift += 7
    if len(data) - pos < 10:
        raise CheckpointError(f"{where}: truncated varint at byte {pos}")
    raise CheckpointError(f"{where}: a varint longer than 10 bytes at byte {pos}")


def encode_varint(n):
    """The base-128 varint of a non-negative integer: 7 bits a byte, low bits first, the top
    bit set on every byte but the last.

    >>> encode_varint(1), encode_varint(300)
    (b'\\x01', b'\\xac\\x02')
    """
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _fields(data, where, names):
    """The fields of one protobuf message: ``{number: [(wire_type, value), ...]}``.

    ``names`` maps field numbers to names for the messages (``where.name: ...``).

    Wire types: 0 varint (value: int), 1 fixed 64 bits and 5 fixed 32 bits (value: the raw
    bytes), 2 length-delimited (value: the bytes). Groups (3, 4) are refused. Every length is
    checked against the bytes left before anything is sliced.
    """
    out, pos = {}, 0
    while pos < len(data):
        key, pos = _varint(data, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CheckpointError(f"{where}: field number 0 at byte {pos}")
        field = f"{where}.{names.get(number, f'field {number}')}"
        if wire == 0:
            value, pos = _varint(data, pos, field)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if len(data) - pos < size:
                raise CheckpointError(f"{field}: truncated ({size} bytes needed, "
                                      f"{len(data) - pos} left)")
            value, pos = data[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(data, pos, field)
            if size > len(data) - pos:
                raise CheckpointError(f"{field}: length {size} runs past the end "
                                      f"({len(data) - pos} bytes left)")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise CheckpointError(f"{field}: wire type {wire} is not supported")
        out.setdefault(number, []).append((wire, value))
    return out


def _scalar(fields, number, name, wire, default, where):
    """The last value of a non-repeated scalar field (protobuf: the last one wins)."""
    values = fields.get(number)
    if not values:
        return default
    got, value = values[-1]
    if got != wire:
        raise CheckpointError(f"{where}.{name}: wire type {got}, expected {wire}")
    return value


def _submessage(fields, number):
    """An embedded message given several times is their merge: its parts concatenated."""
    return b"".join(value for wire, value in fields.get(number, ()) if wire == 2)


def _text(raw, where):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _bool(fields, number, name, default, where):
    return bool(_scalar(fields, number, name, 0, int(default), where))


def read_model_proto(data, source="tokenizer.model"):
    """The fields npgpt uses from a SentencePiece ``ModelProto`` (the bytes of a ``.model``).

    Field numbers from ``sentencepiece_model.proto``: ModelProto ``pieces`` 1 (``piece`` 1,
    ``score`` 2 as a 32-bit float, ``type`` 3), ``trainer_spec`` 2 (``model_type`` 3,
    ``treat_whitespace_as_suffix`` 24, ``byte_fallback`` 35, ``unk_piece`` 45, ``bos_piece``
    46, ``eos_piece`` 47, ``unk_surface`` 44), ``normalizer_spec`` 3 (``name`` 1,
    ``precompiled_charsmap`` 2, ``add_dummy_prefix`` 3, ``remove_extra_whitespaces`` 4,
    ``escape_whitespaces`` 5), ``denormalizer_spec`` 5. Other fields are skipped, as
    protobuf does.

    Returns
    -------
    dict with ``pieces`` (list of str), ``scores`` (list of float), ``types`` (list of int),
    ``model_type`` (str), and the flags above under their names.

    Examples
    --------
    >>> piece = b"\\x0a\\x01a" + b"\\x15" + struct.pack("<f", -1.5)        # piece "a", score -1.5
    >>> spec = read_model_proto(b"\\x0a" + bytes([len(piece)]) + piece + b"\\x12\\x02\\x18\\x02")
    >>> spec["pieces"], spec["scores"], spec["types"], spec["model_type"]
    (['a'], [-1.5], [1], 'BPE')
    >>> read_model_proto(b"\\x0a\\x02\\x0a\\x09")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: tokenizer.model: pieces[0].piece: length 9 runs past the end (0 bytes left)
    """
    top = _fields(data, f"{source}: ModelProto", {1: "pieces", 2: "trainer_spec",
                                                  3: "normalizer_spec", 5: "denormalizer_spec"})
    pieces, scores, types = [], [], []
    for i, (wire, raw) in enumerate(top.get(1, ())):
        where = f"{source}: pieces[{i}]"
        if wire != 2:
            raise CheckpointError(f"{where}: wire type {wire}, expected 2 (a message)")
        f = _fields(raw, where, {1: "piece", 2: "score", 3: "type"})
        piece = _text(_scalar(f, 1, "piece", 2, b"", where), f"{where}.piece")
        score = struct.unpack("<f", _scalar(f, 2, "score", 5, b"\0\0\0\0", where))[0]
        kind = _scalar(f, 3, "type", 0, NORMAL, where)
        if kind not in TYPE_NAMES:
            raise CheckpointError(f"{where}.type: {kind} is not a piece type "
                                  f"({sorted(TYPE_NAMES)})")
        pieces.append(piece)
        scores.append(score)
        types.append(kind)
    where = f"{source}: trainer_spec"
    trainer = _fields(_submessage(top, 2), where, {3: "model_type", 24: "treat_whitespace_as_suffix",
                                                   35: "byte_fallback", 44: "unk_surface",
                                                   45: "unk_piece", 46: "bos_piece",
                                                   47: "eos_piece"})
    model_type = _scalar(trainer, 3, "model_type", 0, 1, where)        # default: UNIGRAM
    spec = dict(pieces=pieces, scores=scores, types=types,
                model_type=_MODEL_TYPES.get(model_type, f"type {model_type}"),
                byte_fallback=_bool(trainer, 35, "byte_fallback", False, where),
                treat_whitespace_as_suffix=_bool(trainer, 24, "treat_whitespace_as_suffix",
                                                 False, where))
    for number, name, default in ((45, "unk_piece", "<unk>"), (46, "bos_piece", "<s>"),
                                  (47, "eos_piece", "</s>"), (44, "unk_surface", UNK_SURFACE)):
        spec[name] = _text(_scalar(trainer, number, name, 2, default.encode(), where),
                           f"{where}.{name}")
    where = f"{source}: normalizer_spec"
    norm = _fields(_submessage(top, 3), where, {1: "name", 2: "precompiled_charsmap",
                                                3: "add_dummy_prefix",
                                                4: "remove_extra_whitespaces",
                                                5: "escape_whitespaces"})
    spec["normalizer_name"] = _text(_scalar(norm, 1, "name", 2, b"", where), f"{where}.name")
    spec["precompiled_charsmap"] = len(_scalar(norm, 2, "precompiled_charsmap", 2, b"", where))
    for number, name in ((3, "add_dummy_prefix"), (4, "remove_extra_whitespaces"),
                         (5, "escape_whitespaces")):
        spec[name] = _bool(norm, number, name, True, where)
    where = f"{source}: denormalizer_spec"
    denorm = _fields(_submessage(top, 5), where, {2: "precompiled_charsmap"})
    spec["denormalizer_charsmap"] = len(_scalar(denorm, 2, "precompiled_charsmap", 2, b"", where))
    return spec


# ----------------------------------------------------------------------------------------
# llama2.c's tokenizer.bin
# ----------------------------------------------------------------------------------------

def read_llama2c_tokenizer(data, source="tokenizer.bin"):
    """(pieces, scores) of llama2.c's ``tokenizer.bin``.

    Layout (little-endian): int32 ``max_token_length``, then per token float32 ``score``,
    int32 ``length`` and ``length`` bytes of UTF-8, to the end of the file. llama2.c's
    exporter writes the pieces with ``"▁"`` replaced by a space (kept so here: llama2.c
    encodes and prints them so), and BOS / EOS as ``"\\n<s>\\n"`` / ``"\\n</s>\\n"``; those
    two are read back as ``<s>`` and ``</s>``.

    Examples
    --------
    >>> def token(score, text):
    ...     raw = text.encode()
    ...     return struct.pack("<fi", score, len(raw)) + raw
    >>> data = struct.pack("<i", 5) + token(0.0, "<unk>") + token(-1.0, " the")
    >>> read_llama2c_tokenizer(data)
    (['<unk>', ' the'], [0.0, -1.0])
    >>> read_llama2c_tokenizer(data[:-2])
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: tokenizer.bin: token 1: length 4 runs past the end of the file (2 bytes left)
    """
    if len(data) < 4:
        raise CheckpointError(f"{source}: {len(data)} bytes, too short for llama2.c's "
                              f"tokenizer.bin (an int32 max_token_length first)")
    max_length = struct.unpack_from("<i", data)[0]
    if not 0 < max_length <= len(data):
        raise CheckpointError(f"{source}: max_token_length {max_length} is not in "
                              f"[1, {len(data)}] (the file's size)")
    pieces, scores, pos = [], [], 4
    while pos < len(data):
        where = f"{source}: token {len(pieces)}"
        if len(data) - pos < 8:
            raise CheckpointError(f"{where}: truncated (score and length need 8 bytes, "
                                  f"{len(data) - pos} left)")
        score, length = struct.unpack_from("<fi", data, pos)
        pos += 8
        if not 0 <= length <= max_length:
            raise CheckpointError(f"{where}: length {length} is not in [0, max_token_length="
                                  f"{max_length}]")
        if length > len(data) - pos:
            raise CheckpointError(f"{where}: length {length} runs past the end of the file "
                                  f"({len(data) - pos} bytes left)")
        piece = _text(data[pos:pos + length], where)
        pos += length
        piece = {"\n<s>\n": "<s>", "\n</s>\n": "</s>"}.get(piece, piece)
        pieces.append(piece)
        scores.append(score)
    return pieces, scores


def read_tokenizer_file(path):
    """The bytes of the regular file ``path`` (at most MAX_MODEL_BYTES).

    >>> with open("tokenizer.bin", "wb") as f:
    ...     _ = f.write(b"\\x05\\0\\0\\0")
    >>> read_tokenizer_file("tokenizer.bin")
    b'\\x05\\x00\\x00\\x00'
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_MODEL_BYTES:
            raise CheckpointError(f"{os.fspath(path)}: {size:,} bytes, larger than any "
                                  f"tokenizer (at most {MAX_MODEL_BYTES:,})")
        return f.read(MAX_MODEL_BYTES + 1)
