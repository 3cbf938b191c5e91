"""Text generation: greedy, sampling (any chain of transforms) and beam search, batched,
with the KV cache, and a streaming form.

Shapes: B prompts, P padded prompt length, V vocabulary, K = num_beams,
R rows decoded together (B * num_return_sequences when sampling, B * K in beam search),
L = P + max_new_tokens (the longest possible output).

Context window: the model only has ``context_length`` position embeddings (learned absolute
positions), so, like nanoGPT, it always sees the last ``context_length`` tokens. While the
prompt plus the new tokens fit, the KV cache is used; once they would not, a cache cannot
slide (every cached key was computed at a position that would have to shift), so each later
step recomputes the forward pass on the window of the last ``context_length`` tokens.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import sampling
from .model import _as_ids, _as_mask
from .sampling import _banned_ngram_mask, _chain, _check_chain, _real

__all__ = ["GenerateOutput", "generate", "stream"]

_DEAD = -1.0e9          # score of a beam that must not be chosen (as transformers)


@dataclass
class GenerateOutput:
    """What :func:`generate` returns.

    Attributes
    ----------
    sequences : int64 (N, P + T_new)
        Prompt (as given, padding included) followed by the new tokens; rows that stopped
        early (EOS) are filled with ``pad_token_id``. N = B * num_return_sequences.
    scores : float64 (N,)
        Greedy / sampling: sum of log-softmax of the model's raw logits at the new tokens
        (EOS included, padding after it not). Beam search: the length-penalised beam score
        ``sum log p / T_new ** length_penalty``, like transformers' ``sequences_scores``.
    num_new_tokens : int64 (N,)
        New tokens per row, EOS included.
    beam_sequences, beam_scores : (B, K, P + T_new), (B, K) or None
        Beam search only: every final hypothesis of each prompt, best first.
    """

    sequences: np.ndarray
    scores: np.ndarray
    num_new_tokens: np.ndarray
    beam_sequences: np.ndarray | None = None
    beam_scores: np.ndarray | None = None


# ------------------------------------------------------------------------ validation
def _int(value, name, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)


def _token_ids(value, name, V):
    """None, an int or a list of ints in [0, V) -> int64 array (possibly empty)."""
    if value is None:
        return np.zeros(0, dtype=np.int64)
    items = [value] if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        items = list(items)
    except TypeError:
        raise ValueError(f"{name} must be an int or a list of ints, got {value!r}") from None
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise ValueError(f"{name} must be an int or a list of ints, got {value!r}")
        if not 0 <= item < V:
            raise ValueError(f"{name} {int(item)} is out of range [0, {V})")
    if not items:
        raise ValueError(f"{name} is an empty list")
    return np.array(items, dtype=np.int64)


def _prompts(model, ids, attention_mask):
    """ids (T,) or (B, T) -> (B, P) int64 and a (B, P) bool mask (None without padding),
    checked as the model checks its input, and the mask as left padding."""
    arr = _as_ids(ids, model.config.vocab_size)
    if arr.ndim == 1:
        arr = arr[None, :]
    if attention_mask is None:
        return arr, None
    mask = np.asarray(attention_mask)
    mask = _as_mask(mask[None, :] if mask.ndim == 1 else mask, arr.shape)
    if not mask[:, -1].all() or (np.diff(mask.astype(np.int8), axis=1) < 0).any():
        raise ValueError("attention_mask must be left padding: each row 0...0 1...1 with a real last token")
    return arr, (None if mask.all() else mask)


# --------------------------------------------------------------------------- decoding
class _Decoder:
    """Feeds tokens to the model: the KV cache while everything fits in the context,
    then a recomputed window of the last ``context_length`` tokens (see the module doc).

    ``seq`` (R, L) holds every row's tokens, ``length`` columns filled; ``mask`` (R, L) bool
    marks real tokens (None: no padding).
    """

    def __init__(self, model, seq, mask, length, max_new):
        self.model, self.seq, self.mask, self.length = model, seq, mask, length
        self.C = model.config.context_length
        real = length if mask is None else int(mask[:, :length].sum(axis=1).max())
        room = self.C - real                          # new tokens whose positions still fit
        self.cache = None
        if length <= self.C and room > 0 and max_new > 1:
            self.cache = model.new_cache(seq.shape[0], capacity=length + min(max_new - 1, room))

    def _window(self):
        lo = max(0, self.length - self.C)
        mask = None if self.mask is None else self.mask[:, lo:self.length]
        return self.model(self.seq[:, lo:self.length], attention_mask=mask, last_only=True)

    def first(self):
        """Logits (R, V) after the prompt."""
        if self.cache is None:
            return self._window()
        mask = None if self.mask is None else self.mask[:, :self.length]
        return self.model(self.seq[:, :self.length], attention_mask=mask, cache=self.cache,
                          last_only=True)

    def step(self, tokens):
        """Logits (R, V) after appending tokens (R,), already written to seq[:, length]."""
        self.length += 1
        cache = self.cache
        if cache is not None and cache.length < cache.capacity:
            return self.model(tokens[:, None], cache=cache, last_only=True)
        self.cache = None
        return self._window()

    def reorder(self, rows):
        """Keep rows (R_new,) in that order (beam search)."""
        self.seq = self.seq[rows]
        if self.mask is not None:
            self.mask = self.mask[rows]
        if self.cache is not None:
            self.cache.reorder(rows)


def _fast_log_softmax(logits):
    """log_softmax over the last axis of (R, V) model logits, float32, with the NaN check
    but without the general-purpose axis handling (this runs once per beam-search step)."""
    m = logits.max(axis=1, keepdims=True)
    if np.isnan(m).any() or not np.isfinite(m).all():
        raise ValueError("the model produced NaN or infinite logits")
    z = (logits - m).astype(np.float32, copy=False)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _row_generators(seed, R):
    """One Generator per row, spawned from the seed, so a row's draws never depend on the
    other rows of the batch."""
    if isinstance(seed, np.random.Generator):
        seq = np.random.SeedSequence(int(seed.integers(2 ** 63)))
    elif seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0):
        seq = np.random.SeedSequence(seed)
    else:
        raise ValueError(f"seed must be None, a non-negative int or a numpy Generator, got {seed!r}")
    return [np.random.default_rng(child) for child in seq.spawn(R)]


class _Settings:
    """Every generate() argument, validated once (errors name the bad value)."""

    def __init__(self, model, ids, kw):
        self.model = model
        cfg = getattr(model, "config", None)
        if cfg is None or not hasattr(model, "new_cache"):
            raise ValueError(f"model must be an npgpt.GPT, got {type(model).__name__}")
        V = self.V = cfg.vocab_size
        self.prompt, self.mask = _prompts(model, ids, kw["attention_mask"])
        self.max_new = _int(kw["max_new_tokens"], "max_new_tokens", 0)
        self.min_new = _int(kw["min_new_tokens"], "min_new_tokens", 0)
        if self.min_new > self.max_new:
            raise ValueError(f"min_new_tokens ({self.min_new}) exceeds max_new_tokens ({self.max_new})")
        self.num_beams = _int(kw["num_beams"], "num_beams", 1)
        self.nrs = _int(kw["num_return_sequences"], "num_return_sequences", 1)
        self.do_sample = bool(kw["do_sample"])
        if self.num_beams > 1:
            if self.do_sample:
                raise ValueError("do_sample=True with num_beams > 1 (beam sampling) is not supported")
            if self.nrs > self.num_beams:
                raise ValueError(f"num_return_sequences ({self.nrs}) must be <= num_beams ({self.num_beams})")
        elif self.nrs > 1 and not self.do_sample:
            raise ValueError(f"num_return_sequences={self.nrs} needs do_sample=True or num_beams >= "
                             f"{self.nrs}: greedy decoding would repeat one sequence")
        self.length_penalty = _real(kw["length_penalty"], "length_penalty")
        es = kw["early_stopping"]
        if not (es is True or es is False or es == "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {es!r}")
        self.early_stopping = es
        self.eos = _token_ids(kw["eos_token_id"], "eos_token_id", V)
        if kw["pad_token_id"] is None:
            self.pad = int(self.eos[0]) if self.eos.size else 0
        else:
            self.pad = int(_token_ids(kw["pad_token_id"], "pad_token_id", V)[0])
        _check_chain(kw["temperature"], kw["top_k"], kw["top_p"], kw["min_p"], kw["typical_p"],
                     kw["epsilon_cutoff"], kw["eta_cutoff"], kw["repetition_penalty"],
                     kw["presence_penalty"], kw["frequency_penalty"], kw["no_repeat_ngram_size"], 1)
        self.penalties = dict(repetition_penalty=float(kw["repetition_penalty"]),
                              presence_penalty=float(kw["presence_penalty"]),
                              frequency_penalty=float(kw["frequency_penalty"]))
        self.has_penalties = (self.penalties["repetition_penalty"] != 1.0
                              or self.penalties["presence_penalty"] != 0.0
                              or self.penalties["frequency_penalty"] != 0.0)
        self.ngram = int(kw["no_repeat_ngram_size"])
        self.warpers = dict(temperature=float(kw["temperature"]), top_k=kw["top_k"], top_p=kw["top_p"],
                            min_p=kw["min_p"], typical_p=kw["typical_p"],
                            epsilon_cutoff=kw["epsilon_cutoff"], eta_cutoff=kw["eta_cutoff"])
        self.seed = kw["seed"]
        callback = kw.get("callback")
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable, got {callback!r}")
        self.callback = callback

    def buffers(self, repeat):
        """Token buffer (R, L) (prompt, then pad), mask (R, L) or None, counts (R, V)."""
        B, P = self.prompt.shape
        R = B * repeat
        seq = np.full((R, P + self.max_new), self.pad, dtype=np.int64)
        seq[:, :P] = np.repeat(self.prompt, repeat, axis=0)
        mask = None
        if self.mask is not None:
            mask = np.ones((R, P + self.max_new), dtype=bool)
            mask[:, :P] = np.repeat(self.mask, repeat, axis=0)
        counts = None
        if self.has_penalties:
            real = seq[:, :P] if mask is None else np.where(mask[:, :P], seq[:, :P], self.V)
            flat = (real + np.arange(R)[:, None] * (self.V + 1)).ravel()
            counts = np.bincount(flat, minlength=R * (self.V + 1)).reshape(R, self.V + 1)[:, :self.V]
        return seq, mask, counts

    def pre_warp(self, x, seq, mask, counts, length, new):
        """The processors that run in greedy, sampling and beam search, in transformers'
        order: penalties, no-repeat n-gram, then EOS banned while new < min_new_tokens."""
        if self.has_penalties:
            x = _chain(x, None, counts, temperature=1.0, top_k=None, top_p=None, min_p=None,
                       typical_p=None, epsilon_cutoff=None, eta_cutoff=None,
                       no_repeat_ngram_size=0, min_tokens_to_keep=1, **self.penalties)
        if self.ngram:
            banned = np.zeros(x.shape, dtype=bool)
            for r in range(x.shape[0]):         # each row's own real history (no padding)
                start = 0 if mask is None else int(np.argmax(mask[r]))
                banned[r] = _banned_ngram_mask(seq[r:r + 1, start:length], self.V, self.ngram)[0]
            x = np.where(banned, -np.inf, x).astype(x.dtype, copy=False)
        if new < self.min_new and self.eos.size:
            x = x.copy()
            x[:, self.eos] = -np.inf
        return x


def _token_steps(s: _Settings):
    """Greedy / sampling, one step at a time: yields (tokens (R,), state) per step and
    returns the final state (``finish`` computes the scores).

    The per-step work is kept to a few NumPy calls (the arrays are tiny, so call overhead is
    what costs): the raw logits of each step are only kept, and the scores are computed
    once at the end, vectorised over all steps.
    """
    seq, mask, counts = s.buffers(s.nrs)
    R, P = seq.shape[0], s.prompt.shape[1]
    rngs = _row_generators(s.seed, R) if s.do_sample else None
    state = dict(seq=seq, length=P, prompt_length=P, raw=[], raw_start=0, scores=np.zeros(R),
                 stop=np.full(R, s.max_new, dtype=np.int64))
    if s.max_new == 0:
        return state
    decoder = _Decoder(s.model, seq, mask, P, s.max_new)
    logits = decoder.first()
    unfinished = np.ones(R, dtype=bool)
    any_finished = False
    warp = s.do_sample and _needs_warp(s.warpers)
    rows = np.arange(R)
    for step in range(s.max_new):
        if len(state["raw"]) == _SCORE_CHUNK:
            _flush_scores(state)                  # bounded memory for long generations
        state["raw"].append(logits)
        x = logits
        if s.has_penalties or s.ngram or (step < s.min_new and s.eos.size):
            x = s.pre_warp(x, seq, mask, counts, P + step, step)
            if np.isneginf(x.max(axis=1)).any():
                raise ValueError(f"row {int(np.argmax(np.isneginf(x.max(axis=1))))}: every token "
                                 f"was removed at step {step}")
        if s.do_sample:
            if warp:
                x = _chain(x, None, None, repetition_penalty=1.0, presence_penalty=0.0,
                           frequency_penalty=0.0, no_repeat_ngram_size=0, min_tokens_to_keep=1,
                           **s.warpers)
            tokens = sampling._draw(sampling.softmax(x), rngs)
        else:
            tokens = x.argmax(axis=1)
        if any_finished:
            tokens = np.where(unfinished, tokens, s.pad)
        seq[:, P + step] = tokens
        state["length"] = P + step + 1
        if counts is not None:
            counts[rows, tokens] += unfinished
        yield tokens, state
        if s.eos.size:
            hit = unfinished & np.isin(tokens, s.eos)
            if hit.any():
                state["stop"][hit] = step + 1
                unfinished &= ~hit
                any_finished = True
                if not unfinished.any():
                    break
        if step + 1 < s.max_new:
            logits = decoder.step(tokens)
    return state


_SCORE_CHUNK = 64      # steps of raw logits kept before their log-probs are summed


def _flush_scores(state):
    """Add Σ log_softmax(raw)[token] of the kept steps to the scores (rows count their new
    tokens up to and including their EOS), vectorised over the kept steps, then drop them."""
    raws = state["raw"]
    if not raws:
        return
    first = state["raw_start"]                                          # step index of raws[0]
    S = len(raws)
    raw = np.stack(raws).astype(np.float64)                             # (S, R, V)
    m = raw.max(axis=2, keepdims=True)
    logp = raw - (m + np.log(np.exp(raw - m).sum(axis=2, keepdims=True)))
    start = state["prompt_length"] + first
    tokens = state["seq"][:, start:start + S].T                         # (S, R)
    chosen = np.take_along_axis(logp, tokens[:, :, None], axis=2)[:, :, 0]
    counted = (first + np.arange(S))[:, None] < state["stop"][None, :]  # (S, R)
    state["scores"] += np.where(counted, chosen, 0.0).sum(axis=0)
    state["raw_start"] = first + S
    state["raw"] = []


def _finish(state, R):
    """GenerateOutput of a greedy / sampling run (see :func:`_flush_scores` for scores)."""
    _flush_scores(state)
    seq, length = state["seq"], state["length"]
    return GenerateOutput(sequences=seq[:, :length].copy(), scores=state["scores"],
                          num_new_tokens=np.minimum(state["stop"], length - state["prompt_length"]))


def _needs_warp(w):
    return (w["temperature"] != 1.0 or bool(w["top_k"]) or (w["top_p"] is not None and w["top_p"] < 1.0)
            or w["min_p"] is not None or (w["typical_p"] is not None and w["typical_p"] < 1.0)
            or bool(w["epsilon_cutoff"]) or bool(w["eta_cutoff"]))


def _beam_search(s: _Settings) -> GenerateOutput:
    """Beam search as transformers' ``_beam_search``, all B * K beams decoded as one batch.

    Each step: log-softmax of the logits (+ the penalties, on log-probabilities as in
    transformers), add each beam's running score, take the top ``max(2, 1 + n_eos) * K``
    candidates over beams × vocabulary. A candidate ending in EOS (or reaching the last step)
    among the top K becomes a finished hypothesis with score ``sum / T_new ** alpha``
    (T_new counts the new tokens, EOS included); the best K other candidates continue, and
    the cache rows are reordered to follow them. ``early_stopping`` decides when to stop.
    """
    K, B = s.num_beams, s.prompt.shape[0]
    P, V, L = s.prompt.shape[1], s.V, s.prompt.shape[1] + s.max_new
    R = B * K
    if s.max_new == 0:
        seq = np.repeat(s.prompt, s.nrs, axis=0)
        return GenerateOutput(seq, np.zeros(B * s.nrs), np.zeros(B * s.nrs, dtype=np.int64))
    seq0, mask0, counts0 = s.buffers(1)
    decoder = _Decoder(s.model, seq0, mask0, P, s.max_new)
    logits = decoder.first()                                             # (B, V)
    expand = np.repeat(np.arange(B), K)                                  # (R,)
    decoder.reorder(expand)                                              # B rows -> B*K
    logits = logits[expand]
    counts = None if counts0 is None else counts0[expand]
    n_candidates = min(max(2, 1 + s.eos.size) * K, K * V)
    running = np.zeros((B, K), dtype=np.float32)
    running[:, 1:] = _DEAD                               # only beam 0 is live at first
    fin_seq = np.full((B, K, L), s.pad, dtype=np.int64)
    fin_scores = np.full((B, K), -np.inf, dtype=np.float32)
    fin_done = np.zeros((B, K), dtype=bool)
    fin_len = np.zeros((B, K), dtype=np.int64)
    improvable = np.ones(B, dtype=bool)
    row_base = (np.arange(B) * K)[:, None]                               # (B, 1)
    alpha = s.length_penalty
    for step in range(s.max_new):
        cur = P + step
        logp = _fast_log_softmax(logits)                                # (R, V) float32
        logp = s.pre_warp(logp, decoder.seq, decoder.mask, counts, cur, step)
        acc = (logp.reshape(B, K, V) + running[:, :, None]).reshape(B, K * V)
        if K * V > 4096:        # partial selection first, then order the few candidates
            top = np.argpartition(-acc, n_candidates - 1, axis=1)[:, :n_candidates]
            order = np.argsort(-np.take_along_axis(acc, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
        else:
            top = np.argsort(-acc, axis=1, kind="stable")[:, :n_candidates]   # (B, Kc) best first
        top_scores = np.take_along_axis(acc, top, axis=1)
        parent = top // V + row_base                                    # (B, Kc) rows of seq
        token = top % V
        last = step == s.max_new - 1
        if last:
            hits = np.ones(token.shape, dtype=bool)
        elif s.eos.size:
            hits = np.isin(token, s.eos)
        else:
            hits = None                                   # no EOS: nothing finishes early
        any_hit = hits is not None and bool(hits[:, :K].any())

        # finished hypotheses: EOS candidates ranked within the top K (all at the last step)
        accept = None
        if any_hit:
            full = fin_done.all(axis=1) & (s.early_stopping is True)
            accept = hits.copy()
            accept[:, K:] = False
            accept &= (improvable & ~full)[:, None]
        if accept is not None and accept.any():
            cand_scores = np.where(accept, top_scores / np.float32((step + 1) ** alpha), -np.inf)
            cand_seq = decoder.seq[parent]                               # (B, Kc, L)
            cand_seq[:, :, cur] = token
            cand_seq[:, :, cur + 1:] = s.pad
            m_scores = np.concatenate([fin_scores, cand_scores.astype(np.float32)], axis=1)
            pick = np.argsort(-m_scores, axis=1, kind="stable")[:, :K]  # (B, K)
            fin_scores = np.take_along_axis(m_scores, pick, axis=1)
            fin_seq = np.take_along_axis(np.concatenate([fin_seq, cand_seq], axis=1),
                                         pick[:, :, None], axis=1)
            fin_done = np.take_along_axis(np.concatenate([fin_done, accept], axis=1), pick, axis=1)
            fin_len = np.take_along_axis(
                np.concatenate([fin_len, np.full(accept.shape, step + 1)], axis=1), pick, axis=1)
        if last:
            break

        # running beams: the best K candidates that did not just finish
        if hits is not None and hits.any():
            keep = np.argsort(hits.view(np.int8), axis=1, kind="stable")[:, :K]   # (B, K)
            running = np.take_along_axis(top_scores, keep, axis=1)
            rows = np.take_along_axis(parent, keep, axis=1).ravel()    # (R,)
            tokens = np.take_along_axis(token, keep, axis=1).ravel()   # (R,)
        else:                                             # the first K candidates continue
            running = top_scores[:, :K]
            rows = parent[:, :K].ravel()
            tokens = token[:, :K].ravel()
        running = running.astype(np.float32, copy=False)
        if not np.array_equal(rows, np.arange(R)):
            decoder.reorder(rows)
            if counts is not None:
                counts = counts[rows]
        decoder.seq[:, cur] = tokens
        if counts is not None:
            counts[np.arange(R), tokens] += 1
        if s.callback is not None:
            s.callback(step, tokens)

        # can a running beam still beat the worst finished hypothesis?
        if s.early_stopping == "never" and alpha > 0.0:
            best_len = s.max_new
        else:
            best_len = step + 1
        best_possible = running[:, 0] / np.float32(best_len ** alpha)
        worst = np.where(fin_done.all(axis=1), fin_scores.min(axis=1), _DEAD)
        improvable &= best_possible > worst
        if not improvable.any():
            break
        if s.early_stopping is True and fin_done.all():
            break
        logits = decoder.step(tokens)

    T_new = int(fin_len[:, :s.nrs].max())
    beam_sequences = fin_seq[:, :, :P + T_new]
    return GenerateOutput(
        sequences=beam_sequences[:, :s.nrs].reshape(B * s.nrs, P + T_new).copy(),
        scores=fin_scores[:, :s.nrs].reshape(-1).astype(np.float64),
        num_new_tokens=fin_len[:, :s.nrs].reshape(-1).copy(),
        beam_sequences=beam_sequences, beam_scores=fin_scores.astype(np.float64))


def _arguments(max_new_tokens, do_sample, temperature, top_k, top_p, min_p, typical_p,
               epsilon_cutoff, eta_cutoff, repetition_penalty, presence_penalty,
               frequency_penalty, no_repeat_ngram_size, num_beams, length_penalty,
               early_stopping, num_return_sequences, eos_token_id, pad_token_id,
               attention_mask, seed, min_new_tokens, callback):
    return dict(locals())


def generate(model, ids, max_new_tokens=20, do_sample=False, temperature=1.0, top_k=None,
             top_p=None, min_p=None, typical_p=None, epsilon_cutoff=None, eta_cutoff=None,
             repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
             no_repeat_ngram_size=0, num_beams=1, length_penalty=1.0, early_stopping=False,
             num_return_sequences=1, eos_token_id=None, pad_token_id=None, attention_mask=None,
             seed=None, min_new_tokens=0, callback=None) -> GenerateOutput:
    """Continue prompts with greedy decoding, sampling or beam search.

    - ``num_beams == 1, do_sample=False``: greedy, ``argmax`` of the processed logits
      (lowest id on ties). Only the penalties, ``no_repeat_ngram_size`` and
      ``min_new_tokens`` apply; temperature / top-k / ... are ignored, as in transformers.
    - ``do_sample=True``: draw from :func:`npgpt.sampling.distribution` (the whole chain,
      transformers' order); ``temperature=0`` is greedy. Each row has its own
      ``numpy.random.Generator`` spawned from ``seed``, so the same seed gives the same
      output and a row's tokens do not depend on the other rows.
    - ``num_beams > 1``: beam search as transformers (see :func:`_beam_search`); the
      score is ``sum log p / T_new ** length_penalty``.

    Parameters
    ----------
    model : npgpt.GPT
    ids : int array (T,) or (B, T), the prompts (left-padded when of unequal length)
    max_new_tokens, min_new_tokens : ints, EOS is banned until min_new_tokens are generated
    eos_token_id : int or list of ints in [0, V); a row stops after generating one
    pad_token_id : int in [0, V) written after EOS (default: the first EOS id, else 0)
    attention_mask : 0/1 array shaped like ids, 0 = left padding
    seed : None, int or numpy Generator
    callback : callable(step, tokens) called after each step with the step's new tokens (R,)
    the rest : as :func:`npgpt.sampling.process`, and transformers' generate()

    Returns
    -------
    GenerateOutput with ``sequences`` int64 (N, P + T_new) and ``scores`` float64 (N,).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> generate(model, [1, 2, 3], max_new_tokens=4).sequences.shape
    (1, 7)
    """
    s = _Settings(model, ids, _arguments(
        max_new_tokens, do_sample, temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff,
        eta_cutoff, repetition_penalty, presence_penalty, frequency_penalty,
        no_repeat_ngram_size, num_beams, length_penalty, early_stopping, num_return_sequences,
        eos_token_id, pad_token_id, attention_mask, seed, min_new_tokens, callback))
    if s.num_beams > 1:
        return _beam_search(s)
    steps = _token_steps(s)
    step = 0
    while True:
        try:
            tokens, _ = next(steps)
        except StopIteration as stop:
            state = stop.value
            break
        if s.callback is not None:
            s.callback(step, tokens)
        step += 1
    return _finish(state, s.prompt.shape[0] * s.nrs)


def stream(model, ids, max_new_tokens=20, **kwargs):
    """Like :func:`generate` (greedy or sampling), but an iterator: yields each step's new
    tokens, an int64 array (N,), as soon as they are chosen (pad for finished rows).

    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> [t.shape for t in stream(model, [1, 2], max_new_tokens=2)]
    [(1,), (1,)]
    """
    params = dict(max_new_tokens=20, do_sample=False, temperature=1.0, top_k=None, top_p=None,
                  min_p=None, typical_p=None, epsilon_cutoff=None, eta_cutoff=None,
                  repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
                  no_repeat_ngram_size=0, num_beams=1, length_penalty=1.0, early_stopping=False,
                  num_return_sequences=1, eos_token_id=None, pad_token_id=None,
                  attention_mask=None, seed=None, min_new_tokens=0, callback=None)
    unknown = set(kwargs) - set(params)
    if unknown:
        raise TypeError(f"stream() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    params.update(kwargs, max_new_tokens=max_new_tokens)
    s = _Settings(model, ids, params)
    if s.num_beams > 1:
        raise ValueError("stream() supports greedy and sampling; beam search reorders its beams, "
                         "use generate(..., callback=...) to watch the running beams")
    for tokens, _ in _token_steps(s):
        yield tokens.copy()


# ``npgpt.generate`` is this function once the package exports it, so the streaming form
# stays reachable as ``npgpt.generate.stream`` either way.
generate.stream = stream
generate.GenerateOutput = GenerateOutput
