"""The decoding core's data: every option of a ``generate`` call, checked once
(:class:`GenerationConfig`), and what the call returns (:class:`GenerateOutput`).

The decoding layer, read top down: ``npgpt.generation`` holds :func:`npgpt.generate` and
:func:`npgpt.stream`, which check a call's inputs (``npgpt._run.Run``) and hand it to a
strategy: greedy decoding and sampling (``npgpt.greedy``), beam search
(``npgpt.beam_search``), speculative decoding (``npgpt.speculative``). What every strategy
shares (the run's checked inputs, one Generator per row, stop strings, a step's scores, the
end of a row) is ``npgpt._run``; the logits processors and warpers are ``npgpt.processors``
and ``npgpt.sampling``; ``npgpt._decoder`` feeds the model (KV cache, context window). This
module imports none of them, so ``npgpt.sampling`` can check its options here.

Shapes: B prompts, P padded prompt length, V vocabulary, K = num_beams,
R rows decoded together (B * num_return_sequences when sampling, B * K in beam search),
L = P + max_new_tokens (the longest possible output).

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

from ._checks import (boolean, bias_dict, check_option, check_seed, count, shown, strings,
                      token_id_list, token_ids, token_sequences)
from ._decoder import OVERFLOW_MODES

__all__ = ["GenerationConfig", "GenerateOutput", "SAMPLING_OPTIONS"]

#: the options of the sampling chain (``npgpt.sampling.process`` takes these and no others)
SAMPLING_OPTIONS = ("repetition_penalty", "presence_penalty", "frequency_penalty",
                    "no_repeat_ngram_size", "temperature", "top_k", "top_p", "min_p",
                    "typical_p", "epsilon_cutoff", "eta_cutoff", "min_tokens_to_keep",
                    "logit_bias", "bad_words_ids", "suppress_tokens")


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
        checked = {name: check_option(name, getattr(self, name)) for name in SAMPLING_OPTIONS}
        checked.update(
            length_penalty=check_option("length_penalty", self.length_penalty),
            max_new_tokens=count(self.max_new_tokens, "max_new_tokens", 0),
            min_new_tokens=count(self.min_new_tokens, "min_new_tokens", 0),
            num_beams=count(self.num_beams, "num_beams", 1),
            num_return_sequences=count(self.num_return_sequences, "num_return_sequences", 1),
            do_sample=boolean(self.do_sample, "do_sample"),
            eos_token_id=token_ids(self.eos_token_id, "eos_token_id"),
            pad_token_id=token_ids(self.pad_token_id, "pad_token_id", single=True),
            suppress_tokens=token_id_list(self.suppress_tokens, "suppress_tokens"),
            begin_suppress_tokens=token_id_list(self.begin_suppress_tokens, "begin_suppress_tokens"),
            bad_words_ids=token_sequences(self.bad_words_ids, "bad_words_ids"),
            logit_bias=bias_dict(self.logit_bias),
            forced_eos_token_id=token_ids(self.forced_eos_token_id, "forced_eos_token_id"),
            stop_strings=strings(self.stop_strings, "stop_strings"),
            include_stop_string=boolean(self.include_stop_string, "include_stop_string"),
            num_draft_tokens=count(self.num_draft_tokens, "num_draft_tokens", 1))
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        es = self.early_stopping
        if not (isinstance(es, (bool, np.bool_)) or es == "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {es!r}")
        object.__setattr__(self, "early_stopping", es if es == "never" else bool(es))
        check_seed(self.seed)
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
    >>> out = npgpt.generate(model, [1, 2, 3], max_new_tokens=4)
    >>> out.sequences.shape, out.num_new_tokens.tolist(), out.beam_sequences is None
    ((1, 7), [4], True)
    """

    sequences: np.ndarray
    scores: np.ndarray
    num_new_tokens: np.ndarray
    beam_sequences: np.ndarray | None = None
    beam_scores: np.ndarray | None = None
    acceptance_rate: float | None = None
