"""Reading any tokenizer file: the one place that knows every kind of file and class.

- :func:`load_tokenizer` -- a file ``tok.save`` wrote (npgpt's JSON, rebuilt by
  :func:`~.base.tokenizer_from_dict`), a SentencePiece ``tokenizer.model``, llama2.c's
  ``tokenizer.bin`` (:class:`~.sentencepiece.SentencePieceTokenizer`) or a GGUF file's
  vocabulary (:func:`~.gguf.tokenizer_from_gguf`), told apart by their first bytes
  (``_file_kind``).

The tokenizer classes import :mod:`.base`, never this module; this module imports them.
"""

from __future__ import annotations

from ..io.files import open_regular
from .base import read_tokenizer_json, tokenizer_from_dict, tokenizer_to_dict
from .gguf import tokenizer_from_gguf
from .sentencepiece import SentencePieceTokenizer

__all__ = ["load_tokenizer", "tokenizer_from_dict", "tokenizer_to_dict"]


def load_tokenizer(path):
    """Read any tokenizer written by ``tok.save(path)``, a SentencePiece ``tokenizer.model``,
    llama2.c's ``tokenizer.bin`` (see :class:`~.sentencepiece.SentencePieceTokenizer`) or the
    vocabulary of a GGUF file, a vocab-only one included (:func:`~.gguf.tokenizer_from_gguf`),
    recognised by their first bytes.

    Examples
    --------
    >>> from npgpt.tokenizers import WordTokenizer
    >>> WordTokenizer(["hello", "world"]).save("words.json")
    >>> tok = load_tokenizer("words.json")
    >>> tok
    WordTokenizer(vocab_size=2, unk_token=None)
    >>> tok.encode("world hello")
    [1, 0]

    Anything else is a ValueError naming the file and the problem:

    >>> with open("broken.json", "w") as f:
    ...     _ = f.write('{"type": "char", "chars": 42}')
    >>> load_tokenizer("broken.json")
    Traceback (most recent call last):
    ...
    ValueError: broken.json: the tokenizer's 'chars' must be str or list, got 42
    """
    kind = _file_kind(path)
    if kind == "gguf":                  # a GGUF file's vocabulary (a vocab-only file is enough)
        from ..io.gguf_file import read_gguf_metadata          # (NumPy-backed; read on demand)
        return tokenizer_from_gguf(read_gguf_metadata(path))
    if kind != "json":
        if kind == "sentencepiece":
            return SentencePieceTokenizer.from_model_file(path)
        return SentencePieceTokenizer.from_llama2c(path)
    return read_tokenizer_json(path)


def _file_kind(path):
    """"json", "gguf" (starts ``GGUF``), "sentencepiece" (a ``tokenizer.model`` protobuf) or
    "llama2c" (llama2.c's ``tokenizer.bin``), from the first bytes.

    A JSON file starts with ``{`` (after blanks). A ``.model`` starts with its first piece:
    field 1 as a message (byte 0x0A), then that piece's non-zero length. llama2.c's file
    starts with a little-endian int32 below 256 (the longest token's length), so its bytes
    1 to 3 are zero.
    """
    with open_regular(path) as f:
        head = f.read(64)
    if head.lstrip()[:1] == b"{":
        return "json"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:1] == b"\x0a" and head[1:2] not in (b"", b"\x00"):
        return "sentencepiece"
    if len(head) >= 4 and head[1:4] == b"\0\0\0" and head[0] > 0:
        return "llama2c"
    return "json"                       # let the JSON reader say what is wrong
