"""Tokenizers: text -> token ids -> text.

Shapes: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode`` returns a
``list[int]``, ``decode`` also accepts a 1-D NumPy integer array.

Three tokenizers, from the seed tutorial's toy to GPT-2's:

- :class:`WordTokenizer` -- the seed's word vocabulary: split on whitespace, one id per word.
- :class:`CharTokenizer` -- one id per character (what small character-level models train on).
- :class:`BPETokenizer` -- byte-level byte-pair encoding exactly as GPT-2 (and tiktoken) do it:
  text -> UTF-8 bytes -> pre-tokens (GPT-2's regex) -> merges applied by rank.

Every tokenizer has ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
``to_dict()`` (a JSON-serialisable dict with a ``"type"`` key), ``save(path)`` / ``load(path)``
(JSON files), and :func:`tokenizer_from_dict` rebuilds any of them -- that is how tokenizers
travel inside npgpt checkpoints.

Errors are ``ValueError`` naming the bad input: unknown words or characters (all of them),
ids out of range (all of them), lone surrogates (with their position; such a string has no
UTF-8 form).

Only the standard library is used (``re``, ``unicodedata``, ``json``, ``base64``, ``heapq``).
"""

from __future__ import annotations

import base64
import heapq
import json
import re
import unicodedata
from collections import Counter

__all__ = ["WordTokenizer", "CharTokenizer", "BPETokenizer", "tokenizer_from_dict",
           "load_tokenizer", "bytes_to_unicode", "gpt2_pattern", "gpt2_split", "GPT2_PATTERN",
           "GPT2_SPECIAL_TOKENS"]

#: GPT-2's pre-tokenisation pattern as written for the third-party ``regex`` module (and for
#: tiktoken). :func:`gpt2_pattern` is the same pattern for the standard-library ``re``.
GPT2_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                r"""|\s+(?!\S)|\s+""")

#: GPT-2's only special token and its id.
GPT2_SPECIAL_TOKENS = {"<|endoftext|>": 50256}

# Unicode's White_Space property (PropList.txt), the meaning of \s in tiktoken's Rust regex.
# Python's own \s also matches U+001C..U+001F (str.isspace), which GPT-2 does not treat as
# whitespace, so the pattern below spells whitespace out instead of using \s.
_WHITE_SPACE = ([(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
                 (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
                 (0x3000, 0x3000)])

_MAX_CACHE = 100_000     # cached pre-tokens per BPETokenizer before the cache is cleared


# ----------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------

def _check_text(text, what="text"):
    """Return ``text.encode("utf-8")``; ValueError for non-str input or a lone surrogate."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} contains a lone surrogate U+{ord(text[e.start]):04X} at position {e.start}; "
            "such a string has no UTF-8 form (decode bytes with errors='replace' or "
            "'surrogateescape' handling before tokenizing)") from None


def _as_id_list(ids):
    """A 1-D sequence / array of integer ids -> list of Python ints (ValueError otherwise)."""
    if hasattr(ids, "ndim"):                       # NumPy array (or array-like with ndim)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got an array of shape {tuple(ids.shape)}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise ValueError(f"ids must be integers, got {i!r}")
    return [i.__index__() for i in out]


def _raise_bad_ids(ids, is_valid, vocab_size):
    bad = sorted({i for i in ids if not is_valid(i)})
    shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
    raise ValueError(f"token ids out of range for a vocabulary of size {vocab_size}: {shown}")


def _list_unknown(items, what):
    unique = list(dict.fromkeys(items))
    shown = ", ".join(repr(u) for u in unique[:50]) + (", ..." if len(unique) > 50 else "")
    return f"{len(unique)} unknown {what}: {shown}"


class _Tokenizer:
    """Shared behaviour: ``save``/``load`` as JSON, ``len(tok) == tok.vocab_size``."""

    type_name = None

    def __len__(self):
        return self.vocab_size

    def save(self, path):
        """Write ``self.to_dict()`` as JSON to ``path`` (UTF-8)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by ``save`` (the ``"type"`` key must match this class)."""
        tok = load_tokenizer(path)
        if not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {type(tok).__name__}, not a {cls.__name__}")
        return tok

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    __hash__ = None


# ----------------------------------------------------------------------------------------
# WordTokenizer: the seed's vocabulary
# ----------------------------------------------------------------------------------------

class WordTokenizer(_Tokenizer):
    """The seed tutorial's tokenizer: one id per whitespace-separated word.

    ``encode(text)`` is ``[vocabulary.index(w) for w in text.split()]`` and ``decode(ids)`` is
    ``" ".join(vocabulary[i] for i in ids)``. Unlike the seed, which silently dropped unknown
    words, an unknown word raises a ValueError listing every unknown word -- or maps to
    ``unk_token`` when one is given. ``decode(encode(s)) == " ".join(s.split())``.

    Parameters
    ----------
    vocabulary : sequence of str
        The words; word ``vocabulary[i]`` has id ``i``. Words must be unique, non-empty and
        contain no whitespace (``text.split()`` could never produce them).
    unk_token : str, optional
        A word of ``vocabulary`` that unknown words are mapped to.

    Examples
    --------
    >>> tok = WordTokenizer(["hello", "world", "this", "is", "a", "test"])
    >>> tok.encode("hello world this is")
    [0, 1, 2, 3]
    >>> tok.decode([0, 1])
    'hello world'
    >>> tok.encode("hello there")
    Traceback (most recent call last):
    ...
    ValueError: 1 unknown word: 'there'
    """

    type_name = "word"

    def __init__(self, vocabulary, unk_token=None):
        if isinstance(vocabulary, str):
            raise TypeError("vocabulary must be a sequence of words, not one str "
                            "(use vocabulary.split())")
        words = list(vocabulary)
        for w in words:
            if not isinstance(w, str):
                raise TypeError(f"vocabulary entries must be str, got {w!r}")
            _check_text(w, "a vocabulary word")
            if not w or w.split() != [w]:
                raise ValueError(f"vocabulary words must be non-empty and contain no "
                                 f"whitespace, got {w!r}")
        index = {}
        for i, w in enumerate(words):
            if w in index:
                raise ValueError(f"duplicate vocabulary entry {w!r} at positions {index[w]} "
                                 f"and {i}")
            index[w] = i
        if not words:
            raise ValueError("vocabulary is empty")
        if unk_token is not None and unk_token not in index:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary; add it to the "
                             "vocabulary first")
        self.vocabulary = tuple(words)
        self.unk_token = unk_token
        self._index = index

    @property
    def vocab_size(self):
        """Number of words (ids are 0 .. vocab_size - 1)."""
        return len(self.vocabulary)

    def encode(self, text):
        """Split ``text`` on whitespace and map each word to its id."""
        _check_text(text)
        words = text.split()
        index = self._index
        if self.unk_token is not None:
            unk = index[self.unk_token]
            return [index.get(w, unk) for w in words]
        unknown = [w for w in words if w not in index]
        if unknown:
            raise ValueError(_list_unknown(unknown, "word" if len(set(unknown)) == 1 else "words"))
        return [index[w] for w in words]

    def decode(self, ids):
        """Join the words of ``ids`` with single spaces."""
        ids = _as_id_list(ids)
        n = len(self.vocabulary)
        if any(i < 0 or i >= n for i in ids):
            _raise_bad_ids(ids, lambda i: 0 <= i < n, n)
        return " ".join(self.vocabulary[i] for i in ids)

    def to_dict(self):
        return {"type": self.type_name, "vocabulary": list(self.vocabulary),
                "unk_token": self.unk_token}

    @classmethod
    def from_dict(cls, d):
        _check_type(d, cls.type_name)
        return cls(d["vocabulary"], unk_token=d.get("unk_token"))

    def __repr__(self):
        return f"WordTokenizer(vocab_size={self.vocab_size}, unk_token={self.unk_token!r})"


# ----------------------------------------------------------------------------------------
# CharTokenizer
# ----------------------------------------------------------------------------------------

class CharTokenizer(_Tokenizer):
    """One id per character: id ``i`` is ``chars[i]``.

    ``CharTokenizer.from_text(text)`` uses the sorted unique characters of ``text`` (the
    convention of character-level training scripts such as nanoGPT's shakespeare_char).
    ``decode(ids)`` is ``"".join(chars[i] for i in ids)``, so ``decode(encode(s)) == s``.

    Parameters
    ----------
    chars : str or sequence of str
        The characters, each a single code point, without duplicates.

    Examples
    --------
    >>> tok = CharTokenizer.from_text("hello world")
    >>> tok.chars
    ' dehlorw'
    >>> tok.encode("hold")
    [3, 5, 4, 1]
    >>> tok.decode([3, 5, 4, 1])
    'hold'
    >>> tok.vocab_size
    8
    """

    type_name = "char"

    def __init__(self, chars):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"each entry of chars must be a single character, got {c!r}")
        _check_text("".join(chars), "chars")
        index = {}
        for i, c in enumerate(chars):
            if c in index:
                raise ValueError(f"duplicate character {c!r} at positions {index[c]} and {i}")
            index[c] = i
        if not chars:
            raise ValueError("chars is empty")
        self.chars = "".join(chars)
        self._index = index

    @classmethod
    def from_text(cls, text):
        """The tokenizer of the sorted unique characters of ``text``."""
        _check_text(text)
        if not text:
            raise ValueError("text is empty: no characters to build a vocabulary from")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        """Number of characters (ids are 0 .. vocab_size - 1)."""
        return len(self.chars)

    def encode(self, text):
        """Map each character of ``text`` to its id; unknown characters raise, all listed."""
        _check_text(text)
        index = self._index
        try:
            return [index[c] for c in text]
        except KeyError:
            unknown = [c for c in text if c not in index]
            raise ValueError(_list_unknown(unknown, "character" if len(set(unknown)) == 1
                                           else "characters")) from None

    def decode(self, ids):
        """Concatenate the characters of ``ids``."""
        ids = _as_id_list(ids)
        n = len(self.chars)
        if any(i < 0 or i >= n for i in ids):
            _raise_bad_ids(ids, lambda i: 0 <= i < n, n)
        chars = self.chars
        return "".join([chars[i] for i in ids])

    def to_dict(self):
        return {"type": self.type_name, "chars": self.chars}

    @classmethod
    def from_dict(cls, d):
        _check_type(d, cls.type_name)
        return cls(d["chars"])

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# ----------------------------------------------------------------------------------------
# Byte-level BPE: the pieces
# ----------------------------------------------------------------------------------------

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


_CLASSES = None
_PATTERNS = {}


def _class_string(ranges):
    """[(lo, hi), ...] -> the body of a regex character class, with \\u/\\U escapes."""
    def esc(c):
        return f"\\u{c:04X}" if c <= 0xFFFF else f"\\U{c:08X}"
    return "".join(esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}" for lo, hi in ranges)


def _unicode_classes():
    """Character-class bodies for \\p{L}, \\p{N} and White_Space, built once from unicodedata.

    \\p{L} = every code point whose general category starts with "L" (Lu Ll Lt Lm Lo),
    \\p{N} = category starts with "N" (Nd Nl No). They follow the running Python's Unicode
    database (``unicodedata.unidata_version``).
    """
    global _CLASSES
    if _CLASSES is None:
        ranges = {"L": [], "N": []}
        category = unicodedata.category
        start = {"L": None, "N": None}
        for cp in range(0x110001):
            major = category(chr(cp))[0] if cp <= 0x10FFFF else ""
            for key in ("L", "N"):
                if major == key:
                    if start[key] is None:
                        start[key] = cp
                elif start[key] is not None:
                    ranges[key].append((start[key], cp - 1))
                    start[key] = None
        bmp = {k: [(lo, min(hi, 0xFFFF)) for lo, hi in r if lo <= 0xFFFF]
               for k, r in ranges.items()}
        _CLASSES = {"L": _class_string(ranges["L"]), "N": _class_string(ranges["N"]),
                    "S": _class_string(_WHITE_SPACE),
                    "L_bmp": _class_string(bmp["L"]), "N_bmp": _class_string(bmp["N"])}
    return _CLASSES


def _gpt2_source(L, N, S):
    return (f"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+"
            f"|[{S}]+(?![^{S}])|[{S}]+")


def gpt2_pattern():
    """GPT-2's pre-tokenisation regex compiled with the standard-library ``re``.

    GPT-2's pattern (:data:`GPT2_PATTERN`) needs ``\\p{L}`` (letters) and ``\\p{N}`` (numbers),
    which ``re`` lacks; here they are explicit character classes derived from
    ``unicodedata`` (built once, on first use, in a fraction of a second). ``\\s`` is spelled
    out as Unicode's White_Space set, as in tiktoken's Rust regex (Python's ``\\s`` would also
    match U+001C..U+001F). The alternatives, in order::

        's|'t|'re|'ve|'m|'ll|'d     English contractions
         ?\\p{L}+                    a word, with its leading space
         ?\\p{N}+                    a number, with its leading space
         ?[^\\s\\p{L}\\p{N}]+          punctuation/symbols, with its leading space
        \\s+(?!\\S)                   whitespace, leaving the last space to the next word
        \\s+                         trailing whitespace

    Examples
    --------
    >>> gpt2_pattern().findall("Hello world's  123!")
    ['Hello', ' world', "'s", ' ', ' 123', '!']
    """
    if "gpt2" not in _PATTERNS:
        c = _unicode_classes()
        _PATTERNS["gpt2"] = re.compile(_gpt2_source(c["L"], c["N"], c["S"]))
    return _PATTERNS["gpt2"]


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _astral_stand_in(match):
    major = unicodedata.category(match.group())[0]
    return "A" if major == "L" else "0" if major == "N" else "!"


def gpt2_split(text):
    """``gpt2_pattern().findall(text)``, about five times faster.

    ``re`` tests the astral (> U+FFFF) ranges of a character class one by one, and every
    character that is not a letter pays for that scan. GPT-2's pattern sees a character only
    through its class (letter, number, whitespace, other) and a few ASCII literals, so the
    split runs a copy of the pattern whose classes stop at U+FFFF, on a copy of the text in
    which each astral character is replaced by a BMP character of the same class ("A", "0"
    or "!"); the spans found cut the original text. Same pieces, exactly.

    Examples
    --------
    >>> gpt2_split("emoji 👍🏽 and 𝐀𝐁 ok")
    ['emoji', ' 👍🏽', ' and', ' 𝐀𝐁', ' ok']
    """
    if "gpt2_bmp" not in _PATTERNS:
        c = _unicode_classes()
        _PATTERNS["gpt2_bmp"] = re.compile(_gpt2_source(c["L_bmp"], c["N_bmp"], c["S"]))
    regex = _PATTERNS["gpt2_bmp"]
    if text.isascii() or not _ASTRAL.search(text):
        return regex.findall(text)
    stand_in = _ASTRAL.sub(_astral_stand_in, text)
    return [text[m.start():m.end()] for m in regex.finditer(stand_in)]


def _compile_pattern(pattern):
    """The pre-tokenizer of ``pattern``: a function text -> list of pre-tokens."""
    if pattern == "gpt2":
        return gpt2_split
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be 'gpt2' or a regular-expression str, got {pattern!r}")
    if pattern not in _PATTERNS:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a valid Python regular expression: {e}")
        if compiled.groups:
            raise ValueError(f"pattern {pattern!r} has capturing groups; use (?:...) so that "
                             "findall returns whole pre-tokens")
        _PATTERNS[pattern] = compiled
    return _PATTERNS[pattern].findall


def _byte_pair_merge(piece, ranks, max_rank=None):
    """Split ``piece`` (bytes) into tokens by merging adjacent parts in rank order.

    Start from single bytes; repeatedly merge the adjacent pair whose concatenation has the
    lowest rank in ``ranks`` (bytes -> rank; the leftmost pair on ties, which can only be two
    copies of the same bytes), until no adjacent pair is a token. This is tiktoken's rule.
    With ``max_rank`` only ranks < max_rank are used.

    Short pieces use the plain quadratic scan; long ones a heap (O(n log n)), same result.

    Examples
    --------
    >>> _byte_pair_merge(b"aaab", {b"aa": 0, b"ab": 1, b"aab": 2})
    [b'aa', b'ab']
    """
    n = len(piece)
    if n > 48:
        return _byte_pair_merge_heap(piece, ranks, max_rank)
    parts = [piece[i:i + 1] for i in range(n)]
    get = ranks.get
    while len(parts) > 1:
        best, where = max_rank, -1
        for i in range(len(parts) - 1):
            r = get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, where = r, i
        if where < 0:
            break
        parts[where:where + 2] = [parts[where] + parts[where + 1]]
    return parts


def _byte_pair_merge_heap(piece, ranks, max_rank=None):
    """The same merges as :func:`_byte_pair_merge`, with a heap of candidate pairs.

    Parts are spans ``piece[s:end[s]]``; a heap entry ``(rank, s, e)`` says "the part at s
    and the part after it together span s..e and have this rank". An entry is stale unless s
    is still a part start whose next part ends exactly at e (the rank depends only on the
    bytes piece[s:e], so a live entry is always current). Popping the smallest (rank, s) is
    "lowest rank, leftmost on ties".
    """
    n = len(piece)
    get = ranks.get
    end = list(range(1, n + 1))          # end[s]: end of the part starting at s; -1 if merged away
    prev = list(range(-1, n - 1))        # prev[s]: start of the part before the one at s
    heap = []
    for s in range(n - 1):
        r = get(piece[s:s + 2])
        if r is not None and (max_rank is None or r < max_rank):
            heap.append((r, s, s + 2))
    heapq.heapify(heap)
    while heap:
        r, s, e = heapq.heappop(heap)
        m = end[s]
        if m == -1 or m >= e or end[m] != e:
            continue                     # stale
        end[s], end[m] = e, -1           # merge [s, m) + [m, e) -> [s, e)
        if e < n:
            prev[e] = s
            r2 = get(piece[s:end[e]])
            if r2 is not None and (max_rank is None or r2 < max_rank):
                heapq.heappush(heap, (r2, s, end[e]))
        p = prev[s]
        if p >= 0:
            r2 = get(piece[p:e])
            if r2 is not None and (max_rank is None or r2 < max_rank):
                heapq.heappush(heap, (r2, p, e))
    parts, s = [], 0
    while s < n:
        parts.append(piece[s:end[s]])
        s = end[s]
    return parts


# ----------------------------------------------------------------------------------------
# BPETokenizer
# ----------------------------------------------------------------------------------------

class BPETokenizer(_Tokenizer):
    """Byte-level byte-pair encoding, as GPT-2 and tiktoken do it.

    Encoding ``text``:

    1. special tokens (e.g. ``"<|endoftext|>"``) are cut out first when allowed (below);
    2. the rest is split into pre-tokens with a regex (GPT-2's by default, see
       :func:`gpt2_pattern`); BPE never merges across pre-tokens, so
       ``encode(a + b) == encode(a) + encode(b)`` whenever ``a | b`` is a pre-token boundary;
    3. each pre-token is UTF-8 encoded; if its bytes are a token, that is its id; otherwise
       start from single bytes and repeatedly merge the adjacent pair whose concatenation has
       the lowest rank (earliest merge), leftmost on ties, until no pair is a token. This is
       tiktoken's rule; with GPT-2's ranks the ids equal tiktoken's ``gpt2`` encoding.
       Results are cached per pre-token.

    Decoding concatenates the tokens' bytes and decodes UTF-8 with ``errors="replace"`` (as
    GPT-2 and tiktoken do): a cut inside a multi-byte character decodes to U+FFFD.
    Use :meth:`decode_bytes` for the raw bytes (e.g. when streaming).
    ``decode(encode(s)) == s`` for every str without lone surrogates (which are rejected).

    Build one with :meth:`train`, :meth:`from_gpt2`, :meth:`from_tiktoken`, :meth:`load` or
    the constructor (a list of merges).

    Parameters
    ----------
    merges : sequence of (int, int)
        In rank order: merge ``i`` joins the tokens with ids ``merges[i]`` into a new token.
    special_tokens : dict[str, int], optional
        Special-token text -> id, e.g. ``{"<|endoftext|>": 50256}``.
    pattern : str
        ``"gpt2"`` (default) or a Python ``re`` pattern without capturing groups.
    byte_ids : sequence of 256 ints, optional
        ``byte_ids[b]`` is the id of the single byte ``b``; default ``b`` itself.
    merge_ids : sequence of ints, optional
        The id of each merged token; default ``256 + i``.

    Examples
    --------
    >>> tok = BPETokenizer.train("low lower lowest " * 20, vocab_size=260)
    >>> ids = tok.encode("lower")
    >>> ids, tok.decode(ids)
    ([257, 101, 114], 'lower')
    >>> [tok.token_bytes(i) for i in ids]
    [b'low', b'e', b'r']
    """

    type_name = "bpe"

    def __init__(self, merges, special_tokens=None, pattern="gpt2", byte_ids=None,
                 merge_ids=None):
        byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if len(byte_ids) != 256:
            raise ValueError(f"byte_ids must have 256 entries, got {len(byte_ids)}")
        merges = [(int(a), int(b)) for a, b in merges]
        merge_ids = (list(range(256, 256 + len(merges))) if merge_ids is None
                     else [int(i) for i in merge_ids])
        if len(merge_ids) != len(merges):
            raise ValueError(f"merge_ids has {len(merge_ids)} entries for {len(merges)} merges")
        decoder = {}
        for b, i in enumerate(byte_ids):
            if i in decoder:
                raise ValueError(f"id {i} is used for bytes {decoder[i]!r} and {bytes([b])!r}")
            decoder[i] = bytes([b])
        encoder = {v: k for k, v in decoder.items()}
        ranks = {}
        for rank, ((a, b), new) in enumerate(zip(merges, merge_ids)):
            if a not in decoder or b not in decoder:
                raise ValueError(f"merge {rank} ({a}, {b}) uses an id not defined before it")
            if new in decoder:
                raise ValueError(f"merge {rank} ({a}, {b}) reuses id {new}")
            token = decoder[a] + decoder[b]
            if token in encoder:
                raise ValueError(f"merge {rank} ({a}, {b}) makes {token!r}, already token "
                                 f"{encoder[token]}")
            decoder[new] = token
            encoder[token] = new
            ranks[token] = rank
        # When ids grow with the merge order they double as ranks (tiktoken's convention).
        if all(x < y for x, y in zip(merge_ids, merge_ids[1:])):
            ranks = encoder
        self._setup(encoder, ranks, decoder, special_tokens, pattern)
        self._merges = (merges, merge_ids)

    # -- construction helpers ------------------------------------------------------------

    def _setup(self, encoder, ranks, decoder, special_tokens, pattern):
        self._encoder = encoder          # token bytes -> id
        self._ranks = ranks              # token bytes -> merge priority (lower merges first)
        self._decoder = decoder          # id -> token bytes
        self.pattern = pattern
        self._split = _compile_pattern(pattern)
        self._cache = {}
        special = dict(special_tokens or {})
        for text, i in special.items():
            _check_text(text, "a special token")
            if not isinstance(text, str) or not text:
                raise ValueError(f"special tokens must be non-empty str, got {text!r}")
            if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise ValueError(f"special token {text!r} needs a non-negative int id, got {i!r}")
            if i in decoder:
                raise ValueError(f"special token {text!r} has id {i}, already the id of "
                                 f"{decoder[i]!r}")
        if len(set(special.values())) != len(special):
            raise ValueError(f"special tokens share ids: {special}")
        self.special_tokens = special
        self._special_decoder = {i: t.encode("utf-8") for t, i in special.items()}
        self._vocab_size = max(list(decoder) + list(special.values())) + 1
        self._merges = None
        self._special_regex = {}

    @classmethod
    def from_ranks(cls, ranks, special_tokens=None, pattern="gpt2"):
        """A tokenizer from tiktoken-style mergeable ranks: token bytes -> rank (= id).

        ``ranks`` must hold all 256 single bytes; a multi-byte token's rank is its merge
        priority (lower merges first) and also its id.

        Examples
        --------
        >>> ranks = {bytes([b]): b for b in range(256)}
        >>> ranks[b"ab"] = 256
        >>> BPETokenizer.from_ranks(ranks).encode("abc")
        [256, 99]
        """
        ranks = {bytes(t): int(r) for t, r in ranks.items()}
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"the ranks lack {len(missing)} single bytes (every byte must be a "
                             f"token): {missing[:20]}")
        decoder = {}
        for token, r in ranks.items():
            if r in decoder:
                raise ValueError(f"rank {r} is given to both {decoder[r]!r} and {token!r}")
            decoder[r] = token
        tok = cls.__new__(cls)
        tok._setup(ranks, ranks, decoder, special_tokens, pattern)
        return tok

    @classmethod
    def from_tiktoken(cls, path, special_tokens=None, pattern="gpt2"):
        """Read a tiktoken rank file: one ``<base64 token bytes> <rank>`` per line.

        The ranks become the ids (as in tiktoken). Special tokens are not in such files;
        for GPT-2 pass ``special_tokens=GPT2_SPECIAL_TOKENS`` (``{"<|endoftext|>": 50256}``).

        Examples
        --------
        >>> tok = BPETokenizer.from_tiktoken("gpt2.tiktoken",
        ...                                  special_tokens=GPT2_SPECIAL_TOKENS)  # doctest: +SKIP
        >>> tok.encode("Hello world")                                         # doctest: +SKIP
        [15496, 995]
        """
        ranks = {}
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    token, rank = line.split()
                    ranks[base64.b64decode(token, validate=True)] = int(rank)
                except ValueError:
                    raise ValueError(f"{path}, line {n}: expected '<base64> <rank>', "
                                     f"got {line[:80]!r}") from None
        return cls.from_ranks(ranks, special_tokens, pattern)

    @classmethod
    def from_gpt2(cls, vocab_json, merges_txt, pattern="gpt2"):
        """Read GPT-2's ``encoder.json``/``vocab.json`` and ``vocab.bpe``/``merges.txt``.

        Tokens are spelled with :func:`bytes_to_unicode`; ``merges.txt`` lists ``"a b"`` per
        line in rank order after a ``#version`` header. The ids are exactly those of the
        vocab file. Vocabulary entries that are neither a single byte nor the result of a
        merge are special tokens (for GPT-2: ``"<|endoftext|>"`` = 50256).
        """
        with open(vocab_json, encoding="utf-8") as f:
            vocab = json.load(f)
        byte_encoder = bytes_to_unicode()
        try:
            byte_ids = [vocab[byte_encoder[b]] for b in range(256)]
        except KeyError as e:
            raise ValueError(f"{vocab_json} lacks the single-byte token {e.args[0]!r}") from None
        merges, merge_ids, used = [], [], set(byte_ids)
        with open(merges_txt, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line or (n == 1 and line.startswith("#version")):
                    continue
                parts = line.split(" ")
                if len(parts) != 2:
                    raise ValueError(f"{merges_txt}, line {n}: expected 'a b', got {line!r}")
                a, b = parts
                for t in (a, b, a + b):
                    if t not in vocab:
                        raise ValueError(f"{merges_txt}, line {n}: {t!r} is not in {vocab_json}")
                merges.append((vocab[a], vocab[b]))
                merge_ids.append(vocab[a + b])
                used.add(vocab[a + b])
        special = {t: i for t, i in vocab.items() if i not in used}
        return cls(merges, special_tokens=special, pattern=pattern, byte_ids=byte_ids,
                   merge_ids=merge_ids)

    @classmethod
    def train(cls, text, vocab_size, pattern="gpt2", special_tokens=()):
        """Learn merges from ``text`` (minbpe's RegexTokenizer algorithm, deterministic).

        Start from the 256 byte tokens (ids 0..255) and the pre-tokens of ``text``; then
        repeatedly count adjacent pairs inside pre-tokens, merge the most frequent pair
        everywhere (left to right, non-overlapping) into a new token with the next id, until
        ``vocab_size`` is reached or no pair is left. Ties in frequency go to the smallest
        pair ``(id_a, id_b)``. A pair whose bytes are already a token is skipped.
        Special tokens get the ids after the merges.

        Parameters
        ----------
        text : str
        vocab_size : int
            At least ``256 + len(special_tokens)``; the result never exceeds it (it is smaller
            when the text runs out of pairs).
        pattern : str
            ``"gpt2"`` or a Python ``re`` pattern.
        special_tokens : sequence of str

        Examples
        --------
        >>> tok = BPETokenizer.train("aaab aaab", vocab_size=258)
        >>> [tok.token_bytes(i) for i in range(256, 258)]
        [b'aa', b'ab']
        """
        _check_text(text)
        special_tokens = list(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size must be at least 256 + {len(special_tokens)} special "
                             f"tokens = {256 + len(special_tokens)}, got {vocab_size}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"duplicate special tokens: {special_tokens}")
        counts = Counter(_compile_pattern(pattern)(text))
        words = [list(w.encode("utf-8")) for w in counts]
        freq = list(counts.values())
        vocab = {i: bytes([i]) for i in range(256)}
        known = set(vocab.values())
        stats = Counter()                # pair -> weighted count
        where = {}                       # pair -> indices of words containing it
        for k, w in enumerate(words):
            for pair in zip(w, w[1:]):
                stats[pair] += freq[k]
                where.setdefault(pair, set()).add(k)
        merges = []
        num_merges = vocab_size - 256 - len(special_tokens)
        while len(merges) < num_merges:
            best = None
            for pair, c in stats.items():
                if c <= 0:
                    continue
                if best is None or c > best[1] or (c == best[1] and pair < best[0]):
                    best = (pair, c)
            if best is None:
                break
            pair = best[0]
            token = vocab[pair[0]] + vocab[pair[1]]
            if token in known:           # same bytes as an existing token: never merge it
                del stats[pair]
                continue
            new = 256 + len(merges)
            merges.append(pair)
            vocab[new] = token
            known.add(token)
            a, b = pair
            for k in sorted(where.pop(pair, ())):
                w, f = words[k], freq[k]
                for p in zip(w, w[1:]):
                    stats[p] -= f
                merged, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                        merged.append(new)
                        i += 2
                    else:
                        merged.append(w[i])
                        i += 1
                words[k] = merged
                for p in zip(merged, merged[1:]):
                    stats[p] += f
                    where.setdefault(p, set()).add(k)
            stats = Counter({p: c for p, c in stats.items() if c > 0})
        first = 256 + len(merges)
        special = {t: first + i for i, t in enumerate(special_tokens)}
        return cls(merges, special_tokens=special, pattern=pattern)

    # -- properties ----------------------------------------------------------------------

    @property
    def vocab_size(self):
        """``max id + 1`` over regular and special tokens (the embedding table's height)."""
        return self._vocab_size

    def token_bytes(self, token_id):
        """The bytes of one token (special tokens: their UTF-8 text)."""
        i = int(token_id)
        if i in self._decoder:
            return self._decoder[i]
        if i in self._special_decoder:
            return self._special_decoder[i]
        _raise_bad_ids([i], lambda _: False, self._vocab_size)

    def pretokenize(self, text):
        """The pre-tokens of ``text`` (no special-token handling).

        Examples
        --------
        >>> BPETokenizer([]).pretokenize("I'm  here\\n")
        ['I', "'m", ' ', ' here', '\\n']
        """
        _check_text(text)
        return self._split(text)

    # -- encode --------------------------------------------------------------------------

    def _encode_piece(self, piece):
        data = piece.encode("utf-8")
        token = self._encoder.get(data)
        if token is not None:
            ids = (token,)
        else:
            encoder = self._encoder
            ids = tuple([encoder[p] for p in _byte_pair_merge(data, self._ranks)])
        cache = self._cache
        if len(cache) >= _MAX_CACHE:
            cache.clear()
        cache[piece] = ids
        return ids

    def _encode_ordinary(self, text):
        cache_get = self._cache.get
        encode_piece = self._encode_piece
        out = []
        extend = out.extend
        for piece in self._split(text):
            ids = cache_get(piece)
            if ids is None:
                ids = encode_piece(piece)
            extend(ids)
        return out

    def encode_ordinary(self, text):
        """``encode`` with every special-token string treated as ordinary text."""
        _check_text(text)
        return self._encode_ordinary(text)

    def _resolve_special(self, value, name):
        if value == "all":
            return set(self.special_tokens)
        if value is None or value == "none":
            return set()
        if isinstance(value, str):
            raise ValueError(f"{name} must be 'all', 'none' or a set of special tokens, "
                             f"got {value!r}")
        chosen = set(value)
        unknown = sorted(chosen - set(self.special_tokens))
        if unknown:
            raise ValueError(f"{name} names tokens that are not special tokens of this "
                             f"tokenizer: {unknown}")
        return chosen

    def _regex_for(self, tokens):
        key = frozenset(tokens)
        if key not in self._special_regex:
            alternatives = sorted(tokens, key=lambda t: (-len(t), t))   # longest first
            self._special_regex[key] = re.compile("|".join(map(re.escape, alternatives)))
        return self._special_regex[key]

    def encode(self, text, allowed_special="none", disallowed_special="all"):
        """Token ids of ``text`` (tiktoken's rules for special tokens).

        Parameters
        ----------
        text : str
        allowed_special : "all", "none" or set of str
            Special tokens that become their special id when their text occurs.
        disallowed_special : "all", "none" or set of str
            Special tokens whose text raises a ValueError when it occurs (``"all"`` means all
            that are not allowed), guarding against special tokens injected through user text.
            Special tokens that are neither allowed nor disallowed are encoded as ordinary text.

        Returns
        -------
        list[int]

        Examples
        --------
        >>> tok = BPETokenizer([], special_tokens={"<|endoftext|>": 256})
        >>> tok.encode("hi<|endoftext|>", allowed_special="all")
        [104, 105, 256]
        >>> tok.encode("<|endoftext|>", disallowed_special="none")[:3]
        [60, 124, 101]
        """
        _check_text(text)
        allowed = self._resolve_special(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._resolve_special(disallowed_special, "disallowed_special")
        if disallowed:
            found = self._regex_for(disallowed).search(text)
            if found:
                raise ValueError(
                    f"text contains the special token {found.group()!r} at position "
                    f"{found.start()}; pass allowed_special={{{found.group()!r}}} (or 'all') to "
                    "encode it as a special token, or disallowed_special='none' to encode it "
                    "as ordinary text")
        if not allowed:
            return self._encode_ordinary(text)
        out, start = [], 0
        for m in self._regex_for(allowed).finditer(text):
            out.extend(self._encode_ordinary(text[start:m.start()]))
            out.append(self.special_tokens[m.group()])
            start = m.end()
        out.extend(self._encode_ordinary(text[start:]))
        return out

    # -- decode --------------------------------------------------------------------------

    def decode_bytes(self, ids):
        """The concatenated bytes of ``ids`` (special tokens as their UTF-8 text)."""
        ids = _as_id_list(ids)
        decoder = self._decoder
        try:
            return b"".join([decoder[i] for i in ids])
        except KeyError:
            special = self._special_decoder
            valid = lambda i: i in decoder or i in special      # noqa: E731
            if not all(valid(i) for i in ids):
                _raise_bad_ids(ids, valid, self._vocab_size)
            return b"".join([decoder[i] if i in decoder else special[i] for i in ids])

    def decode(self, ids, errors="replace"):
        """Text of ``ids``: their bytes decoded as UTF-8 with ``errors="replace"``.

        Byte sequences that are not valid UTF-8 (a multi-byte character cut between tokens
        or ids that never occur together) decode to U+FFFD, as in GPT-2 and tiktoken; pass
        ``errors="strict"`` to get a UnicodeDecodeError instead.
        """
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- serialisation ------------------------------------------------------------------

    def _derive_merges(self):
        """(merges, merge_ids) that rebuild this tokenizer, or None if none exist.

        For a tokenizer made from ranks (a tiktoken file), each multi-byte token is split by
        running BPE on its own bytes with only the lower ranks: a well-formed rank file gives
        exactly two parts, which are the merge.
        """
        if self._merges is not None:
            return self._merges
        encoder, ranks = self._encoder, self._ranks
        tokens = sorted((t for t in encoder if len(t) > 1), key=lambda t: ranks[t])
        merges, merge_ids = [], []
        for t in tokens:
            parts = _byte_pair_merge(t, ranks, max_rank=ranks[t])
            if len(parts) != 2:
                return None
            merges.append((encoder[parts[0]], encoder[parts[1]]))
            merge_ids.append(encoder[t])
        self._merges = (merges, merge_ids)
        return self._merges

    def to_dict(self):
        """A compact JSON-serialisable description; :func:`tokenizer_from_dict` inverts it.

        Keys: ``type`` ("bpe"), ``pattern``, ``special_tokens``, ``merges`` (list of id
        pairs in rank order), and -- only when not the default -- ``byte_ids`` (id of each
        byte) and ``merge_ids`` (id of each merged token). A rank file that is not
        expressible as merges is stored as ``tokens`` (``[base64 bytes, id]`` in rank order).
        """
        d = {"type": self.type_name, "pattern": self.pattern,
             "special_tokens": dict(self.special_tokens)}
        derived = self._derive_merges()
        if derived is None:
            order = sorted(self._encoder, key=lambda t: self._ranks[t])
            d["tokens"] = [[base64.b64encode(t).decode("ascii"), self._encoder[t]]
                           for t in order]
            return d
        merges, merge_ids = derived
        d["merges"] = [list(m) for m in merges]
        byte_ids = [self._encoder[bytes([b])] for b in range(256)]
        if byte_ids != list(range(256)):
            d["byte_ids"] = byte_ids
        if list(merge_ids) != list(range(256, 256 + len(merges))):
            d["merge_ids"] = list(merge_ids)
        return d

    @classmethod
    def from_dict(cls, d):
        _check_type(d, cls.type_name)
        special = d.get("special_tokens") or {}
        pattern = d.get("pattern", "gpt2")
        if "tokens" in d:
            ranks = {base64.b64decode(t): i for t, i in d["tokens"]}
            return cls.from_ranks(ranks, special, pattern)
        return cls(d["merges"], special_tokens=special, pattern=pattern,
                   byte_ids=d.get("byte_ids"), merge_ids=d.get("merge_ids"))

    def save_gpt2(self, vocab_json, merges_txt):
        """Write GPT-2-style ``vocab.json`` and ``merges.txt`` (read back by :meth:`from_gpt2`)."""
        derived = self._derive_merges()
        if derived is None:
            raise ValueError("this tokenizer's ranks cannot be written as GPT-2 merges")
        table = bytes_to_unicode()
        spell = lambda t: "".join(table[b] for b in t)         # noqa: E731
        vocab = {spell(t): i for i, t in sorted(self._decoder.items())}
        vocab.update(self.special_tokens)
        with open(vocab_json, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(merges_txt, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in derived[0]:
                f.write(f"{spell(self._decoder[a])} {spell(self._decoder[b])}\n")

    def __repr__(self):
        return (f"BPETokenizer(vocab_size={self.vocab_size}, "
                f"special_tokens={self.special_tokens}, pattern={self.pattern!r})")


# ----------------------------------------------------------------------------------------
# (de)serialisation of any tokenizer
# ----------------------------------------------------------------------------------------

_TYPES = {"word": WordTokenizer, "char": CharTokenizer, "bpe": BPETokenizer}


def _check_type(d, expected):
    if not isinstance(d, dict) or d.get("type") != expected:
        got = d.get("type") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"expected a tokenizer dict of type {expected!r}, got {got!r}")


def tokenizer_from_dict(d):
    """Rebuild a tokenizer from ``tok.to_dict()`` (any of the three types).

    Examples
    --------
    >>> tok = CharTokenizer.from_text("abc")
    >>> tokenizer_from_dict(tok.to_dict()) == tok
    True
    """
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"a tokenizer dict needs a 'type' key, got {d!r:.80}")
    if d["type"] not in _TYPES:
        raise ValueError(f"unknown tokenizer type {d['type']!r}; expected one of {sorted(_TYPES)}")
    return _TYPES[d["type"]].from_dict(d)


def load_tokenizer(path):
    """Read any tokenizer written by ``tok.save(path)``."""
    with open(path, encoding="utf-8") as f:
        return tokenizer_from_dict(json.load(f))
