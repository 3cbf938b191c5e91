"""A SentencePiece vocabulary: pieces, their scores and their types.

The types are numbered as in ``sentencepiece_model.proto`` -- and as in a GGUF file's
``tokenizer.ggml.token_type``, which uses the same numbers (:mod:`.gguf` reads them too).

>>> TYPE_NAMES[CONTROL]
'control'
"""

from __future__ import annotations

import math
import re

from ..io.errors import short_repr

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
TYPE_NAMES = {NORMAL: "normal", UNKNOWN: "unknown", CONTROL: "control",
              USER_DEFINED: "user-defined", UNUSED: "unused", BYTE: "byte"}
_BYTE_PIECE = re.compile(r"<0x([0-9A-F]{2})>\Z")


def checked_vocabulary(pieces, scores, types):
    """(pieces, scores, types) as lists, checked: a non-empty str, unique, a finite score and a
    known type per piece, ``<0xNN>`` for a byte piece, exactly one unknown piece; a
    ValueError naming the first piece that is not.

    >>> checked_vocabulary(["<unk>", "a"], [0, -1], [UNKNOWN, NORMAL])
    (['<unk>', 'a'], [0.0, -1.0], [2, 1])
    """
    if not (isinstance(pieces, (list, tuple)) and isinstance(scores, (list, tuple))
            and isinstance(types, (list, tuple))):
        raise ValueError("pieces, scores and types must be lists")
    if not len(pieces) == len(scores) == len(types) or not pieces:
        raise ValueError(f"pieces, scores and types must be non-empty lists of one length, "
                         f"got {len(pieces)}, {len(scores)} and {len(types)}")
    seen = {}
    for i, (p, s, t) in enumerate(zip(pieces, scores, types)):
        if not isinstance(p, str) or not p:
            raise ValueError(f"piece {i} must be a non-empty str, got {short_repr(p)}")
        if p in seen:
            raise ValueError(f"pieces {seen[p]} and {i} are both {short_repr(p)}")
        seen[p] = i
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"the score of piece {i} ({short_repr(p)}) must be a finite "
                             f"number, got {short_repr(s)}")
        if type(t) is not int or t not in TYPE_NAMES:
            raise ValueError(f"the type of piece {i} ({short_repr(p)}) must be one of "
                             f"{sorted(TYPE_NAMES)}, got {short_repr(t)}")
        if t == BYTE and not _BYTE_PIECE.match(p):
            raise ValueError(f"piece {i} has type byte but is {short_repr(p)}, not <0xNN>")
    unknown = [i for i, t in enumerate(types) if t == UNKNOWN]
    if len(unknown) != 1:
        raise ValueError(f"a vocabulary has exactly one piece of type unknown, got "
                         f"{len(unknown)} ({short_repr(unknown)})")
    return list(pieces), [float(s) for s in scores], list(types)
