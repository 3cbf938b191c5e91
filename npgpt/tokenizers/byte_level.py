"""GPT-2's byte-level spelling, and the two files written in it.

Types: a token string spells bytes as printable characters (a space is ``"Ġ"``); ``vocab``
maps token string -> id.

- :func:`bytes_to_unicode` -- the table byte -> character of GPT-2's ``vocab.json`` and
  ``merges.txt`` (also the ByteLevel steps of a ``tokenizer.json`` and GGUF's ``"gpt2"``
  vocabularies);
- :func:`check_gpt2_vocab` and :func:`read_gpt2_merges` -- those two files, checked, for
  :meth:`~.bpe.BPETokenizer.from_gpt2`.
"""

from __future__ import annotations

import io

from ..io.errors import short_repr
from ..io.files import open_regular
from .base import MAX_TOKEN_ID, checked_id


def bytes_to_unicode():
    """GPT-2's table byte -> printable character (how ``vocab.json``/``merges.txt`` spell bytes).

    The 188 bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``,
    ``®``..``ÿ``) map to themselves; the other 68 map, in byte order, to ``chr(256)``,
    ``chr(257)``, ... So the space byte 0x20 is ``"Ġ"`` (U+0120) and newline 0x0A is ``"Ċ"``.

    Returns
    -------
    dict[int, str]
        256 entries.

    Examples
    --------
    >>> t = bytes_to_unicode()
    >>> t[ord("A")], t[0x20], t[0x0A]
    ('A', 'Ġ', 'Ċ')
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return dict(sorted(table.items()))


def check_gpt2_vocab(vocab, path):
    """``vocab`` (token -> id, read from ``path``) if every id is valid and used once.

    >>> check_gpt2_vocab({"a": 0, "b": 1}, "vocab.json")
    {'a': 0, 'b': 1}
    >>> check_gpt2_vocab({"a": 0, "b": 0}, "vocab.json")
    Traceback (most recent call last):
        ...
    ValueError: vocab.json: tokens 'a' and 'b' share the id 0
    """
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: must hold a JSON object token -> id, got "
                         f"{short_repr(vocab)}")
    owner = {}
    for token, i in vocab.items():
        if type(i) is not int or not 0 <= i <= MAX_TOKEN_ID:
            i = checked_id(i, f"{path}: the id of {short_repr(token)}")
        if i in owner:
            raise ValueError(f"{path}: tokens {short_repr(owner[i])} and {short_repr(token)} "
                             f"share the id {i}")
        owner[i] = token
    return vocab


def read_gpt2_merges(path, vocab, vocab_path):
    """(merges, merge_ids) of GPT-2's ``merges.txt`` at ``path``, spelled against ``vocab``.

    >>> with open("merges.txt", "w", encoding="utf-8") as f:
    ...     _ = f.write("#version: 0.2\\na b\\nab c\\n")
    >>> read_gpt2_merges("merges.txt", {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, "vocab.json")
    ([(0, 1), (3, 2)], [3, 4])
    """
    with open_regular(path) as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 ({e.reason})") from None
    merges, merge_ids = [], []
    for n, line in enumerate(io.StringIO(text, newline=None), 1):    # universal newlines
        line = line.rstrip("\r\n")
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{path}, line {n}: expected 'a b', got {short_repr(line)}")
        a, b = parts
        for t in (a, b, a + b):
            if t not in vocab:
                raise ValueError(f"{path}, line {n}: {short_repr(t)} is not in {vocab_path}")
        merges.append((vocab[a], vocab[b]))
        merge_ids.append(vocab[a + b])
    return merges, merge_ids
