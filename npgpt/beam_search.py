"""Beam search as transformers' ``_beam_search``: all B · K beams decoded as one batch.

Shapes: B prompts, K = num_beams, R = B · K rows, V vocabulary, Kc candidates per prompt.

Read :func:`beam_search` (the loop) first, then its pieces in the order it calls them:
:func:`_candidate_scores`, :func:`_best_first`, :class:`_Finished` (``add``, ``done`` with
transformers' early-stopping rules, ``output``) and :func:`_continuing`.
"""

from __future__ import annotations

import numpy as np

from ._decoder import Decoder, check_logits, widened
from .generate import GenerateOutput

_DEAD = -1.0e9          # score of a beam that must not be chosen (as transformers)


def beam_search(run) -> GenerateOutput:
    """Beam search as transformers' ``_beam_search``, all B * K beams decoded as one batch.

    Each step: the candidates' scores (:func:`_candidate_scores`); the best
    ``max(2, 1 + n_eos) * K`` of them over beams × vocabulary; a candidate ending in EOS
    (or reaching the last step) among the top K joins the finished hypotheses
    (:class:`_Finished`); the best K others continue (:func:`_continuing`), and the cache
    rows follow them. The finished set's early-stopping rule decides when to stop.
    ``run`` is a call's checked inputs (``generate`` makes it); ``npgpt.generate(model, ids,
    num_beams=K)`` is how to reach this.

    Examples
    --------
    >>> import npgpt
    >>> from npgpt.generate import GenerationConfig, _Run
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> run = _Run(model, [1, 2], None, GenerationConfig(num_beams=3, max_new_tokens=4), None)
    >>> out = beam_search(run)
    >>> out.beam_sequences.shape, bool((np.diff(out.beam_scores[0]) <= 0).all())   # best first
    ((1, 3, 6), True)
    """
    c, (B, P), V = run.config, run.prompt.shape, run.V
    K, n_steps = c.num_beams, c.max_new_tokens
    if n_steps == 0:
        seq = np.repeat(run.prompt, c.num_return_sequences, axis=0)
        n = len(seq)
        return GenerateOutput(seq, np.zeros(n), np.zeros(n, dtype=np.int64))
    seq0, mask0, counts = run.buffers(1)
    decoder = Decoder(run.model, seq0, mask0, n_steps, run.pad)
    logits = decoder.first()                                             # (B, V)
    expand = np.repeat(np.arange(B), K)                                  # B rows -> B*K
    decoder.reorder(expand)
    logits, counts = logits[expand], None if counts is None else counts[expand]
    running = np.zeros((B, K), dtype=np.float32)
    running[:, 1:] = _DEAD                               # only beam 0 is live at first
    finished = _Finished(B, K, run.pad, c.length_penalty, c.early_stopping)
    n_candidates = min(max(2, 1 + run.eos.size) * K, K * V)
    for step in range(n_steps):
        scores = _candidate_scores(run, logits, running, decoder, counts, P + step, step)
        top = _best_first(scores, n_candidates)                         # (B, Kc) best first
        top_scores = np.take_along_axis(scores, top, axis=1)
        parent, token = top // V + (np.arange(B) * K)[:, None], top % V  # rows of seq, tokens
        last = step == n_steps - 1                      # at the last step every candidate ends
        ends = np.isin(token, run.eos) if run.eos.size and not last else np.full(token.shape, last)
        if ends[:, :K].any():
            finished.add(ends, top_scores, decoder.seq[parent, :P + step], token, step + 1)
        if last:
            break
        running, rows, tokens = _continuing(top_scores, parent, token, ends, K)
        if not np.array_equal(rows, np.arange(B * K)):
            decoder.reorder(rows)
            counts = None if counts is None else counts[rows]
        decoder.append(tokens)
        if counts is not None:
            counts[np.arange(B * K), tokens] += 1
        if run.callback is not None:
            run.callback(step, tokens)
        if finished.done(running[:, 0], step + 1, n_steps):
            break
        logits = decoder.step()
    return finished.output(c.num_return_sequences, P)


def _candidate_scores(run, logits, running, decoder, counts, length, step):
    """Score of every (beam, next token) candidate, (B, K * V): the beam's running score
    plus log p of the token, after the penalties (applied to log-probabilities, as in
    transformers)."""
    B, K = running.shape
    check_logits(logits, step)
    logp = _log_softmax_rows(logits)                                    # (R, V) float32
    if run.needs_processing(step):
        logp = run.process(logp, decoder.seq, decoder.mask, counts, length, step)
    return (logp.reshape(B, K, -1) + running[:, :, None]).reshape(B, -1)


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


def _continuing(top_scores, parent, token, ends, K):
    """The K best candidates that did not just end: their running scores (B, K) float32, the
    rows they extend (B*K,) and their tokens (B*K,)."""
    if not ends.any():                                                    # the first K
        return top_scores[:, :K].astype(np.float32, copy=False), parent[:, :K].ravel(), token[:, :K].ravel()
    keep = np.argsort(ends.view(np.int8), axis=1, kind="stable")[:, :K]   # non-ending first
    running = np.take_along_axis(top_scores, keep, axis=1).astype(np.float32, copy=False)
    rows = np.take_along_axis(parent, keep, axis=1).ravel()
    tokens = np.take_along_axis(token, keep, axis=1).ravel()
    return running, rows, tokens


class _Finished:
    """The finished hypotheses of each prompt, at most K, best first (transformers'
    ``BeamHypotheses``), and the early-stopping rule.

    ``seq`` (B, K, L) (L grows with the longest hypothesis), ``scores`` (B, K) = sum log p /
    T_new ** length_penalty (-inf while empty), ``full`` (B, K) slots filled, ``length``
    (B, K) T_new; ``improvable`` (B,): can a running beam of this prompt still beat its worst
    finished hypothesis?
    """

    def __init__(self, B, K, pad, length_penalty, early_stopping):
        self.K, self.pad, self.alpha, self.early_stopping = K, pad, length_penalty, early_stopping
        self.seq = np.full((B, K, 0), pad, dtype=np.int64)
        self.scores = np.full((B, K), -np.inf, dtype=np.float32)
        self.full = np.zeros((B, K), dtype=bool)
        self.length = np.zeros((B, K), dtype=np.int64)
        self.improvable = np.ones(B, dtype=bool)

    def add(self, ends, top_scores, parent_seq, token, n_new):
        """Candidates that end (EOS, or the last step) ranked within the top K join, scored
        ``sum log p / n_new ** alpha``; the best K of old and new stay. Prompts that cannot
        improve, or are full under ``early_stopping=True``, take none. ``parent_seq``
        (B, Kc, L) holds each candidate's tokens before its last one, ``token``."""
        K = self.K
        accept = ends.copy()
        accept[:, K:] = False
        closed = self.full.all(axis=1) & (self.early_stopping is True)
        accept &= (self.improvable & ~closed)[:, None]
        if not accept.any():
            return
        scores = np.where(accept, top_scores / np.float32(n_new ** self.alpha), -np.inf)
        seq = np.concatenate([parent_seq, token[:, :, None]], axis=2)  # (B, Kc, L + 1)
        width = max(seq.shape[2], self.seq.shape[2])
        seq, self.seq = widened(seq, width, self.pad), widened(self.seq, width, self.pad)
        merged = np.concatenate([self.scores, scores.astype(np.float32)], axis=1)
        pick = np.argsort(-merged, axis=1, kind="stable")[:, :K]      # (B, K) best first
        self.scores = np.take_along_axis(merged, pick, axis=1)
        self.seq = np.take_along_axis(np.concatenate([self.seq, seq], axis=1), pick[:, :, None], axis=1)
        self.full = np.take_along_axis(np.concatenate([self.full, accept], axis=1), pick, axis=1)
        self.length = np.take_along_axis(
            np.concatenate([self.length, np.full(accept.shape, n_new)], axis=1), pick, axis=1)

    def done(self, best_running, n_new, n_steps):
        """Stop? Each prompt is done when its best running beam (score ``best_running``
        (B,)) cannot beat its worst finished hypothesis, judged at the length transformers
        assumes (the current one; the longest for ``"never"`` with length_penalty > 0); with
        ``early_stopping=True``, also as soon as every prompt has K finished hypotheses."""
        never = self.early_stopping == "never" and self.alpha > 0.0
        best_possible = best_running / np.float32((n_steps if never else n_new) ** self.alpha)
        worst = np.where(self.full.all(axis=1), self.scores.min(axis=1), _DEAD)
        self.improvable &= best_possible > worst
        return not self.improvable.any() or (self.early_stopping is True and self.full.all())

    def output(self, n_return, P):
        """GenerateOutput: the best ``n_return`` hypotheses of each prompt, and all K."""
        B = self.seq.shape[0]
        T_new = int(self.length[:, :n_return].max())
        beams = self.seq[:, :, :P + T_new]
        return GenerateOutput(
            sequences=beams[:, :n_return].reshape(B * n_return, P + T_new).copy(),
            scores=self.scores[:, :n_return].reshape(-1).astype(np.float64),
            num_new_tokens=self.length[:, :n_return].reshape(-1).copy(),
            beam_sequences=beams, beam_scores=self.scores.astype(np.float64))


