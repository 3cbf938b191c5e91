"""Numerically stable softmax over the last axis (used by attention and the loss).

Shapes: any (..., N) -> (..., N).
"""

from __future__ import annotations

import numpy as np


def softmax_forward(x):
    """p = exp(x - max x) / Σ exp(x - max x) along the last axis.

    Subtracting the row maximum changes nothing mathematically (softmax is shift-invariant)
    and keeps exp() from overflowing; -inf entries get probability exactly 0. A row whose
    entries are all -inf has no distribution: the caller must not produce one.

    Parameters
    ----------
    x : ndarray (..., N), float.

    Returns
    -------
    p : ndarray (..., N), rows sum to 1.

    Examples
    --------
    >>> softmax_forward(np.array([0.0, np.log(3.0)])).round(2).tolist()
    [0.25, 0.75]
    """
    p = x - x.max(axis=-1, keepdims=True)                 # (..., N), row max is 0
    np.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)                    # (..., N) / (..., 1)
    return p
