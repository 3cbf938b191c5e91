"""Logits processors: the transforms that read the token history or name token ids
(transformers' ``LogitsProcessor`` classes), and :class:`Processors`, their chain.

Shapes: logits (..., V) -- any number of leading batch dimensions, V = vocabulary size;
ids (..., T) int -- the token history of each row (or one (T,) history shared by all rows);
R rows and T tokens of history where the chain runs on a batch, (R, V) and (R, T).

Every transform is a pure function ``(..., V) -> (..., V)`` with the conventions of
:mod:`npgpt.sampling` (which re-exports each of them): removed tokens get ``-inf``, the
input is never modified, the ``@transform`` line checks the inputs first. :class:`Processors`
applies them in transformers' order, with the rules that depend on the step of a ``generate``
call at their places; ``npgpt.sampling.process`` and every decoding strategy run it, so the
order is written once::

    logit_bias -> repetition_penalty -> presence_frequency_penalty -> no_repeat_ngram
    -> bad_words -> [EOS banned before min_new_tokens] -> [forced_eos at the last step]
    -> suppress_tokens -> [begin_suppress_tokens at the first new token]
"""

from __future__ import annotations

import numpy as np

from ._checks import transform

__all__ = ["repetition_penalty", "presence_frequency_penalty", "no_repeat_ngram", "logit_bias",
           "bad_words", "suppress_tokens", "forced_eos", "token_counts", "banned_ngram_mask",
           "token_mask", "bias_vector", "banned_words_mask", "Processors"]


# --------------------------------------------------------------- history-based transforms
@transform(penalty="repetition_penalty")
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
    return _penalise_seen(logits, token_counts(ids, logits.shape[-1]) > 0, penalty)


@transform(presence="presence_penalty", frequency="frequency_penalty")
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
    counts = token_counts(ids, logits.shape[-1])
    return _penalise_counts(logits, counts, presence, frequency)


@transform(n="no_repeat_ngram_size")
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
    V = logits.shape[-1]
    R = int(np.prod(ids.shape[:-1], dtype=np.int64))
    banned = banned_ngram_mask(ids.reshape(R, ids.shape[-1]), V, n).reshape(logits.shape)
    return np.where(banned, -np.inf, logits).astype(logits.dtype, copy=False)


def token_counts(ids, V):
    """How often each token occurs in each history: (..., T) ids -> (..., V) counts.

    >>> token_counts(np.array([[0, 2, 2]]), 3).tolist()
    [[1, 0, 2]]
    """
    R = int(np.prod(ids.shape[:-1], dtype=np.int64))
    hist = ids.reshape(R, ids.shape[-1])                              # (R, T)
    flat = (hist + np.arange(R, dtype=np.int64)[:, None] * V).ravel()  # row r's ids shifted by r·V
    return np.bincount(flat, minlength=R * V).reshape(ids.shape[:-1] + (V,))


def banned_ngram_mask(hist, V, n):
    """(R, T) ids -> (R, V) bool: tokens that would complete an n-gram seen in the row.

    >>> banned_ngram_mask(np.array([[1, 2, 3, 1]]), 4, 2).tolist()
    [[False, False, True, False]]
    """
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


def _penalise_seen(x, seen, penalty):
    """Repetition penalty where seen (same shape as x): negative × penalty, positive ÷."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        pen = x.dtype.type(penalty)                                  # checked just below
        out = np.where(seen, np.where(x < 0, x * pen, x / pen), x).astype(x.dtype, copy=False)
    return _still_finite(out, "repetition_penalty", penalty)


def _penalise_counts(x, counts, presence, frequency):
    """Presence and frequency penalties from the token counts (same shape as x)."""
    delta = frequency * counts + presence * (counts > 0)
    with np.errstate(over="ignore", invalid="ignore"):                # checked just below
        out = (x - delta.astype(x.dtype)).astype(x.dtype, copy=False)
    return _still_finite(out, "presence_penalty and frequency_penalty", (presence, frequency))


def _biased(x, vector, bias):
    """x + vector (V,) in x's dtype: the ``logit_bias`` rule, refusing a bias that is not
    finite in that dtype (1e39 is +inf in float32) or that pushes a logit past its range."""
    with np.errstate(over="ignore", invalid="ignore"):                # checked just below
        shift = vector.astype(x.dtype)
        if not np.isfinite(shift).all():
            token = int(np.flatnonzero(~np.isfinite(shift))[0])
            raise ValueError(f"logit_bias: the bias {bias[token]:g} of token {token} is beyond "
                             f"the range of the {x.dtype} logits (up to "
                             f"{float(np.finfo(x.dtype).max):.3g} either way); -100 all but bans "
                             f"a token, +100 all but forces it")
        out = x + shift
    return _still_finite(out, "logit_bias", bias)


def _still_finite(out, name, value):
    """``out``, the logits after a rule, unless the rule made a logit +inf or NaN (a finite
    logit pushed past its dtype's range): a ValueError naming the option then. (-inf stays
    what it always is: a removed token.) A +inf logit would make softmax NaN and every draw
    a wrong token, so it is refused where it is made."""
    top = out.max()                                       # NaN propagates through max
    if np.isnan(top) or top == np.inf:
        raise ValueError(f"{name}={value!r:.80} pushes a logit past the range of {out.dtype} "
                         f"(to {'NaN' if np.isnan(top) else 'inf'}), which no token can be drawn "
                         f"from")
    return out


# ------------------------------------------------------------------- token-id transforms
@transform(bias="logit_bias")
def logit_bias(logits, bias):
    """OpenAI's ``logit_bias``: add ``bias[i]`` to the logit of each token id ``i`` in the
    dict; every other logit is unchanged.

    The bias is added in the logits' dtype (as transformers' SequenceBiasLogitsProcessor
    does for one-token sequences). On typical logits -100 all but bans a token and +100 all
    but forces it; OpenAI accepts -100..100, npgpt any bias that is finite in the logits'
    dtype (float32: up to about 3.4e38 either way). A bias that is not, or a sum that
    overflows to +inf, raises ValueError naming ``logit_bias``: a +inf logit has no
    probability (softmax would divide inf by inf), so no token could be drawn.

    Parameters
    ----------
    logits : float array (..., V)
    bias : dict {token id < V: finite float}

    >>> logit_bias(np.array([1.0, 2.0, 3.0]), {0: 5.0, 2: -100.0})
    array([  6.,   2., -97.])
    """
    return _biased(logits, bias_vector(bias, logits.shape[-1]), bias)


@transform(bad_words_ids="bad_words_ids")
def bad_words(logits, ids, bad_words_ids):
    """Never complete a bad word (transformers' NoBadWordsLogitsProcessor).

    A one-token bad word ``(w,)`` is always ``-inf``; a longer one ``(w_1, ..., w_n)`` makes
    ``w_n`` ``-inf`` in the rows whose history ends with ``w_1 ... w_(n-1)``. Every other
    logit is unchanged.

    Parameters
    ----------
    logits : float array (..., V)
    ids : int array (..., T) or (T,), the history
    bad_words_ids : sequences of token ids < V, e.g. ``[[3], [1, 2]]``

    >>> bad_words(np.zeros(4), [0, 1], [[3], [1, 2], [0, 2]])
    array([  0.,   0., -inf, -inf])
    """
    V, T = logits.shape[-1], ids.shape[-1]
    token_mask([i for word in bad_words_ids for i in word], V, "bad_words_ids")   # ids < V
    banned = banned_words_mask(ids.reshape(logits.size // V, T), V, bad_words_ids)
    return _remove(logits, banned.reshape(logits.shape))


@transform(token_ids="suppress_tokens")
def suppress_tokens(logits, token_ids):
    """Never generate these tokens: their logits become ``-inf``, every other logit is
    unchanged (transformers' SuppressTokensLogitsProcessor; ``begin_suppress_tokens`` is
    this rule applied at the first new token only).

    Parameters
    ----------
    logits : float array (..., V)
    token_ids : int or sequence of ints < V

    >>> suppress_tokens(np.array([1.0, 2.0, 3.0]), [0, 2])
    array([-inf,   2., -inf])
    """
    return _remove(logits, token_mask(token_ids, logits.shape[-1], "suppress_tokens"))


@transform(eos_ids="forced_eos_token_id")
def forced_eos(logits, eos_ids):
    """Force an end-of-sequence token: every logit becomes ``-inf`` except those of
    ``eos_ids``, which become 0 (transformers' ForcedEOSTokenLogitsProcessor, which
    ``generate`` applies at the last step, ``max_new_tokens``).

    With several EOS ids they tie: sampling picks each with equal probability, greedy
    decoding the lowest id.

    Parameters
    ----------
    logits : float array (..., V)
    eos_ids : int or sequence of ints < V

    >>> forced_eos(np.array([1.0, 2.0, 3.0]), 1)
    array([-inf,   0., -inf])
    """
    return _forced(logits, token_mask(eos_ids, logits.shape[-1], "forced_eos_token_id"))


def token_mask(token_ids, V, name="token_ids"):
    """(V,) bool, True at ``token_ids`` (an int or a sequence of ints); an id outside
    ``[0, V)`` raises ValueError naming the option.

    >>> token_mask([0, 2], 4).tolist()
    [True, False, True, False]
    >>> token_mask(7, 4, "suppress_tokens")
    Traceback (most recent call last):
    ...
    ValueError: suppress_tokens 7 is out of range [0, 4)
    """
    if token_ids is None:
        raise ValueError(f"{name} must be a token id or a list of them, got None")
    try:
        ids = np.atleast_1d(np.asarray(token_ids, dtype=np.int64))
    except (OverflowError, TypeError, ValueError):      # beyond int64, or not numbers
        raise ValueError(f"{name} must be token ids in [0, {V}), got {token_ids!r:.80}") from None
    bad = ids[(ids < 0) | (ids >= V)]
    if bad.size:
        raise ValueError(f"{name} {int(bad[0])} is out of range [0, {V})")
    mask = np.zeros(V, dtype=bool)
    mask[ids] = True
    return mask


def bias_vector(bias, V, dtype=np.float64):
    """The (V,) vector of a ``logit_bias`` dict: ``bias[i]`` at each id i, 0 elsewhere.

    >>> bias_vector({1: 0.5}, 3).tolist()
    [0.0, 0.5, 0.0]
    """
    vector = np.zeros(V, dtype=dtype)
    ids = list(bias)
    if ids:
        token_mask(ids, V, "logit_bias")                  # the range check
        vector[ids] = [bias[i] for i in ids]
    return vector


def banned_words_mask(hist, V, bad_words_ids, real=None):
    """(R, T) ids -> (R, V) bool: the last tokens of the bad words whose other tokens end
    the row's history (one-token bad words: in every row). ``real`` (R, T) bool marks the
    real tokens (left padding): a prefix never matches padding.

    >>> banned_words_mask(np.array([[5, 1], [1, 5]]), 6, [[2], [1, 4]]).tolist()
    [[False, False, True, False, True, False], [False, False, True, False, False, False]]
    """
    R, T = hist.shape
    banned = np.zeros((R, V), dtype=bool)
    by_length = {}
    for word in bad_words_ids:
        by_length.setdefault(len(word), []).append(word)
    for n, words in by_length.items():            # words with n - 1 prefix tokens at once
        words = np.array(words, dtype=np.int64)                            # (W, n)
        if n - 1 > T:
            continue
        tail = hist[:, T - n + 1:]                                          # (R, n-1)
        match = (tail[:, None, :] == words[None, :, :-1]).all(axis=-1)      # (R, W)
        if real is not None and n > 1:
            match &= real[:, T - n + 1:].all(axis=1)[:, None]
        rows, which = np.nonzero(match)
        banned[rows, words[which, -1]] = True
    return banned


def _remove(x, banned):
    """-inf where banned (broadcast against x), x elsewhere, in x's dtype."""
    return np.where(banned, -np.inf, x).astype(x.dtype, copy=False)


def _forced(x, forced):
    """0 where forced (V,), -inf elsewhere, shaped and typed like x."""
    return np.where(forced, np.zeros_like(x), -np.inf).astype(x.dtype, copy=False)


# ----------------------------------------------------------------------------- the chain
class Processors:
    """The processors of a set of options, made once for a vocabulary of V tokens, applied
    in transformers' order (``_get_logits_processor``) to rows of logits (R, V) with each
    row's history: logit_bias (its SequenceBias place); the penalties (from each row's token
    counts); no-repeat n-gram and bad words (each row's own real history); EOS banned while
    ``new < min_new_tokens``; at the last step (``new == max_new_tokens - 1``) only the
    forced EOS ids, at logit 0; suppress_tokens; begin_suppress_tokens at the first new
    token (``new == 0``). ``new``: the tokens each row has generated before this step (the
    step's rules are off outside ``generate``, whose options they are).

    Parameters
    ----------
    o : a GenerationConfig (the options as attributes, checked)
    V : int, the vocabulary size; every token id of the options must be < V (ValueError)
    eos : int64 array of the EOS ids (none: empty). A one-token bad word that is an EOS id is
        dropped (transformers' NoBadWordsLogitsProcessor drops those, so EOS stays possible).

    Examples
    --------
    >>> import npgpt
    >>> chain = Processors(npgpt.GenerationConfig(repetition_penalty=2.0, suppress_tokens=[3]), 4)
    >>> history = np.array([[0, 1]])
    >>> chain(np.array([[2.0, -2.0, 1.0, 1.0]]), history, counts=token_counts(history, 4))
    array([[  1.,  -4.,   1., -inf]])
    """

    def __init__(self, o, V, eos=np.zeros(0, dtype=np.int64)):
        self.o, self.V, self.eos = o, V, eos
        self.has_penalties = (o.repetition_penalty != 1.0 or o.presence_penalty != 0.0
                              or o.frequency_penalty != 0.0)
        self.bias = None if o.logit_bias is None else bias_vector(o.logit_bias, V)
        self.bad_words = _bad_words(o.bad_words_ids, eos, V)
        masks = {name: None if getattr(o, name) is None else token_mask(getattr(o, name), V, name)
                 for name in ("forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens")}
        self.forced_eos = masks["forced_eos_token_id"]
        self.suppress = masks["suppress_tokens"]
        self.begin_suppress = masks["begin_suppress_tokens"]
        self.every_step = (self.has_penalties or o.no_repeat_ngram_size or self.bias is not None
                           or self.bad_words is not None or self.suppress is not None)

    def __call__(self, x, hist, real=None, counts=None, new=0):
        """The logits x (R, V) processed, with each row's history ``hist`` (R, T), ``real``
        (R, T) bool marking its real tokens (None: no left padding) and ``counts`` (R, V) its
        real tokens' counts (needed by the penalties only)."""
        o, V = self.o, self.V
        if self.bias is not None:
            x = _biased(x, self.bias, o.logit_bias)
        if o.repetition_penalty != 1.0:
            x = _penalise_seen(x, counts > 0, o.repetition_penalty)
        if o.presence_penalty != 0.0 or o.frequency_penalty != 0.0:
            x = _penalise_counts(x, counts, o.presence_penalty, o.frequency_penalty)
        if o.no_repeat_ngram_size:
            x = _remove(x, _ngram_bans(hist, real, V, o.no_repeat_ngram_size))
        if self.bad_words is not None:
            x = _remove(x, banned_words_mask(hist, V, self.bad_words, real))
        if new < o.min_new_tokens and self.eos.size:
            x = x.copy()
            x[:, self.eos] = -np.inf
        if self.forced_eos is not None and new == o.max_new_tokens - 1:
            x = _forced(x, self.forced_eos)
        if self.suppress is not None:
            x = _remove(x, self.suppress)
        if self.begin_suppress is not None and new == 0:
            x = _remove(x, self.begin_suppress)
        return x

    def needs_processing(self, new):
        """Does the chain change anything at step ``new``?

        >>> import npgpt
        >>> chain = Processors(npgpt.GenerationConfig(begin_suppress_tokens=[0]), 4)
        >>> chain.needs_processing(0), chain.needs_processing(1)
        (True, False)
        """
        o = self.o
        return bool(self.every_step or (new < o.min_new_tokens and self.eos.size)
                    or (self.forced_eos is not None and new == o.max_new_tokens - 1)
                    or (self.begin_suppress is not None and new == 0))


def _ngram_bans(hist, real, V, n):
    """no_repeat_ngram's banned tokens (R, V) bool, each row's n-grams read from its real
    tokens only (``real``: left padding, or None)."""
    if real is None:
        return banned_ngram_mask(hist, V, n)
    banned = np.zeros((hist.shape[0], V), dtype=bool)
    for r in range(hist.shape[0]):
        start = int(np.argmax(real[r]))
        banned[r] = banned_ngram_mask(hist[r:r + 1, start:], V, n)[0]
    return banned


def _bad_words(bad_words_ids, eos, V):
    """The bad words to ban (None if none): ``bad_words_ids`` without the one-token words
    that are an EOS id; every id must be < V."""
    if bad_words_ids is None:
        return None
    token_mask([i for word in bad_words_ids for i in word], V, "bad_words_ids")
    words = tuple(w for w in bad_words_ids if not (len(w) == 1 and w[0] in eos))
    return words or None
