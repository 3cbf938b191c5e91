"""Hugging Face ``tokenizer.json`` files (the ``tokenizers`` library's format), in pure Python.

Shapes and types: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode`` returns
a ``list[int]``, ``decode`` also accepts a 1-D NumPy integer array. A *token string* is a
token as the file spells it: byte-level files (GPT-2, Llama 3, Qwen2, SmolLM) spell bytes
with :func:`~.bpe.bytes_to_unicode` (a space is ``"Ġ"``); SentencePiece-style files (Llama 2,
TinyLlama, Mistral) write a space as ``"▁"`` and unknown bytes as ``"<0xNN>"``.

A ``tokenizer.json`` describes a pipeline; :class:`HFTokenizer` runs it in the order of the
``tokenizers`` library (``Tokenizer.encode``):

1. **added tokens** (``<|begin_of_text|>``, ``<s>``, ...) are cut out of the raw text, the
   longest first where two start at the same place (those with ``"normalized": false``),
   with an automaton (:class:`~.longest_match.LongestMatcher`), linear in the text however
   many tokens there are;
2. **normalizer** on each remaining piece (``"▁"`` for spaces, NFC, ...); then the added
   tokens with ``"normalized": true`` are cut out of the normalized pieces. A normalizer
   may make at most ``64 * len(piece) + 4096`` characters (a ValueError naming the step
   otherwise), and Unicode normalization is linear (:func:`~.normalize.normalize`);
3. **pre-tokenizer**: each piece -> words (a registered regex, digits, ByteLevel's byte
   spelling, Metaspace's ``"▁"``); BPE never merges across two words;
4. **model** (:class:`_BPE`): each word -> ids -- its characters (unknown ones as
   ``<0xNN>`` byte tokens or the unk token), then merges by rank, exactly as the library's
   ``Word::merge_all``;
5. **post-processor**: with ``add_special_tokens=True`` the template's tokens around the
   ids (the BOS of Llama and friends).

Decoding maps ids to token strings, drops special tokens when asked, and runs the
**decoder** (ByteLevel's bytes, ``"▁"`` -> space, ``<0xNN>`` -> bytes, strip the first space).

Supported -- all that the Llama 2/3, TinyLlama, Mistral, Qwen2 and SmolLM files use:

- model ``BPE`` (``vocab``, ``merges`` as ``"a b"`` strings or ``[a, b]`` pairs,
  ``byte_fallback``, ``unk_token``, ``fuse_unk``, ``ignore_merges``);
- normalizers ``Sequence``, ``Prepend``, ``Replace`` (a plain string), ``NFC``, ``NFD``,
  ``NFKC``, ``NFKD``;
- pre-tokenizers ``Sequence``, ``Split`` (a registered regex or a plain string, any
  behavior), ``ByteLevel``, ``Digits``, ``Metaspace``;
- post-processors ``TemplateProcessing`` (single sequences), ``ByteLevel``,
  ``RobertaProcessing``, ``BertProcessing``, ``Sequence``;
- decoders ``Sequence``, ``ByteLevel``, ``Replace``, ``ByteFallback``, ``Fuse``, ``Strip``,
  ``Metaspace``;
- added tokens with ``lstrip``, ``rstrip``, ``single_word``, ``normalized``, ``special``.

Anything else -- WordPiece, Unigram, other normalizers or pre-tokenizers, BPE dropout,
truncation, padding -- is a :class:`~npgpt.io.CheckpointError` (a ValueError) naming the
field and its value. A ``Split`` regex is never compiled from the
file: it must equal a pattern of :data:`~.patterns.PATTERNS` (GPT-2's, Llama 3's and
Qwen2's are there; see :func:`~.patterns.register_pattern`).

Where npgpt differs from ``tokenizers``: ``decode`` refuses negative ids (the library's
binding raises OverflowError) -- ids without a token are left out, as in the library; a
file whose added-token ids the library would renumber (it warns) is refused, and so is one
with a lone surrogate in any string (the library refuses it too);
Unicode classes and normalization follow Python's ``unicodedata``, so characters assigned
in a newer Unicode version than Python's may split or normalize differently.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import unicodedata

from ..io.errors import CheckpointError, short_repr
from .base import _as_id_list, _check_text, _check_type, _raise_bad_ids, _read_json, _Tokenizer
from .bpe import bytes_to_unicode
from .longest_match import LongestMatcher
from .normalize import normalize as _unicode_normalize
from .patterns import _TRANSLATED, _WHITE_SPACE, PATTERNS, _compile_regex

_MAX_CACHE = 100_000         # cached words per tokenizer before the cache is cleared
_MAX_CACHED_WORD = 256       # longer words are not cached (as in ``tokenizers``)

# GPT-2's byte -> character table as a str.translate table (a Latin-1 decoded byte b is
# chr(b)), and its inverse for the ByteLevel decoder.
_BYTE_CHARS = {b: c for b, c in bytes_to_unicode().items()}
_CHAR_BYTES = {c: b for b, c in bytes_to_unicode().items()}
# Unicode's White_Space (the ``\s`` of the Rust regex crate): what lstrip/rstrip remove.
_SPACES = frozenset(chr(c) for lo, hi in _WHITE_SPACE for c in range(lo, hi + 1))
_SPACE_RUN = re.compile("[" + "".join(sorted(_SPACES)) + "]*")


# ----------------------------------------------------------------------------------------
# Reading the file: small checked accessors
# ----------------------------------------------------------------------------------------

def _get(spec, key, kinds, where, default=None, required=False):
    """``spec[key]`` if it is one of ``kinds``; a missing key gives ``default``."""
    if key not in spec:
        if required:
            raise CheckpointError(f"{where} needs a {key!r} field")
        return default
    value = spec[key]
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise CheckpointError(f"{where}.{key} must be {names}, got {short_repr(value)}")
    return value


def _count(spec, key, where):
    """A non-negative integer field (not a bool), required."""
    value = _get(spec, key, (int,), where, required=True)
    if value < 0:
        raise CheckpointError(f"{where}.{key} must be >= 0, got {value}")
    return value


def _kind(spec, where, allowed_keys):
    """``spec["type"]``, after checking that ``spec`` is an object with no unknown field.

    An unknown field is refused rather than ignored: it might change the ids.
    """
    if not isinstance(spec, dict):
        raise CheckpointError(f"{where} must be an object, got {short_repr(spec)}")
    kind = spec.get("type")
    if not isinstance(kind, str):
        raise CheckpointError(f"{where} needs a string 'type', got {short_repr(kind)}")
    known = allowed_keys.get(kind)
    if known is None:
        raise CheckpointError(f"{where}: type {short_repr(kind)} is not supported; npgpt reads "
                              f"{', '.join(sorted(allowed_keys))}")
    unknown = sorted(set(spec) - set(known) - {"type"})
    if unknown:
        raise CheckpointError(f"{where} ({kind}): unknown field(s) {short_repr(unknown)}")
    return kind


def _parts(spec, key, where):
    """The members of a ``Sequence`` (``spec[key]``), each an object: ``[(part, where)]``.

    (A null member is refused here: only a whole normalizer, pre-tokenizer, post-processor
    or decoder may be null.)
    """
    out = []
    for i, part in enumerate(_get(spec, key, (list,), where, required=True)):
        at = f"{where}.{key}[{i}]"
        if not isinstance(part, dict):
            raise CheckpointError(f"{at} must be an object, got {short_repr(part)}")
        out.append((part, at))
    return out


def _char(spec, key, where):
    """A one-character field, required."""
    value = _get(spec, key, (str,), where, required=True)
    if len(value) != 1:
        raise CheckpointError(f"{where}.{key} must be one character, got {short_repr(value)}")
    return value


def _string_pattern(spec, where):
    """The plain string of ``{"String": s}``; a ``{"Regex": ...}`` is refused here."""
    pattern = _get(spec, "pattern", (dict,), where, required=True)
    if list(pattern) != ["String"] or not isinstance(pattern["String"], str) \
            or not pattern["String"]:
        raise CheckpointError(f"{where}.pattern must be {{'String': <non-empty text>}}, got "
                              f"{short_repr(pattern)}")
    return pattern["String"]


# ----------------------------------------------------------------------------------------
# Normalizers: str -> str
# ----------------------------------------------------------------------------------------

_NORMALIZERS = {"Sequence": ("normalizers",), "Prepend": ("prepend",),
                "Replace": ("pattern", "content"), "NFC": (), "NFD": (), "NFKC": (),
                "NFKD": ()}


#: A normalizer chain may make at most ``_MAX_GROWTH * len(text) + _MAX_EXTRA`` characters out
#: of a text: NFKC, the most any real file needs, makes at most 18 of one (U+FDFA), while 40
#: chained ``Replace("a", "aa")`` would make 2**40 of ``"a"``.
_MAX_GROWTH = 64
_MAX_EXTRA = 4096


def _normalizer(spec, where="normalizer"):
    """The normalizer of ``spec`` as a list of steps ``(where, size, apply)``, applied in
    order: ``apply`` maps str -> str, ``size(text)`` is the length of ``apply(text)``,
    known before running it (None: checked after).

    - ``Prepend(p)``: ``p + text`` when text is not empty;
    - ``Replace(s, c)``: ``text.replace(s, c)`` (a plain string; a regex is refused);
    - ``NFC`` / ``NFD`` / ``NFKC`` / ``NFKD``: ``unicodedata.normalize``, in linear time
      (:func:`~.normalize.normalize`).
    """
    if spec is None:
        return []
    kind = _kind(spec, where, _NORMALIZERS)
    label = f"{where} ({kind})"
    if kind == "Sequence":
        return [f for part, at in _parts(spec, "normalizers", where)
                for f in _normalizer(part, at)]
    if kind == "Prepend":
        prefix = _get(spec, "prepend", (str,), where, required=True)
        return [(label, lambda text: len(prefix) + len(text) if text else 0,
                 lambda text: prefix + text if text else text)]
    if kind == "Replace":
        old = _string_pattern(spec, where)
        new = _get(spec, "content", (str,), where, required=True)
        label = f"{where} (Replace {short_repr(old)} -> {short_repr(new)})"
        return [(label, lambda text: len(text) + text.count(old) * (len(new) - len(old)),
                 lambda text: text.replace(old, new))]
    return [(label, None, lambda text: _unicode_normalize(kind, text))]


def _normalize(steps, text):
    """``text`` through the normalizer ``steps``; a ValueError if a step would make more
    than ``_MAX_GROWTH * len(text) + _MAX_EXTRA`` characters (named, with the bound).

    Examples
    --------
    >>> double = {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}
    >>> steps = _normalizer({"type": "Sequence", "normalizers": [double] * 40})
    >>> _normalize(steps, "a")                       # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: normalizer.normalizers[12] (Replace 'a' -> 'aa') would make 8,192 ... \
at most 64 x the text + 4,096 characters
    """
    limit = _MAX_GROWTH * len(text) + _MAX_EXTRA
    for where, size, apply in steps:
        n = size(text) if size is not None else None
        if n is None or n <= limit:
            out = apply(text)
            n = len(out)
        if n > limit:
            raise ValueError(f"{where} would make {n:,} characters out of a text of "
                             f"{(limit - _MAX_EXTRA) // _MAX_GROWTH:,}; a normalizer may make "
                             f"at most {_MAX_GROWTH} x the text + {_MAX_EXTRA:,} characters")
        text = out
    return text


# ----------------------------------------------------------------------------------------
# Splitting: the library's NormalizedString::split
# ----------------------------------------------------------------------------------------

_BEHAVIORS = ("Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous")


def _split(text, matches, behavior):
    """Cut ``text`` along ``matches`` (``[(start, end, is_match), ...]`` covering it).

    - Isolated: every span is a piece; Removed: only the spans that are not matches;
    - MergedWithPrevious / MergedWithNext: a match joins the piece before / after it
      (unless the previous / next span is itself a match);
    - Contiguous: neighbouring spans of the same kind join.

    Returns ``[(start, end), ...]``, empty pieces left out.

    Examples
    --------
    >>> _split("a-b", [(0, 1, False), (1, 2, True), (2, 3, False)], "MergedWithNext")
    [(0, 1), (1, 3)]
    """
    spans = []
    if behavior == "Isolated":
        spans = [(s, e) for s, e, _ in matches]
    elif behavior == "Removed":
        spans = [(s, e) for s, e, is_match in matches if not is_match]
    elif behavior == "Contiguous":
        previous = False
        for s, e, is_match in matches:
            if spans and is_match == previous:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
            previous = is_match
    elif behavior == "MergedWithPrevious":
        previous = False
        for s, e, is_match in matches:
            if spans and is_match and not previous:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
            previous = is_match
    else:                                                  # MergedWithNext: the same, reversed
        previous = False
        for s, e, is_match in reversed(matches):
            if spans and is_match and not previous:
                spans[-1] = (s, spans[-1][1])
            else:
                spans.append((s, e))
            previous = is_match
        spans.reverse()
    return [(s, e) for s, e in spans if e > s]


def _char_matches(text, is_match):
    """Each character for which ``is_match(c)`` is its own match (a char pattern)."""
    out, start = [], 0
    for i, c in enumerate(text):
        if is_match(c):
            if start < i:
                out.append((start, i, False))
            out.append((i, i + 1, True))
            start = i + 1
    if start < len(text):
        out.append((start, len(text), False))
    return out


def _regex_matches(finditer, text):
    """Spans of ``finditer(text)`` and the gaps between them."""
    out, start = [], 0
    for m in finditer(text):
        if start < m.start():
            out.append((start, m.start(), False))
        out.append((m.start(), m.end(), True))
        start = m.end()
    if start < len(text):
        out.append((start, len(text), False))
    return out


def _registered_matcher(regex, where):
    """text -> matches of a ``Split`` regex, which must be a registered pattern."""
    if regex not in PATTERNS.values():
        names = ", ".join(repr(n) for n in sorted(PATTERNS)[:20])
        raise CheckpointError(
            f"{where}: the regex {short_repr(regex, 120)} is not a registered pattern "
            f"(registered: {names}); a regex from a file is never compiled, since one can "
            f"make encode hang. If you trust it, register its Python `re` form under the "
            f"file's spelling: npgpt.tokenizers.register_pattern('some-name', <the regex>)")
    if regex in _TRANSLATED:                  # GPT-2's, Llama 3's, Qwen2's: every character
        split = _TRANSLATED[regex]            # lies in a pre-token, so all are matches

        def matches(text):
            out, start = [], 0
            for piece in split(text):
                out.append((start, start + len(piece), True))
                start += len(piece)
            return out
        return matches
    finditer = _compile_regex(regex).finditer
    return lambda text: _regex_matches(finditer, text)


# ----------------------------------------------------------------------------------------
# Pre-tokenizers: [(piece, at_start)] -> [(word, at_start)]
# ----------------------------------------------------------------------------------------

_PRE_TOKENIZERS = {"Sequence": ("pretokenizers",),
                   "Split": ("pattern", "behavior", "invert"),
                   "ByteLevel": ("add_prefix_space", "trim_offsets", "use_regex"),
                   "Digits": ("individual_digits",),
                   "Metaspace": ("replacement", "prepend_scheme", "split", "add_prefix_space",
                                 "str_rep")}


def _splitter(matcher, behavior, invert=False):
    """A pre-tokenizer step that splits each piece along ``matcher(text)``; the first piece
    keeps ``at_start`` only if it starts where its parent did."""
    def step(pieces):
        out = []
        for text, at_start in pieces:
            found = matcher(text)
            if invert:
                found = [(s, e, not m) for s, e, m in found]
            out.extend((text[s:e], at_start and s == 0) for s, e in _split(text, found, behavior))
        return out
    return step


def _pre_tokenizer(spec, where="pre_tokenizer"):
    """The pre-tokenizer of ``spec`` as a list of steps ``[(piece, at_start)] -> [...]``.

    ``at_start`` is true for the piece that begins the text (Metaspace's ``"first"`` rule).

    - ``Split(pattern, behavior, invert)``: cut along a registered regex or a plain string;
    - ``Digits(individual_digits)``: numeric characters apart, one by one or in runs;
    - ``ByteLevel(add_prefix_space, use_regex)``: a leading space if missing, GPT-2's
      pattern if ``use_regex``, then each UTF-8 byte spelled as one character;
    - ``Metaspace(replacement, prepend_scheme, split)``: spaces -> ``replacement``, which
      is also put in front (``"always"``; ``"first"``: only at the start of the text);
      with ``split`` each ``replacement`` begins a new word.
    """
    if spec is None:
        return []
    kind = _kind(spec, where, _PRE_TOKENIZERS)
    if kind == "Sequence":
        return [f for part, at in _parts(spec, "pretokenizers", where)
                for f in _pre_tokenizer(part, at)]
    if kind == "Split":
        behavior = _get(spec, "behavior", (str,), where, required=True)
        if behavior not in _BEHAVIORS:
            raise CheckpointError(f"{where}.behavior must be one of {list(_BEHAVIORS)}, got "
                                  f"{short_repr(behavior)}")
        invert = _get(spec, "invert", (bool,), where, required=True)
        pattern = _get(spec, "pattern", (dict,), where, required=True)
        if list(pattern) == ["Regex"] and isinstance(pattern["Regex"], str):
            matcher = _registered_matcher(pattern["Regex"], f"{where}.pattern.Regex")
        else:
            literal = re.compile(re.escape(_string_pattern(spec, where)))
            matcher = lambda text: _regex_matches(literal.finditer, text)   # noqa: E731
        return [_splitter(matcher, behavior, invert)]
    if kind == "Digits":
        individual = _get(spec, "individual_digits", (bool,), where, required=True)
        numeric = lambda c: unicodedata.category(c)[0] == "N"               # noqa: E731
        return [_splitter(lambda text: _char_matches(text, numeric),
                          "Isolated" if individual else "Contiguous")]
    if kind == "ByteLevel":
        _get(spec, "trim_offsets", (bool,), where, required=True)      # offsets only
        return _byte_level(_get(spec, "add_prefix_space", (bool,), where, required=True),
                           _get(spec, "use_regex", (bool,), where, True))
    return _metaspace(spec, where)


def _byte_level(add_prefix_space, use_regex):
    """ByteLevel's steps: prefix space, GPT-2's split, bytes spelled as characters."""
    steps = []
    if add_prefix_space:
        steps.append(lambda pieces: [(t if t.startswith(" ") else " " + t, s)
                                     for t, s in pieces])
    if use_regex:
        steps.append(_splitter(_registered_matcher(PATTERNS["gpt2"], "ByteLevel"), "Isolated"))
    steps.append(lambda pieces: [(t.encode("utf-8").decode("latin-1").translate(_BYTE_CHARS), s)
                                 for t, s in pieces])
    return steps


def _metaspace(spec, where):
    """Metaspace's step (see :func:`_pre_tokenizer`), with the library's reading of the
    older ``add_prefix_space`` field: true means ``"always"`` unless a scheme is given."""
    replacement = _char(spec, "replacement", where)
    legacy = _get(spec, "add_prefix_space", (bool,), where)
    scheme = _get(spec, "prepend_scheme", (str,), where, "always")
    if scheme not in ("always", "first", "never"):
        raise CheckpointError(f"{where}.prepend_scheme must be 'always', 'first' or 'never', "
                              f"got {short_repr(scheme)}")
    if legacy is False and scheme != "never":
        raise CheckpointError(f"{where}: add_prefix_space false does not match prepend_scheme "
                              f"{scheme!r}")
    split = _get(spec, "split", (bool,), where, True)

    def step(pieces):
        out = []
        for text, at_start in pieces:
            text = text.replace(" ", replacement)
            if not text.startswith(replacement) and (
                    scheme == "always" or scheme == "first" and at_start):
                text = replacement + text
            out.append((text, at_start))
        return out
    steps = [step]
    if split:
        steps.append(_splitter(lambda text: _char_matches(text, replacement.__eq__),
                               "MergedWithNext"))
    return steps


# ----------------------------------------------------------------------------------------
# The BPE model: one word -> ids
# ----------------------------------------------------------------------------------------

_MODELS = {"BPE": ("vocab", "merges", "dropout", "unk_token", "continuing_subword_prefix",
                   "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges")}


def _merge_all(ids, merges):
    """Merge ``ids`` (one word's symbols) as the library's ``Word::merge_all`` does.

    ``merges`` maps a pair of ids to ``(rank, new id)``. A heap holds candidate merges
    ``(rank, position, new id)``; the smallest pops first (lowest rank, leftmost on ties). An
    entry is stale if its left symbol was merged away, has no right neighbour any more, or
    the pair there now makes another token; otherwise the two symbols become ``new id``
    and the pairs it forms with its neighbours are pushed.

    Examples
    --------
    >>> _merge_all([0, 0, 1], {(0, 0): (0, 2), (0, 1): (1, 3), (2, 1): (2, 4)})
    [4]
    """
    n = len(ids)
    if n < 2:
        return list(ids)
    symbols = list(ids)
    nxt = list(range(1, n)) + [-1]               # next[i]: the symbol after i, -1 at the end
    prv = list(range(-1, n - 1))                 # prev[i]: the symbol before i
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        m = merges.get((ids[i], ids[i + 1]))
        if m is not None:
            heap.append((m[0], i, m[1]))
    heapq.heapify(heap)
    while heap:
        _, pos, new = heapq.heappop(heap)
        right = nxt[pos]
        if not alive[pos] or right == -1:
            continue
        m = merges.get((symbols[pos], symbols[right]))
        if m is None or m[1] != new:
            continue                             # stale: the pair changed
        symbols[pos], alive[right] = new, False  # merge [pos] + [right] -> [pos]
        after = nxt[pos] = nxt[right]
        if after != -1:
            prv[after] = pos
        before = prv[pos]
        if before >= 0:
            m = merges.get((symbols[before], new))
            if m is not None:
                heapq.heappush(heap, (m[0], before, m[1]))
        if after != -1:
            m = merges.get((new, symbols[after]))
            if m is not None:
                heapq.heappush(heap, (m[0], pos, m[1]))
    return [s for s, a in zip(symbols, alive) if a]


class _BPE:
    """The ``"BPE"`` model of a ``tokenizer.json``: a word (str) -> ids.

    1. with ``ignore_merges``, a word that is itself in the vocabulary is that one token;
    2. each character is its vocabulary id; an unknown one becomes its UTF-8 bytes as
       ``<0xNN>`` tokens (``byte_fallback``, when all of them exist), else the unk token
       (consecutive ones fused into one with ``fuse_unk``), else nothing -- as in the
       library, which drops it silently;
    3. :func:`_merge_all` with ``merges`` (pair -> (rank, new id)), rank = line number.
    """

    def __init__(self, spec, where="model"):
        if isinstance(spec, dict) and "type" not in spec and "merges" in spec:
            spec = {**spec, "type": "BPE"}               # the library infers it, as here
        _kind(spec, where, _MODELS)
        vocab = _get(spec, "vocab", (dict,), where, required=True)
        owner = {}
        for token, i in vocab.items():
            if type(i) is not int or not 0 <= i < 2 ** 31:
                raise CheckpointError(f"{where}.vocab: the id of {short_repr(token)} must be an "
                                      f"integer in [0, 2**31), got {short_repr(i)}")
            if i in owner:
                raise CheckpointError(f"{where}.vocab: tokens {short_repr(owner[i])} and "
                                      f"{short_repr(token)} share the id {i}")
            owner[i] = token
        self.vocab, self.tokens = vocab, owner          # str -> id, id -> str
        self.merges = self._read_merges(_get(spec, "merges", (list,), where, []), where)
        dropout = _get(spec, "dropout", (int, float, type(None)), where)
        if dropout not in (None, 0, 0.0):
            raise CheckpointError(f"{where}.dropout is {dropout!r}: BPE dropout draws random "
                                  f"merges, npgpt encodes deterministically (set it to null)")
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if _get(spec, key, (str, type(None)), where):
                raise CheckpointError(f"{where}.{key} is {short_repr(spec[key])}: not supported "
                                      f"(only null or '')")
        self.unk_token = _get(spec, "unk_token", (str, type(None)), where)
        if self.unk_token is not None and self.unk_token not in vocab:
            raise CheckpointError(f"{where}.unk_token {short_repr(self.unk_token)} is not in "
                                  f"the vocabulary")
        self.unk_id = None if self.unk_token is None else vocab[self.unk_token]
        self.fuse_unk = _get(spec, "fuse_unk", (bool,), where, False)
        self.byte_fallback = _get(spec, "byte_fallback", (bool,), where, False)
        self.ignore_merges = _get(spec, "ignore_merges", (bool,), where, False)
        self._cache = {}

    def _read_merges(self, merges, where):
        """pair of ids -> (rank, id of the merged token); a later duplicate wins, as in the
        library (a dict built in order)."""
        out, vocab = {}, self.vocab
        strings = bool(merges) and isinstance(merges[0], str)
        rank = 0
        for k, merge in enumerate(merges):
            if strings and isinstance(merge, str):
                if merge.startswith("#version"):
                    continue                     # a merges.txt header, skipped as the library does
                pair = merge.split(" ")
            elif not strings and isinstance(merge, list) and all(isinstance(p, str) for p in merge):
                pair = merge
            else:
                like = "a string 'a b'" if strings else "a pair of strings"
                raise CheckpointError(f"{where}.merges[{k}] must be {like}, like the first "
                                      f"merge; got {short_repr(merge)}")
            if len(pair) != 2:
                raise CheckpointError(f"{where}.merges[{k}] must be two tokens, got "
                                      f"{short_repr(merge)}")
            a, b = pair
            for t in (a, b, a + b):
                if t not in vocab:
                    raise CheckpointError(f"{where}.merges[{k}] {short_repr(merge)}: "
                                          f"{short_repr(t)} is not in the vocabulary")
            out[vocab[a], vocab[b]] = (rank, vocab[a + b])
            rank += 1
        return out

    def tokenize(self, word):
        """The ids of one word.

        Examples
        --------
        >>> bpe = _BPE({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})
        >>> bpe.tokenize("abba")
        [2, 1, 0]
        """
        if not word:
            return []
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        ids = self._cache.get(word)
        if ids is None:
            ids = _merge_all(self._symbols(word), self.merges)
            if len(word) < _MAX_CACHED_WORD:
                if len(self._cache) >= _MAX_CACHE:
                    self._cache.clear()
                self._cache[word] = ids
        return list(ids)

    def _symbols(self, word):
        """The ids of the characters of ``word`` before any merge (step 2 above)."""
        vocab, ids, unk = self.vocab, [], None        # unk: a pending unk id, not yet added
        for c in word:
            i = vocab.get(c)
            if i is not None:
                if unk is not None:
                    ids.append(unk)
                    unk = None
                ids.append(i)
                continue
            if self.byte_fallback:
                byte_ids = [vocab.get(f"<0x{b:02X}>") for b in c.encode("utf-8")]
                if None not in byte_ids:
                    ids.extend(byte_ids)             # (a pending unk stays pending, as in
                    continue                         # the library)
            if self.unk_id is not None:
                if unk is not None and not self.fuse_unk:
                    ids.append(unk)
                unk = self.unk_id
        if unk is not None:
            ids.append(unk)
        return ids


# ----------------------------------------------------------------------------------------
# Added tokens: cut out of the text before everything else
# ----------------------------------------------------------------------------------------

_ADDED_KEYS = ("id", "content", "single_word", "lstrip", "rstrip", "normalized", "special")


def _added_tokens(entries, model, where="added_tokens"):
    """The added tokens of the file, checked: ``[dict(id, content, flags...)]``.

    Their ids must be those the library gives them on loading: the vocabulary's id for a
    token already in it, otherwise the next free id after the vocabulary (the library warns
    and renumbers when the file says otherwise; npgpt refuses).
    """
    out, seen, top = [], {}, None            # top: the largest id of the tokens so far
    for k, e in enumerate(entries):
        at = f"{where}[{k}]"
        if not isinstance(e, dict):
            raise CheckpointError(f"{at} must be an object, got {short_repr(e)}")
        unknown = sorted(set(e) - set(_ADDED_KEYS))
        missing = [key for key in _ADDED_KEYS if key not in e]
        if unknown or missing:
            raise CheckpointError(f"{at}: unknown field(s) {short_repr(unknown)}, missing "
                                  f"{short_repr(missing)}")
        token = {key: _get(e, key, (bool,), at) for key in _ADDED_KEYS[2:]}
        token["content"] = content = _get(e, "content", (str,), at)
        token["id"] = _get(e, "id", (int,), at)
        if not 0 <= token["id"] < 2 ** 31:
            raise CheckpointError(f"{at}.id must be in [0, 2**31), got {short_repr(token['id'])}")
        if not content:
            raise CheckpointError(f"{at}: the content is empty")
        if content in seen:
            raise CheckpointError(f"{at}: {short_repr(content)} is already added token "
                                  f"{seen[content]}")
        if content in model.vocab:
            expected = model.vocab[content]
        else:
            size = len(model.vocab)
            expected = size if top is None else (top + 1 if top >= size or size == 0 else size)
        if token["id"] != expected:
            raise CheckpointError(f"{at}: {short_repr(content)} has id {token['id']}, but the "
                                  f"tokenizers library gives it id {expected}")
        seen[content] = k
        top = token["id"] if top is None else max(top, token["id"])
        out.append(token)
    return out


def _matcher(tokens, pattern_of):
    """(:class:`~.longest_match.LongestMatcher`, pattern -> token): leftmost matches, the
    longest where several start at the same place (the library's Aho-Corasick
    ``LeftmostLongest``)."""
    by_pattern = {}
    for t in tokens:
        pattern = pattern_of(t)
        if not pattern or pattern in by_pattern:
            raise CheckpointError(f"added tokens {short_repr(t['content'])} and "
                                  f"{short_repr(by_pattern.get(pattern, {}).get('content'))} "
                                  f"match the same text {short_repr(pattern)}")
        by_pattern[pattern] = t
    if not by_pattern:
        return None
    return LongestMatcher(by_pattern), by_pattern


def _is_word_char(c):
    """Whether ``c`` is a word character for ``single_word``: the ``\\w`` of the Rust regex
    crate -- letters, marks, decimal digits, letter numbers, connector punctuation (``_``),
    the zero-width joiners, and the circled or squared Latin letters (Alphabetic symbols).

    Examples
    --------
    >>> [_is_word_char(c) for c in "a_5\u0301\u200d ½-"]
    [True, True, True, True, True, False, False, False]
    """
    category = unicodedata.category(c)
    return (category[0] in "LM" or category in ("Nd", "Nl", "Pc") or c in "\u200c\u200d"
            or "\u24b6" <= c <= "\u24e9" or "\U0001f130" <= c <= "\U0001f189")


def _find_added(text, matcher):
    """``[(start, end, token or None)]`` covering ``text``: the library's ``find_matches``.

    A ``single_word`` token counts only with no word character (:func:`_is_word_char`)
    right before or after it; a token with ``lstrip`` takes the whitespace before it (not
    what an earlier token took), one with ``rstrip`` the whitespace after it.

    Examples
    --------
    >>> word = {"content": "ab", "single_word": True, "lstrip": False, "rstrip": False}
    >>> matcher = _matcher([word], lambda t: t["content"])
    >>> [(s, e, t is not None) for s, e, t in _find_added("ab xab", matcher)]
    [(0, 2, True), (2, 6, False)]
    """
    if matcher is None or not text:
        return [(0, len(text), None)]
    found, by_pattern = matcher
    out, offset = [], 0
    spaces = (0, -1)                    # the last run of whitespace measured for rstrip
    for start, stop, pattern in found.find_iter(text):
        token = by_pattern[pattern]
        if token["single_word"] and (start > 0 and _is_word_char(text[start - 1]) or
                                     stop < len(text) and _is_word_char(text[stop])):
            continue                                   # part of a longer word: not this token
        if token["lstrip"]:                            # back over the spaces, not past offset
            while start > offset and text[start - 1] in _SPACES:
                start -= 1
            start = max(start, offset)
        if token["rstrip"]:                            # on over the spaces (each run measured
            if not spaces[0] <= stop <= spaces[1]:     # once: linear even if tokens overlap it)
                spaces = (stop, _SPACE_RUN.match(text, stop).end())
            stop = spaces[1]
        if offset < start:
            out.append((offset, start, None))
        out.append((start, stop, token))
        offset = stop
    if offset != len(text):
        out.append((offset, len(text), None))
    return out


# ----------------------------------------------------------------------------------------
# Post-processors: the template around the ids
# ----------------------------------------------------------------------------------------

_POST_PROCESSORS = {"Sequence": ("processors",),
                    "ByteLevel": ("add_prefix_space", "trim_offsets", "use_regex"),
                    "TemplateProcessing": ("single", "pair", "special_tokens"),
                    "RobertaProcessing": ("sep", "cls", "trim_offsets", "add_prefix_space"),
                    "BertProcessing": ("sep", "cls")}


def _post_processor(spec, known_id, where="post_processor"):
    """(ids before, ids after) the text's ids when special tokens are added.

    ``TemplateProcessing``'s ``single`` template is a list of ``{"SpecialToken": {"id":
    name}}`` and one ``{"Sequence": {"id": "A"}}``; each name's ``ids`` come from its
    ``special_tokens``. ``RobertaProcessing`` and ``BertProcessing`` put their ``cls``
    token before and their ``sep`` token after. ``ByteLevel`` only moves offsets. A
    ``Sequence`` applies each in turn, so a later one wraps the earlier ones.
    """
    if spec is None:
        return [], []
    kind = _kind(spec, where, _POST_PROCESSORS)
    if kind == "ByteLevel":
        for key in ("add_prefix_space", "trim_offsets"):
            _get(spec, key, (bool,), where, required=True)
        return [], []
    if kind == "Sequence":
        before, after = [], []
        for part, at in _parts(spec, "processors", where):
            b, a = _post_processor(part, known_id, at)
            before, after = b + before, after + a
        return before, after
    if kind in ("RobertaProcessing", "BertProcessing"):
        around = []
        for key in ("cls", "sep"):
            pair = _get(spec, key, (list,), where, required=True)
            if len(pair) != 2 or not isinstance(pair[0], str) or type(pair[1]) is not int \
                    or not known_id(pair[1]):
                raise CheckpointError(f"{where}.{key} must be [token, known token id], got "
                                      f"{short_repr(pair)}")
            around.append(pair[1])
        return around[:1], around[1:]
    single = _get(spec, "single", (list,), where, required=True)
    _get(spec, "pair", (list,), where, required=True)             # for pairs of texts: unused
    specials = _get(spec, "special_tokens", (dict,), where, required=True)
    before, after, seen_a = [], [], False
    for k, item in enumerate(single):
        at = f"{where}.single[{k}]"
        if not isinstance(item, dict) or len(item) != 1 or not isinstance(
                next(iter(item.values())), dict):
            raise CheckpointError(f"{at} must be {{'SpecialToken': ...}} or {{'Sequence': ...}}, "
                                  f"got {short_repr(item)}")
        (what, body), = item.items()
        name = body.get("id")
        if what == "Sequence" and name == "A" and not seen_a:
            seen_a = True
        elif what == "SpecialToken" and isinstance(name, str) and name in specials:
            ids = specials[name].get("ids") if isinstance(specials[name], dict) else None
            if not isinstance(ids, list) or not all(
                    type(i) is int and known_id(i) for i in ids):
                raise CheckpointError(f"{where}.special_tokens[{name!r}].ids must be a list of "
                                      f"known token ids, got {short_repr(ids)}")
            (after if seen_a else before).extend(ids)
        else:
            raise CheckpointError(f"{at}: expected a special token of special_tokens or one "
                                  f"sequence 'A', got {short_repr(item)}")
    if not seen_a:
        raise CheckpointError(f"{where}.single has no sequence 'A'")
    return before, after


# ----------------------------------------------------------------------------------------
# Decoders: token strings -> text
# ----------------------------------------------------------------------------------------

_DECODERS = {"Sequence": ("decoders",), "ByteLevel": ("add_prefix_space", "trim_offsets",
                                                      "use_regex"),
             "Replace": ("pattern", "content"), "ByteFallback": (), "Fuse": (),
             "Strip": ("content", "start", "stop"),
             "Metaspace": ("replacement", "prepend_scheme", "split", "add_prefix_space",
                           "str_rep")}
_BYTE_TOKEN = re.compile(r"<0x\+?[0-9A-Fa-f]{1,2}>\Z")


def _decoder(spec, where="decoder"):
    """The decoder of ``spec`` as a flat list of steps ``(kind, parameters...)``."""
    if spec is None:
        return None
    kind = _kind(spec, where, _DECODERS)
    if kind == "Sequence":
        return [s for part, at in _parts(spec, "decoders", where) for s in _decoder(part, at)]
    if kind == "Replace":
        return [(kind, _string_pattern(spec, where),
                 _get(spec, "content", (str,), where, required=True))]
    if kind == "Strip":
        return [(kind, _char(spec, "content", where), _count(spec, "start", where),
                 _count(spec, "stop", where))]
    if kind == "Metaspace":
        _metaspace(spec, where)                                   # the same checks
        return [(kind, _char(spec, "replacement", where),
                 _get(spec, "prepend_scheme", (str,), where, "always"))]
    if kind == "ByteLevel":
        for key in ("add_prefix_space", "trim_offsets"):
            _get(spec, key, (bool,), where, required=True)
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


def _decode(steps, tokens, inside=False):
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


# ----------------------------------------------------------------------------------------
# HFTokenizer
# ----------------------------------------------------------------------------------------

_TOP_LEVEL = ("version", "truncation", "padding", "added_tokens", "normalizer",
              "pre_tokenizer", "post_processor", "decoder", "model")


def _surrogate_message(value, where="tokenizer.json"):
    """The message for a file holding a string with a lone surrogate (U+D800..U+DFFF, no
    UTF-8 form; the library refuses such a file), naming the first such entry or key."""
    if isinstance(value, dict):
        for k, v in value.items():
            if _has_surrogate(k):
                return f"{where}: the key {short_repr(k)} holds a lone surrogate"
            found = _surrogate_message(v, k if where == "tokenizer.json" else f"{where}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _surrogate_message(v, f"{where}[{i}]")
            if found:
                return found
    elif isinstance(value, str) and _has_surrogate(value):
        return f"{where}: {short_repr(value)} holds a lone surrogate"
    return None


def _has_surrogate(text):
    return any("\ud800" <= c <= "\udfff" for c in text) if not text.isascii() else False


def _example():
    """The small byte-level tokenizer of the examples: GPT-2's 256 byte characters, three
    merges that build ``"Ġthe"``, ``<|end|>`` as a special token and a BOS template."""
    chars = [bytes_to_unicode()[b] for b in range(256)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({"Ġt": 256, "Ġth": 257, "Ġthe": 258, "<|begin|>": 259})
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": 259, "content": "<|begin|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True},
            {"id": 260, "content": "<|end|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|begin|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<|begin|>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<|begin|>": {"id": "<|begin|>", "ids": [259],
                                                            "tokens": ["<|begin|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "vocab": vocab,
                  "merges": [["Ġ", "t"], ["Ġt", "h"], ["Ġth", "e"]]},
    }


class HFTokenizer(_Tokenizer):
    """A tokenizer read from a Hugging Face ``tokenizer.json`` (see the module docstring).

    Encoding and decoding follow the ``tokenizers`` library step by step, and its defaults:
    ``encode(text)`` adds the post-processor's special tokens (``add_special_tokens=True``,
    as ``Tokenizer.encode``), ``decode(ids)`` leaves special tokens out
    (``skip_special_tokens=True``, as ``Tokenizer.decode``). Added tokens are recognised in
    any text passed to ``encode`` -- so user text that spells ``<|end|>`` gets the special
    id, as in the library.

    Round trips: a byte-level file without normalizer gives
    ``decode(encode(s), skip_special_tokens=False) == s``. A SentencePiece-style file
    (``"▁"`` for spaces, byte fallback, a decoder that strips the first space) gives
    ``decode(encode(s)) == s.replace("▁", " ")`` when ``s`` holds no added token; after an
    added token, the legacy normalizer (``Prepend("▁")``) puts a ``"▁"`` in front of the
    next piece, which decodes as a space that was not in the text.

    Parameters
    ----------
    spec : dict
        The parsed ``tokenizer.json``; use :func:`load_tokenizer_json` to read a file.

    Examples
    --------
    >>> tok = HFTokenizer(_example())
    >>> ids = tok.encode(" the theme<|end|>")
    >>> ids
    [259, 258, 258, 109, 101, 260]
    >>> tok.decode(ids), tok.decode(ids, skip_special_tokens=False)
    (' the theme', '<|begin|> the theme<|end|>')
    >>> tok.vocab_size, tok.special_tokens
    (261, {'<|begin|>': 259, '<|end|>': 260})
    """

    type_name = "hf"

    def __init__(self, spec):
        try:
            self._setup(spec)
        except RecursionError:
            raise CheckpointError("tokenizer.json: nested too deeply") from None
        self._json = json.dumps(spec, ensure_ascii=False)
        try:
            self._json.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError(_surrogate_message(spec) or "tokenizer.json holds a lone "
                                  "surrogate") from None

    def _setup(self, spec):
        if not isinstance(spec, dict):
            raise CheckpointError(f"a tokenizer.json holds an object, got {short_repr(spec)}")
        unknown = sorted(set(spec) - set(_TOP_LEVEL))
        if unknown:
            raise CheckpointError(f"tokenizer.json: unknown field(s) {short_repr(unknown)}")
        if spec.get("version", "1.0") != "1.0":
            raise CheckpointError(f"tokenizer.json: version {short_repr(spec['version'])} is "
                                  f"not supported (only '1.0')")
        for key in ("truncation", "padding"):
            if spec.get(key) is not None:
                raise CheckpointError(f"tokenizer.json: {key} is set ({short_repr(spec[key])}); "
                                      f"npgpt neither truncates nor pads (set it to null)")
        self._model = _BPE(_get(spec, "model", (dict,), "tokenizer.json", required=True))
        self._normalizer = _normalizer(spec.get("normalizer"))
        self._pre_tokenizer = _pre_tokenizer(spec.get("pre_tokenizer"))
        self._decoder = _decoder(spec.get("decoder"))
        added = _added_tokens(_get(spec, "added_tokens", (list,), "tokenizer.json", []),
                              self._model)
        self._raw = _matcher([t for t in added if not t["normalized"]], lambda t: t["content"])
        self._normalized = _matcher([t for t in added if t["normalized"]],
                                    self._normalized_content)
        self._id_to_token = dict(self._model.tokens)
        self._id_to_token.update({t["id"]: t["content"] for t in added})
        self._token_to_id = dict(self._model.vocab)
        self._token_to_id.update({t["content"]: t["id"] for t in added})
        self._special = {t["content"] for t in added if t["special"]}
        self.special_tokens = {t["content"]: t["id"] for t in added if t["special"]}
        self._before, self._after = _post_processor(spec.get("post_processor"),
                                                    self._id_to_token.__contains__)
        self._vocab_size = max(self._id_to_token, default=-1) + 1

    def _normalized_content(self, token):
        try:
            return _normalize(self._normalizer, token["content"])
        except ValueError as e:
            raise CheckpointError(f"added token {short_repr(token['content'])}: {e}") from None

    # -- encode --------------------------------------------------------------------------

    def _segments(self, text):
        """Steps 1-2: ``[(piece, token or None, at_start)]`` -- the added tokens, and the
        normalized text between them."""
        out = []
        for start, end, token in _find_added(text, self._raw):
            if token is not None:
                if end > start:             # (a token whose span a stripping one took: none)
                    out.append((text[start:end], token, start == 0))
                continue
            piece = _normalize(self._normalizer, text[start:end])
            for s, e, t in _find_added(piece, self._normalized):
                if e > s:
                    out.append((piece[s:e], t, start == 0 and s == 0))
        return out

    def pretokenize(self, text):
        """The words BPE sees: ``text`` after added tokens, normalizer and pre-tokenizer
        (an added token stands as its content).

        Examples
        --------
        >>> HFTokenizer(_example()).pretokenize("Hi there<|end|>!")
        ['Hi', 'Ġthere', '<|end|>', '!']
        """
        _check_text(text)
        words = []
        for piece, token, at_start in self._segments(text):
            words.extend([piece] if token is not None else self._words(piece, at_start))
        return words

    def _words(self, piece, at_start):
        pieces = [(piece, at_start)]
        for step in self._pre_tokenizer:
            pieces = step(pieces)
        return [w for w, _ in pieces if w]

    def encode(self, text, add_special_tokens=True):
        """Token ids of ``text``, as ``tokenizers``' ``Tokenizer.encode(text).ids``.

        Parameters
        ----------
        text : str
        add_special_tokens : bool
            Add the post-processor's tokens (e.g. the BOS ``<s>`` or ``<|begin_of_text|>``)
            -- the library's default, True.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.encode(" the"), tok.encode(" the", add_special_tokens=False)
        ([259, 258], [258])
        """
        _check_text(text)
        model, ids = self._model, []
        for piece, token, at_start in self._segments(text):
            if token is not None:
                ids.append(token["id"])
            else:
                for word in self._words(piece, at_start):
                    ids.extend(model.tokenize(word))
        return self._before + ids + self._after if add_special_tokens else ids

    # -- decode --------------------------------------------------------------------------

    def _tokens(self, ids, skip_special_tokens):
        """The token strings of ``ids``; an id without a token (a model's padding rows past
        the tokenizer's vocabulary) is left out, as the library does; a negative id is a
        ValueError."""
        ids = _as_id_list(ids)
        if any(i < 0 for i in ids):
            _raise_bad_ids(ids, lambda i: i >= 0, self._vocab_size)
        table = self._id_to_token
        tokens = [table[i] for i in ids if i in table]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._special]
        return tokens

    def decode(self, ids, skip_special_tokens=True):
        """Text of ``ids``: their token strings through the file's decoder.

        Parameters
        ----------
        ids : sequence of int, or 1-D integer array
        skip_special_tokens : bool
            Leave special tokens out -- the library's default, True.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.decode([259, 72, 105, 258]), tok.decode([259, 72], skip_special_tokens=False)
        ('Hi the', '<|begin|>H')
        >>> tok.decode([195])                     # half of a UTF-8 character
        '�'
        >>> tok.decode([72, 10_000, 105])          # an id without a token is left out
        'Hi'
        """
        return _decode(self._decoder, self._tokens(ids, skip_special_tokens))

    def token_bytes(self, token_id):
        """The bytes token ``token_id`` adds inside a text (for stop strings).

        The decoder on this one token, as if it stood inside a longer text: a byte-level
        token gives its raw bytes (even half a character), ``"▁"`` gives a space, ``<0xNN>``
        its byte; a decoder's ``Strip`` (the first space of a SentencePiece text) is not
        applied. An id without a token adds nothing (``b""``), as in ``decode``.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.token_bytes(258), tok.token_bytes(195), tok.token_bytes(260)
        (b' the', b'\\xc3', b'<|end|>')
        """
        return _decode(self._decoder, self._tokens([token_id], False), inside=True)

    def token_to_id(self, token):
        """The id of a token string (an added token's content, or a vocabulary entry), or
        None.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.token_to_id("<|end|>"), tok.token_to_id("Ġthe"), tok.token_to_id("nope")
        (260, 258, None)
        """
        return self._token_to_id.get(token)

    def id_to_token(self, token_id):
        """The token string of an id (as the file spells it), or None if it has none.

        Examples
        --------
        >>> HFTokenizer(_example()).id_to_token(258), HFTokenizer(_example()).id_to_token(999)
        ('Ġthe', None)
        """
        tokens = self._tokens([token_id], False)
        return tokens[0] if tokens else None

    @property
    def vocab_size(self):
        """``max id + 1`` over the vocabulary and the added tokens (the embedding table's
        height)."""
        return self._vocab_size

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self):
        """``{"type": "hf", "tokenizer_json": <the tokenizer.json>}`` (a fresh copy).

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> d = tok.to_dict()
        >>> d["type"], HFTokenizer.from_dict(d) == tok
        ('hf', True)
        """
        return {"type": self.type_name, "tokenizer_json": json.loads(self._json)}

    @classmethod
    def from_dict(cls, d):
        """The tokenizer of ``d = tok.to_dict()``.

        Examples
        --------
        >>> d = {"type": "hf", "tokenizer_json": _example()}
        >>> HFTokenizer.from_dict(d).encode("the", add_special_tokens=False)
        [116, 104, 101]
        """
        _check_type(d, cls.type_name)
        if set(d) != {"type", "tokenizer_json"}:
            raise ValueError(f"an 'hf' tokenizer dict has the keys 'type' and 'tokenizer_json', "
                             f"got {short_repr(sorted(d))}")
        return cls(d["tokenizer_json"])

    def __repr__(self):
        return (f"HFTokenizer(vocab_size={self.vocab_size}, "
                f"special_tokens={len(self.special_tokens)})")


def read_folder_extras(tok, folder):
    """Set ``tok.chat_template``, ``tok.bos_token_id`` and ``tok.eos_token_id`` from a Hugging
    Face folder: the template of ``chat_template.jinja``, else the ``chat_template`` string
    of ``tokenizer_config.json``, whose ``bos_token`` / ``eos_token`` (a token string or
    ``{"content": ...}``) give the ids. Absent files or keys change nothing; a malformed
    one is a :class:`~npgpt.io.CheckpointError` naming the file and the key.

    Examples
    --------
    >>> import json, os
    >>> os.makedirs("folder", exist_ok=True)
    >>> with open("folder/tokenizer_config.json", "w") as f:
    ...     json.dump({"chat_template": "{{ messages }}", "eos_token": "<|end|>"}, f)
    >>> tok = read_folder_extras(HFTokenizer(_example()), "folder")
    >>> tok.chat_template, tok.eos_token_id, tok.bos_token_id
    ('{{ messages }}', 260, None)
    """
    from ..io.files import open_regular
    config = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(config):
        try:
            d = _read_json(config)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        if not isinstance(d, dict):
            raise CheckpointError(f"{config} holds no object")
        template = d.get("chat_template")
        if isinstance(template, str):
            tok.chat_template = template
        for key in ("bos_token", "eos_token"):
            token = d.get(key)
            if isinstance(token, dict):
                token = token.get("content")
            if token is not None:
                if not isinstance(token, str) or tok.token_to_id(token) is None:
                    raise CheckpointError(f"{config}: {key} {short_repr(token)} is not a token "
                                          f"of tokenizer.json")
                setattr(tok, f"{key}_id", tok.token_to_id(token))
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.exists(jinja):
        with open_regular(jinja) as f:
            raw = f.read()
        try:
            tok.chat_template = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{jinja} is not UTF-8 text") from None
    return tok


def load_tokenizer_json(path_or_dict):
    """Read a Hugging Face ``tokenizer.json`` (a path, or the parsed dict).

    The file is checked as strictly as weights: anything npgpt does not support or that
    the ``tokenizers`` library would read differently is a
    :class:`~npgpt.io.CheckpointError` (a ValueError) naming the file, the field and its
    value.

    Examples
    --------
    >>> import json
    >>> with open("tokenizer.json", "w", encoding="utf-8") as f:
    ...     json.dump(_example(), f)
    >>> tok = load_tokenizer_json("tokenizer.json")
    >>> tok.encode("the theme")
    [259, 116, 104, 101, 258, 109, 101]

    A ``Split`` regex must be a registered pattern:

    >>> spec = _example()
    >>> spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a|a)*b"},
    ...                          "behavior": "Isolated", "invert": False}
    >>> load_tokenizer_json(spec)              # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: pre_tokenizer.pattern.Regex: the regex '(a|a)*b' is not ...
    """
    if isinstance(path_or_dict, dict):
        return HFTokenizer(path_or_dict)
    if not isinstance(path_or_dict, (str, bytes, os.PathLike)):
        raise TypeError(f"load_tokenizer_json takes a path or a dict, got "
                        f"{type(path_or_dict).__name__}")
    try:
        spec = _read_json(path_or_dict)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    try:
        return HFTokenizer(spec)
    except CheckpointError as e:
        raise CheckpointError(f"{path_or_dict}: {e}") from None
