"""Pre-tokenisation: GPT-2's regex, which cuts text into the pieces that BPE then encodes.

Shapes: text is a ``str``; a split is a ``list[str]`` of pre-tokens whose concatenation is
the text. BPE never merges across two pre-tokens.

- :data:`GPT2_PATTERN` -- GPT-2's pattern as written for the ``regex`` module and tiktoken
  (``\\p{L}``, ``\\p{N}``), which the standard-library ``re`` cannot compile;
- :func:`gpt2_pattern` -- the same pattern for ``re``: the Unicode classes are built from
  ``unicodedata`` (``_unicode_classes``) and White_Space is spelled out (``_WHITE_SPACE``);
- :func:`gpt2_split` -- ``gpt2_pattern().findall``, about five times faster;
- ``_compile_pattern`` -- ``"gpt2"`` or any ``re`` pattern -> a function text -> pre-tokens.

Compiled patterns are kept in ``_PATTERNS`` and the Unicode classes in ``_CLASSES``, both
built once, on first use.
"""

from __future__ import annotations

import re
import unicodedata

#: GPT-2's pre-tokenisation pattern as written for the third-party ``regex`` module (and for
#: tiktoken). :func:`gpt2_pattern` is the same pattern for the standard-library ``re``.
GPT2_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                r"""|\s+(?!\S)|\s+""")

# Unicode's White_Space property (PropList.txt), the meaning of \s in tiktoken's Rust regex.
# Python's own \s also matches U+001C..U+001F (str.isspace), which GPT-2 does not treat as
# whitespace, so the pattern below spells whitespace out instead of using \s.
_WHITE_SPACE = ([(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
                 (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
                 (0x3000, 0x3000)])

_CLASSES = None     # "L", "N", "S", "L_bmp", "N_bmp" -> class body (see _unicode_classes)
_PATTERNS = {}      # "gpt2", "gpt2_bmp" or a pattern str -> its compiled re


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

