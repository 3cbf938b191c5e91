"""Text generation: :func:`generate` and :func:`stream`, which check a call's inputs once
and hand them to a strategy: greedy decoding or sampling (``npgpt.greedy``), beam search
(``npgpt.beam_search``) or speculative decoding (``npgpt.speculative``). transformers names
its module ``generation`` and the function ``generate`` too.

Read in this order: :class:`npgpt.GenerationConfig` (every option, checked once,
``npgpt.decoding``), :func:`generate` and :func:`stream`, then the greedy / sampling loop
(:func:`npgpt.greedy.token_steps`). What every strategy shares is ``npgpt._run``;
``npgpt._decoder`` feeds the model (KV cache, context window).
"""

from __future__ import annotations

from . import beam_search, greedy, speculative
from ._run import Run, finish, to_the_end
from .decoding import GenerateOutput, GenerationConfig

__all__ = ["generate", "stream", "GenerationConfig", "GenerateOutput"]


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
    run = Run(model, ids, attention_mask, _config(config, options), callback, cache)
    if run.config.draft_model is not None:
        return speculative.speculative_generate(run)
    if run.config.num_beams > 1:
        return beam_search.beam_search(run)
    return finish(to_the_end(greedy.token_steps(run)))


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
    run = Run(model, ids, attention_mask, _config(config, options), callback, cache)
    if run.config.draft_model is not None:
        for tokens in speculative.speculative_steps(run):
            yield tokens.copy()
        return
    if run.config.num_beams > 1:
        result = yield from beam_search.beam_steps(run)
        yield result.sequences[::run.config.num_return_sequences, run.prompt.shape[1]:].copy()
        return result
    for tokens, _ in greedy.token_steps(run):
        yield tokens.copy()


def _config(config, options):
    """The GenerationConfig of a call: ``config`` (or the defaults) with ``options`` applied."""
    if config is None:
        return GenerationConfig().replace(**options)
    if not isinstance(config, GenerationConfig):
        raise TypeError(f"config must be a GenerationConfig, got {config!r:.80} (pass options "
                        f"such as max_new_tokens=... by name)")
    return config.replace(**options) if options else config
