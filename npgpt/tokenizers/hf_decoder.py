"""A ``tokenizer.json``'s decoder: token strings -> text.

Types: a step is a tuple ``(kind, parameters...)``; the pieces it maps are ``str`` (or
``bytes`` inside :func:`run_decoder` with ``inside=True``).

Supported: ``Sequence``, ``ByteLevel``, ``Replace``, ``ByteFallback``, ``Fuse``, ``Strip``,
``Metaspace``.
"""

from __future__ import annotations

import re

from .byte_level import bytes_to_unicode
from .hf_fields import char_field, count_field, sequence_parts, spec_field, spec_kind, \
    string_pattern
from .hf_pre_tokenizer import read_metaspace

# GPT-2's character -> byte table, for the ByteLevel decoder.
_CHAR_BYTES = {c: b for b, c in bytes_to_unicode().items()}

_DECODERS = {"Sequence": ("decoders",), "ByteLevel": ("add_prefix_space", "trim_offsets",
                                                      "use_regex"),
             "Replace": ("pattern", "content"), "ByteFallback": (), "Fuse": (),
             "Strip": ("content", "start", "stop"),
             "Metaspace": ("replacement", "prepend_scheme", "split", "add_prefix_space",
                           "str_rep")}
_BYTE_TOKEN = re.compile(r"<0x\+?[0-9A-Fa-f]{1,2}>\Z")


def read_decoder(spec, where="decoder"):
    """The decoder of ``spec`` as a flat list of steps ``(kind, parameters...)``.

    >>> read_decoder({"type": "Sequence", "decoders": [
    ...     {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
    ...     {"type": "ByteFallback"}, {"type": "Fuse"},
    ...     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    [('Replace', '▁', ' '), ('ByteFallback',), ('Fuse',), ('Strip', ' ', 1, 0)]
    """
    if spec is None:
        return None
    kind = spec_kind(spec, where, _DECODERS)
    if kind == "Sequence":
        return [s for part, at in sequence_parts(spec, "decoders", where)
                for s in read_decoder(part, at)]
    if kind == "Replace":
        return [(kind, string_pattern(spec, where),
                 spec_field(spec, "content", (str,), where, required=True))]
    if kind == "Strip":
        return [(kind, char_field(spec, "content", where), count_field(spec, "start", where),
                 count_field(spec, "stop", where))]
    if kind == "Metaspace":
        read_metaspace(spec, where)                                   # the same checks
        return [(kind, char_field(spec, "replacement", where),
                 spec_field(spec, "prepend_scheme", (str,), where, "always"))]
    if kind == "ByteLevel":
        for key in ("add_prefix_space", "trim_offsets"):
            spec_field(spec, key, (bool,), where, required=True)
    return [(kind,)]


def _byte_of(token):
    """The byte of a ``<0xNN>`` token (its two characters read as hexadecimal), else None."""
    if len(token.encode("utf-8")) == 6 and _BYTE_TOKEN.match(token):
        return int(token[3:5], 16)
    return None


def _level_bytes(token):
    """ByteLevel: each character back to its byte; a token with another character is its
    own UTF-8 (an added token such as ``"<|x y|>"``)."""
    try:
        return bytes([_CHAR_BYTES[c] for c in token])
    except KeyError:
        return token.encode("utf-8")


def run_decoder(steps, tokens, inside=False):
    """Run the decoder ``steps`` over token strings; the text (``inside``: its bytes).

    Each step maps a list of pieces to a list of pieces, as the library's ``decode_chain``:

    - ``ByteLevel``: all pieces -> one text, bytes decoded as UTF-8 with U+FFFD for bad ones;
    - ``Replace(s, c)``: ``piece.replace(s, c)``;
    - ``ByteFallback``: a run of ``<0xNN>`` pieces -> its UTF-8 text, or one U+FFFD per
      byte if the run is not valid UTF-8;
    - ``Fuse``: all pieces -> one;
    - ``Strip(c, start, stop)``: up to ``start`` characters ``c`` off the front of each
      piece, ``stop`` off the back;
    - ``Metaspace(r)``: ``r`` -> space, except in the first piece, where it is dropped
      (unless the prepend scheme is ``"never"``).

    With ``inside=True`` the pieces are read as if inside a longer text -- ``Strip`` and
    Metaspace's first-piece rule do nothing -- and bytes stay bytes (no U+FFFD): that is
    :meth:`HFTokenizer.token_bytes`. No decoder: the pieces joined with spaces.

    >>> steps = read_decoder({"type": "Sequence", "decoders": [
    ...     {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
    ...     {"type": "ByteFallback"}, {"type": "Fuse"},
    ...     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    >>> run_decoder(steps, ["▁H", "i", "<0xC3>", "<0xA9>", "▁there"])
    'Hié there'
    >>> run_decoder(steps, ["▁H", "<0xC3>"], inside=True)
    b' H\\xc3'
    """
    if steps is None:
        if inside:
            return "".join(" " + t for t in tokens).encode("utf-8")
        return " ".join(tokens)
    pieces = list(tokens)
    for step in steps:
        kind = step[0]
        if kind == "ByteLevel":
            data = b"".join(p if isinstance(p, bytes) else _level_bytes(p) for p in pieces)
            pieces = [data if inside else data.decode("utf-8", errors="replace")]
        elif kind == "Replace":
            pieces = [p.replace(step[1], step[2]) if isinstance(p, str) else
                      p.replace(step[1].encode("utf-8"), step[2].encode("utf-8")) for p in pieces]
        elif kind == "ByteFallback":
            pieces = _byte_fallback(pieces, inside)
        elif kind == "Fuse":
            if any(isinstance(p, bytes) for p in pieces):
                pieces = [b"".join(p if isinstance(p, bytes) else p.encode("utf-8")
                                   for p in pieces)]
            else:
                pieces = ["".join(pieces)]
        elif kind == "Strip" and not inside:
            _, c, start, stop = step
            pieces = [_strip(p, c, start, stop) for p in pieces]
        elif kind == "Metaspace":
            _, r, scheme = step
            pieces = [p.replace(r, "" if i == 0 and scheme != "never" and not inside else " ")
                      if isinstance(p, str) else p for i, p in enumerate(pieces)]
    if inside:
        return b"".join(p if isinstance(p, bytes) else p.encode("utf-8") for p in pieces)
    return "".join(pieces)


def _byte_fallback(pieces, inside):
    out, run = [], []

    def flush():
        if run:
            data = bytes(run)
            if inside:
                out.append(data)
            else:
                try:
                    out.append(data.decode("utf-8"))
                except UnicodeDecodeError:
                    out.extend(["\ufffd"] * len(run))
            run.clear()
    for p in pieces:
        b = _byte_of(p) if isinstance(p, str) else None
        if b is None:
            flush()
            out.append(p)
        else:
            run.append(b)
    flush()
    return out


def _strip(piece, c, start, stop):
    """Strip's rule on one piece (the library's loops, which stop at the first other
    character)."""
    if isinstance(piece, bytes):
        return piece
    begin, end = 0, len(piece)
    while begin < min(start, len(piece)) and piece[begin] == c:
        begin += 1
    for i in range(min(stop, len(piece))):
        if piece[len(piece) - i - 1] != c:
            break
        end = len(piece) - i - 1
    return piece[begin:end]
