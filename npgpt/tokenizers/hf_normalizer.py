"""A ``tokenizer.json``'s normalizer: str -> str, before the pre-tokenizer.

Supported: ``Sequence``, ``Prepend``, ``Replace`` (a plain string), ``NFC``, ``NFD``,
``NFKC``, ``NFKD``. A normalizer chain may make at most ``64 * len(text) + 4096``
characters (a ValueError naming the step otherwise), and Unicode normalization is linear
(:func:`~.normalize.normalize`).
"""

from __future__ import annotations

from ..io.errors import short_repr
from .hf_fields import sequence_parts, spec_field, spec_kind, string_pattern
from .normalize import normalize as _unicode_normalize

_NORMALIZERS = {"Sequence": ("normalizers",), "Prepend": ("prepend",),
                "Replace": ("pattern", "content"), "NFC": (), "NFD": (), "NFKC": (),
                "NFKD": ()}

#: A normalizer chain may make at most ``_MAX_GROWTH * len(text) + _MAX_EXTRA`` characters out
#: of a text: NFKC, the most any real file needs, makes at most 18 of one (U+FDFA), while 40
#: chained ``Replace("a", "aa")`` would make 2**40 of ``"a"``.
_MAX_GROWTH = 64
_MAX_EXTRA = 4096


def read_normalizer(spec, where="normalizer"):
    """The normalizer of ``spec`` as a list of steps ``(where, size, apply)``, applied in
    order: ``apply`` maps str -> str, ``size(text)`` is the length of ``apply(text)``,
    known before running it (None: checked after).

    - ``Prepend(p)``: ``p + text`` when text is not empty;
    - ``Replace(s, c)``: ``text.replace(s, c)`` (a plain string; a regex is refused);
    - ``NFC`` / ``NFD`` / ``NFKC`` / ``NFKD``: ``unicodedata.normalize``, in linear time
      (:func:`~.normalize.normalize`).

    >>> steps = read_normalizer({"type": "Sequence", "normalizers": [
    ...     {"type": "Prepend", "prepend": "▁"},
    ...     {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})
    >>> [where for where, size, apply in steps]
    ['normalizer.normalizers[0] (Prepend)', "normalizer.normalizers[1] (Replace ' ' -> '▁')"]
    >>> run_normalizer(steps, "Hi there")
    '▁Hi▁there'
    """
    if spec is None:
        return []
    kind = spec_kind(spec, where, _NORMALIZERS)
    label = f"{where} ({kind})"
    if kind == "Sequence":
        return [f for part, at in sequence_parts(spec, "normalizers", where)
                for f in read_normalizer(part, at)]
    if kind == "Prepend":
        prefix = spec_field(spec, "prepend", (str,), where, required=True)
        return [(label, lambda text: len(prefix) + len(text) if text else 0,
                 lambda text: prefix + text if text else text)]
    if kind == "Replace":
        old = string_pattern(spec, where)
        new = spec_field(spec, "content", (str,), where, required=True)
        label = f"{where} (Replace {short_repr(old)} -> {short_repr(new)})"
        return [(label, lambda text: len(text) + text.count(old) * (len(new) - len(old)),
                 lambda text: text.replace(old, new))]
    return [(label, None, lambda text: _unicode_normalize(kind, text))]


def run_normalizer(steps, text):
    """``text`` through the normalizer ``steps``; a ValueError if a step would make more
    than ``_MAX_GROWTH * len(text) + _MAX_EXTRA`` characters (named, with the bound).

    Examples
    --------
    >>> double = {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}
    >>> steps = read_normalizer({"type": "Sequence", "normalizers": [double] * 40})
    >>> run_normalizer(steps, "a")                       # doctest: +ELLIPSIS
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
