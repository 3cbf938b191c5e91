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
step recomputes the forward pass on the window of the last ``context_length`` tokens. A
rotary-positions model may slide its cache instead (``context_overflow="slide"``, an
approximation; ``npgpt._decoder`` says what each mode computes).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from . import sampling
from ._checks import INT64_MAX, at_most_int64, check_option, real, shown
from ._decoder import OVERFLOW_MODES, Decoder, check_logits, check_overflow
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
    suppress_tokens, begin_suppress_tokens : token ids never generated / not as the first
        new token (transformers' processors).
    bad_words_ids : sequences of token ids that are never completed (transformers').
    logit_bias : {token id: additive bias} (OpenAI's ``logit_bias``); a bias beyond the
        logits' dtype (1e39 in float32), or one that pushes a logit to +inf, raises ValueError.
    forced_eos_token_id : int or ids, forced at the last step (``max_new_tokens``).
    stop_strings : strings; a row stops once the decoded text of its new tokens contains one
        (needs ``model.tokenizer``); ``include_stop_string`` keeps it in the output. In beam
        search a stop string ends a beam as EOS does (``npgpt.beam_search``), and with
        ``include_stop_string=False`` the hypotheses are ranked with the stop string, then cut.
    draft_model, num_draft_tokens : speculative decoding with a smaller model sharing the
        vocabulary, ``num_draft_tokens`` proposals per step; the output distribution is the
        model's own (``npgpt.speculative``).
    draft_schedule : ``"heuristic"`` (default: after a round whose proposals were all
        accepted, 2 more proposals a round; after a rejection, 1 fewer, at least 1) or
        ``"constant"`` (transformers' ``num_assistant_tokens_schedule``, reset each call).
    draft_confidence : a round stops proposing after a proposal the draft gave a
        probability below this (0 to 1; default 0.4; 0: never), as transformers'
        ``assistant_confidence_threshold``.
    context_overflow : ``"exact"`` (default: past ``context_length`` the model sees the
        last ``context_length`` tokens, as nanoGPT) or ``"chunk"`` (when the window fills,
        drop its oldest half and re-encode the rest once, then decode with the cache again:
        much faster, an approximation) or ``"slide"`` (rotary positions only: keep decoding
        with the cache, dropping its oldest token each step so that it holds the last
        ``context_length - 1`` and positions go on counting; one cached step a token, an
        approximation: past the first layer the cached keys and values were computed from
        tokens that have left the window since). A model with learned positions refuses
        ``"slide"`` (a ValueError naming ``config.positions``).

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
    suppress_tokens: tuple | None = None
    begin_suppress_tokens: tuple | None = None
    bad_words_ids: tuple | None = None
    logit_bias: dict | None = None
    forced_eos_token_id: int | tuple | None = None
    stop_strings: tuple | None = None
    include_stop_string: bool = True
    draft_model: object = None
    num_draft_tokens: int = 4
    draft_schedule: str = "heuristic"
    draft_confidence: float = 0.4
    context_overflow: str = "exact"

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
            pad_token_id=_token_ids(self.pad_token_id, "pad_token_id", single=True),
            suppress_tokens=_token_id_list(self.suppress_tokens, "suppress_tokens"),
            begin_suppress_tokens=_token_id_list(self.begin_suppress_tokens, "begin_suppress_tokens"),
            bad_words_ids=_sequences(self.bad_words_ids, "bad_words_ids"),
            logit_bias=_logit_bias(self.logit_bias),
            forced_eos_token_id=_token_ids(self.forced_eos_token_id, "forced_eos_token_id"),
            stop_strings=_strings(self.stop_strings, "stop_strings"),
            include_stop_string=_boolean(self.include_stop_string, "include_stop_string"),
            num_draft_tokens=_count(self.num_draft_tokens, "num_draft_tokens", 1))
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        es = self.early_stopping
        if not (isinstance(es, (bool, np.bool_)) or es == "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {es!r}")
        object.__setattr__(self, "early_stopping", es if es == "never" else bool(es))
        _check_seed(self.seed)
        if self.context_overflow not in OVERFLOW_MODES:
            raise ValueError(f"context_overflow must be 'exact', 'chunk' or 'slide', got "
                             f"{self.context_overflow!r}")
        if self.draft_schedule not in ("heuristic", "constant"):
            raise ValueError(f"draft_schedule must be 'heuristic' or 'constant', got {self.draft_schedule!r}")
        confidence = self.draft_confidence
        if (isinstance(confidence, (bool, np.bool_)) or not isinstance(confidence, numbers.Real)
                or not 0 <= confidence <= 1):
            raise ValueError(f"draft_confidence must be a number in [0, 1], got {shown(confidence)}")
        object.__setattr__(self, "draft_confidence", float(confidence))
        if self.draft_model is not None and not hasattr(self.draft_model, "new_cache"):
            raise ValueError(f"draft_model must be an npgpt.GPT, got {type(self.draft_model).__name__}")
        self._check_combination()

    def _check_combination(self):
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens "
                             f"({self.max_new_tokens})")
        n = self.num_return_sequences
        if self.num_beams > 1:
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
        raise ValueError(f"{name} must be {kind} integer, got {shown(value)}")
    return at_most_int64(int(value), name)


def _token_ids(value, name, single=False):
    """None, an int or (unless ``single``) a list of ints >= 0 -> None, int or tuple of ints."""
    if value is None:
        return None
    one = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if single and not one:
        raise ValueError(f"{name} must be an int, got {shown(value)}")
    try:
        items = [value] if one else list(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a list of ints, got {shown(value)}") from None
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise ValueError(f"{name} must be an int or a list of ints, got {shown(value)}")
        if not 0 <= item <= INT64_MAX:
            raise ValueError(f"{name} {shown(int(item))} is out of range: token ids are >= 0 "
                             f"and below 2**63")
    if not items:
        raise ValueError(f"{name} is an empty list")
    return int(items[0]) if one else tuple(int(i) for i in items)


def _token_id_list(value, name):
    """None or ids (int or list) -> None or a tuple of ints >= 0."""
    ids = _token_ids(value, name)
    return None if ids is None else ((ids,) if isinstance(ids, int) else ids)


def _sequences(value, name):
    """None or a list of non-empty lists of token ids -> None or a tuple of tuples."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list of lists of token ids, got {shown(value)}")
    out = []
    for i, seq in enumerate(value):
        if seq is None or isinstance(seq, (str, bytes)):
            raise ValueError(f"{name}[{i}] must be a token id or a list of them, got {shown(seq)}")
        out.append(_token_id_list(list(seq) if hasattr(seq, "__iter__") else seq, name))
    if not out:
        raise ValueError(f"{name} is an empty list")
    return tuple(out)


def _logit_bias(value):
    """None or {token id: finite bias} -> None or a dict of int -> float."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"logit_bias must be a dict {{token id: bias}}, got {shown(value)}")
    out = {}
    for token, bias in value.items():
        token = _token_ids(token, "a logit_bias token id", single=True)
        out[token] = _finite(bias, f"logit_bias[{token}]")
    return out


def _finite(value, name):
    try:
        return real(value, name)
    except ValueError:
        raise ValueError(f"{name} must be a finite number, got {shown(value)}") from None


def _strings(value, name):
    """None, a str or a list of non-empty str -> None or a tuple of str."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else None
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{name} must be a non-empty string or a list of them, got {shown(value)}")
    for item in items:                   # matched as UTF-8: a lone surrogate has no bytes
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{name}: {shown(item)} contains a lone surrogate "
                             f"U+{ord(err.object[err.start]):04X} at position {err.start}; such a "
                             f"string has no UTF-8 form, so it cannot be matched (an undecodable "
                             f"byte of the command line becomes one)") from None
    return tuple(items)


def _check_seed(seed):
    if not (seed is None or isinstance(seed, np.random.Generator) or (
            isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed >= 0)):
        raise ValueError(f"seed must be None, a non-negative int or a numpy Generator, got {shown(seed)}")


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
    acceptance_rate : float or None
        Speculative decoding only: the fraction of the draft model's proposals accepted.

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
    acceptance_rate: float | None = None


# ------------------------------------------------------------------------ entry points
def generate(model, ids, config=None, *, attention_mask=None, callback=None, cache=None,
             **options) -> GenerateOutput:
    """Continue prompts with greedy decoding, sampling or beam search.

    - ``num_beams == 1, do_sample=False``: greedy, ``argmax`` of the processed logits
      (lowest id on ties). Only the penalties, ``no_repeat_ngram_size`` and
      ``min_new_tokens`` apply; temperature / top-k / ... are ignored, as in transformers.
    - ``do_sample=True``: draw from :func:`npgpt.sampling.distribution` (the whole chain,
      transformers' order); ``temperature=0`` is greedy. Each row has its own
      ``numpy.random.Generator`` spawned from ``seed``, so the same seed gives the same
      output and a row's tokens do not depend on the other rows.
    - ``num_beams > 1``: beam search as transformers (see :mod:`npgpt.beam_search`); the
      score is ``sum log p / T_new ** length_penalty``. With ``do_sample=True``, beam
      sampling: 2 * num_beams candidates drawn from the warped beam scores.
    - ``draft_model=small``: speculative decoding (:mod:`npgpt.speculative`): the draft
      proposes ``num_draft_tokens`` tokens, the model checks them in one pass. Greedy gives
      greedy's tokens, sampling draws from the model's own distribution; faster when the
      draft agrees often. ``out.acceptance_rate`` says how often.

    Every mode applies the processors (penalties, ``bad_words_ids``, ``suppress_tokens``,
    ``logit_bias``, ...) in transformers' order, ends a row at EOS or at a stop string
    (``stop_strings``), and past the model's context either reruns the window of the last
    ``context_length`` tokens each step (``context_overflow="exact"``, the default), drops
    the oldest half and re-encodes the rest once (``"chunk"``, an approximation) or, for a
    rotary-positions model, slides its KV cache, dropping the oldest token each step
    (``"slide"``, an approximation past one layer).

    Parameters
    ----------
    model : npgpt.GPT
    ids : int array (T,) or (B, T), the prompts (left-padded when of unequal length)
    config : GenerationConfig or None; ``**options`` (its field names, e.g.
        ``max_new_tokens=50, do_sample=True``) override its values.
    attention_mask : 0/1 array shaped like ids, 0 = left padding
    callback : callable(step, tokens) called after each step with the step's new tokens (R,)
    cache : a KVCache (batch 1) already holding the keys and values of ``ids[:cache.length]``
        (greedy or sampling, one prompt, ``context_overflow="exact"``): only the rest of the
        prompt is fed, and the cache is extended in place -- afterwards it holds every token
        fed (the prompt and the new tokens but the last). A conversation keeps its cache this
        way between turns (:class:`npgpt.Chat`).

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
    run = _Run(model, ids, attention_mask, _config(config, options), callback, cache)
    if run.config.draft_model is not None:
        from .speculative import speculative_generate
        return speculative_generate(run)
    if run.config.num_beams > 1:
        from .beam_search import beam_search
        return beam_search(run)
    return _finish(_to_the_end(_token_steps(run)))


def _to_the_end(steps):
    """Run a decoding loop written as a generator (``_token_steps``, ``beam_steps``,
    ``speculative_steps``) to its end, dropping what it yields: its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def stream(model, ids, config=None, *, attention_mask=None, callback=None, cache=None, **options):
    """Like :func:`generate`, but an iterator.

    - Greedy / sampling: yields each step's new tokens, an int64 array (N,), as soon as they
      are chosen (pad for finished rows). With a ``draft_model``, a round of speculative
      decoding yields the tokens it keeps one after the other.
    - Beam search (``num_beams > 1``): after each step but the last, yields the new tokens of
      each prompt's best running beam so far, an int64 array (B, t) at step t = 1, 2, ... The
      whole hypothesis, not an increment: the best beam can change its mind, so a yield need
      not extend the one before (show each in place of the last). The last yield is the
      result, int64 (B, T_new): each prompt's best hypothesis, equal to
      ``generate(...).sequences[::num_return_sequences, P:]`` (pad after an early EOS). The
      iterator then stops with the whole GenerateOutput as its ``StopIteration.value`` (the
      command line shows the beams with it, without searching again).

    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> [t.shape for t in stream(model, [1, 2], max_new_tokens=2)]
    [(1,), (1,)]
    >>> [t.shape for t in stream(model, [1, 2], max_new_tokens=3, num_beams=2)]
    [(1, 1), (1, 2), (1, 3)]
    """
    run = _Run(model, ids, attention_mask, _config(config, options), callback, cache)
    if run.config.draft_model is not None:
        from .speculative import speculative_steps
        for tokens in speculative_steps(run):
            yield tokens.copy()
        return
    if run.config.num_beams > 1:
        from .beam_search import beam_steps
        result = yield from beam_steps(run)
        yield result.sequences[::run.config.num_return_sequences, run.prompt.shape[1]:].copy()
        return result
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
    or None (left padding), the config, EOS ids as an array, the pad id, the callback, and
    what :meth:`process` needs, made once: the logit_bias vector (V,), the bad words, the
    (V,) masks of forced EOS, suppressed and begin-suppressed tokens (None when unset)."""

    def __init__(self, model, ids, attention_mask, config, callback, cache=None):
        cfg = getattr(model, "config", None)
        if cfg is None or not hasattr(model, "new_cache"):
            raise ValueError(f"model must be an npgpt.GPT, got {type(model).__name__}")
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable, got {callback!r}")
        self.model, self.config, self.callback, self.V = model, config, callback, cfg.vocab_size
        check_overflow(cfg, config.context_overflow)
        self.prompt, self.real = _prompts(model, ids, attention_mask)
        c, V = config, self.V
        masks = {name: sampling.token_mask(getattr(c, name), V, name) for name in _TOKEN_ID_OPTIONS
                 if getattr(c, name) is not None}           # (V,) bool each; ids >= V raise
        eos = c.eos_token_id
        self.eos = np.array((eos,) if isinstance(eos, int) else (eos or ()), dtype=np.int64)
        pad = c.pad_token_id
        self.pad = pad if pad is not None else (int(self.eos[0]) if self.eos.size else 0)
        self.has_penalties = (c.repetition_penalty != 1.0 or c.presence_penalty != 0.0
                              or c.frequency_penalty != 0.0)
        self.bias = None if c.logit_bias is None else sampling.bias_vector(c.logit_bias, V)
        self.bad_words = _bad_words(c.bad_words_ids, self.eos, V)
        self.forced_eos = masks.get("forced_eos_token_id")
        self.suppress = masks.get("suppress_tokens")
        self.begin_suppress = masks.get("begin_suppress_tokens")
        self.every_step = (self.has_penalties or c.no_repeat_ngram_size or self.bias is not None
                           or self.bad_words is not None or self.suppress is not None)
        self.cache = _prefix_cache(cache, model, self, c)
        if c.stop_strings is not None and getattr(model, "tokenizer", None) is None:
            raise ValueError(f"stop_strings={list(c.stop_strings)!r:.80} need the model's tokenizer to "
                             f"decode the new tokens, and model.tokenizer is None")

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
        """The processors of greedy, sampling and beam search on logits x (R, V), in the
        order of transformers' ``_get_logits_processor``: logit_bias (its SequenceBias
        place); the penalties (from each row's token counts); no-repeat n-gram and bad words
        (each row's own real history, ``seq[:, :length]`` where ``mask``); EOS banned while
        ``new < min_new_tokens``; at the last step (``new == max_new_tokens - 1``) only the
        forced EOS ids, at logit 0; suppress_tokens; begin_suppress_tokens at the first new
        token (``new == 0``). ``new``: the tokens each row has generated before this step."""
        c = self.config
        if self.bias is not None:
            x = sampling._biased(x, self.bias, c.logit_bias)
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
            x = sampling._remove(x, banned)
        if self.bad_words is not None:
            real = None if mask is None else mask[:, :length]
            x = sampling._remove(x, sampling.banned_words_mask(seq[:, :length], self.V, self.bad_words, real))
        if new < c.min_new_tokens and self.eos.size:
            x = x.copy()
            x[:, self.eos] = -np.inf
        if self.forced_eos is not None and new == c.max_new_tokens - 1:
            x = sampling._forced(x, self.forced_eos)
        if self.suppress is not None:
            x = sampling._remove(x, self.suppress)
        if self.begin_suppress is not None and new == 0:
            x = sampling._remove(x, self.begin_suppress)
        return x

    def needs_processing(self, new):
        """Does :meth:`process` change anything at step ``new``?"""
        c = self.config
        return bool(self.every_step or (new < c.min_new_tokens and self.eos.size)
                    or (self.forced_eos is not None and new == c.max_new_tokens - 1)
                    or (self.begin_suppress is not None and new == 0))


#: the options holding token ids, checked against the vocabulary by ``_Run``
_TOKEN_ID_OPTIONS = ("eos_token_id", "pad_token_id", "forced_eos_token_id", "suppress_tokens",
                     "begin_suppress_tokens")


def _prefix_cache(cache, model, run, config):
    """``cache`` checked for :func:`generate`'s ``cache=``: a KVCache of this model with one
    row, holding fewer tokens than the prompt, in a mode that feeds the prompt through it."""
    if cache is None:
        return None
    from .model import KVCache
    if not isinstance(cache, KVCache) or cache.config != model.config:
        raise ValueError(f"cache must be a KVCache of this model (model.new_cache()), got {cache!r:.80}")
    why = ("the prompt is a batch" if run.prompt.shape[0] != 1 or cache.batch_size != 1 else
           "the prompt is padded" if run.real is not None else
           "beam search reorders its rows" if config.num_beams > 1 else
           "speculative decoding keeps two caches" if config.draft_model is not None else
           f"context_overflow={config.context_overflow!r} rebuilds its cache"
           if config.context_overflow != "exact" else
           f"it holds {cache.length} tokens and the prompt has {run.prompt.shape[1]}"
           if cache.length >= run.prompt.shape[1] else None)
    if why is not None:
        raise ValueError(f"cache= takes one prompt's prefix in greedy or sampling mode with "
                         f"context_overflow='exact'; here {why}")
    return cache


def _bad_words(bad_words_ids, eos, V):
    """The bad words generate bans (None if none): ``bad_words_ids`` without the one-token
    words that are an EOS id (transformers' NoBadWordsLogitsProcessor drops those, so EOS
    stays possible); every id must be < V."""
    if bad_words_ids is None:
        return None
    sampling.token_mask([i for word in bad_words_ids for i in word], V, "bad_words_ids")
    words = tuple(w for w in bad_words_ids if not (len(w) == 1 and w[0] in eos))
    return words or None


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
    not finished before it, so nothing of a step's logits outlives the step. A row finishes
    at EOS or when its new text contains a stop string (:func:`_ended`); a step's tokens are
    yielded (and passed to the callback) before that check, so with
    ``include_stop_string=False`` the tokens it then drops have already been seen.
    """
    c = run.config
    seq, mask, counts = run.buffers(c.num_return_sequences)
    (R, P), n_steps = seq.shape, c.max_new_tokens
    rngs = _row_generators(c.seed, R) if c.do_sample else None
    stops = None if c.stop_strings is None else _StopStrings(run.model.tokenizer, c.stop_strings, R)
    decoder = Decoder(run.model, seq, mask, n_steps, run.pad, c.context_overflow, run.cache)
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
        unfinished &= ~_ended(run, state, tokens, unfinished, step, stops)
        if not unfinished.any():
            break
        if step + 1 < n_steps:
            logits = decoder.step()
    return state


def _ended(run, state, tokens, unfinished, step, stops):
    """The rows (R,) bool that end with this step's tokens, among the unfinished: EOS, or a
    stop string in the row's new text (``stops``, a :class:`_StopStrings` or None).

    An ended row's ``state["stop"]`` becomes its count of new tokens: up to the token that
    ended it, or, for a stop string with ``include_stop_string=False``, only the tokens
    before the one holding the stop string's first byte; the others become padding and
    leave the score.
    """
    ended = unfinished & np.isin(tokens, run.eos) if run.eos.size else np.zeros_like(unfinished)
    state["stop"][ended] = step + 1
    if stops is None:
        return ended
    decoder, P, scores = state["decoder"], state["prompt_length"], state["scores"]
    for r in np.flatnonzero(unfinished):
        start = stops.add(r, int(tokens[r]), scores[r])
        if start is None:
            continue
        ended[r] = True
        n, scores[r] = (step + 1, scores[r]) if run.config.include_stop_string else stops.kept(r, start)
        state["stop"][r] = n
        decoder.seq[r, P + n:decoder.length] = run.pad
    return ended


class _StopStrings:
    """Finds stop strings in the new text of each row, incrementally.

    The text is matched as UTF-8 bytes (each stop string encoded), so a character split
    across tokens is matched once its last byte arrives. Per row it keeps the last
    ``len(longest stop string) - 1`` bytes of the text: a match completed by the next token
    lies within them and that token's bytes, so each step costs the same however long the
    text is. It also keeps, per new token, the byte offset where the token ends and the
    row's score after it, to cut the row before a stop string. A token's bytes are
    ``tokenizer.token_bytes(id)`` (byte-level BPE), else what it adds to the decoded text of
    the row's previous new token, ``decode([prev, id])[len(decode([prev])):]``.

    Rows can be reordered (:meth:`reorder`) and a candidate token tried without adding it
    (:meth:`find`), which is what beam search needs (a row is a beam there; it uses
    :meth:`kept` for the count of tokens only).

    Against transformers' StopStringCriteria: the same stop (the first token whose text
    completes a stop string; bytes for byte-level tokenizers, as its "byte_level" mode),
    except that (1) npgpt reads the new tokens' text only, where transformers also matches a
    stop string that begins in the prompt; (2) a stopped row is padded even without EOS,
    where transformers pads only when an EOS criterion is set (otherwise that row goes on
    generating until every row has stopped); (3) ``include_stop_string=False`` has no
    transformers counterpart.
    """

    def __init__(self, tokenizer, strings, R):
        self.tokenizer, self.targets = tokenizer, [s.encode("utf-8") for s in strings]
        self.keep = max(map(len, self.targets)) - 1
        self.tail = [b""] * R                     # the last `keep` bytes of each row's text
        self.ends = [[] for _ in range(R)]         # byte offset after each new token
        self.scores = [[] for _ in range(R)]       # the row's score after each new token
        self.last = [None] * R                     # the row's last new token

    def find(self, r, token):
        """Where (byte offset in row r's new text) the earliest stop string starts if the
        text with ``token`` appended contains one, else None; row r is not changed."""
        piece = self._piece(r, token)
        return self._match(self.tail[r] + piece, self._length(r) + len(piece))

    def add(self, r, token, score):
        """Append ``token`` (the row's score after it) to row r: :meth:`find`'s answer."""
        piece = self._piece(r, token)
        window, total = self.tail[r] + piece, self._length(r) + len(piece)
        self.tail[r] = window[max(0, len(window) - self.keep):]
        self.ends[r].append(total)
        self.scores[r].append(score)
        self.last[r] = token
        return self._match(window, total)

    def kept(self, r, start):
        """(n, score): row r's new tokens that end at or before byte ``start``, and the
        row's score after the last of them (0 if none)."""
        n = int(np.searchsorted(self.ends[r], start, side="right"))
        return n, (self.scores[r][n - 1] if n else 0.0)

    def reorder(self, rows):
        """Keep rows (R_new,) in that order (copies, so two rows never share a list)."""
        self.tail, self.last = [self.tail[i] for i in rows], [self.last[i] for i in rows]
        self.ends = [list(self.ends[i]) for i in rows]
        self.scores = [list(self.scores[i]) for i in rows]

    def _length(self, r):
        return self.ends[r][-1] if self.ends[r] else 0

    def _match(self, window, total):
        """The absolute start of the earliest stop string in ``window``, the last bytes of a
        text ``total`` bytes long, or None."""
        starts = [i for i in map(window.find, self.targets) if i >= 0]
        return total - len(window) + min(starts) if starts else None

    def _piece(self, r, token):
        tok = self.tokenizer
        if hasattr(tok, "token_bytes"):
            return tok.token_bytes(token)
        if self.last[r] is None:
            return tok.decode([token]).encode("utf-8")
        before, both = tok.decode([self.last[r]]), tok.decode([self.last[r], token])
        if not both.startswith(before):
            raise ValueError(f"stop_strings: the tokenizer's decode([{self.last[r]}, {token}]) does "
                             f"not start with decode([{self.last[r]}]), so its text cannot be "
                             f"decoded token by token")
        return both[len(before):].encode("utf-8")


def _log_probs(logits, top, rows, tokens):
    """log softmax(logits)[row, token] for each row, (R,): the chosen logit minus the row's
    log-sum-exp, in the logits' precision, the exponentials taken in place."""
    z = logits - top[:, None]                                           # (R, V), max 0
    np.exp(z, out=z)
    return logits[rows, tokens] - top - np.log(_add_reduce(z, axis=1))


def _next_tokens(run, logits, rngs, decoder, counts, step):
    """One step's tokens (R,): the processors, then argmax or a draw from the warped chain."""
    x = _processed(run, logits, decoder.seq, decoder.mask, counts, decoder.length, step)
    if not run.config.do_sample:
        return x.argmax(axis=1)
    return sampling.draw(sampling.warped_probs(x, run.config), rngs)


def _processed(run, logits, seq, mask, counts, length, step):
    """The logits (R, V) after ``run.process`` (when it changes anything at this step), with
    the history ``seq[:, :length]``; a row left without a possible token raises."""
    if not run.needs_processing(step):
        return logits
    x = run.process(logits, seq, mask, counts, length, step)
    if np.isneginf(x.max(axis=1)).any():
        raise ValueError(f"row {int(np.argmax(np.isneginf(x.max(axis=1))))}: every token "
                         f"was removed at step {step}")
    return x


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
