"""Reading a ``tokenizer.json``: small checked accessors every stage uses.

Types: ``spec`` is one parsed JSON object of the file (a dict); ``where`` names it in
messages (``"pre_tokenizer.pretokenizers[1]"``). Every problem is a
:class:`~npgpt.io.CheckpointError` naming the field and its value.
"""

from __future__ import annotations

from ..io.errors import CheckpointError, short_repr


def spec_field(spec, key, kinds, where, default=None, required=False):
    """``spec[key]`` if it is one of ``kinds``; a missing key gives ``default``.

    >>> spec = {"type": "Digits", "individual_digits": "yes"}
    >>> spec_field(spec, "type", (str,), "pre_tokenizer"), spec_field(spec, "x", (int,), "x", 0)
    ('Digits', 0)
    >>> spec_field(spec, "individual_digits", (bool,), "pre_tokenizer")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: pre_tokenizer.individual_digits must be bool, got 'yes'
    """
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


def count_field(spec, key, where):
    """A non-negative integer field (not a bool), required.

    >>> count_field({"start": 1}, "start", "decoder"), count_field({"start": 0}, "start", "decoder")
    (1, 0)
    >>> count_field({"start": -1}, "start", "decoder")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: decoder.start must be >= 0, got -1
    """
    value = spec_field(spec, key, (int,), where, required=True)
    if value < 0:
        raise CheckpointError(f"{where}.{key} must be >= 0, got {value}")
    return value


def spec_kind(spec, where, allowed_keys):
    """``spec["type"]``, after checking that ``spec`` is an object with no unknown field.

    An unknown field is refused rather than ignored: it might change the ids.

    >>> spec_kind({"type": "NFC"}, "normalizer", {"NFC": (), "Prepend": ("prepend",)})
    'NFC'
    >>> spec_kind({"type": "NFC", "form": 1}, "normalizer", {"NFC": ()})
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: normalizer (NFC): unknown field(s) ['form']
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


def sequence_parts(spec, key, where):
    """The members of a ``Sequence`` (``spec[key]``), each an object: ``[(part, where)]``.

    (A null member is refused here: only a whole normalizer, pre-tokenizer, post-processor
    or decoder may be null.)

    >>> sequence_parts({"normalizers": [{"type": "NFC"}]}, "normalizers", "normalizer")
    [({'type': 'NFC'}, 'normalizer.normalizers[0]')]
    """
    out = []
    for i, part in enumerate(spec_field(spec, key, (list,), where, required=True)):
        at = f"{where}.{key}[{i}]"
        if not isinstance(part, dict):
            raise CheckpointError(f"{at} must be an object, got {short_repr(part)}")
        out.append((part, at))
    return out


def char_field(spec, key, where):
    """A one-character field, required.

    >>> char_field({"replacement": "▁"}, "replacement", "decoder")
    '▁'
    >>> char_field({"replacement": "ab"}, "replacement", "decoder")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: decoder.replacement must be one character, got 'ab'
    """
    value = spec_field(spec, key, (str,), where, required=True)
    if len(value) != 1:
        raise CheckpointError(f"{where}.{key} must be one character, got {short_repr(value)}")
    return value


def string_pattern(spec, where):
    """The plain string of ``{"String": s}``; a ``{"Regex": ...}`` is refused here.

    >>> string_pattern({"pattern": {"String": " "}}, "normalizer")
    ' '
    """
    pattern = spec_field(spec, "pattern", (dict,), where, required=True)
    if list(pattern) != ["String"] or not isinstance(pattern["String"], str) \
            or not pattern["String"]:
        raise CheckpointError(f"{where}.pattern must be {{'String': <non-empty text>}}, got "
                              f"{short_repr(pattern)}")
    return pattern["String"]
