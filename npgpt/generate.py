"""Text generation: greedy, sampling (any chain of transforms) and beam search, batched,
with the KV cache, and a streaming form.

Shapes: B prompts, P padded prompt length, V vocabulary, K = num_beams,
R rows decoded together (B * num_return_sequences when sampling, B * K in beam search),
L = P + max_new_tokens (the longest possible output).

Read in this order: :class:`GenerationConfig` (every option, checked once), :func:`generate`
and :func:`stream`, then the greedy / sampling loop (:func:`_token_steps`). Beam search is
``npgpt.beam_search``; ``npgpt._decoder`` feeds the model (KV cache, context window).

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

from . import sampling
from ._checks import check_option
from ._decoder import Decoder, check_logits
from .model import _as_ids, _as_mask

__all__ = ["GenerationConfig", "GenerateOutput", "generate", "stream"]

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
    - ``num_beams > 1``: beam search as transformers (see :mod:`npgpt.beam_search`); the
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
        from .beam_search import beam_search
        return beam_search(run)
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
    decoder = Decoder(run.model, seq, mask, n_steps, run.pad)
    state = dict(decoder=decoder, prompt_length=P, scores=np.zeros(R),
                 stop=np.full(R, n_steps, dtype=np.int64))
    if n_steps == 0:
        return state
    logits = decoder.first()
    unfinished = np.ones(R, dtype=bool)
    rows = np.arange(R)
    for step in range(n_steps):
        top = check_logits(logits, step)
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


# ``npgpt.generate`` is this function once the package exports it, so these stay reachable
# as ``npgpt.generate.stream`` and ``npgpt.generate.GenerationConfig`` either way.
generate.stream = stream
generate.GenerateOutput = GenerateOutput
generate.GenerationConfig = GenerationConfig
