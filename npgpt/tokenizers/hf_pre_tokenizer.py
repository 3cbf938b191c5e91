"""A ``tokenizer.json``'s pre-tokenizer: each piece of text -> words (BPE never merges
across two words).

Types: a step maps ``[(piece, at_start)]`` -> ``[(word, at_start)]``; ``at_start`` is true
for the piece that begins the text. Cutting follows the library's ``NormalizedString::split``
(:func:`_split`, with its five behaviors).

Supported: ``Sequence``, ``Split`` (a registered regex or a plain string, any behavior),
``ByteLevel``, ``Digits``, ``Metaspace``. A ``Split`` regex is never compiled from the file:
it must equal a pattern of :data:`~.patterns.PATTERNS`.
"""

from __future__ import annotations

import re
import unicodedata

from ..io.errors import CheckpointError, short_repr
from .byte_level import bytes_to_unicode
from .hf_fields import char_field, sequence_parts, spec_field, spec_kind, string_pattern
from .patterns import PATTERNS, TRANSLATED, compile_regex

# GPT-2's byte -> character table as a str.translate table (a Latin-1 decoded byte b is
# chr(b)).
_BYTE_CHARS = {b: c for b, c in bytes_to_unicode().items()}


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
    if regex in TRANSLATED:                  # GPT-2's, Llama 3's, Qwen2's: every character
        split = TRANSLATED[regex]            # lies in a pre-token, so all are matches

        def matches(text):
            out, start = [], 0
            for piece in split(text):
                out.append((start, start + len(piece), True))
                start += len(piece)
            return out
        return matches
    finditer = compile_regex(regex).finditer
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


def read_pre_tokenizer(spec, where="pre_tokenizer"):
    """The pre-tokenizer of ``spec`` as a list of steps ``[(piece, at_start)] -> [...]``.

    ``at_start`` is true for the piece that begins the text (Metaspace's ``"first"`` rule).

    - ``Split(pattern, behavior, invert)``: cut along a registered regex or a plain string;
    - ``Digits(individual_digits)``: numeric characters apart, one by one or in runs;
    - ``ByteLevel(add_prefix_space, use_regex)``: a leading space if missing, GPT-2's
      pattern if ``use_regex``, then each UTF-8 byte spelled as one character;
    - ``Metaspace(replacement, prepend_scheme, split)``: spaces -> ``replacement``, which
      is also put in front (``"always"``; ``"first"``: only at the start of the text);
      with ``split`` each ``replacement`` begins a new word.

    >>> steps = read_pre_tokenizer({"type": "Digits", "individual_digits": True})
    >>> pieces = [("ab12", True)]
    >>> for step in steps:
    ...     pieces = step(pieces)
    >>> pieces
    [('ab', True), ('1', False), ('2', False)]
    """
    if spec is None:
        return []
    kind = spec_kind(spec, where, _PRE_TOKENIZERS)
    if kind == "Sequence":
        return [f for part, at in sequence_parts(spec, "pretokenizers", where)
                for f in read_pre_tokenizer(part, at)]
    if kind == "Split":
        behavior = spec_field(spec, "behavior", (str,), where, required=True)
        if behavior not in _BEHAVIORS:
            raise CheckpointError(f"{where}.behavior must be one of {list(_BEHAVIORS)}, got "
                                  f"{short_repr(behavior)}")
        invert = spec_field(spec, "invert", (bool,), where, required=True)
        pattern = spec_field(spec, "pattern", (dict,), where, required=True)
        if list(pattern) == ["Regex"] and isinstance(pattern["Regex"], str):
            matcher = _registered_matcher(pattern["Regex"], f"{where}.pattern.Regex")
        else:
            literal = re.compile(re.escape(string_pattern(spec, where)))
            matcher = lambda text: _regex_matches(literal.finditer, text)   # noqa: E731
        return [_splitter(matcher, behavior, invert)]
    if kind == "Digits":
        individual = spec_field(spec, "individual_digits", (bool,), where, required=True)
        numeric = lambda c: unicodedata.category(c)[0] == "N"               # noqa: E731
        return [_splitter(lambda text: _char_matches(text, numeric),
                          "Isolated" if individual else "Contiguous")]
    if kind == "ByteLevel":
        spec_field(spec, "trim_offsets", (bool,), where, required=True)      # offsets only
        return _byte_level(spec_field(spec, "add_prefix_space", (bool,), where, required=True),
                           spec_field(spec, "use_regex", (bool,), where, True))
    return read_metaspace(spec, where)


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


def read_metaspace(spec, where):
    """Metaspace's step (see :func:`read_pre_tokenizer`), with the library's reading of the
    older ``add_prefix_space`` field: true means ``"always"`` unless a scheme is given.

    >>> step, = read_metaspace({"replacement": "▁", "prepend_scheme": "first", "split": False},
    ...                        "pre_tokenizer")
    >>> step([("a b", True), ("c", False)])
    [('▁a▁b', True), ('c', False)]
    """
    replacement = char_field(spec, "replacement", where)
    legacy = spec_field(spec, "add_prefix_space", (bool,), where)
    scheme = spec_field(spec, "prepend_scheme", (str,), where, "always")
    if scheme not in ("always", "first", "never"):
        raise CheckpointError(f"{where}.prepend_scheme must be 'always', 'first' or 'never', "
                              f"got {short_repr(scheme)}")
    if legacy is False and scheme != "never":
        raise CheckpointError(f"{where}: add_prefix_space false does not match prepend_scheme "
                              f"{scheme!r}")
    split = spec_field(spec, "split", (bool,), where, True)

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
