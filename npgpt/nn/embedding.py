"""Token embedding plus learned position embedding.

Shapes: ids (B, T) int, positions (B, T) or (T,) int -> x (B, T, C);
token table (V, C), position table (context_length, C).
"""

from __future__ import annotations

import numpy as np


def embedding_forward(ids, token_table, position_table, positions):
    """x[b, t] = token_table[ids[b, t]] + position_table[positions[b, t]].

    Parameters
    ----------
    ids : int ndarray (B, T), every id in [0, V).
    token_table : ndarray (V, C), ``token_embedding.weight``.
    position_table : ndarray (context_length, C), ``position_encoding.weight``.
    positions : int ndarray (T,) or (B, T), every value in [0, context_length).

    Returns
    -------
    x : ndarray (B, T, C)
    cache : (ids, positions, V, context_length) for :func:`embedding_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> x, _ = embedding_forward(np.array([[1]]), np.eye(2), np.zeros((4, 2)), np.arange(1))
    >>> x.tolist()
    [[[0.0, 1.0]]]
    """
    x = token_table[ids]                                  # (B, T) -> (B, T, C)
    x += position_table[positions]                        # (T, C) or (B, T, C), broadcast
    return x, (ids, positions, token_table.shape[0], position_table.shape[0])


def embedding_backward(dx, cache):
    """Gradients of the two lookup tables.

    forward: x[b, t] = token_table[ids[b, t]] + position_table[positions[b, t]], so each
    row of a table receives the sum of dx over every place it was looked up (a scatter-add:
    a token id repeated in the batch accumulates, it is not overwritten).

    Parameters
    ----------
    dx : ndarray (B, T, C)
    cache : from :func:`embedding_forward`.

    Returns
    -------
    dtoken_table : ndarray (V, C); dposition_table : ndarray (context_length, C).
    """
    ids, positions, V, P = cache
    C = dx.shape[-1]
    dtoken = np.zeros((V, C), dtype=dx.dtype)
    np.add.at(dtoken, ids.ravel(), dx.reshape(-1, C))                      # scatter-add rows
    dposition = np.zeros((P, C), dtype=dx.dtype)
    positions = np.broadcast_to(positions, ids.shape)                      # (T,) -> (B, T)
    np.add.at(dposition, positions.ravel(), dx.reshape(-1, C))
    return dtoken, dposition
