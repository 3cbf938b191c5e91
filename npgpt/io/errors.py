"""CheckpointError, the one exception a malformed or hostile checkpoint raises, and
:func:`short_repr`, which every message about a file's content uses to show a value.

A message must stay short whatever the file holds: a pickle can reference one list from
thousands of places (a few KB whose ``repr`` is gigabytes), and JSON can hold integers
too large to print. ``short_repr`` never builds more than its limit.
"""

from __future__ import annotations

from .._repr import short_repr

__all__ = ["CheckpointError", "reject_repeated_keys", "short_repr"]


class CheckpointError(ValueError):
    """A checkpoint file or folder is malformed, truncated, hostile or unsupported.

    It subclasses ValueError, so ``except ValueError`` also catches it. The message says
    what is wrong (which tensor, which offset, which pickle global) and, when known, where.

    Examples
    --------
    >>> from npgpt.io import read_safetensors
    >>> with open("notes.txt", "w") as f:
    ...     _ = f.write("hello")
    >>> try:
    ...     read_safetensors("notes.txt")
    ... except CheckpointError as err:                  # `except ValueError` catches it too
    ...     print(err)
    notes.txt: file of 5 bytes is too short for safetensors (needs an 8-byte header length)
    """


def reject_repeated_keys(pairs) -> dict:
    """A JSON object as a dict, refusing a key given twice (JSON alone keeps the last).

    The ``object_pairs_hook`` with which :mod:`npgpt.io` and :mod:`npgpt.tokenizers` parse
    every JSON they read from a file: a value silently overwritten is a value lost.

    Examples
    --------
    >>> import json
    >>> json.loads('{"a": 1, "b": 2}', object_pairs_hook=reject_repeated_keys)
    {'a': 1, 'b': 2}
    >>> json.loads('{"a": 1, "a": 2}', object_pairs_hook=reject_repeated_keys)
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: key 'a' appears twice in one JSON object
    """
    out = {}
    for key, value in pairs:
        if key in out:
            raise CheckpointError(f"key {short_repr(key)} appears twice in one JSON object")
        out[key] = value
    return out
