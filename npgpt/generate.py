"""Text generation: greedy, sampling (any chain of transforms) and beam search, batched,
with the KV cache, and a streaming form.

Shapes: B prompts, P padded prompt length, V vocabulary, K = num_beams,
R rows decoded together (B * num_return_sequences when sampling, B * K in beam search),
L = P + max_new_tokens (the longest possible output).

Read in this order: :class:`GenerationConfig` (every option, checked once), :func:`generate`
and :func:`stream`, the greedy / sampling loop (:func:`_token_steps`), then beam search
(:func:`_beam_search`, with its candidate scoring and selection and the set of finished
hypotheses, :class:`_Finished`, which holds the early-stopping rule).

Context window: the model only has ``context_length`` position embeddings (learned absolute
positions), so, like nanoGPT, it always sees the last ``context_length`` tokens. While the
prompt plus the new tokens fit, the KV cache is used; once they would not, a cache cannot
slide (every cached key was computed at a position that would have to shift), so each later
step recomputes the forward pass on the window of the last ``context_length`` tokens.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from . import inference, sampling
from ._checks import check_option
from .model import _as_ids, _as_mask, positions_and_mask

__all__ = ["GenerationConfig", "GenerateOutput", "generate", "stream"]

_DEAD = -1.0e9          # score of a beam that must not be chosen (as transformers)
_add_reduce = np.add.reduce


# ------------------------------------------------------------------------ the options
@dataclass(frozen=True)
class GenerationConfig:
    """Every decoding option of :func:`generate`, with transformers' names, checked once.

    Defaults are transformers' except where npgpt's are documented otherwise: ``top_k``,
    ``typical_p``, ``epsilon_cutoff`` and ``eta_cutoff`` default to None (off), so sampling
    with no option draws from the model's own distribution. ``presence_penalty`` and
    ``frequency_penalty`` are OpenAI's; ``seed`` makes sampling reproducible.

    Parameters
    ----------
    max_new_tokens, min_new_tokens : ints >= 0; EOS is banned until min_new_tokens are made.
    do_sample : bool, sample instead of greedy decoding.
    num_beams, num_return_sequences : ints >= 1 (beam search when num_beams > 1).
    temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff,
    repetition_penalty, presence_penalty, frequency_penalty, no_repeat_ngram_size,
    min_tokens_to_keep : the chain of :func:`npgpt.sampling.process`.
    length_penalty : float, beam score = sum log p / T_new ** length_penalty.
    early_stopping : True, False or "never" (transformers' beam-search stopping rules).
    eos_token_id : int, list of ints or None; a row stops after generating one.
    pad_token_id : int or None, written after EOS (default: the first EOS id, else 0).
    seed : None, int >= 0 or numpy Generator.

    Examples
    --------
    >>> cfg = GenerationConfig(max_new_tokens=50, do_sample=True, top_p=0.9)
    >>> cfg.replace(top_p=0.5).top_p, cfg.top_p
    (0.5, 0.9)
    >>> GenerationConfig(top_p=1.5)
    Traceback (most recent call last):
    ...
    ValueError: top_p must be in (0, 1], got 1.5
    """

    max_new_tokens: int = 20
    min_new_tokens: int = 0
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    epsilon_cutoff: float | None = None
    eta_cutoff: float | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    min_tokens_to_keep: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    eos_token_id: int | tuple | None = None
    pad_token_id: int | None = None
    seed: int | np.random.Generator | None = None

    def __post_init__(self):
        checked = {name: check_option(name, getattr(self, name)) for name in sampling.SAMPLING_OPTIONS}
        checked.update(
            length_penalty=check_option("length_penalty", self.length_penalty),
            max_new_tokens=_count(self.max_new_tokens, "max_new_tokens", 0),
            min_new_tokens=_count(self.min_new_tokens, "min_new_tokens", 0),
            num_beams=_count(self.num_beams, "num_beams", 1),
            num_return_sequences=_count(self.num_return_sequences, "num_return_sequences", 1),
            do_sample=_boolean(self.do_sample, "do_sample"),
            eos_token_id=_token_ids(self.eos_token_id, "eos_token_id"),
            pad_token_id=_token_ids(self.pad_token_id, "pad_token_id", single=True))
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        es = self.early_stopping
        if not (isinstance(es, (bool, np.bool_)) or es == "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {es!r}")
        object.__setattr__(self, "early_stopping", es if es == "never" else bool(es))
        _check_seed(self.seed)
        self._check_combination()

    def _check_combination(self):
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens "
                             f"({self.max_new_tokens})")
        n = self.num_return_sequences
        if self.num_beams > 1:
            if self.do_sample:
                raise ValueError("do_sample=True with num_beams > 1 (beam sampling) is not supported")
            if n > self.num_beams:
                raise ValueError(f"num_return_sequences ({n}) must be <= num_beams ({self.num_beams})")
        elif n > 1 and not self.do_sample:
            raise ValueError(f"num_return_sequences={n} needs do_sample=True or num_beams >= "
                             f"{n}: greedy decoding would repeat one sequence")

    def replace(self, **changes) -> "GenerationConfig":
        """A copy with some options changed (checked again); unknown names raise TypeError.

        >>> GenerationConfig().replace(num_beams=4).num_beams
        4
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


def _boolean(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _count(value, name, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)


def _token_ids(value, name, single=False):
    """None, an int or (unless ``single``) a list of ints >= 0 -> None, int or tuple of ints."""
    if value is None:
        return None
    one = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if single and not one:
        raise ValueError(f"{name} must be an int, got {value!r}")
    try:
        items = [value] if one else list(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a list of ints, got {value!r}") from None
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise ValueError(f"{name} must be an int or a list of ints, got {value!r}")
        if item < 0:
            raise ValueError(f"{name} {int(item)} is out of range: token ids are >= 0")
    if not items:
        raise ValueError(f"{name} is an empty list")
    return int(items[0]) if one else tuple(int(i) for i in items)


def _check_seed(seed):
    if not (seed is None or isinstance(seed, np.random.Generator) or (
            isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed >= 0)):
        raise ValueError(f"seed must be None, a non-negative int or a numpy Generator, got {seed!r}")


def _seed_sequence(seed):
    """The SeedSequence a run's row Generators are spawned from (a Generator seed gives one
    draw of its own stream)."""
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2 ** 63)))
    return np.random.SeedSequence(seed)


# --------------------------------------------------------------------------- outputs
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

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> out = generate(model, [1, 2, 3], max_new_tokens=4)
    >>> out.sequences.shape, out.num_new_tokens.tolist(), out.beam_sequences is None
    ((1, 7), [4], True)
    """

    sequences: np.ndarray
    scores: np.ndarray
    num_new_tokens: np.ndarray
    beam_sequences: np.ndarray | None = None
    beam_scores: np.ndarray | None = None


# ------------------------------------------------------------------------ entry points
def generate(model, ids, config=None, *, attention_mask=None, callback=None, **options) -> GenerateOutput:
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
    config : GenerationConfig or None; ``**options`` (its field names, e.g.
        ``max_new_tokens=50, do_sample=True``) override its values.
    attention_mask : 0/1 array shaped like ids, 0 = left padding
    callback : callable(step, tokens) called after each step with the step's new tokens (R,)

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
    >>> cfg = GenerationConfig(max_new_tokens=2, do_sample=True, top_k=3, seed=0)
    >>> generate(model, [1, 2, 3], cfg, num_return_sequences=2).sequences.shape
    (2, 5)
    """
    run = _Run(model, ids, attention_mask, _config(config, options), callback)
    if run.config.num_beams > 1:
        return _beam_search(run)
    steps = _token_steps(run)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return _finish(stop.value)


def stream(model, ids, config=None, *, attention_mask=None, callback=None, **options):
    """Like :func:`generate` (greedy or sampling), but an iterator: yields each step's new
    tokens, an int64 array (N,), as soon as they are chosen (pad for finished rows).

    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> [t.shape for t in stream(model, [1, 2], max_new_tokens=2)]
    [(1,), (1,)]
    """
    run = _Run(model, ids, attention_mask, _config(config, options), callback)
    if run.config.num_beams > 1:
        raise ValueError("stream() supports greedy and sampling; beam search reorders its beams, "
                         "use generate(..., callback=...) to watch the running beams")
    for tokens, _ in _token_steps(run):
        yield tokens.copy()


def _config(config, options):
    """The GenerationConfig of a call: ``config`` (or the defaults) with ``options`` applied."""
    if config is None:
        return GenerationConfig().replace(**options)
    if not isinstance(config, GenerationConfig):
        raise TypeError(f"config must be a GenerationConfig, got {config!r:.80} (pass options "
                        f"such as max_new_tokens=... by name)")
    return config.replace(**options) if options else config


class _Run:
    """A call's inputs, checked against the model: prompts (B, P) int64, ``real`` (B, P) bool
    or None (left padding), the config, EOS ids as an array, the pad id, the callback."""

    def __init__(self, model, ids, attention_mask, config, callback):
        cfg = getattr(model, "config", None)
        if cfg is None or not hasattr(model, "new_cache"):
            raise ValueError(f"model must be an npgpt.GPT, got {type(model).__name__}")
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable, got {callback!r}")
        self.model, self.config, self.callback, self.V = model, config, callback, cfg.vocab_size
        self.prompt, self.real = _prompts(model, ids, attention_mask)
        for name in ("eos_token_id", "pad_token_id"):
            value = getattr(config, name)
            for i in () if value is None else np.atleast_1d(value):
                if i >= self.V:
                    raise ValueError(f"{name} {int(i)} is out of range [0, {self.V})")
        eos = config.eos_token_id
        self.eos = np.array((eos,) if isinstance(eos, int) else (eos or ()), dtype=np.int64)
        pad = config.pad_token_id
        self.pad = pad if pad is not None else (int(self.eos[0]) if self.eos.size else 0)
        c = config
        self.has_penalties = (c.repetition_penalty != 1.0 or c.presence_penalty != 0.0
                              or c.frequency_penalty != 0.0)

    def buffers(self, repeat):
        """The prompts repeated ``repeat`` times: tokens (R, P), mask (R, P) or None, and the
        token counts (R, V) or None (only the penalties need them)."""
        (B, P), V = self.prompt.shape, self.V
        R = B * repeat
        seq = np.repeat(self.prompt, repeat, axis=0)
        mask = None if self.real is None else np.repeat(self.real, repeat, axis=0)
        counts = None
        if self.has_penalties:
            real = seq if mask is None else np.where(mask, seq, V)
            flat = (real + np.arange(R)[:, None] * (V + 1)).ravel()     # padding counts as V
            counts = np.bincount(flat, minlength=R * (V + 1)).reshape(R, V + 1)[:, :V]
        return seq, mask, counts

    def process(self, x, seq, mask, counts, length, new):
        """The processors that run in greedy, sampling and beam search, in transformers'
        order: penalties (from each row's token counts), no-repeat n-gram (each row's own
        real history), then EOS banned while new < min_new_tokens."""
        c = self.config
        if c.repetition_penalty != 1.0:
            x = sampling._penalise_seen(x, counts > 0, c.repetition_penalty)
        if c.presence_penalty != 0.0 or c.frequency_penalty != 0.0:
            x = sampling._penalise_counts(x, counts, c.presence_penalty, c.frequency_penalty)
        if c.no_repeat_ngram_size:
            banned = np.zeros(x.shape, dtype=bool)
            for r in range(x.shape[0]):
                start = 0 if mask is None else int(np.argmax(mask[r]))
                banned[r] = sampling.banned_ngram_mask(seq[r:r + 1, start:length], self.V,
                                                       c.no_repeat_ngram_size)[0]
            x = np.where(banned, -np.inf, x).astype(x.dtype, copy=False)
        if new < c.min_new_tokens and self.eos.size:
            x = x.copy()
            x[:, self.eos] = -np.inf
        return x

    def needs_processing(self, new):
        return (self.has_penalties or self.config.no_repeat_ngram_size
                or (new < self.config.min_new_tokens and self.eos.size))


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
    """Holds every row's tokens and feeds them to the model: the KV cache while everything
    fits in the context, then a recomputed window of the last ``context_length`` tokens (see
    the module doc).

    ``seq`` (R, width) holds every row's tokens, ``length`` columns filled; ``mask`` (R, width)
    bool marks real tokens (None: no padding). The buffers grow as tokens come (doubling), so
    memory follows the tokens produced, not ``max_new_tokens``.
    """

    def __init__(self, model, seq, mask, max_new, pad):
        self.model, self.length, self.pad = model, seq.shape[1], pad
        self.weights = inference.weights(model.params, model.config)   # looked up once
        self.seq, self.mask = seq, mask
        self._make_room(min(max_new, 256))
        self.C = model.config.context_length
        real = self.length if mask is None else int(mask.sum(axis=1).max())
        room = self.C - real                          # new tokens whose positions still fit
        self.cache = None
        if self.length <= self.C and room > 0 and max_new > 1:
            self.cache = model.new_cache(seq.shape[0], capacity=self.length + min(max_new - 1, room))

    def _make_room(self, n):
        """Widen the buffers to hold at least n more tokens."""
        width = self.length + n
        if width > self.seq.shape[1]:
            self.seq = _widened(self.seq, width, self.pad)
            if self.mask is not None:
                self.mask = _widened(self.mask, width, True)

    def append(self, tokens):
        """Write tokens (R,) after the last filled column."""
        if self.length == self.seq.shape[1]:
            self._make_room(max(256, self.length))    # doubling: O(1) per token on average
        self.seq[:, self.length] = tokens
        self.length += 1

    def _run(self, lo, cache):
        """Logits (R, V) of the last position, feeding columns lo..length to the inference
        forward (with the cache: the columns not yet in it)."""
        real = None if self.mask is None else self.mask[:, lo:self.length]
        if real is not None and real.all():
            real = None
        T = self.length - lo
        positions, mask = positions_and_mask(T, real, cache, self.model.dtype)
        return inference.forward(self.weights, self.seq[:, lo:self.length], positions, mask,
                                 cache, last_only=True)

    def first(self):
        """Logits (R, V) after the prompt."""
        if self.cache is None:
            return self._run(max(0, self.length - self.C), None)
        return self._run(0, self.cache)

    def step(self):
        """Logits (R, V) after the last appended tokens."""
        cache = self.cache
        if cache is not None and cache.length < cache.capacity:
            return self._run(self.length - 1, cache)
        self.cache = None
        return self._run(max(0, self.length - self.C), None)

    def reorder(self, rows):
        """Keep rows (R_new,) in that order (beam search)."""
        self.seq = self.seq[rows]
        if self.mask is not None:
            self.mask = self.mask[rows]
        if self.cache is not None:
            self.cache.reorder(rows)


def _widened(a, width, fill):
    """a (..., L) widened to ``width`` along the last axis, the new entries ``fill``."""
    out = np.full(a.shape[:-1] + (width,), fill, dtype=a.dtype)
    out[..., :a.shape[-1]] = a
    return out


def _check_logits(logits, step):
    """The maximum of each row of the model's logits (R, V), which must be finite: NaN (which
    propagates through max), +inf or a row of -inf mean the model broke (NaN weights,
    overflow), and no token can be chosen from them."""
    top = logits.max(axis=1)
    if not np.isfinite(top).all():
        row = int(np.flatnonzero(~np.isfinite(top))[0])
        what = "NaN" if np.isnan(logits[row]).any() else "infinite"
        raise ValueError(f"the model produced {what} logits at step {step} (row {row}); "
                         f"check the weights (e.g. for NaN or overflow)")
    return top


def _row_generators(seed, R):
    """One Generator per row, spawned from the seed, so a row's draws never depend on the
    other rows of the batch."""
    return [np.random.default_rng(child) for child in _seed_sequence(seed).spawn(R)]


def _token_steps(run: _Run):
    """Greedy / sampling, one step at a time: yields (tokens (R,), state) per step and
    returns the final state (:func:`_finish` makes the output).

    Each step adds log p of the chosen tokens to the scores (:func:`_log_probs`), for the rows
    not finished before it, so nothing of a step's logits outlives the step.
    """
    c = run.config
    seq, mask, counts = run.buffers(c.num_return_sequences)
    (R, P), n_steps = seq.shape, c.max_new_tokens
    rngs = _row_generators(c.seed, R) if c.do_sample else None
    decoder = _Decoder(run.model, seq, mask, n_steps, run.pad)
    state = dict(decoder=decoder, prompt_length=P, scores=np.zeros(R),
                 stop=np.full(R, n_steps, dtype=np.int64))
    if n_steps == 0:
        return state
    logits = decoder.first()
    unfinished = np.ones(R, dtype=bool)
    rows = np.arange(R)
    for step in range(n_steps):
        top = _check_logits(logits, step)
        tokens = _next_tokens(run, logits, rngs, decoder, counts, step)
        if not unfinished.all():
            tokens = np.where(unfinished, tokens, run.pad)
        state["scores"] += np.where(unfinished, _log_probs(logits, top, rows, tokens), 0.0)
        decoder.append(tokens)
        if counts is not None:
            counts[rows, tokens] += unfinished
        if run.callback is not None:
            run.callback(step, tokens)
        yield tokens, state
        if run.eos.size:
            hit = unfinished & np.isin(tokens, run.eos)
            state["stop"][hit] = step + 1
            unfinished &= ~hit
            if not unfinished.any():
                break
        if step + 1 < n_steps:
            logits = decoder.step()
    return state


def _log_probs(logits, top, rows, tokens):
    """log softmax(logits)[row, token] for each row, (R,): the chosen logit minus the row's
    log-sum-exp, in the logits' precision, the exponentials taken in place."""
    z = logits - top[:, None]                                           # (R, V), max 0
    np.exp(z, out=z)
    return logits[rows, tokens] - top - np.log(_add_reduce(z, axis=1))


def _next_tokens(run, logits, rngs, decoder, counts, step):
    """One step's tokens (R,): the processors, then argmax or a draw from the warped chain."""
    x = logits
    if run.needs_processing(step):
        x = run.process(x, decoder.seq, decoder.mask, counts, decoder.length, step)
        if np.isneginf(x.max(axis=1)).any():
            raise ValueError(f"row {int(np.argmax(np.isneginf(x.max(axis=1))))}: every token "
                             f"was removed at step {step}")
    if not run.config.do_sample:
        return x.argmax(axis=1)
    return sampling.draw(sampling.softmax(sampling.warp(x, run.config)), rngs)


def _finish(state):
    """GenerateOutput of a greedy / sampling run."""
    decoder, P = state["decoder"], state["prompt_length"]
    return GenerateOutput(sequences=decoder.seq[:, :decoder.length].copy(), scores=state["scores"],
                          num_new_tokens=np.minimum(state["stop"], decoder.length - P))


# ------------------------------------------------------------------------ beam search
def _beam_search(run: _Run) -> GenerateOutput:
    """Beam search as transformers' ``_beam_search``, all B * K beams decoded as one batch.

    Each step: the candidates' scores (:func:`_candidate_scores`); the best
    ``max(2, 1 + n_eos) * K`` of them over beams × vocabulary; a candidate ending in EOS
    (or reaching the last step) among the top K joins the finished hypotheses
    (:class:`_Finished`); the best K others continue (:func:`_continuing`), and the cache
    rows follow them. The finished set's early-stopping rule decides when to stop.
    """
    c, (B, P), V = run.config, run.prompt.shape, run.V
    K, n_steps = c.num_beams, c.max_new_tokens
    if n_steps == 0:
        seq = np.repeat(run.prompt, c.num_return_sequences, axis=0)
        n = len(seq)
        return GenerateOutput(seq, np.zeros(n), np.zeros(n, dtype=np.int64))
    seq0, mask0, counts = run.buffers(1)
    decoder = _Decoder(run.model, seq0, mask0, n_steps, run.pad)
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
    _check_logits(logits, step)
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
        seq, self.seq = _widened(seq, width, self.pad), _widened(self.seq, width, self.pad)
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


# ``npgpt.generate`` is this function once the package exports it, so these stay reachable
# as ``npgpt.generate.stream`` and ``npgpt.generate.GenerationConfig`` either way.
generate.stream = stream
generate.GenerateOutput = GenerateOutput
generate.GenerationConfig = GenerationConfig
