"""Property-testing kit for samplers: hypothesis strategies for logits and invariant checks
that accept any callable with a transform's signature -- npgpt's or another library's.

Shapes: logits (B, V) for the checks (2-D, what most libraries take); the strategies can
also draw (..., V) batches. A "transform" is ``f(logits, param) -> logits`` with removed
tokens at ``-inf`` (history transforms: ``f(logits, ids, param)``).

Every ``check_*`` function returns None when the invariant holds and raises AssertionError
with a message naming the row, the parameter and the offending tokens otherwise, so it
works inside pytest, hypothesis or a plain script. Each check that calls the transform also
holds it to the contract every transform keeps -- it leaves its input unchanged and returns
an array of the input's shape and dtype (float64 in, float64 out) -- so a rule check alone
(``check_top_k_rule``, as below) catches a top-k that edits its input in place;
:func:`check_transform_contract` checks the rest of the contract (removed tokens exactly
``-inf``, no NaN, kept logits unchanged). The checks hand the transform a copy of your
array, so a broken transform cannot change it. :func:`survey` runs every applicable
check of a kind of transform on fixed edge cases (ties, ``-inf``, huge and tiny logits,
exact dyadic probabilities) and returns a table of which invariants hold.

Example: checking another library's top-k with hypothesis::

    from hypothesis import given
    from npgpt import testing

    def their_top_k(logits, k):              # adapt their API to (logits, param) -> logits
        return my_library.top_k(logits, k)

    @given(testing.logits(), testing.st.integers(1, 5))
    def test_their_top_k(x, k):
        testing.check_top_k_rule(their_top_k, x, k)

Needs hypothesis for the strategies (``pip install npgpt[test]``); the checks need only NumPy.
"""

from __future__ import annotations

import numpy as np

try:
    import hypothesis.extra.numpy as hnp
    from hypothesis import strategies as st
except ImportError:        # the checks still work; the strategies need hypothesis
    hnp = st = None

__all__ = ["st", "logits", "batched_logits", "dyadic_logits", "edge_case_logits",
           "check_transform_contract", "check_shift_invariance", "check_permutation_equivariance",
           "check_tie_symmetry", "check_monotone", "check_top_k_rule", "check_top_p_rule",
           "check_min_p_rule", "check_temperature", "check_repetition_penalty",
           "check_distribution", "check_sample_frequencies", "survey", "INVARIANTS"]

MASS_RTOL = 1e-9     # slack on probability-mass comparisons (rounding in exp and sums)


def _need_hypothesis():
    if st is None:
        raise ImportError("npgpt.testing strategies need hypothesis: pip install 'npgpt[test]'")


# --------------------------------------------------------------------------- strategies
def logits(min_vocab=2, max_vocab=24, min_rows=1, max_rows=4, allow_neg_inf=True,
           ties=True, extremes=True):
    """Hypothesis strategy: float64 logits (B, V) with every row holding a finite value.

    Values mix ordinary floats in [-20, 20], a small pool of repeated values (ties),
    ``-inf`` entries, huge (±1e4) and tiny (±1e-30) values; never NaN or +inf.

    Examples
    --------
    >>> from hypothesis import find, given
    >>> find(logits(), lambda x: np.isneginf(x).any())    # the simplest draw with a -inf
    array([[  0., -inf]])
    >>> @given(logits(max_vocab=8))
    ... def test_every_row_keeps_a_finite_logit(x):
    ...     assert x.ndim == 2 and np.isfinite(x).any(axis=-1).all()
    >>> test_every_row_keeps_a_finite_logit()           # passes on every array drawn
    """
    _need_hypothesis()
    pool = [st.floats(-20, 20, allow_nan=False, allow_infinity=False)]
    if ties:
        pool.append(st.sampled_from([-1.0, 0.0, 0.5, 2.0]))
    if extremes:
        pool.append(st.sampled_from([1e4, -1e4, 1e-30, -1e-30, 9999.5]))
    if allow_neg_inf:
        pool.append(st.just(-np.inf))
    elements = st.one_of(*pool)

    @st.composite
    def build(draw):
        B = draw(st.integers(min_rows, max_rows))
        V = draw(st.integers(min_vocab, max_vocab))
        x = draw(hnp.arrays(np.float64, (B, V), elements=elements))
        x = np.array(x, dtype=np.float64)
        for r in range(B):
            if not np.isfinite(x[r]).any():
                x[r, draw(st.integers(0, V - 1))] = draw(st.floats(-5, 5))
        return x
    return build()


def batched_logits(max_dims=3, **kwargs):
    """Hypothesis strategy: logits with 0 to ``max_dims - 1`` extra leading batch dims,
    i.e. shapes (V,), (B, V), (A, B, V).

    Examples
    --------
    >>> from hypothesis import find
    >>> find(batched_logits(), lambda x: x.ndim == 3).shape    # the smallest (A, B, V) draw
    (2, 1, 2)
    """
    _need_hypothesis()

    @st.composite
    def build(draw):
        x = draw(logits(**kwargs))
        ndim = draw(st.integers(1, max_dims))
        if ndim == 1:
            return x[0]
        if ndim == 2:
            return x
        return np.stack([x, x[::-1]])                     # (2, B, V)
    return build()


def dyadic_logits(max_vocab=12):
    """Hypothesis strategy: (logits (1, V) float64, probabilities (1, V)) where every
    probability is an exact power of two 2^-k and they sum to exactly 1, so top-p and
    min-p boundaries (mass == p) can be hit exactly.

    Examples
    --------
    >>> from hypothesis import find
    >>> x, probs = find(dyadic_logits(), lambda pair: pair[1].size == 3)
    >>> probs, float(probs.sum())
    (array([[0.5 , 0.25, 0.25]]), 1.0)
    """
    _need_hypothesis()

    @st.composite
    def build(draw):
        probs = [1.0]
        while len(probs) < max_vocab and draw(st.booleans()):
            i = draw(st.integers(0, len(probs) - 1))
            half = probs.pop(i) / 2
            probs += [half, half]                          # splitting keeps the sum at 1
        probs = np.array(draw(st.permutations(probs)))
        return np.log(probs)[None, :], probs[None, :]
    return build()


def edge_case_logits(V=16, seed=0):
    """A fixed list of (name, logits (B, V) float64) edge cases for :func:`survey`.

    Examples
    --------
    >>> cases = edge_case_logits(V=8)
    >>> [name for name, x in cases]
    ['random', 'ties', 'all_equal', 'neg_inf', 'huge', 'tiny_gaps', 'one_finite', 'dyadic', 'dyadic_ties']
    >>> dict(cases)["one_finite"]
    array([[-inf, -inf, -inf, -inf,   1., -inf, -inf, -inf]])
    """
    rng = np.random.default_rng(seed)
    cases = [("random", rng.normal(size=(4, V)) * 3),
             ("ties", np.round(rng.normal(size=(4, V)))),
             ("all_equal", np.zeros((2, V)))]
    with_inf = rng.normal(size=(3, V)) * 2
    with_inf[:, ::3] = -np.inf
    cases.append(("neg_inf", with_inf))
    cases.append(("huge", rng.normal(size=(3, V)) * 1e4))
    cases.append(("tiny_gaps", rng.normal(size=(3, V)) * 1e-7))
    one = np.full((1, V), -np.inf)
    one[0, V // 2] = 1.0
    cases.append(("one_finite", one))
    dyadic = np.full((1, V), -np.inf)                      # probabilities 1/2, 1/4, ..., exact
    head = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125][:V]
    dyadic[0, :len(head)] = np.log(np.array(head) / sum(head))
    cases.append(("dyadic", dyadic))
    dyadic_ties = np.full((1, V), -np.inf)
    head = [0.25, 0.25, 0.25, 0.125, 0.125][:V]
    dyadic_ties[0, :len(head)] = np.log(np.array(head) / sum(head))
    cases.append(("dyadic_ties", dyadic_ties))
    return cases


# ------------------------------------------------------------------------------ helpers
def _fail(message):
    raise AssertionError(message)


def _output(transform, x, *args, name):
    """``transform(x, *args)`` as float64, once the contract every check relies on holds:
    the input is left unchanged and the output has the input's shape and dtype (torch
    tensors and lists from foreign samplers are read as arrays). ``name`` starts the
    failure message (e.g. ``"k=2"``).
    """
    before = x.copy()
    out = transform(x, *args)
    if not np.array_equal(x, before, equal_nan=True):
        _fail(f"{name}: the transform modified its input")
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    out = np.asarray(out)
    if out.shape != x.shape:
        _fail(f"{name}: output shape {out.shape} != input shape {x.shape}")
    if out.dtype != x.dtype:
        _fail(f"{name}: output dtype {out.dtype} != input dtype {x.dtype}")
    return out.astype(np.float64)


def _probs(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def _kept(out):
    return ~np.isneginf(out)


# ------------------------------------------------------------------------------- checks
def check_transform_contract(transform, x, param, keeps_values=True):
    """Output has the input's shape; the input is not modified; every row keeps at least
    one token; removed tokens are exactly ``-inf``; no NaN or +inf; with ``keeps_values``
    (truncations) every kept token keeps its input logit exactly.

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.array([[2.0, 1.0, 0.5, -np.inf]])
    >>> check_transform_contract(sampling.top_k, x, 2)          # holds: returns None
    >>> def top_k_large_negative(x, k):                         # "removes" with -1e9, not -inf
    ...     kth = np.sort(x, axis=-1)[..., -k, None]
    ...     return np.where(x >= kth, x, -1e9)
    >>> check_transform_contract(top_k_large_negative, x, 2)
    Traceback (most recent call last):
        ...
    AssertionError: param=2: kept token [0, 2] changed from 0.5 to -1000000000.0
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    out = _output(transform, x, param, name=f"param={param}")
    if np.isnan(out).any() or np.isposinf(out).any():
        _fail(f"param={param}: output contains NaN or +inf")
    empty = ~_kept(out).any(axis=-1)
    if empty.any():
        _fail(f"param={param}: row {np.argwhere(empty)[0].tolist()} keeps no token")
    if keeps_values:
        k = _kept(out)
        if not np.array_equal(out[k], x[k]):
            bad = np.argwhere(k & (out != x))[0].tolist()
            _fail(f"param={param}: kept token {bad} changed from {x[tuple(bad)]} to {out[tuple(bad)]}")
        if (_kept(out) & np.isneginf(x)).any():
            _fail(f"param={param}: a -inf token came back")


def check_shift_invariance(transform, x, param, shift=3.25):
    """Adding a constant to every logit of a row changes neither the kept set nor the
    resulting probabilities (softmax is shift invariant, so a transform should be too).
    Choose ``shift`` so that ``x + shift`` is exact (no rounding), or ties may appear.

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.array([[1.0, -1.0, -2.0]])
    >>> check_shift_invariance(sampling.min_p, x, 0.2)
    >>> def keep_positive(x, param):           # a threshold on logits, not on probabilities
    ...     return np.where(x > 0, x, -np.inf)
    >>> check_shift_invariance(keep_positive, x, None)
    Traceback (most recent call last):
        ...
    AssertionError: param=None: kept set of row [0] changes when the logits shift by 3.25
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    a, b = (_output(transform, x, param, name=f"param={param}"),
            _output(transform, x + shift, param, name=f"param={param}"))
    if not np.array_equal(_kept(a), _kept(b)):
        row = np.argwhere((_kept(a) != _kept(b)).any(axis=-1))[0].tolist()
        _fail(f"param={param}: kept set of row {row} changes when the logits shift by {shift}")
    np.testing.assert_allclose(_probs(b), _probs(a), rtol=0, atol=1e-9,
                               err_msg=f"param={param}: probabilities change under a shift of {shift}")


def check_permutation_equivariance(transform, x, param, seed=0):
    """Permuting the vocabulary permutes the output the same way.

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.array([[0.0, 1.0, 2.0, 3.0]])
    >>> check_permutation_equivariance(sampling.top_k, x, 2)
    >>> def first_ids(x, k):                  # keeps token ids 0..k-1, whatever their logits
    ...     return np.where(np.arange(x.shape[-1]) < k, x, -np.inf)
    >>> check_permutation_equivariance(first_ids, x, 2)
    Traceback (most recent call last):
        ...
    AssertionError: param=2: the kept set depends on token order (permutation [2, 0, 1, 3])
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    perm = np.random.default_rng(seed).permutation(x.shape[-1])
    a = _output(transform, x, param, name=f"param={param}")[..., perm]
    b = _output(transform, x[..., perm], param, name=f"param={param}")
    if not np.array_equal(_kept(a), _kept(b)):
        _fail(f"param={param}: the kept set depends on token order (permutation {perm.tolist()})")
    np.testing.assert_allclose(b[_kept(b)], a[_kept(a)], rtol=1e-12, atol=0,
                               err_msg=f"param={param}: values depend on token order")


def check_tie_symmetry(transform, x, param):
    """Tokens with equal logits are kept or removed together.

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.array([[2.0, 1.0, 1.0]])
    >>> check_tie_symmetry(sampling.top_k, x, 2)              # keeps both tokens tied at 1.0
    >>> def top_k_by_rank(x, k):                              # exactly k tokens: splits the tie
    ...     first = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    ...     out = np.full_like(x, -np.inf)
    ...     np.put_along_axis(out, first, np.take_along_axis(x, first, axis=-1), axis=-1)
    ...     return out
    >>> check_tie_symmetry(top_k_by_rank, x, 2)
    Traceback (most recent call last):
        ...
    AssertionError: param=2: row (0,) keeps only some of the tokens tied at 1.0
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    k = _kept(_output(transform, x, param, name=f"param={param}"))
    for r in np.ndindex(x.shape[:-1]):
        row, kept = x[r], k[r]
        for value in np.unique(row[np.isfinite(row)]):
            group = kept[row == value]
            if group.any() and not group.all():
                _fail(f"param={param}: row {r} keeps only some of the tokens tied at {value}")


def check_monotone(transform, x, params, increasing=True):
    """Kept sets are nested along ``params`` (sorted ascending): growing when
    ``increasing`` (top-k's k, top-p's p), shrinking otherwise (min-p, epsilon).

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.log([[0.5, 0.3, 0.15, 0.05]])
    >>> check_monotone(sampling.top_p, x, [0.5, 0.9, 0.99])
    >>> check_monotone(sampling.min_p, x, [0.05, 0.2, 0.5], increasing=False)
    >>> check_monotone(sampling.min_p, x, [0.05, 0.2, 0.5])   # min-p keeps fewer as p grows
    Traceback (most recent call last):
        ...
    AssertionError: kept sets are not nested between param 0.05 and 0.2
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    params = sorted(params)
    sets = [_kept(_output(transform, x, p, name=f"param={p}")) for p in params]
    for p0, p1, a, b in zip(params, params[1:], sets, sets[1:]):
        small, big = (a, b) if increasing else (b, a)
        if (small & ~big).any():
            _fail(f"kept sets are not nested between param {p0} and {p1}")


def check_top_k_rule(transform, x, k):
    """Exactly the tokens with logit >= the k-th largest are kept (ties kept).

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.array([[2.0, 1.0, 1.0, 0.0]])
    >>> check_top_k_rule(sampling.top_k, x, 2)
    >>> def top_k_strict(x, k):                     # ">" where the rule says ">="
    ...     kth = np.sort(x, axis=-1)[..., -k, None]
    ...     return np.where(x > kth, x, -np.inf)
    >>> check_top_k_rule(top_k_strict, x, 2)
    Traceback (most recent call last):
        ...
    AssertionError: k=2: row [0] keeps [0], the rule (logit >= k-th largest) keeps [0, 1, 2]
    >>> def top_k_in_place(x, k):                   # the right rule, written into its input
    ...     x[x < np.sort(x, axis=-1)[..., -k, None]] = -np.inf
    ...     return x
    >>> check_top_k_rule(top_k_in_place, x, 2)
    Traceback (most recent call last):
        ...
    AssertionError: k=2: the transform modified its input
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    V = x.shape[-1]
    kth = -np.sort(-x, axis=-1)[..., min(k, V) - 1:min(k, V)]
    expected = (x >= kth) & ~np.isneginf(x)
    got = _kept(_output(transform, x, k, name=f"k={k}"))
    if not np.array_equal(got, expected):
        r = np.argwhere((got != expected).any(axis=-1))[0].tolist()
        _fail(f"k={k}: row {r} keeps {np.flatnonzero(got[tuple(r)]).tolist()}, the rule "
              f"(logit >= k-th largest) keeps {np.flatnonzero(expected[tuple(r)]).tolist()}")


def check_top_p_rule(transform, x, p, ties=True):
    """Top-p: the kept tokens are the most probable ones, their mass is >= p, and the set
    is minimal: dropping its least probable token (``ties=False``) -- or, with
    ``ties=True`` (npgpt's rule), the whole group tied with it -- leaves mass < p. With
    ``ties=True`` a token tied with the least probable kept one must be kept too.

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.log([[0.5, 0.25, 0.125, 0.125]])
    >>> check_top_p_rule(sampling.top_p, x, 0.7)          # keeps 0.5 + 0.25 >= 0.7
    >>> check_top_p_rule(lambda x, p: x, x, 0.7)          # keeping everything is not minimal
    Traceback (most recent call last):
        ...
    AssertionError: p=0.7: row (0,) is not minimal: mass 0.75 >= p without its least probable kept tokens
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    q = _probs(x)
    got = _kept(_output(transform, x, p, name=f"p={p}"))
    for r in np.ndindex(x.shape[:-1]):
        kept, probs, row = got[r], q[r], x[r]
        mass = probs[kept].sum()
        if mass < p * (1 - MASS_RTOL):
            _fail(f"p={p}: row {r} keeps mass {mass} < p")
        low = row[kept].min()
        if (row[~kept] > low).any():
            _fail(f"p={p}: row {r} removes a token more probable than a kept one")
        if ties and (row[~kept] == low).any():
            _fail(f"p={p}: row {r} removes a token tied with the least probable kept one")
        if ties:
            rest = kept & (row > low)
        else:
            rest = kept.copy()
            rest[np.flatnonzero(kept & (row == low))[-1]] = False
        if rest.any() and probs[rest].sum() >= p * (1 + MASS_RTOL):
            _fail(f"p={p}: row {r} is not minimal: mass {probs[rest].sum()} >= p without its "
                  f"least probable kept token{'s' if ties else ''}")


def check_min_p_rule(transform, x, p):
    """Exactly the tokens with probability >= p * max probability are kept (compared in
    log space, ``logit - max_logit >= log p``, with a 1e-9 slack at the boundary).

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.log([[0.5, 0.3, 0.15, 0.05]])
    >>> check_min_p_rule(sampling.min_p, x, 0.25)         # keeps p_i >= 0.25 * 0.5: three tokens
    >>> def min_p_unscaled(x, p):                         # forgets to scale p by the top probability
    ...     probs = np.exp(x - np.logaddexp.reduce(x, axis=-1, keepdims=True))
    ...     return np.where(probs >= p, x, -np.inf)
    >>> check_min_p_rule(min_p_unscaled, x, 0.25)
    Traceback (most recent call last):
        ...
    AssertionError: min_p=0.25: row [0] keeps [0, 1], log ratio to the max [0.0, -0.510826, -1.203973, -2.302585]
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    log_ratio = x - x.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    got = _kept(_output(transform, x, p, name=f"min_p={p}"))
    finite = np.isfinite(x)
    sure_in = finite & (log_ratio >= log_p + 1e-9)
    sure_out = ~finite | (log_ratio < log_p - 1e-9)
    if (sure_in & ~got).any() or (sure_out & got).any():
        r = np.argwhere(((sure_in & ~got) | (sure_out & got)).any(axis=-1))[0].tolist()
        _fail(f"min_p={p}: row {r} keeps {np.flatnonzero(got[tuple(r)]).tolist()}, log ratio to the "
              f"max {np.round(log_ratio[tuple(r)], 6).tolist()}")


def _entropy(x):
    q = _probs(x)
    logq = np.log(np.where(q > 0, q, 1.0))
    return -(q * logq).sum(axis=-1)


def check_temperature(transform, x, temperatures=(0.25, 0.5, 1.0, 2.0, 4.0)):
    """T = 1 is the identity; the argmax set never changes; entropy is non-decreasing in T;
    as T -> 0 the distribution converges to the argmax (one-hot for a unique maximum).

    Examples
    --------
    >>> from npgpt import sampling
    >>> x = np.array([[2.0, 1.0, -1.0]])
    >>> check_temperature(sampling.temperature, x)
    >>> check_temperature(lambda x, t: x * t, x)          # multiplies by T instead of dividing
    Traceback (most recent call last):
        ...
    AssertionError: entropy decreases from T=0.25 to T=0.5
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    if 1.0 in temperatures:
        out = _output(transform, x, 1.0, name="T=1.0")
        if not np.array_equal(out, x):
            _fail("T=1 changed the logits")
    top = x == x.max(axis=-1, keepdims=True)
    entropies = []
    for t in sorted(temperatures):
        out = _output(transform, x, t, name=f"T={t}")
        if not np.array_equal(out == out.max(axis=-1, keepdims=True), top):
            _fail(f"T={t}: the argmax changed")
        entropies.append(_entropy(out))
    for t0, t1, h0, h1 in zip(sorted(temperatures), sorted(temperatures)[1:], entropies, entropies[1:]):
        if (h1 < h0 - 1e-9 * (1 + np.abs(h0))).any():
            _fail(f"entropy decreases from T={t0} to T={t1}")
    unique = top.sum(axis=-1) == 1
    if unique.any():
        srt = np.sort(x, axis=-1)
        second = srt[..., -2] if x.shape[-1] > 1 else srt[..., -1] - 1
        gap = np.where(np.isfinite(second), srt[..., -1] - second, 1.0)
        unique &= gap > 1e-12 * (1 + np.abs(srt[..., -1]))   # a resolvable unique maximum
    if unique.any():
        t_small = float(gap[unique].min() / 50)
        q = _probs(_output(transform, x, t_small, name=f"T={t_small}"))
        if (np.abs(q[unique] - top[unique]) > 1e-6).any():
            _fail(f"T={t_small}: the distribution is not (nearly) one-hot at the argmax")


def check_repetition_penalty(transform, x, ids, penalty):
    """With penalty >= 1, a seen token's logit never rises (and with penalty > 1 strictly
    falls unless it is 0 or -inf); unseen tokens are unchanged. Penalties < 1 mirror it.

    Examples
    --------
    >>> from npgpt import sampling
    >>> x, ids = np.array([[2.0, -1.0, 0.5]]), np.array([[0, 1]])      # tokens 0 and 1 seen
    >>> check_repetition_penalty(sampling.repetition_penalty, x, ids, 1.5)
    >>> def divide_seen(x, ids, penalty):        # x / penalty raises a negative logit
    ...     return np.where(np.isin(np.arange(x.shape[-1]), ids), x / penalty, x)
    >>> check_repetition_penalty(divide_seen, x, ids, 1.5)
    Traceback (most recent call last):
        ...
    AssertionError: penalty=1.5: a seen token moved the wrong way
    """
    x = np.array(x, dtype=np.float64)                 # a copy: yours stays as it was
    ids = np.asarray(ids)
    out = _output(transform, x, ids, penalty, name=f"penalty={penalty}")
    seen = np.zeros(x.shape, dtype=bool)
    for r in np.ndindex(x.shape[:-1]):
        seen[r][np.unique(ids[r] if ids.ndim > 1 else ids)] = True
    if not np.array_equal(out[~seen], x[~seen]):
        _fail(f"penalty={penalty}: an unseen token changed")
    rises = out[seen] > x[seen] if penalty >= 1 else out[seen] < x[seen]
    if rises.any():
        _fail(f"penalty={penalty}: a seen token moved the wrong way")
    expected = np.where(x < 0, x * penalty, x / penalty)
    np.testing.assert_allclose(out[seen], expected[seen], rtol=1e-6, atol=0,
                               err_msg=f"penalty={penalty}: not x*penalty (x<0) / x/penalty (x>=0)")


def check_distribution(probs, removed=None):
    """Probabilities are >= 0, each row sums to 1 (within 1e-9 relative), and tokens in
    ``removed`` (a bool mask) have probability exactly 0.

    Examples
    --------
    >>> check_distribution(np.array([[0.5, 0.5, 0.0]]), removed=np.array([[False, False, True]]))
    >>> check_distribution(np.array([[0.5, 0.4]]))
    Traceback (most recent call last):
        ...
    AssertionError: rows do not sum to 1: [0.9]
    """
    probs = np.asarray(probs, dtype=np.float64)
    if (probs < 0).any() or np.isnan(probs).any():
        _fail("negative or NaN probability")
    sums = probs.sum(axis=-1)
    if (np.abs(sums - 1) > 1e-9 * probs.shape[-1]).any():
        _fail(f"rows do not sum to 1: {sums[np.abs(sums - 1) > 1e-9 * probs.shape[-1]][:3]}")
    if removed is not None and (probs[np.asarray(removed)] != 0).any():
        _fail("a removed token has non-zero probability")


def check_sample_frequencies(sampler, probs, n=4000, seed=0, alpha=1e-4):
    """Draws of ``sampler(rng, n) -> ids (n,)`` follow ``probs`` (V,): zero-probability
    tokens never drawn, and a chi-square goodness-of-fit test with significance ``alpha``
    (fixed seed, so the outcome is reproducible). The statistic is compared with the
    Wilson–Hilferty approximation of the chi-square quantile.

    Examples
    --------
    >>> probs = np.array([0.5, 0.3, 0.2, 0.0])
    >>> check_sample_frequencies(lambda rng, n: rng.choice(4, size=n, p=probs), probs)
    >>> check_sample_frequencies(lambda rng, n: rng.choice(3, size=n), probs)   # uniform
    Traceback (most recent call last):
        ...
    AssertionError: chi-square 628.4 > 19.3 (dof 2, alpha 0.0001): samples do not follow the distribution
    """
    probs = np.asarray(probs, dtype=np.float64)
    draws = np.asarray(sampler(np.random.default_rng(seed), n))
    counts = np.bincount(draws, minlength=probs.size)
    if (counts[probs == 0] > 0).any():
        _fail(f"sampled a zero-probability token: {np.flatnonzero((counts > 0) & (probs == 0)).tolist()}")
    # merge cells with small expectation so the chi-square approximation holds
    order = np.argsort(probs)
    expected, observed = [], []
    acc_e = acc_o = 0.0
    for i in order[probs[order] > 0]:
        acc_e += probs[i] * n
        acc_o += counts[i]
        if acc_e >= 5:
            expected.append(acc_e)
            observed.append(acc_o)
            acc_e = acc_o = 0.0
    if acc_e > 0 and expected:
        expected[-1] += acc_e
        observed[-1] += acc_o
    if len(expected) < 2:
        return
    e, o = np.array(expected), np.array(observed)
    stat = ((o - e) ** 2 / e).sum()
    dof = len(e) - 1
    z = {1e-2: 2.326, 1e-3: 3.090, 1e-4: 3.719, 1e-5: 4.265}.get(alpha, 3.719)
    critical = dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3
    if stat > critical:
        _fail(f"chi-square {stat:.1f} > {critical:.1f} (dof {dof}, alpha {alpha}): samples do not "
              f"follow the distribution")


# ------------------------------------------------------------------------------- survey
def _run(check, *args, **kwargs):
    try:
        check(*args, **kwargs)
        return None
    except AssertionError as error:
        return str(error).strip().splitlines()[0][:200]


# kind -> (parameter values, which parameter direction grows the kept set)
_KINDS = {
    "top_k": ([1, 2, 3, 5, 8], True),
    "top_p": ([0.1, 0.25, 0.5, 0.75, 0.9, 0.9375], True),
    "min_p": ([0.0625, 0.1, 0.25, 0.5, 0.9], False),
    "typical": ([0.2, 0.5, 0.9], True),
    "epsilon": ([0.01, 0.05, 0.1, 0.3], False),
    "eta": ([0.01, 0.05, 0.1, 0.3], False),
    "temperature": ([0.5, 1.0, 2.0], None),
}

INVARIANTS = ["contract", "shift_invariance", "permutation_equivariance", "tie_symmetry",
              "monotone", "exact_rule"]


def survey(transform, kind, V=16, seed=0):
    """Run every check that applies to ``kind`` on :func:`edge_case_logits` and return
    ``{invariant: None (holds) or the first failure message}``.

    kind : one of "top_k", "top_p", "min_p", "typical", "epsilon", "eta", "temperature"
    transform : f(logits (B, V) float64, param) -> logits (anything array-like)

    Examples
    --------
    npgpt's top-p keeps tokens tied at the boundary together, so it is minimal only when
    ties count as one (the extra "minimal_ignoring_ties" row of top-p says so):

    >>> from npgpt import sampling
    >>> result = survey(sampling.top_p, "top_p")
    >>> [name for name, failure in result.items() if failure is None]
    ['contract', 'shift_invariance', 'permutation_equivariance', 'tie_symmetry', 'monotone', 'exact_rule']
    >>> result["minimal_ignoring_ties"][:49]
    '[ties] p=0.1: row (0,) is not minimal: mass 0.360'
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    params, growing = _KINDS[kind]
    result = {}
    cases = edge_case_logits(V, seed)
    keeps = kind != "temperature"

    def first(check, per_param=True, **kw):
        for name, x in cases:
            for p in (params if per_param else [params]):
                message = _run(check, transform, x, p, **kw)
                if message:
                    return f"[{name}] {message}"
        return None

    result["contract"] = first(check_transform_contract, keeps_values=keeps)
    result["shift_invariance"] = first(check_shift_invariance)
    result["permutation_equivariance"] = first(check_permutation_equivariance)
    result["tie_symmetry"] = first(check_tie_symmetry)
    if growing is not None:
        result["monotone"] = first(check_monotone, per_param=False, increasing=growing)
    if kind == "top_k":
        result["exact_rule"] = first(check_top_k_rule)
    elif kind == "top_p":
        result["exact_rule"] = first(check_top_p_rule)
        result["minimal_ignoring_ties"] = first(check_top_p_rule, ties=False)
    elif kind == "min_p":
        result["exact_rule"] = first(check_min_p_rule)
    elif kind == "temperature":
        result["exact_rule"] = None
        for name, x in cases:
            message = _run(check_temperature, transform, x)
            if message:
                result["exact_rule"] = f"[{name}] {message}"
                break
    return result
