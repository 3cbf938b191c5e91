"""Batches and evaluation losses: the corpus split, random windows for a step, and the mean
loss over random batches or over a whole split.

Shapes: a corpus is a 1-D int array of token ids; a batch is x, y (B, T) with y the
sequence x shifted by one token (y[b, t] = corpus[i_b + t + 1]).
"""

from __future__ import annotations

import numpy as np

from ..config import GPTConfig  # noqa: F401  (the examples make models)
from ..model import GPT
from ..nn.crossentropy import cross_entropy_forward


def split_corpus(ids, val_fraction: float = 0.1):
    """The first (1 - val_fraction) of the corpus for training, the rest for validation.

    Examples
    --------
    >>> split_corpus(np.arange(10), val_fraction=0.2)
    (array([0, 1, 2, 3, 4, 5, 6, 7]), array([8, 9]))
    """
    ids = np.asarray(ids)
    n = int(len(ids) * (1.0 - val_fraction))
    return ids[:n], ids[n:]


def get_batch(data, batch_size: int, context: int, rng: np.random.Generator):
    """Random contiguous windows: x (B, T) = data[i : i+T], y (B, T) = data[i+1 : i+T+1].

    Examples
    --------
    >>> x, y = get_batch(np.arange(20), batch_size=2, context=4, rng=np.random.default_rng(0))
    >>> x
    array([[13, 14, 15, 16],
           [10, 11, 12, 13]])
    >>> y                                     # each row of x shifted by one: the next tokens
    array([[14, 15, 16, 17],
           [11, 12, 13, 14]])
    """
    if len(data) < context + 1:
        raise ValueError(f"the data has {len(data)} tokens; a window of context {context} "
                         f"needs at least {context + 1}")
    starts = rng.integers(0, len(data) - context, size=batch_size)        # (B,)
    index = starts[:, None] + np.arange(context)                          # (B, T)
    return data[index].astype(np.int64), data[index + 1].astype(np.int64)


def estimate_loss(model: GPT, data, batch_size: int, context: int, iters: int, seed) -> float:
    """Mean loss over ``iters`` random batches drawn from a Generator seeded with ``seed``
    (dropout-free: evaluation mode).

    Examples
    --------
    An untrained model guesses about uniformly: a loss near log V = log 4 ≈ 1.39.

    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> data = np.array([0, 1, 2, 3] * 10)
    >>> round(estimate_loss(model, data, batch_size=4, context=8, iters=2, seed=0), 2)
    1.39
    """
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(iters):
        x, y = get_batch(data, batch_size, context, rng)
        logits = model(x)
        losses.append(cross_entropy_forward(logits, y)[0])
    return float(np.mean(losses))


def split_loss(model: GPT, data, batch_size: int = 32) -> float:
    """The mean loss over the whole of ``data``, cut into consecutive windows of
    ``context_length`` (each token predicted once, from up to a window of context) — a
    deterministic figure, unlike the random-batch estimate of :func:`estimate_loss`.

    Examples
    --------
    40 tokens make 4 windows of 8 (39 targets; the last 7 tokens predict nothing):

    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> round(split_loss(model, np.array([0, 1, 2, 3] * 10)), 2)
    1.41
    """
    T = model.config.context_length
    n = (len(data) - 1) // T                                              # whole windows
    if n == 0:
        raise ValueError(f"the data has {len(data)} tokens; a window needs {T + 1}")
    starts = np.arange(n) * T
    total = 0.0
    for i in range(0, n, batch_size):
        index = starts[i:i + batch_size, None] + np.arange(T)             # (b, T)
        x, y = data[index].astype(np.int64), data[index + 1].astype(np.int64)
        total += cross_entropy_forward(model(x), y)[0] * len(index)
    return total / n
