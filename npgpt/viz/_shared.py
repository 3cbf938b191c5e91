"""What every picture shares: its checked inputs (a distribution, a token id, a strategy
report) and the one way it names a token (:func:`quoted`, :func:`labeler`, :func:`token_label`).

Shapes: V = vocabulary size. probs (V,) float -- one next-token distribution.
"""

from __future__ import annotations

import operator

import numpy as np

_MAX_LABEL = 14          # characters of a token label shown in tables and tick labels


def checked_index(value, name, size):
    """An int in [0, size), else ValueError naming the value."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer token id, got {value!r}")
    try:
        value = operator.index(value)          # ints, NumPy ints, 0-d integer tensors
    except TypeError:
        raise ValueError(f"{name} must be an integer token id, got {value!r}") from None
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in [0, {size}) for a vocabulary of size {size}, got {value}")
    return value


def checked_vector(x, name):
    """A 1-D float64 array from (V,) or (1, V) input (e.g. the seed's ``logits[:, -1, :]``)."""
    if hasattr(x, "detach"):                      # a torch tensor, as in the seed
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]                                              # (1, V) -> (V,)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (V,) or (1, V) with V >= 1, got shape {np.shape(x)}")
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def checked_probs(x, name="probs"):
    """Validated probabilities (V,): finite, >= 0, summing to 1 within 1e-3."""
    p = checked_vector(x, name)
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contain NaN or inf")
    if (p < 0).any():
        raise ValueError(f"{name} must be >= 0, got minimum {p.min():g}")
    if abs(p.sum() - 1.0) > 1e-3:
        raise ValueError(f"{name} must sum to 1, got sum {p.sum():.6g}")
    return p


def checked_mask(x, name, V):
    m = np.asarray(x)
    if m.shape != (V,):
        raise ValueError(f"{name} must have shape ({V},), got shape {m.shape}")
    return m.astype(bool)


def quoted(text, limit=_MAX_LABEL):
    """A token's text as every picture shows it: always in single quotes, with Python's
    escapes for a quote, a backslash, a newline or tab and other invisible characters, so a
    space, an apostrophe and a newline read alike; cut to ``limit`` characters with "…".

    >>> print(*[quoted(t) for t in ["a", " ", "'", '"', "\\n", "\\\\", "To be or not to be"]])
    'a' ' ' '\\'' '"' '\\n' '\\\\' 'To be or no…'
    """
    pieces = [repr(ch + '"')[1:-2] for ch in text]     # the '"' makes repr pick single quotes
    body = "".join(pieces)
    if len(body) + 2 > limit:
        body, room = "", limit - 3
        for piece in pieces:
            if len(body) + len(piece) > room:
                break
            body += piece
        body += "…"
    return f"'{body}'"


def labeler(labels, V):
    """A function id -> display string for ``labels`` (see :mod:`npgpt.viz`)."""
    if labels is None:
        return lambda i: str(i)
    if hasattr(labels, "decode") and not isinstance(labels, (str, bytes)):
        def decode(i, tok=labels):
            try:
                return quoted(tok.decode([i]))
            except (ValueError, KeyError, IndexError, UnicodeDecodeError):
                return f"<{i}>"
        return decode
    if callable(labels):
        return lambda i: quoted(str(labels(i)))
    if isinstance(labels, str):
        raise ValueError("labels must be a sequence of strings (one per token), not one str")
    labels = list(labels)
    if len(labels) != V:
        raise ValueError(f"labels has {len(labels)} entries but the vocabulary has {V} tokens")
    return lambda i: quoted(str(labels[i]))


def token_label(labels, token_id, vocab_size):
    """The display string of one token (how every picture of npgpt.viz names it).

    >>> print(token_label(["hello", "world"], 1, 2), token_label(["'", " "], 0, 2))
    'world' '\\''
    >>> token_label(None, 7, 10)                     # no labels: the token id
    '7'
    """
    return labeler(labels, vocab_size)(checked_index(token_id, "token_id", vocab_size))


def checked_report(report):
    if isinstance(report, dict) or not hasattr(report, "__len__") or len(report) == 0:
        raise ValueError("report must be a non-empty list of dicts from strategy_report()")
    for row in report:
        if not isinstance(row, dict) or not {"label", "probs_before", "probs_after", "kept",
                                             "chosen"} <= set(row):
            raise ValueError("report rows must be dicts from strategy_report() with keys "
                             "label, probs_before, probs_after, kept, chosen")
    return [row for row in report]


def top_columns(before, chosen_ids, top):
    """Token ids to show: the ``top`` most probable (descending), plus any chosen ones."""
    order = np.argsort(-before, kind="stable")
    shown = list(order[:top])
    shown += [c for c in dict.fromkeys(chosen_ids) if c not in shown]
    return [int(i) for i in shown]
