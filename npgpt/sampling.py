"""Logits transforms: every common way to turn next-token logits into a distribution.

Shapes: logits (..., V) -- any number of leading batch dimensions, V = vocabulary size;
ids (..., T) int -- the token history of each row (or one (T,) history shared by all rows).

Every transform is a pure function ``(..., V) -> (..., V)``: removed tokens get ``-inf``,
kept tokens keep their value, the input is never modified and the output has the input's
float dtype. NaN logits, ``+inf`` logits and rows that are all ``-inf`` raise ValueError,
never a silent NaN. Bad parameters raise ValueError naming the value.

The chain used by :func:`distribution`, :func:`sample` and ``npgpt.generate`` is
transformers' order::

    repetition_penalty -> presence_frequency_penalty -> no_repeat_ngram
    -> temperature -> top_k -> top_p -> min_p -> typical -> epsilon -> eta

Decided semantics (see the README's table for how other libraries differ):

- top-k keeps every token whose logit is >= the k-th largest, so ties at the boundary survive.
- top-p keeps the smallest set of most probable tokens whose mass is >= p, plus every token
  tied with the least probable kept one (the set never depends on token order).
- temperature 0 is greedy: only the argmax (lowest id on ties) survives.
"""

from __future__ import annotations

import numbers

import numpy as np

from .config import positive_int

__all__ = ["softmax", "log_softmax", "temperature", "top_k", "top_p", "min_p", "typical",
           "epsilon", "eta", "repetition_penalty", "presence_frequency_penalty",
           "no_repeat_ngram", "process", "distribution", "sample"]

# Mass comparisons in top-p and typical are made in float64 with this relative slack, so a
# set whose mass equals p in exact arithmetic (e.g. dyadic probabilities 1/2 + 1/4 = 3/4) is
# recognised as reaching p even when exp() rounds the last bit.
MASS_RTOL = 1e-10
_FAST_TOP_P_MIN_SIZE = 4096     # vocabularies at least this large use the bucketed top-p
_NUM_BUCKETS = 1024


# ---------------------------------------------------------------------------- validation
def _as_logits(logits, name="logits"):
    """Return (x, row_max): x a float array (..., V), row_max (..., 1). Raise on NaN/inf."""
    x = np.asarray(logits)
    if x.dtype.kind != "f":
        if x.dtype.kind not in "iub":
            raise ValueError(f"{name} must be a real array, got dtype {x.dtype}")
        x = x.astype(np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., V) with V >= 1, got shape {x.shape}")
    row_max = x.max(axis=-1, keepdims=True)            # NaN propagates through max
    if np.isnan(row_max).any():
        raise ValueError(f"{name} contain NaN")
    if np.isposinf(row_max).any():
        raise ValueError(f"{name} contain +inf")
    if np.isneginf(row_max).any():
        row = np.argwhere(np.isneginf(row_max[..., 0]))[0]
        raise ValueError(f"{name} row {tuple(int(i) for i in row)} is all -inf: no token is possible")
    return x, row_max


def _real(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within the given bounds, else ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def _remove_below(x, threshold):
    """A copy of x with every entry < threshold set to -inf (a masked copy: about 1.4x
    faster than np.where or x + log([x >= t]) on (32, 50257) float32)."""
    out = x.copy()
    np.copyto(out, x.dtype.type(-np.inf), where=x < threshold)
    return out


def _kth_largest(x, k):
    """The k-th largest value of each row of x (..., V) -> (..., 1), 1 <= k <= V."""
    V = x.shape[-1]
    if k == 1:
        return x.max(axis=-1, keepdims=True)
    flat = x.reshape(-1, V)
    N = flat.shape[0]
    if 8 * k > V or V < 2048:
        return np.partition(flat, V - k, axis=-1)[:, V - k].reshape(x.shape[:-1] + (1,))
    # The k maxima of k disjoint chunks are k values, so the smallest of them is a lower
    # bound of the k-th largest: only the (few) values above it need sorting.
    chunk = V // k
    bound = flat[:, :k * chunk].reshape(N, k, chunk).max(axis=2).min(axis=1)   # (N,)
    idx = np.flatnonzero(flat >= bound[:, None])       # (much faster than 2-D nonzero)
    rows, vals = idx // V, flat.ravel()[idx]           # rows ascending: idx is sorted
    counts = np.bincount(rows, minlength=N)            # >= k each: every chunk max >= bound
    width = int(counts.max())
    starts = np.cumsum(counts) - counts
    padded = np.full((N, width), -np.inf, dtype=flat.dtype)   # each row's candidates, -inf after
    padded[rows, np.arange(idx.size) - starts[rows]] = vals
    kth = np.partition(padded, width - k, axis=1)[:, width - k]   # k-th largest of the candidates
    return kth.reshape(x.shape[:-1] + (1,))


# ------------------------------------------------------------------------------ softmax
def softmax(x, axis=-1):
    """Probabilities ``exp(x - max) / sum(exp(x - max))`` along ``axis``.

    Stable for huge logits (±1e4) and ``-inf`` entries (probability 0). A row of only
    ``-inf`` or any NaN raises ValueError.

    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    x, m = _as_logits(x, "x")
    e = np.exp(x - m)
    return np.moveaxis(e / e.sum(axis=-1, keepdims=True), -1, axis)


def log_softmax(x, axis=-1):
    """``x - max - log(sum(exp(x - max)))`` along ``axis``; ``-inf`` stays ``-inf``.

    >>> log_softmax(np.array([0.0, 0.0]))
    array([-0.69314718, -0.69314718])
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    x, m = _as_logits(x, "x")
    shifted = x - m
    out = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return np.moveaxis(out, -1, axis)


# ---------------------------------------------------------------------------- transforms
def temperature(logits, t):
    """Scale logits: ``logits / t``. ``t = 0`` is greedy decoding.

    ``t -> 0`` concentrates all mass on the argmax; ``t = 0`` is that limit taken as a rule:
    only the argmax (the lowest id among tied maxima) keeps its logit, every other token is
    ``-inf``. ``t = 1`` returns an unchanged copy.

    Parameters
    ----------
    logits : float array (..., V)
    t : float >= 0, finite

    >>> temperature(np.array([1.0, 2.0]), 2.0)
    array([0.5, 1. ])
    """
    t = _real(t, "temperature", low=0.0)
    x, _ = _as_logits(logits)
    if t == 0.0:
        best = np.argmax(x, axis=-1)[..., None]                       # (..., 1)
        out = np.full_like(x, -np.inf)
        np.put_along_axis(out, best, np.take_along_axis(x, best, axis=-1), axis=-1)
        return out
    if t == 1.0:
        return x.copy()
    return x / x.dtype.type(t)


def top_k(logits, k, min_tokens_to_keep=1):
    """Keep every token whose logit is >= the k-th largest logit; others become ``-inf``.

    Ties with the k-th largest are kept (so more than k tokens may survive), as in
    transformers. ``k >= V`` keeps everything. ``k = max(k, min_tokens_to_keep)``.

    Parameters
    ----------
    logits : float array (..., V)
    k : int >= 1

    >>> top_k(np.array([3.0, 1.0, 2.0, 2.0]), 2)
    array([  3., -inf,   2.,   2.])
    """
    k = max(positive_int(k, "top_k"), positive_int(min_tokens_to_keep, "min_tokens_to_keep"))
    x, _ = _as_logits(logits)
    if k >= x.shape[-1]:
        return x.copy()
    return _remove_below(x, _kth_largest(x, k))


def _top_p_threshold_sorted(x, m, p):
    """Reference top-p rule by a full sort: the logit of the least probable kept token."""
    s = -np.sort(-x, axis=-1)                                        # (..., V) descending
    e = np.exp(s - m).astype(np.float64)     # exp in x's precision, sums in float64
    cum = np.cumsum(e, axis=-1)
    before = cum - e                                                 # mass ranked above each
    target = p * cum[..., -1:] * (1.0 - MASS_RTOL)
    n_keep = np.maximum((before < target).sum(axis=-1, keepdims=True), 1)
    return np.take_along_axis(s, n_keep - 1, axis=-1)


def _top_p_threshold_bucketed(x, m, p):
    """The same threshold as :func:`_top_p_threshold_sorted` without a full sort.

    Logits are binned by value into 1024 buckets; bucket masses (one bincount) locate the
    bucket where the cumulative mass crosses p; only that bucket's tokens are sorted.
    """
    V = x.shape[-1]
    flat = x.reshape(-1, V)
    mx = m.reshape(-1, 1)
    N = flat.shape[0]
    e = np.exp(flat - mx)                                            # (N, V), x's dtype
    total = e.sum(axis=1, dtype=np.float64)
    # bucket width from the row's range, at most 64 nats: anything lower (tiny mass, or
    # -inf) lands in the last bucket, which is sorted exactly like the others if needed
    span = np.clip(mx - flat.min(axis=1, keepdims=True), 1e-30, 64.0)
    scale = ((_NUM_BUCKETS - 1) / span).astype(flat.dtype)
    bucket = np.minimum((mx - flat) * scale, _NUM_BUCKETS - 1).astype(np.int64)  # 0 = top
    offsets = np.arange(N, dtype=np.int64)[:, None] * _NUM_BUCKETS
    masses = np.bincount((bucket + offsets).ravel(), weights=e.ravel(),
                         minlength=N * _NUM_BUCKETS).reshape(N, _NUM_BUCKETS)
    cum = np.cumsum(masses, axis=1)
    target = p * total * (1.0 - MASS_RTOL)
    j = np.minimum((cum < target[:, None]).sum(axis=1), _NUM_BUCKETS - 1)   # crossing bucket
    above = np.take_along_axis(cum - masses, j[:, None], axis=1)[:, 0]  # mass of buckets above
    idx = np.flatnonzero(bucket == j[:, None])
    rows, vals, ev = idx // V, flat.ravel()[idx], e.ravel()[idx]
    order = np.lexsort((-vals, rows))
    rows, vals, ev = rows[order], vals[order], ev[order]
    counts = np.bincount(rows, minlength=N)
    starts = np.cumsum(counts) - counts
    ev = ev.astype(np.float64)
    cum_in = np.cumsum(ev)
    base = (cum_in - ev)[starts]                                     # per-row offset
    before = above[rows] + (cum_in - ev) - base[rows]
    kept = before < target[rows]
    kept[starts[counts > 0]] = True                                  # first of bucket j
    n_in = np.bincount(rows, weights=kept, minlength=N).astype(np.int64)
    thr = vals[starts + np.maximum(n_in, 1) - 1]
    return thr.reshape(x.shape[:-1] + (1,))


def top_p(logits, p, min_tokens_to_keep=1):
    """Nucleus sampling: keep the smallest set of most probable tokens with mass >= p.

    With probabilities sorted descending, q1 >= q2 >= ..., keep the first n tokens where n
    is the smallest with ``q1 + ... + qn >= p`` (up to a relative 1e-10 for rounding), plus
    every token tied with the n-th; at least ``min_tokens_to_keep``. ``p = 1`` keeps all.

    Parameters
    ----------
    logits : float array (..., V)
    p : float in (0, 1]

    >>> top_p(np.log(np.array([0.5, 0.25, 0.125, 0.125])), 0.75)
    array([-0.69314718, -1.38629436,        -inf,        -inf])
    """
    p = _real(p, "top_p", low=0.0, high=1.0, low_open=True)
    min_keep = positive_int(min_tokens_to_keep, "min_tokens_to_keep")
    x, m = _as_logits(logits)
    if p == 1.0:
        return x.copy()
    if x.shape[-1] >= _FAST_TOP_P_MIN_SIZE:
        thr = _top_p_threshold_bucketed(x, m, p)
    else:
        thr = _top_p_threshold_sorted(x, m, p)
    if min_keep > 1:
        thr = np.minimum(thr, _kth_largest(x, min(min_keep, x.shape[-1])))
    return _remove_below(x, thr)


def min_p(logits, p, min_tokens_to_keep=1):
    """Keep tokens with probability >= p * (largest probability).

    Computed in logit space: keep ``logit >= max_logit + log(p)``. ``p = 0`` keeps all;
    ``p = 1`` keeps the argmax and its ties. At least ``min_tokens_to_keep`` survive.

    Parameters
    ----------
    logits : float array (..., V)
    p : float in [0, 1]

    >>> min_p(np.log(np.array([0.5, 0.3, 0.2])), 0.5)
    array([-0.69314718, -1.2039728 ,        -inf])
    """
    p = _real(p, "min_p", low=0.0, high=1.0)
    min_keep = positive_int(min_tokens_to_keep, "min_tokens_to_keep")
    x, m = _as_logits(logits)
    if p == 0.0:
        return x.copy()
    thr = m + x.dtype.type(np.log(p))
    if min_keep > 1:
        thr = np.minimum(thr, _kth_largest(x, min(min_keep, x.shape[-1])))
    return _remove_below(x, thr)


def _entropy(x, m):
    """Entropy H = -sum p log p of softmax(x) (float64, (..., 1)); 0·log 0 = 0."""
    z = (x - m).astype(np.float64)
    logz = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    logp = z - logz
    prob = np.exp(logp)
    return -np.where(prob > 0, prob * np.where(prob > 0, logp, 0.0), 0.0).sum(axis=-1, keepdims=True), logp


def typical(logits, p, min_tokens_to_keep=1):
    """Locally typical sampling: keep tokens whose surprisal is closest to the entropy.

    H = -Σ q log q. Sort tokens by ``|-log q_i - H|`` ascending; keep the shortest prefix of
    that order whose mass is >= p, plus every token tied with the last kept one in that
    key; at least ``min_tokens_to_keep`` (first in that order). ``p = 1`` keeps all.

    Parameters
    ----------
    logits : float array (..., V)
    p : float in (0, 1]

    >>> typical(np.log(np.array([0.7, 0.2, 0.1])), 0.5)
    array([-0.35667494,        -inf,        -inf])
    """
    p = _real(p, "typical_p", low=0.0, high=1.0, low_open=True)
    min_keep = positive_int(min_tokens_to_keep, "min_tokens_to_keep")
    x, m = _as_logits(logits)
    if p == 1.0:
        return x.copy()
    H, logp = _entropy(x, m)
    key = np.abs(-logp - H)                                          # inf for -inf logits
    order = np.argsort(key, axis=-1, kind="stable")
    sorted_key = np.take_along_axis(key, order, axis=-1)
    prob = np.take_along_axis(np.exp(logp), order, axis=-1)
    cum = np.cumsum(prob, axis=-1)
    n_keep = np.minimum((cum < p * cum[..., -1:] * (1.0 - MASS_RTOL)).sum(axis=-1, keepdims=True),
                        x.shape[-1] - 1) + 1
    n_keep = np.maximum(n_keep, min(min_keep, x.shape[-1]))
    cut = np.take_along_axis(sorted_key, n_keep - 1, axis=-1)
    return np.where(key > cut, -np.inf, x).astype(x.dtype, copy=False)


def _keep_top(x, keep, min_keep):
    """-inf where not keep, except the top min_keep tokens (and their ties)."""
    keep = keep | (x >= _kth_largest(x, min(min_keep, x.shape[-1])))
    return np.where(keep, x, -np.inf).astype(x.dtype, copy=False)


def epsilon(logits, eps, min_tokens_to_keep=1):
    """Epsilon sampling: keep tokens with probability >= eps (at least the top
    ``min_tokens_to_keep``).

    Parameters
    ----------
    logits : float array (..., V)
    eps : float in (0, 1)

    >>> epsilon(np.log(np.array([0.6, 0.39, 0.01])), 0.05)
    array([-0.51082562, -0.94160854,        -inf])
    """
    eps = _real(eps, "epsilon_cutoff", low=0.0, high=1.0, low_open=True, high_open=True)
    min_keep = positive_int(min_tokens_to_keep, "min_tokens_to_keep")
    x, m = _as_logits(logits)
    e = np.exp(x - m)
    prob = e / e.sum(axis=-1, keepdims=True)
    return _keep_top(x, prob >= eps, min_keep)


def eta(logits, eps, min_tokens_to_keep=1):
    """Eta sampling: keep tokens with probability >= η, ``η = min(eps, sqrt(eps)·exp(-H))``
    with H the entropy (transformers' code; at least the top ``min_tokens_to_keep``).

    Parameters
    ----------
    logits : float array (..., V)
    eps : float in (0, 1)

    >>> eta(np.log(np.array([0.6, 0.39, 0.01])), 0.05)
    array([-0.51082562, -0.94160854,        -inf])
    """
    eps = _real(eps, "eta_cutoff", low=0.0, high=1.0, low_open=True, high_open=True)
    min_keep = positive_int(min_tokens_to_keep, "min_tokens_to_keep")
    x, m = _as_logits(logits)
    H, logp = _entropy(x, m)
    cut = np.minimum(eps, np.sqrt(eps) * np.exp(-H))
    return _keep_top(x, np.exp(logp) >= cut, min_keep)


# --------------------------------------------------------------- history-based transforms
def _history(ids, batch_shape, V):
    """Validate ids (..., T) or (T,) against the logits' batch shape; return (R, T) int64."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu" or arr.dtype == bool:
        if arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"ids must have shape (T,) or (..., T), got a scalar {arr!r}")
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, tuple(batch_shape) + arr.shape)
    if arr.shape[:-1] != tuple(batch_shape):
        raise ValueError(f"ids shape {arr.shape} does not match the logits' batch shape {tuple(batch_shape)}")
    bad = arr[(arr < 0) | (arr >= V)]
    if bad.size:
        raise ValueError(f"ids out of range [0, {V}): {int(bad.flat[0])}")
    return arr.reshape(-1, arr.shape[-1]).astype(np.int64, copy=False)


def _counts(hist, V):
    """(R, T) ids -> (R, V) how often each token occurs in each row."""
    R, T = hist.shape
    flat = (hist + np.arange(R, dtype=np.int64)[:, None] * V).ravel()
    return np.bincount(flat, minlength=R * V).reshape(R, V)


def _penalise_seen(x, seen, penalty):
    """Repetition penalty where seen (same shape as x): negative × penalty, positive ÷."""
    pen = x.dtype.type(penalty)
    return np.where(seen, np.where(x < 0, x * pen, x / pen), x).astype(x.dtype, copy=False)


def repetition_penalty(logits, ids, penalty):
    """CTRL's repetition penalty, once per distinct token in the history (prompt included).

    For each token id occurring in ``ids``: ``logit * penalty`` if the logit is negative,
    ``logit / penalty`` otherwise. ``penalty > 1`` discourages repeats; 1 is a no-op.

    Parameters
    ----------
    logits : float array (..., V)
    ids : int array (..., T) with the logits' batch shape, or (T,) shared by all rows
    penalty : float > 0

    >>> repetition_penalty(np.array([2.0, -2.0, 2.0]), [0, 1, 1], 2.0)
    array([ 1., -4.,  2.])
    """
    penalty = _real(penalty, "repetition_penalty", low=0.0, low_open=True)
    x, _ = _as_logits(logits)
    V = x.shape[-1]
    seen = _counts(_history(ids, x.shape[:-1], V), V).reshape(x.shape) > 0
    return _penalise_seen(x, seen, penalty)


def presence_frequency_penalty(logits, ids, presence, frequency):
    """OpenAI-style penalties: ``logit -= frequency * count + presence * [count > 0]``,
    where count is how often the token occurs in ``ids``.

    Parameters
    ----------
    logits : float array (..., V)
    ids : int array (..., T) or (T,)
    presence, frequency : finite floats (negative values encourage repeats)

    >>> presence_frequency_penalty(np.zeros(3), [0, 1, 1], 0.5, 1.0)
    array([-1.5, -2.5,  0. ])
    """
    presence = _real(presence, "presence_penalty")
    frequency = _real(frequency, "frequency_penalty")
    x, _ = _as_logits(logits)
    V = x.shape[-1]
    counts = _counts(_history(ids, x.shape[:-1], V), V).reshape(x.shape)
    return _presence_frequency_from_counts(x, counts, presence, frequency)


def _presence_frequency_from_counts(x, counts, presence, frequency):
    delta = frequency * counts + presence * (counts > 0)
    return (x - delta.astype(x.dtype)).astype(x.dtype, copy=False)


def _banned_ngram_mask(hist, V, n):
    """(R, T) ids -> (R, V) bool: tokens that would complete an n-gram seen in the row."""
    R, T = hist.shape
    banned = np.zeros((R, V + 1), dtype=bool)
    if T < n:
        return banned[:, :V]
    windows = np.lib.stride_tricks.sliding_window_view(hist, n, axis=1)   # (R, T-n+1, n)
    prefix = hist[:, T - n + 1:]                                          # (R, n-1)
    match = (windows[..., :-1] == prefix[:, None, :]).all(axis=-1)        # (R, T-n+1)
    # the window that starts at the prefix itself is never complete, so it cannot match
    cols = np.where(match, windows[..., -1], V)
    np.put_along_axis(banned, cols, True, axis=1)
    return banned[:, :V]


def no_repeat_ngram(logits, ids, n):
    """Ban every token that would complete an n-gram already present in ``ids``.

    With history ``h`` of length T, the banned tokens are ``h[i + n - 1]`` for every i
    where ``h[i : i + n - 1] == h[T - n + 1 :]``. ``n = 1`` bans every token seen.

    Parameters
    ----------
    logits : float array (..., V)
    ids : int array (..., T) or (T,)
    n : int >= 1

    >>> no_repeat_ngram(np.zeros(4), [1, 2, 3, 1], 2)
    array([  0.,   0., -inf,   0.])
    """
    n = positive_int(n, "no_repeat_ngram_size")
    x, _ = _as_logits(logits)
    V = x.shape[-1]
    banned = _banned_ngram_mask(_history(ids, x.shape[:-1], V), V, n).reshape(x.shape)
    return np.where(banned, -np.inf, x).astype(x.dtype, copy=False)


# ----------------------------------------------------------------------------- the chain
def _check_chain(temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff,
                 repetition_penalty, presence_penalty, frequency_penalty,
                 no_repeat_ngram_size, min_tokens_to_keep):
    """Validate every chain parameter up front (so errors name the value before any work)."""
    _real(temperature, "temperature", low=0.0)
    if top_k is not None and top_k != 0:
        positive_int(top_k, "top_k")
    if top_p is not None:
        _real(top_p, "top_p", low=0.0, high=1.0, low_open=True)
    if min_p is not None:
        _real(min_p, "min_p", low=0.0, high=1.0)
    if typical_p is not None:
        _real(typical_p, "typical_p", low=0.0, high=1.0, low_open=True)
    if epsilon_cutoff is not None and epsilon_cutoff != 0:
        _real(epsilon_cutoff, "epsilon_cutoff", low=0.0, high=1.0, low_open=True, high_open=True)
    if eta_cutoff is not None and eta_cutoff != 0:
        _real(eta_cutoff, "eta_cutoff", low=0.0, high=1.0, low_open=True, high_open=True)
    _real(repetition_penalty, "repetition_penalty", low=0.0, low_open=True)
    _real(presence_penalty, "presence_penalty")
    _real(frequency_penalty, "frequency_penalty")
    if isinstance(no_repeat_ngram_size, (bool, np.bool_)) or not isinstance(
            no_repeat_ngram_size, numbers.Integral) or no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be a non-negative integer, got {no_repeat_ngram_size!r}")
    positive_int(min_tokens_to_keep, "min_tokens_to_keep")


def _chain(x, hist, counts, *, temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff,
           eta_cutoff, repetition_penalty, presence_penalty, frequency_penalty,
           no_repeat_ngram_size, min_tokens_to_keep):
    """The processing chain on validated x (..., V); hist (R, T) / counts (R, V) or None."""
    shape = x.shape
    if repetition_penalty != 1.0:
        x = _penalise_seen(x, counts.reshape(shape) > 0, repetition_penalty)
    if presence_penalty != 0.0 or frequency_penalty != 0.0:
        x = _presence_frequency_from_counts(x, counts.reshape(shape), presence_penalty, frequency_penalty)
    if no_repeat_ngram_size:
        banned = _banned_ngram_mask(hist, shape[-1], no_repeat_ngram_size).reshape(shape)
        x = np.where(banned, -np.inf, x).astype(x.dtype, copy=False)
    if temperature != 1.0:
        x = globals()["temperature"](x, temperature)
    if top_k:
        x = globals()["top_k"](x, top_k, min_tokens_to_keep)
    if top_p is not None and top_p < 1.0:
        x = globals()["top_p"](x, top_p, min_tokens_to_keep)
    if min_p is not None:
        x = globals()["min_p"](x, min_p, min_tokens_to_keep)
    if typical_p is not None and typical_p < 1.0:
        x = typical(x, typical_p, min_tokens_to_keep)
    if epsilon_cutoff:
        x = epsilon(x, epsilon_cutoff, min_tokens_to_keep)
    if eta_cutoff:
        x = eta(x, eta_cutoff, min_tokens_to_keep)
    return x


def process(logits, ids=None, *, temperature=1.0, top_k=None, top_p=None, min_p=None,
            typical_p=None, epsilon_cutoff=None, eta_cutoff=None, repetition_penalty=1.0,
            presence_penalty=0.0, frequency_penalty=0.0, no_repeat_ngram_size=0,
            min_tokens_to_keep=1):
    """Apply the whole chain, in transformers' order, and return the processed logits.

    ``repetition_penalty -> presence/frequency -> no_repeat_ngram -> temperature -> top_k
    -> top_p -> min_p -> typical -> epsilon -> eta``. A parameter at its neutral value
    (temperature 1, top_k None/0, top_p None/1, min_p None, typical_p None/1,
    epsilon/eta None/0, penalties 1/0/0, no_repeat_ngram_size 0) skips its step.
    ``ids`` (the history, prompt included) is needed by the three history transforms.
    """
    _check_chain(temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff,
                 repetition_penalty, presence_penalty, frequency_penalty,
                 no_repeat_ngram_size, min_tokens_to_keep)
    x, _ = _as_logits(logits)
    needs_history = repetition_penalty != 1.0 or presence_penalty != 0.0 or \
        frequency_penalty != 0.0 or no_repeat_ngram_size
    hist = counts = None
    if needs_history:
        if ids is None:
            raise ValueError("repetition/presence/frequency penalties and no_repeat_ngram_size need ids (the history)")
        hist = _history(ids, x.shape[:-1], x.shape[-1])
        counts = _counts(hist, x.shape[-1])
    return _chain(x, hist, counts, temperature=float(temperature), top_k=top_k, top_p=top_p,
                  min_p=min_p, typical_p=typical_p, epsilon_cutoff=epsilon_cutoff,
                  eta_cutoff=eta_cutoff, repetition_penalty=float(repetition_penalty),
                  presence_penalty=float(presence_penalty), frequency_penalty=float(frequency_penalty),
                  no_repeat_ngram_size=int(no_repeat_ngram_size), min_tokens_to_keep=int(min_tokens_to_keep))


def distribution(logits, ids=None, *, temperature=1.0, top_k=None, top_p=None, min_p=None,
                 typical_p=None, epsilon_cutoff=None, eta_cutoff=None, repetition_penalty=1.0,
                 presence_penalty=0.0, frequency_penalty=0.0, no_repeat_ngram_size=0,
                 min_tokens_to_keep=1):
    """The exact probabilities that :func:`sample` and ``generate(do_sample=True)`` draw
    from: ``softmax(process(logits, ids, ...))`` (see :func:`process` for the chain).

    Returns float array (..., V), rows summing to 1, zeros at removed tokens.

    >>> distribution(np.array([0.0, 0.0, -1.0]), top_k=2)
    array([0.5, 0.5, 0. ])
    """
    return softmax(process(logits, ids, temperature=temperature, top_k=top_k, top_p=top_p,
                           min_p=min_p, typical_p=typical_p, epsilon_cutoff=epsilon_cutoff,
                           eta_cutoff=eta_cutoff, repetition_penalty=repetition_penalty,
                           presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                           no_repeat_ngram_size=no_repeat_ngram_size,
                           min_tokens_to_keep=min_tokens_to_keep))


def _draw(probs, rng):
    """Inverse-CDF draws from probs (R, V): one uniform per row from rng (one Generator,
    or a sequence of R Generators, one per row). Zero-probability tokens are never drawn."""
    R = probs.shape[0]
    if isinstance(rng, np.random.Generator):
        u = rng.random(R)
    else:
        if len(rng) != R:
            raise ValueError(f"rng is a sequence of {len(rng)} generators but there are {R} rows")
        u = np.array([g.random() for g in rng])
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)                # (R, V)
    return np.minimum((cdf <= (u * cdf[:, -1])[:, None]).sum(axis=-1), probs.shape[-1] - 1)


def sample(logits, rng, ids=None, *, temperature=1.0, top_k=None, top_p=None, min_p=None,
           typical_p=None, epsilon_cutoff=None, eta_cutoff=None, repetition_penalty=1.0,
           presence_penalty=0.0, frequency_penalty=0.0, no_repeat_ngram_size=0,
           min_tokens_to_keep=1):
    """Draw one token per row from :func:`distribution` (same parameters).

    Parameters
    ----------
    logits : float array (..., V)
    rng : numpy.random.Generator, or a sequence of Generators, one per row (so a row's
        draws never depend on the other rows)

    Returns
    -------
    int64 array (...,): the drawn ids. ``temperature=0`` returns the argmax without using rng.

    >>> sample(np.array([0.0, -np.inf, 0.0]), np.random.default_rng(0)) in (0, 2)
    True
    """
    probs = distribution(logits, ids, temperature=temperature, top_k=top_k, top_p=top_p,
                         min_p=min_p, typical_p=typical_p, epsilon_cutoff=epsilon_cutoff,
                         eta_cutoff=eta_cutoff, repetition_penalty=repetition_penalty,
                         presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                         no_repeat_ngram_size=no_repeat_ngram_size,
                         min_tokens_to_keep=min_tokens_to_keep)
    if not isinstance(rng, np.random.Generator) and not (
            isinstance(rng, (list, tuple)) and all(isinstance(g, np.random.Generator) for g in rng)):
        raise ValueError(f"rng must be a numpy.random.Generator or a list of them, got {type(rng).__name__}")
    flat = probs.reshape(-1, probs.shape[-1])
    if temperature == 0:
        out = np.argmax(flat, axis=-1)
    else:
        out = _draw(flat, rng)
    out = out.astype(np.int64)
    return out.reshape(probs.shape[:-1]) if probs.ndim > 1 else out[0]
