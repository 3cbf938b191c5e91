"""Softmax cross-entropy over the vocabulary, forward and backward fused.

Shapes: logits (N, V) or (B, T, V); targets (N,) or (B, T) int -> a scalar loss.
"""

from __future__ import annotations

import numpy as np


def cross_entropy_forward(logits, targets):
    """loss = mean over positions of -log softmax(logits)[target].

    Computed as logsumexp(z) - z[target] with z = logits - max(logits) (stable).

    Parameters
    ----------
    logits : ndarray (..., V), float.
    targets : int ndarray (...), values in [0, V).

    Returns
    -------
    loss : float (Python float of the logits' precision).
    cache : (probs, targets) for :func:`cross_entropy_backward`.

    Examples
    --------
    >>> round(cross_entropy_forward(np.zeros((1, 4)), np.array([2]))[0], 6)   # log 4
    1.386294
    """
    V = logits.shape[-1]
    z = logits.reshape(-1, V) - logits.reshape(-1, V).max(axis=-1, keepdims=True)   # (N, V)
    probs = np.exp(z)
    total = probs.sum(axis=-1, keepdims=True)                                          # (N, 1)
    t = targets.reshape(-1)
    loss = np.mean(np.log(total[:, 0]) - z[np.arange(t.size), t])
    probs /= total
    return float(loss), (probs, t, logits.shape)


def cross_entropy_backward(cache):
    """dloss/dlogits = (softmax(logits) - onehot(target)) / N  — the fused gradient.

    Returns
    -------
    dlogits : ndarray, the shape of the logits.

    Examples
    --------
    >>> _, cache = cross_entropy_forward(np.zeros((1, 4)), np.array([2]))
    >>> cross_entropy_backward(cache).tolist()        # softmax = 1/4 each, minus 1 at the target
    [[0.25, 0.25, -0.75, 0.25]]
    """
    probs, t, shape = cache
    dlogits = probs.copy()
    dlogits[np.arange(t.size), t] -= 1.0
    dlogits *= probs.dtype.type(1.0 / t.size)
    return dlogits.reshape(shape)
