"""A ``tokenizer.json``'s added tokens (``<|begin_of_text|>``, ``<s>``, ...): cut out of the
text before everything else.

Types: a token is a dict (``id``, ``content``, ``single_word``, ``lstrip``, ``rstrip``,
``normalized``, ``special``); :func:`find_added` returns ``[(start, end, token or None)]``
covering a text. Tokens are found by an automaton
(:class:`~.longest_match.LongestMatcher`), leftmost and longest first, linear in the text
however many tokens there are.
"""

from __future__ import annotations

import re
import unicodedata

from ..io.errors import CheckpointError, short_repr
from .hf_fields import spec_field
from .longest_match import LongestMatcher
from .patterns import WHITE_SPACE

# Unicode's White_Space (the ``\s`` of the Rust regex crate): what lstrip/rstrip remove.
_SPACES = frozenset(chr(c) for lo, hi in WHITE_SPACE for c in range(lo, hi + 1))
_SPACE_RUN = re.compile("[" + "".join(sorted(_SPACES)) + "]*")

_ADDED_KEYS = ("id", "content", "single_word", "lstrip", "rstrip", "normalized", "special")


def read_added_tokens(entries, model, where="added_tokens"):
    """The added tokens of the file, checked: ``[dict(id, content, flags...)]``.

    Their ids must be those the library gives them on loading: the vocabulary's id for a
    token already in it, otherwise the next free id after the vocabulary (the library warns
    and renumbers when the file says otherwise; npgpt refuses).

    >>> from npgpt.tokenizers.hf_model import BPEModel
    >>> model = BPEModel({"type": "BPE", "vocab": {"a": 0}, "merges": []})
    >>> entry = {"id": 1, "content": "<|end|>", "single_word": False, "lstrip": False,
    ...          "rstrip": False, "normalized": False, "special": True}
    >>> [t["content"] for t in read_added_tokens([entry], model)]
    ['<|end|>']
    >>> read_added_tokens([{**entry, "id": 5}], model)    # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: added_tokens[0]: '<|end|>' has id 5, but the tokenizers ...
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
        token = {key: spec_field(e, key, (bool,), at) for key in _ADDED_KEYS[2:]}
        token["content"] = content = spec_field(e, "content", (str,), at)
        token["id"] = spec_field(e, "id", (int,), at)
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


def added_matcher(tokens, pattern_of):
    """(:class:`~.longest_match.LongestMatcher`, pattern -> token): leftmost matches, the
    longest where several start at the same place (the library's Aho-Corasick
    ``LeftmostLongest``).

    >>> tokens = [{"content": "<a>"}, {"content": "<ab>"}]
    >>> automaton, by_pattern = added_matcher(tokens, lambda t: t["content"])
    >>> list(automaton.find_iter("x<ab><a>")), sorted(by_pattern)
    ([(1, 5, '<ab>'), (5, 8, '<a>')], ['<a>', '<ab>'])
    """
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


def find_added(text, matcher):
    """``[(start, end, token or None)]`` covering ``text``: the library's ``find_matches``.

    A ``single_word`` token counts only with no word character (:func:`_is_word_char`)
    right before or after it; a token with ``lstrip`` takes the whitespace before it (not
    what an earlier token took), one with ``rstrip`` the whitespace after it.

    Examples
    --------
    >>> word = {"content": "ab", "single_word": True, "lstrip": False, "rstrip": False}
    >>> matcher = added_matcher([word], lambda t: t["content"])
    >>> [(s, e, t is not None) for s, e, t in find_added("ab xab", matcher)]
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
