"""Unicode normalization (NFC, NFD, NFKC, NFKD) in linear time, equal to ``unicodedata``'s.

Shapes and types: text in, text out (``str``); nothing here is an array.

CPython's ``unicodedata.normalize`` puts combining marks in canonical order with an
insertion sort, so a long run of marks whose combining classes alternate is quadratic:
``"a" + "\\u0301\\u0316" * 20_000`` takes about a second, ten times that text a hundred
times longer. A tokenizer normalizes any text it is given, so :func:`normalize` bounds the
cost:

1. **Pieces that cannot interact.** Cut the text before every *safe* character ``c``:
   its decomposition starts with a starter (canonical combining class 0) that never
   composes with a character before it. Canonical reordering only moves non-starters
   within a run between two starters, and composition only joins a character to the last
   starter before it, so nothing crosses such a cut:
   ``normalize(form, a + b) == normalize(form, a) + normalize(form, b)`` whenever ``b``
   starts with a safe character. (The property tests check this against ``unicodedata``
   on random text.)
2. **Short pieces** -- all of them in ordinary text -- go to ``unicodedata`` as they are
   (whole stretches of them at once, found with one regex search).
3. **A long piece** (:data:`_LONG_RUN` or more unsafe characters in a row) is decomposed
   character by character and each run of non-starters is sorted by combining class
   with Python's stable sort (``O(n log n)``), which is the definition of canonical
   ordering; ``unicodedata`` then finds it already ordered, and its composition pass is
   linear.

The tables (which characters are unsafe) are built once, on first use, from
``unicodedata`` (about 0.2 s).
"""

from __future__ import annotations

import re
import unicodedata

from .patterns import ASTRAL, class_string, code_point_ranges

#: A run of this many unsafe characters is normalized by :func:`_ordered_decomposition`.
_LONG_RUN = 64
_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
_LONG = {}           # run length -> compiled regex of such runs (built on first use)
_UNSAFE = None       # (class body of the BMP unsafe characters, set of the astral ones)


def _back_combining():
    """The starters and marks that compose with a character *before* them: the second
    character of each primary composite (a two-character canonical decomposition that NFC
    keeps), and the Hangul vowel and trailing consonant jamo (composed by rule)."""
    seconds = {chr(c) for c in range(0x1161, 0x1176)} | {chr(c) for c in range(0x11A8, 0x11C3)}
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
                seconds.add(chr(int(parts[1], 16)))
    return seconds


def _unsafe_tables():
    """``(class body, astral set)`` of the characters a cut may not precede (for any of the
    four forms): a non-starter, a back-combining character, or a character whose canonical
    or compatibility decomposition starts with one of those. The class holds the BMP ones;
    the astral ones (> U+FFFF) are a set, since ``re`` tests astral ranges one by one (see
    :func:`~.patterns.gpt2_split`)."""
    global _UNSAFE
    if _UNSAFE is None:
        seconds, combining = _back_combining(), unicodedata.combining
        unsafe = []
        for cp in range(0x110000):
            c = chr(cp)
            if combining(c) or c in seconds:
                unsafe.append(cp)
            elif unicodedata.decomposition(c):
                for form in ("NFD", "NFKD"):
                    first = unicodedata.normalize(form, c)[0]
                    if combining(first) or first in seconds:
                        unsafe.append(cp)
                        break
        bmp = code_point_ranges(cp for cp in unsafe if cp <= 0xFFFF)
        _UNSAFE = class_string(bmp), frozenset(chr(cp) for cp in unsafe if cp > 0xFFFF)
    return _UNSAFE


def _long_runs(text, length):
    """The spans of runs of at least ``length`` unsafe characters in ``text``."""
    if length not in _LONG:
        _LONG[length] = re.compile(f"[{_unsafe_tables()[0]}]{{{length},}}")
    if ASTRAL.search(text):                     # astral stand-ins: an unsafe one, a safe one
        astral = _unsafe_tables()[1]
        text = ASTRAL.sub(lambda m: "\u0301" if m.group() in astral else "a", text)
    return [m.span() for m in _LONG[length].finditer(text)]


def _ordered_decomposition(form, piece):
    """The canonical decomposition (``form`` NFC/NFD) or compatibility one (NFKC/NFKD) of
    ``piece``, in canonical order: each character decomposed on its own, then each run of
    non-starters stably sorted by combining class.

    Examples
    --------
    >>> [hex(ord(c)) for c in _ordered_decomposition("NFC", "a\\u0301\\u0316")]
    ['0x61', '0x316', '0x301']
    """
    decompose = "NFD" if form in ("NFC", "NFD") else "NFKD"
    combining = unicodedata.combining
    out, run = [], []
    for c in "".join(unicodedata.normalize(decompose, c) for c in piece):
        if combining(c):
            run.append(c)
            continue
        if run:
            out.extend(sorted(run, key=combining))
            run = []
        out.append(c)
    out.extend(sorted(run, key=combining))
    return "".join(out)


def normalize(form, text, long_run=_LONG_RUN):
    """``unicodedata.normalize(form, text)``, in time linear in ``len(text)`` (up to a
    logarithm on very long runs of combining marks); see the module docstring.

    Parameters
    ----------
    form : {"NFC", "NFD", "NFKC", "NFKD"}
    text : str
    long_run : int
        Runs of at least this many unsafe characters take the ordered path (a parameter so
        that tests can exercise it on short texts).

    Examples
    --------
    >>> normalize("NFC", "e\\u0301") == "\\u00e9"
    True
    >>> out = normalize("NFC", "a" + "\\u0301\\u0316" * 50_000)   # quadratic in unicodedata
    >>> out == "\\u00e1" + "\\u0316" * 50_000 + "\\u0301" * 49_999
    True
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {list(_FORMS)}, got {form!r}")
    if text.isascii():
        return text
    out, done = [], 0
    for start, end in _long_runs(text, long_run):
        start = max(start - 1, 0)                           # the safe character before the run
        if done < start:
            out.append(unicodedata.normalize(form, text[done:start]))
        out.append(unicodedata.normalize(form, _ordered_decomposition(form, text[start:end])))
        done = end
    if done == 0:
        return unicodedata.normalize(form, text)
    out.append(unicodedata.normalize(form, text[done:]))
    return "".join(out)
