"""Beam search as transformers' ``_beam_search``: all B · K beams decoded as one batch, and
beam sampling (``do_sample=True``), transformers' ``_beam_search`` with its ``do_sample`` branch.

Shapes: B prompts, K = num_beams, R = B · K rows, V vocabulary, Kc candidates per prompt.

Read :func:`beam_steps` (the loop) first, then its pieces in the order it calls them:
:func:`_candidate_scores`, :func:`_best_first` (or, sampling, :meth:`_Sampler.draw`),
:class:`_Finished` (``add``, ``done`` with transformers' early-stopping rules, ``output``) and
:func:`_continuing`. :func:`beam_search` runs the loop to its end.

Beam sampling changes two things. The warpers (temperature, top-k, top-p, ...) act on each
beam's next-token log-probabilities, after the processors and before the running score is
added, and keep at least ``max(2, 1 + n_eos)`` tokens per beam. Then the Kc candidates are
drawn without replacement from softmax(scores) over beams × vocabulary instead of taken
best-first, and ordered by score; the rest (finished or continuing, early stopping) is beam
search's. A beam's score is therefore the sum of its warped log-probabilities (with a
temperature T, sum log p / T), as transformers'. ``temperature=0`` is beam search itself (the
limit T -> 0), as it is greedy decoding without beams; ``top_k=1`` is not (each beam keeps 2
tokens), except with 2 beams and no EOS.

A stop string (``stop_strings``) ends a beam as EOS does: a candidate (beam, token) whose new
text, the beam's new tokens then the token (matched as UTF-8 bytes, as
:class:`npgpt._run.StopStrings` does), contains one ends; among the top K it becomes a
finished hypothesis, the beam's tokens and the token, scored as one ending in EOS, and it
never continues (:func:`_stop_string_ends`). Unlike EOS, stop strings can end all Kc
candidates of a step: the beams left over are then dead (:func:`_continuing`). transformers
(4.50 on) ends a beam at a stop string the same way, as its beam search checks every stopping
criterion (StopStringCriteria, EOS's) on each candidate, while before 4.50 it stopped the
whole search once every running beam met one, never ending a single beam; it also matches a
stop string that starts in the prompt, and cannot leave the stop string out.

Length penalty: a finished hypothesis scores ``sum log p / T_new ** length_penalty``. Its
place among the others is decided by that value exactly at any length_penalty, compared in
log space (:func:`_rank`), and the returned score is it in float64
(:func:`_penalised_scores`: 0 or ±inf only where the value itself is beyond float64). As
length_penalty -> +inf the longest hypothesis wins (the sums being negative), as it -> -inf
the shortest. transformers takes the power as a Python float, which raises OverflowError
beyond float64 (length_penalty=300 after 13 tokens), and divides float32 scores by it, which
makes every score -0.0 past float32's range (300 after 5 tokens: then the hypotheses rank in
the order they finished); and it compares a beam with -1e9 for a prompt that has fewer than
K finished hypotheses, which a penalised score falls below at length_penalty=-8 after 12
tokens, so it stops and returns unfinished one-token beams scored -1e9. Here a live beam can
always improve a prompt that is not full. The running scores (the sums, which the penalty
does not touch) stay float32 as transformers'; a sum that overflows float32 (a huge positive
``logit_bias`` added at every step) raises a ValueError naming the option.

``include_stop_string=False`` only cuts what is returned: the hypotheses are found and ranked
as with True, scored with their stop strings, and then each returns the new tokens that end
at or before its stop string's first byte (the rest is padding), keeping its score (two can
return the same tokens). Ranking on the cut tokens' score instead would make stopping free: a
hypothesis cut to no token would score 0.0, the best possible, and an empty answer would win.
"""

from __future__ import annotations

import numpy as np

from . import sampling
from ._decoder import Decoder, check_logits, widened
from ._run import StopStrings, row_generators, to_the_end
from .decoding import GenerateOutput

_DEAD = -1.0e9          # score of a beam that must not be chosen (as transformers)


def beam_search(run) -> GenerateOutput:
    """Beam search (or beam sampling) as transformers' ``_beam_search``: runs
    :func:`beam_steps` to its end and returns its GenerateOutput. ``run`` is a call's checked
    inputs (``generate`` makes it); ``npgpt.generate(model, ids, num_beams=K)`` is how to
    reach this.

    Examples
    --------
    >>> import npgpt
    >>> from npgpt._run import Run
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> run = Run(model, [1, 2], None, npgpt.GenerationConfig(num_beams=3, max_new_tokens=4), None)
    >>> out = beam_search(run)
    >>> out.beam_sequences.shape, bool((np.diff(out.beam_scores[0]) <= 0).all())   # best first
    ((1, 3, 6), True)
    """
    return to_the_end(beam_steps(run))


def beam_steps(run):
    """The beam-search loop, all B * K beams as one batch. Yields after each step but the
    last the new tokens of each prompt's best running beam, int64 (B, t) at step t; returns
    the GenerateOutput.

    Each step: the candidates' scores (:func:`_candidate_scores`); the best
    ``Kc = max(2, 1 + n_eos) * K`` over beams × vocabulary, best first (beam sampling: Kc
    drawn, :meth:`_Sampler.draw`); those among the top K that end (EOS, a stop string,
    :func:`_stop_string_ends`, or the last step) join the finished hypotheses
    (:class:`_Finished`; with ``include_stop_string=False`` ranked with their stop strings,
    returned cut before them); the best K others continue (:func:`_continuing`), the cache
    rows following them, until the early-stopping rule stops.

    Examples
    --------
    >>> import npgpt
    >>> from npgpt._run import Run
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> cfg = npgpt.GenerationConfig(num_beams=2, max_new_tokens=3, do_sample=True, seed=0)
    >>> [best.shape for best in beam_steps(Run(model, [1, 2], None, cfg, None))]
    [(1, 1), (1, 2)]
    """
    c, (B, P), V = run.config, run.prompt.shape, run.V
    K, n_steps = c.num_beams, c.max_new_tokens
    if n_steps == 0:
        seq = np.repeat(run.prompt, c.num_return_sequences, axis=0)
        return GenerateOutput(seq, np.zeros(len(seq)), np.zeros(len(seq), dtype=np.int64))
    decoder, logits, counts, running = _start(run, K)
    finished = _Finished(B, K, run.pad, c.length_penalty, c.early_stopping)
    sampler = _Sampler(run, B) if c.do_sample and c.temperature != 0 else None
    stops = (None if c.stop_strings is None
             else StopStrings(run.model.tokenizer, c.stop_strings, B * K))   # each beam's text
    select = _best_first if sampler is None else sampler.draw
    n_candidates = min(max(2, 1 + run.eos.size) * K, K * V)
    for step in range(n_steps):
        scores = _candidate_scores(run, logits, running, decoder, counts, P + step, step, sampler)
        top = select(scores, n_candidates)                              # (B, Kc) best first
        top_scores = np.take_along_axis(scores, top, axis=1)
        parent, token = top // V + (np.arange(B) * K)[:, None], top % V  # rows of seq, tokens
        last = step == n_steps - 1                      # at the last step every candidate ends
        ends = np.isin(token, run.eos) if run.eos.size and not last else np.full(token.shape, last)
        n_kept = step + 1                               # the new tokens an ended one returns
        if stops is not None:
            ends, n_kept = _stop_string_ends(stops, parent, token, ends, step + 1, c.include_stop_string)
        if ends[:, :K].any():
            finished.add(ends, top_scores, decoder.seq[parent, :P + step], token, step + 1, n_kept)
        if last:
            break
        running, rows, tokens = _continuing(top_scores, parent, token, ends, K)
        counts = _extend(decoder, counts, rows, tokens, stops)
        if run.callback is not None:
            run.callback(step, tokens)
        yield decoder.seq[::K, P:decoder.length].copy()               # the best running beams
        if finished.done(running[:, 0], step + 1, n_steps):
            break
        logits = decoder.step()
    return finished.output(c.num_return_sequences, P)


def _start(run, K):
    """The Decoder with each prompt's row repeated K times, the logits after the prompts
    (B*K, V), the token counts (B*K, V) or None, and the running scores (B, K): 0 for beam
    0, the dead score for its copies (only beam 0 is live at first)."""
    seq0, mask0, counts = run.buffers(1)
    decoder = Decoder(run.model, seq0, mask0, run.config.max_new_tokens, run.pad,
                      run.config.context_overflow)
    logits = decoder.first()                                             # (B, V)
    expand = np.repeat(np.arange(len(seq0)), K)                          # B rows -> B*K
    decoder.reorder(expand)
    running = np.zeros((len(seq0), K), dtype=np.float32)
    running[:, 1:] = _DEAD
    return decoder, logits[expand], None if counts is None else counts[expand], running


def _extend(decoder, counts, rows, tokens, stops=None):
    """Keep the rows (B*K,) that continue, in order, and append their tokens (B*K,); the
    token counts (or None) and the stop-string search (or None) follow."""
    if not np.array_equal(rows, np.arange(len(rows))):
        decoder.reorder(rows)
        counts = None if counts is None else counts[rows]
    decoder.append(tokens)
    if counts is not None:
        counts[np.arange(len(rows)), tokens] += 1
    if stops is not None:
        stops.reorder(rows)
        for r, token in enumerate(tokens.tolist()):
            stops.add(r, token, 0.0)                   # (a beam's score is not needed)
    return counts


def _stop_string_ends(stops, parent, token, ends, n_new, include):
    """The candidates (B, Kc) whose new text (their beam's, then their token) contains a stop
    string end too: returns the ends, and how many new tokens each ended candidate returns
    (B, Kc): ``n_new``, or without ``include`` those that end at or before the stop string's
    first byte (:meth:`npgpt._run.StopStrings.kept`, maybe 0). Its score is the same either way."""
    ends, n_kept = ends.copy(), np.full(token.shape, n_new)
    for b, j in np.ndindex(token.shape):
        start = stops.find(int(parent[b, j]), int(token[b, j]))
        if start is not None:
            ends[b, j] = True
            if not include:
                n_kept[b, j] = stops.kept(int(parent[b, j]), start)[0]
    return ends, n_kept


def _candidate_scores(run, logits, running, decoder, counts, length, step, sampler=None):
    """Score of every (beam, next token) candidate, (B, K * V): the beam's running score
    plus log p of the token, after the penalties (applied to log-probabilities, as in
    transformers) and, beam sampling, the warpers."""
    B, K = running.shape
    check_logits(logits, step)
    logp = _log_softmax_rows(logits)                                    # (R, V) float32
    if run.needs_processing(step):
        logp = run.process(logp, decoder.seq, decoder.mask, counts, length, step)
    if sampler is not None:
        logp = sampler.warp(logp)
    with np.errstate(over="ignore", invalid="ignore"):                 # checked next
        scores = (logp.reshape(B, K, -1) + running[:, :, None]).reshape(B, -1)
    return _finite_scores(scores, run.config, step)


def _finite_scores(scores, c, step):
    """``scores`` unless one is +inf or NaN: a beam's sum of processed log-probabilities
    past float32, which only options adding to log-probabilities can cause (a ValueError
    naming those that are set)."""
    top = scores.max()                                                  # NaN propagates
    if not (np.isnan(top) or top == np.inf):
        return scores
    raising = [f"{name}={getattr(c, name)}" for name in ("presence_penalty", "frequency_penalty")
               if getattr(c, name) < 0]
    if c.logit_bias and max(c.logit_bias.values()) > 0:
        raising.insert(0, f"logit_bias={c.logit_bias!r:.60}")
    raise ValueError(f"beam search: a beam's score (the sum of its processed log-probabilities) "
                     f"overflows {scores.dtype} at step {step}: {' and '.join(raising) or 'the options'} "
                     f"add more to it than {scores.dtype} can sum over "
                     f"max_new_tokens={c.max_new_tokens} steps")


def _log_softmax_rows(logits):
    """log_softmax over the last axis of (R, V) finite-maximum logits, float32, without the
    general-purpose checks and axis handling (this runs once per beam-search step)."""
    m = logits.max(axis=1, keepdims=True)
    z = (logits - m).astype(np.float32, copy=False)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _best_first(scores, n):
    """Column indices of the n best scores of each row, best first, the lower index first
    among equal scores. Wide rows first select the n best with a partial sort (argpartition)
    and then order only those."""
    if scores.shape[1] <= 4096:
        return np.argsort(-scores, axis=1, kind="stable")[:, :n]
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


class _Sampler:
    """Beam sampling's two changes to beam search, as transformers' ``do_sample=True``: the
    warpers on each beam's log-probabilities, and candidates drawn instead of taken best-first.

    The warpers keep at least ``max(2, 1 + n_eos)`` tokens per beam (transformers' rule for
    beams, so that a beam always has a token other than EOS), or ``min_tokens_to_keep`` if
    larger. Each prompt draws from its own Generator, spawned from ``seed``.
    """

    def __init__(self, run, B):
        c = run.config
        self.options = c.replace(min_tokens_to_keep=max(c.min_tokens_to_keep, 2, 1 + run.eos.size))
        self.rngs = row_generators(c.seed, B)

    def warp(self, logp):
        """The warpers of :func:`npgpt.sampling.warp` on log-probabilities (R, V)."""
        return sampling.warp(logp, self.options, check=False)

    def draw(self, scores, n):
        """n candidates of each row of scores (B, N) drawn without replacement with
        probabilities softmax(scores), then ordered best score first: (B, n) column indices.

        The exponential race (what ``torch.multinomial`` runs): with q ~ Exp(1) for each
        candidate, the n largest keys ``s - log q`` are n draws without replacement, each next
        one with probability proportional to exp(s) among those left (``-log q`` is Gumbel
        noise: the Gumbel-top-k trick). Candidates of score -inf (removed by a warper) come
        only after every other one (transformers then takes zero-probability ones too).
        """
        q = np.stack([rng.standard_exponential(scores.shape[1]) for rng in self.rngs])
        drawn = _best_first(scores - np.log(q), n)                      # (B, n) in drawing order
        order = np.argsort(-np.take_along_axis(scores, drawn, axis=1), axis=1, kind="stable")
        return np.take_along_axis(drawn, order, axis=1)


def _continuing(top_scores, parent, token, ends, K):
    """The K best candidates that did not just end: their running scores (B, K) float32, the
    rows they extend (B*K,) and their tokens (B*K,). Fewer than K of the Kc may not have
    ended (stop strings can end them all): ended ones fill the rest as dead beams (score
    ``_DEAD``, as transformers), never chosen while another candidate is alive."""
    if not ends.any():                                                    # the first K
        return top_scores[:, :K].astype(np.float32, copy=False), parent[:, :K].ravel(), token[:, :K].ravel()
    keep = np.argsort(ends.view(np.int8), axis=1, kind="stable")[:, :K]   # non-ending first
    running = np.take_along_axis(top_scores, keep, axis=1).astype(np.float32, copy=False)
    running = np.where(np.take_along_axis(ends, keep, axis=1), np.float32(_DEAD), running)
    rows = np.take_along_axis(parent, keep, axis=1).ravel()
    tokens = np.take_along_axis(token, keep, axis=1).ravel()
    return running, rows, tokens


class _Finished:
    """The finished hypotheses of each prompt, at most K, best first (transformers'
    ``BeamHypotheses``), and the early-stopping rule.

    ``seq`` (B, K, L) (L grows with the longest hypothesis), ``sums`` (B, K) float64 the sum
    of log p of each (-inf while empty), ``n`` (B, K) its new tokens T_new, so its score is
    ``sums / n ** length_penalty`` (:func:`_penalised_scores`), ranked exactly at any
    length_penalty (:func:`_rank`); ``full`` (B, K) slots filled, ``length`` (B, K) the new
    tokens returned: T_new, or fewer for a hypothesis cut before its stop string
    (``include_stop_string=False``; its score is still over T_new, and ``seq`` keeps the
    tokens past the cut: the output pads them); ``improvable`` (B,): can a running beam of
    this prompt still beat its worst finished hypothesis?
    """

    def __init__(self, B, K, pad, length_penalty, early_stopping):
        self.K, self.pad, self.alpha, self.early_stopping = K, pad, length_penalty, early_stopping
        self.seq = np.full((B, K, 0), pad, dtype=np.int64)
        self.sums = np.full((B, K), -np.inf)
        self.n = np.ones((B, K), dtype=np.int64)
        self.full = np.zeros((B, K), dtype=bool)
        self.length = np.zeros((B, K), dtype=np.int64)
        self.improvable = np.ones(B, dtype=bool)

    def add(self, ends, top_scores, parent_seq, token, n_new, n_kept):
        """Candidates that end (EOS, a stop string, or the last step) ranked within the top K
        join, scored ``sum log p / n_new ** alpha``, returning ``n_kept`` new tokens (an int,
        or (B, Kc) per candidate); the best K of old and new stay. Prompts that cannot
        improve, or are full under ``early_stopping=True``, take none. ``parent_seq``
        (B, Kc, L) holds each candidate's tokens before its last one, ``token``."""
        K = self.K
        accept = ends.copy()
        accept[:, K:] = False
        closed = self.full.all(axis=1) & (self.early_stopping is True)
        accept &= (self.improvable & ~closed)[:, None]
        if not accept.any():
            return
        sums = np.where(accept, top_scores.astype(np.float64), -np.inf)
        seq = np.concatenate([parent_seq, token[:, :, None]], axis=2)  # (B, Kc, L + 1)
        width = max(seq.shape[2], self.seq.shape[2])
        seq, self.seq = widened(seq, width, self.pad), widened(self.seq, width, self.pad)
        sums = np.concatenate([self.sums, sums], axis=1)                # (B, K + Kc)
        n = np.concatenate([self.n, np.full(accept.shape, n_new)], axis=1)
        sign, size = _rank(sums, n, self.alpha)
        pick = np.lexsort((-size, -sign), axis=1)[:, :K]               # (B, K) best first
        self.sums = np.take_along_axis(sums, pick, axis=1)
        self.n = np.take_along_axis(n, pick, axis=1)
        self.seq = np.take_along_axis(np.concatenate([self.seq, seq], axis=1), pick[:, :, None], axis=1)
        self.full = np.take_along_axis(np.concatenate([self.full, accept], axis=1), pick, axis=1)
        self.length = np.take_along_axis(
            np.concatenate([self.length, np.full(accept.shape, n_kept)], axis=1), pick, axis=1)

    def done(self, best_running, n_new, n_steps):
        """Stop? Each prompt is done when its best running beam (score ``best_running``
        (B,)) cannot beat its worst finished hypothesis, judged at the length transformers
        assumes (the current one; the longest for ``"never"`` with length_penalty > 0), or
        when every running beam is dead (stop strings ended them all); with
        ``early_stopping=True``, also as soon as every prompt has K finished hypotheses. (A
        live beam can always improve a prompt that is not full: see the module doc.)"""
        never = self.early_stopping == "never" and self.alpha > 0.0
        best = _rank(best_running.astype(np.float64), n_steps if never else n_new, self.alpha)
        worst = _rank(self.sums[:, -1], self.n[:, -1], self.alpha)     # sorted: the last is the worst
        beats = (best[0] > worst[0]) | ((best[0] == worst[0]) & (best[1] > worst[1]))
        alive = best_running > _DEAD
        self.improvable &= np.where(self.full.all(axis=1), beats, alive)
        return not self.improvable.any() or (self.early_stopping is True and self.full.all())

    def output(self, n_return, P):
        """GenerateOutput: the best ``n_return`` hypotheses of each prompt, and all K."""
        B = self.seq.shape[0]
        T_new = int(self.length[:, :n_return].max())
        beams = self.seq[:, :, :P + T_new]
        beams = np.where(np.arange(P + T_new) < P + self.length[:, :, None], beams, self.pad)
        scores = _penalised_scores(self.sums, self.n, self.alpha)
        return GenerateOutput(
            sequences=beams[:, :n_return].reshape(B * n_return, P + T_new).copy(),
            scores=scores[:, :n_return].reshape(-1).copy(),
            num_new_tokens=self.length[:, :n_return].reshape(-1).copy(),
            beam_sequences=beams, beam_scores=scores)


def _rank(sums, n, alpha):
    """The order of the penalised scores ``sums / n ** alpha`` (n >= 1) as a pair of float64
    arrays (sign, size), compared lexicographically, exact at any ``alpha``: the sign of the
    sum, then ``log|sum| - alpha * log(n)`` for positive sums (larger is better) and its
    negative for negative ones (closer to 0 is better). No power is taken, so nothing
    overflows: ``12 ** 300`` is beyond float64, and in float32 so is ``5 ** 60``.

    >>> sign, size = _rank(np.array([-2.0, -3.0, 0.0]), np.array([1, 2, 1]), 300.0)
    >>> np.lexsort((-size, -sign)).tolist()              # 0, then -3 / 2**300, then -2
    [2, 1, 0]
    """
    sums = np.asarray(sums, dtype=np.float64)
    sign = np.sign(sums)
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf, taken out just below
        size = np.log(np.abs(sums)) - alpha * np.log(n)
        return sign, np.where(sign == 0, 0.0, sign * size)


def _penalised_scores(sums, n, alpha):
    """``sums / n ** alpha`` in float64 (the scores beam search returns), without overflow
    errors: where ``n ** alpha`` is beyond float64 the quotient is taken in log space,
    ``sign * exp(log|sum| - alpha * log n)``, and is then 0 or ±inf only if the score itself
    is beyond float64 (the order of hypotheses never depends on it: :func:`_rank`).

    >>> _penalised_scores(np.array([-2.0, -3.0]), np.array([1, 2]), 1.0).tolist()
    [-2.0, -1.5]
    >>> f"{_penalised_scores(np.array([-1e10]), np.array([2]), 1030.0)[0]:.4e}"   # 2 ** 1030 is inf
    '-8.6917e-301'
    >>> _penalised_scores(np.array([-3.0]), np.array([13]), 300.0).tolist()      # beyond float64
    [-0.0]
    """
    sums = np.asarray(sums, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        power = np.power(np.asarray(n, dtype=np.float64), alpha)
        direct = sums / power
        logged = np.sign(sums) * np.exp(np.log(np.abs(sums)) - alpha * np.log(n))
    return np.where(np.isfinite(power) & (power > 0), direct, logged)
