"""Logits transforms: every common way to turn next-token logits into a distribution.

Shapes: logits (..., V) -- any number of leading batch dimensions, V = vocabulary size;
ids (..., T) int -- the token history of each row (or one (T,) history shared by all rows).

Every transform is a pure function ``(..., V) -> (..., V)``: removed tokens get ``-inf``,
kept tokens keep their value, the input is never modified and the output has the input's
float dtype. Each body states its rule; the ``@transform`` line above it checks the inputs
first (see :mod:`npgpt._checks`): NaN logits, ``+inf`` logits and rows that are all ``-inf``
raise ValueError, never a silent NaN, and bad parameters raise ValueError naming the value.
For GPT-2-sized vocabularies some rules run a faster algorithm for the same result
(:mod:`npgpt._fast_sampling`). The transforms that read the history or name token ids (the
penalties, no-repeat n-gram, logit bias, bad words, suppressed and forced tokens) are in
:mod:`npgpt.processors`, with :class:`npgpt.processors.Processors`, their chain; they are
imported here, so ``sampling.repetition_penalty`` and the others work as before.

The chain used by :func:`distribution`, :func:`sample` and ``npgpt.generate`` is
transformers' order (``_get_logits_processor``)::

    logit_bias -> repetition_penalty -> presence_frequency_penalty -> no_repeat_ngram
    -> bad_words -> suppress_tokens
    -> temperature -> top_k -> top_p -> min_p -> typical -> epsilon -> eta

``generate`` also applies the rules that depend on the step, at their place in that order:
EOS banned while fewer than ``min_new_tokens`` are made and :func:`forced_eos` at the last
step (both after ``bad_words``), and ``begin_suppress_tokens`` (:func:`suppress_tokens` at
the first new token, after ``suppress_tokens``). The processors (up to ``suppress_tokens``)
are :class:`npgpt.processors.Processors`, the warpers (from ``temperature``) :func:`warp`:
``process`` and every decoding strategy run those two, so the order is written once.

Decided semantics (see the README's table for how other libraries differ):

- top-k keeps every token whose logit is >= the k-th largest, so ties at the boundary survive.
- top-p keeps the smallest set of most probable tokens whose mass is >= p, plus every token
  tied with the least probable kept one (the set never depends on token order).
- temperature 0 is greedy: only the argmax (lowest id on ties) survives.
"""

from __future__ import annotations

import math

import numpy as np

from . import _fast_sampling as fast
from ._checks import as_history, as_logits, transform
from .decoding import SAMPLING_OPTIONS, GenerationConfig
from .processors import (Processors, bad_words, banned_ngram_mask, banned_words_mask,  # noqa: F401
                         bias_vector, forced_eos, logit_bias, no_repeat_ngram,
                         presence_frequency_penalty, repetition_penalty, suppress_tokens,
                         token_counts, token_mask)

__all__ = ["softmax", "log_softmax", "greedy", "temperature", "top_k", "top_p", "min_p",
           "typical", "epsilon", "eta", "repetition_penalty", "presence_frequency_penalty",
           "no_repeat_ngram", "logit_bias", "bad_words", "suppress_tokens", "forced_eos",
           "process", "distribution", "draw", "sample"]

# Mass comparisons in top-p and typical are made in float64 with this relative slack, so a
# set whose mass equals p in exact arithmetic (e.g. dyadic probabilities 1/2 + 1/4 = 3/4) is
# recognised as reaching p even when exp() rounds the last bit.
MASS_RTOL = fast.MASS_RTOL


# ------------------------------------------------------------------------------ softmax
@transform()
def softmax(x, axis=-1):
    """Probabilities ``exp(x - max) / sum(exp(x - max))`` along ``axis``.

    Stable for huge logits (±1e4) and ``-inf`` entries (probability 0). A row of only
    ``-inf`` or any NaN raises ValueError.

    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    e = np.exp(x - x.max(axis=axis, keepdims=True))        # the largest entry becomes 1
    return e / e.sum(axis=axis, keepdims=True)


@transform()
def log_softmax(x, axis=-1):
    """``x - max - log(sum(exp(x - max)))`` along ``axis``; ``-inf`` stays ``-inf``.

    >>> log_softmax(np.array([0.0, 0.0]))
    array([-0.69314718, -0.69314718])
    """
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@transform()
def greedy(logits):
    """The most probable token of each row, (..., V) -> (...,) int64; the lowest id among
    tied maxima (NumPy's argmax returns the first).

    >>> greedy(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])).tolist()
    [1, 0]
    """
    return np.argmax(logits, axis=-1)


# ---------------------------------------------------------------------------- transforms
@transform(t="temperature")
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
    if t == 0.0:
        best = np.argmax(logits, axis=-1)[..., None]                  # (..., 1)
        return np.where(np.arange(logits.shape[-1]) == best, logits, -np.inf)
    with np.errstate(over="ignore", divide="ignore"):    # checked just below
        scaled = logits / t
    return _no_overflow(scaled, logits, t)


def _no_overflow(scaled, logits, t):
    """``scaled`` unless dividing by t turned a finite logit infinite (t too small for the
    logits' float type): a ValueError naming the temperature then."""
    if np.isinf(scaled).any() and (np.isinf(scaled) & np.isfinite(logits)).any():
        raise ValueError(f"temperature={t:g} is too small for these logits: logits / temperature "
                         f"overflows {logits.dtype} (temperature=0 is greedy decoding)")
    return scaled


@transform(k="top_k", fast=fast.top_k)
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
    k = min(max(k, min_tokens_to_keep), logits.shape[-1])
    return remove_below(logits, kth_largest(logits, k))


@transform(p="top_p", fast=fast.top_p)
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
    ranked = -np.sort(-logits, axis=-1)                               # (..., V) most probable first
    mass = np.exp(ranked - ranked[..., :1]).astype(np.float64)        # unnormalised probabilities
    cumulative = np.cumsum(mass, axis=-1)
    mass_above = cumulative - mass                                    # the mass ranked before each
    target = p * cumulative[..., -1:] * (1.0 - MASS_RTOL)
    n_keep = np.maximum((mass_above < target).sum(axis=-1, keepdims=True), min_tokens_to_keep)
    threshold = np.take_along_axis(ranked, np.minimum(n_keep, logits.shape[-1]) - 1, axis=-1)
    return remove_below(logits, threshold)                            # ties with it are kept


@transform(p="min_p", fast=fast.min_p)
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
    if p == 0.0:
        return logits.copy()
    threshold = logits.max(axis=-1, keepdims=True) + logits.dtype.type(math.log(p))
    top = kth_largest(logits, min(min_tokens_to_keep, logits.shape[-1]))
    return remove_below(logits, np.minimum(threshold, top))


@transform(p="typical_p")
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
    V = logits.shape[-1]
    logq, H = _log_probs_and_entropy(logits)
    distance = np.abs(-logq - H)                                      # inf for -inf logits
    order = np.argsort(distance, axis=-1, kind="stable")              # most typical first
    mass = np.cumsum(np.take_along_axis(np.exp(logq), order, axis=-1), axis=-1)
    n_keep = np.minimum((mass < p * mass[..., -1:] * (1.0 - MASS_RTOL)).sum(axis=-1, keepdims=True),
                        V - 1) + 1
    n_keep = np.maximum(n_keep, min(min_tokens_to_keep, V))
    cut = np.take_along_axis(np.take_along_axis(distance, order, axis=-1), n_keep - 1, axis=-1)
    return np.where(distance > cut, -np.inf, logits).astype(logits.dtype, copy=False)


@transform(eps="epsilon_cutoff")
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
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return _keep_probable(logits, e / e.sum(axis=-1, keepdims=True), eps, min_tokens_to_keep)


@transform(eps="eta_cutoff")
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
    logq, H = _log_probs_and_entropy(logits)
    cutoff = np.minimum(eps, np.sqrt(eps) * np.exp(-H))
    return _keep_probable(logits, np.exp(logq), cutoff, min_tokens_to_keep)


def _keep_probable(logits, probs, cutoff, min_tokens_to_keep):
    """epsilon and eta: -inf where probs < cutoff, except the top min_tokens_to_keep (and ties)."""
    top = kth_largest(logits, min(min_tokens_to_keep, logits.shape[-1]))
    keep = (probs >= cutoff) | (logits >= top)
    return np.where(keep, logits, -np.inf).astype(logits.dtype, copy=False)


def _log_probs_and_entropy(logits):
    """log softmax (..., V) and the entropy H = -Σ q log q (..., 1), in float64; 0·log 0 = 0."""
    z = (logits - logits.max(axis=-1, keepdims=True)).astype(np.float64)
    logq = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    q = np.exp(logq)
    H = -np.where(q > 0, q * np.where(q > 0, logq, 0.0), 0.0).sum(axis=-1, keepdims=True)
    return logq, H


def remove_below(logits, threshold):
    """logits with every entry below ``threshold`` (broadcast, e.g. (..., 1)) set to -inf.

    >>> remove_below(np.array([1.0, 2.0, 3.0]), 2.0)
    array([-inf,   2.,   3.])
    """
    return np.where(logits < threshold, -np.inf, logits)


def kth_largest(x, k):
    """The k-th largest value of each row, (..., V) -> (..., 1), 1 <= k <= V.

    >>> kth_largest(np.array([[3.0, 1.0, 2.0]]), 2).tolist()
    [[2.0]]
    """
    V = x.shape[-1]
    return np.partition(x, V - k, axis=-1)[..., V - k, None]


# ----------------------------------------------------------------------------- the chain
def process(logits, ids=None, **options):
    """Apply the whole chain, in transformers' order, and return the processed logits.

    ``logit_bias -> repetition_penalty -> presence/frequency -> no_repeat_ngram -> bad_words
    -> suppress_tokens -> temperature -> top_k -> top_p -> min_p -> typical -> epsilon ->
    eta``. Options are keywords with the names, defaults and checks of
    :class:`npgpt.GenerationConfig` (:data:`SAMPLING_OPTIONS`); one at its neutral value
    (temperature 1, top_k None/0, top_p None/1, min_p None, typical_p None/1, epsilon/eta
    None/0, penalties 1/0/0, no_repeat_ngram_size 0, logit_bias / bad_words_ids /
    suppress_tokens None) skips its step. ``ids`` (the history, prompt included) is needed
    by the three history transforms and by bad words longer than one token. The rules that
    depend on the step (``min_new_tokens``, ``forced_eos_token_id``,
    ``begin_suppress_tokens``) are ``generate``'s.

    >>> process(np.array([0.0, 1.0, 2.0]), temperature=0.5, top_k=2)
    array([-inf,   2.,   4.])
    >>> process(np.array([0.0, 1.0, 2.0]), logit_bias={0: 5.0}, suppress_tokens=[2])
    array([  5.,   1., -inf])
    """
    o = _options(options)
    long_bad_words = o.bad_words_ids is not None and max(map(len, o.bad_words_ids)) > 1
    uses_history = (o.repetition_penalty != 1.0 or o.presence_penalty != 0.0
                    or o.frequency_penalty != 0.0 or o.no_repeat_ngram_size or long_bad_words)
    if uses_history and ids is None:
        raise ValueError("repetition/presence/frequency penalties, no_repeat_ngram_size and "
                         "bad words of several tokens need ids (the history)")
    x = as_logits(logits)[0]
    V = x.shape[-1]
    chain = Processors(o, V)
    if chain.every_step:
        rows = x.reshape(-1, V)                                         # (..., V) -> (R, V)
        hist = None
        if uses_history or o.bad_words_ids is not None:
            hist = as_history(np.zeros(0, dtype=np.int64) if ids is None else ids, x.shape[:-1], V)
            hist = hist.reshape(len(rows), hist.shape[-1])              # (..., T) -> (R, T)
        counts = token_counts(hist, V) if chain.has_penalties else None
        x = as_logits(chain(rows, hist, counts=counts).reshape(x.shape))[0]   # a row left empty raises
    return warp(x, o)


def warp(x, o, check=True):
    """The warpers of the chain, in order, each skipped at its neutral value: temperature ->
    top_k -> top_p -> min_p -> typical -> epsilon -> eta. ``o`` holds the options as
    attributes (a :class:`npgpt.GenerationConfig`). ``check=False``: x is known to be
    valid logits (``generate`` checks each step's once), so no transform checks it again.

    >>> import npgpt
    >>> warp(np.array([0.0, 1.0, 2.0]), npgpt.GenerationConfig(top_k=1))
    array([-inf, -inf,   2.])
    """
    m = o.min_tokens_to_keep
    if o.temperature != 1.0:
        x = temperature(x, o.temperature, check=check)
    if o.top_k:
        x = top_k(x, o.top_k, m, check=check)
    if o.top_p is not None and o.top_p < 1.0:
        x = top_p(x, o.top_p, m, check=check)
    if o.min_p is not None:
        x = min_p(x, o.min_p, m, check=check)
    if o.typical_p is not None and o.typical_p < 1.0:
        x = typical(x, o.typical_p, m, check=check)
    if o.epsilon_cutoff:
        x = epsilon(x, o.epsilon_cutoff, m, check=check)
    if o.eta_cutoff:
        x = eta(x, o.eta_cutoff, m, check=check)
    return x


def warped_probs(x, o):
    """softmax(warp(x, o)) for logits x (R, V) that ``generate`` has checked: what a
    sampling step draws from, without checking x again.

    >>> import npgpt
    >>> warped_probs(np.array([[0.0, 1.0, 5.0]]), npgpt.GenerationConfig(top_k=2)).round(3)
    array([[0.   , 0.018, 0.982]])
    """
    return softmax(warp(x, o, check=False), check=False)


def _options(options):
    """The sampling options as a checked GenerationConfig (names outside the chain refused)."""
    unknown = sorted(set(options) - set(SAMPLING_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected sampling option(s): {', '.join(unknown)} "
                        f"(the options are {', '.join(SAMPLING_OPTIONS)})")
    return GenerationConfig(**options)


def distribution(logits, ids=None, **options):
    """The exact probabilities that :func:`sample` and ``generate(do_sample=True)`` draw
    from: ``softmax(process(logits, ids, **options))`` (see :func:`process` for the chain).

    Returns float array (..., V), rows summing to 1, zeros at removed tokens.

    >>> distribution(np.array([0.0, 0.0, -1.0]), top_k=2)
    array([0.5, 0.5, 0. ])
    """
    return softmax(process(logits, ids, **options))


def draw(probs, rng):
    """One token per row drawn from probs (R, V) by inverse CDF: the first token whose
    cumulative probability exceeds a uniform u in [0, 1). Zero-probability tokens are never
    drawn. ``rng``: one Generator, or a sequence of R Generators (one uniform from each row's).

    >>> draw(np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]), np.random.default_rng(0)).tolist()
    [1, 0]
    """
    u = _uniforms(rng, probs.shape[0])                               # (R,)
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)                # (R, V)
    chosen = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=-1)         # tokens whose cdf is <= u
    return np.minimum(chosen, probs.shape[-1] - 1)


def _uniforms(rng, R):
    """R uniforms in [0, 1): from one Generator, or one from each of R Generators."""
    _check_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng.random(R)
    if len(rng) != R:
        raise ValueError(f"rng is a sequence of {len(rng)} generators but there are {R} rows")
    return np.array([g.random() for g in rng])


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator) and not (
            isinstance(rng, (list, tuple)) and all(isinstance(g, np.random.Generator) for g in rng)):
        raise ValueError(f"rng must be a numpy.random.Generator or a list of them, got {type(rng).__name__}")


def sample(logits, rng, ids=None, **options):
    """Draw one token per row from :func:`distribution` (same options).

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
    probs = distribution(logits, ids, **options)
    _check_rng(rng)
    flat = probs.reshape(-1, probs.shape[-1])
    if options.get("temperature", 1.0) == 0:
        out = np.argmax(flat, axis=-1)
    else:
        out = draw(flat, rng)
    out = out.astype(np.int64)
    return out.reshape(probs.shape[:-1]) if probs.ndim > 1 else out[0]

