"""The strategy report: for one next-token distribution, what greedy, temperature, top-k,
top-p, min-p and typical sampling keep, the probabilities after each rule, and the token each
would choose -- the data behind the terminal pictures and the figures.

Shapes: V = vocabulary size. logits (V,) float.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import sampling
from ._shared import checked_vector

#: The strategies :func:`strategy_report` knows, in the order it reports them.
STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "min-p", "typical")


def _draw_seed(seed, rng) -> int:
    """The one seed every row of a report draws with: from ``rng``, else ``seed``, else fresh."""
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return int(rng.integers(2**63))
    if seed is None:
        return int(np.random.default_rng().integers(2**63))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _strategy_settings(temperature, top_k, top_p, min_p, typical_p) -> dict:
    """Strategy name -> (keyword arguments of :func:`npgpt.sampling.distribution`, row label).

    A parameter that is None leaves its strategy out (its label is then never used). Labels
    name a parameter as generate() does (``top_p=0.9``), never a bare "p": the pictures
    call a probability ``q``.
    """
    def label(text, value):
        return "" if value is None else text.format(value)

    return {
        "greedy": ({"temperature": 0.0}, "greedy"),
        "temperature": ({"temperature": temperature}, label("temperature (T={:g})", temperature)),
        "top-k": ({"top_k": top_k}, f"top-k (k={top_k})"),
        "top-p": ({"top_p": top_p}, label("top-p (top_p={:g})", top_p)),
        "min-p": ({"min_p": min_p}, label("min-p (min_p={:g})", min_p)),
        "typical": ({"typical_p": typical_p}, label("typical (typical_p={:g})", typical_p)),
    }


def strategy_report(logits, seed=None, rng=None, *, temperature=0.8, top_k=5, top_p=0.9,
                    min_p=0.1, typical_p=0.9, strategies=STRATEGIES):
    """For one next-token distribution: what each strategy keeps, its probabilities, its pick.

    Each strategy is applied on its own to the raw logits (temperature 1 except in the
    "temperature" row), so the rows compare the rules themselves:

    ===========  ===============================================================
    greedy       keep argmax(logits) (temperature 0)
    temperature  p ∝ exp(logits / t): nothing removed, the shape changes
    top-k        keep logits >= the k-th largest (ties kept)
    top-p        keep the smallest most-probable set with mass >= p
    min-p        keep p_i >= min_p · max_j p_j
    typical      keep tokens whose surprisal -log p_i is closest to the entropy, mass >= p
    ===========  ===============================================================

    The choice is drawn by :func:`npgpt.sampling.sample` from ``probs_after``. Every row
    draws with the *same* random number (one Generator seeded identically per row), so
    differences between rows come from the rules alone, and a row's choice does not depend
    on which other rows are present. Greedy uses no randomness.

    Parameters
    ----------
    logits : float array (V,) (or (1, V))
        Next-token logits.
    seed : int, optional
        Seed for the draw; ignored if ``rng`` is given. None: fresh entropy.
    rng : numpy.random.Generator, optional
        The draw's seed is taken from it (one integer).
    temperature, top_k, top_p, min_p, typical_p : the strategies' parameters
        ``None`` leaves that strategy out (``temperature=None`` drops the temperature row).
    strategies : sequence of str
        Which of :data:`STRATEGIES` to report, in this order.

    Returns
    -------
    list of dict, one per strategy, with keys
        ``name`` (e.g. "top-k"), ``label`` (e.g. "top-k (k=5)"), ``params`` (dict),
        ``probs_before`` float64 (V,) (softmax of the logits), ``probs_after`` float64 (V,)
        (zeros where removed), ``kept`` bool (V,), ``chosen`` int.

    Examples
    --------
    >>> rows = strategy_report(np.log([0.5, 0.3, 0.2]), seed=0, top_k=2)
    >>> [r["name"] for r in rows]
    ['greedy', 'temperature', 'top-k', 'top-p', 'min-p', 'typical']
    >>> rows[2]["kept"].tolist(), rows[0]["chosen"]
    ([True, True, False], 0)
    """
    x = checked_vector(logits, "logits")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or isinstance(strategies, str):
        raise ValueError(f"strategies must be names from {STRATEGIES}, got {strategies!r}")
    draw_seed = _draw_seed(seed, rng)
    settings = _strategy_settings(temperature, top_k, top_p, min_p, typical_p)
    before = sampling.softmax(x)
    rows = []
    for name in strategies:
        params, label = settings[name]
        if any(v is None for v in params.values()):
            continue
        after = sampling.distribution(x, **params)                              # (V,)
        chosen = int(sampling.sample(x, np.random.default_rng(draw_seed), **params))
        rows.append({"name": name, "label": label, "params": dict(params),
                     "probs_before": before, "probs_after": after, "kept": after > 0,
                     "chosen": chosen})
    return rows
