"""Greedy decoding and sampling: every row makes one token a step, the argmax of the
processed logits or a draw from the warped chain (transformers' ``_sample``, which runs both).

Shapes: R rows decoded together (B * num_return_sequences), P padded prompt length,
V vocabulary.

:func:`token_steps` is the loop; :func:`next_tokens` is one step's choice, which speculative
decoding's plain steps take too. The run's inputs and what every strategy shares are
``npgpt._run``; ``npgpt._decoder`` feeds the model.
"""

from __future__ import annotations

import numpy as np

from . import sampling
from ._decoder import Decoder, check_logits
from ._run import Run, StopStrings, ended, log_probs, processed, row_generators

__all__ = ["token_steps", "next_tokens"]


def token_steps(run: Run):
    """Greedy / sampling, one step at a time: yields (tokens (R,), state) per step and
    returns the final state (:func:`npgpt._run.finish` makes the output).

    Each step adds log p of the chosen tokens to the scores (``log_probs``), for the rows
    not finished before it, so nothing of a step's logits outlives the step. A row finishes
    at EOS or when its new text contains a stop string (``ended``); a step's tokens are
    yielded (and passed to the callback) before that check, so with
    ``include_stop_string=False`` the tokens it then drops have already been seen.

    Examples
    --------
    >>> import npgpt
    >>> from npgpt._run import Run
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> run = Run(model, [1, 2], None, npgpt.GenerationConfig(max_new_tokens=3), None)
    >>> [tokens.shape for tokens, state in token_steps(run)]
    [(1,), (1,), (1,)]
    """
    c = run.config
    seq, mask, counts = run.buffers(c.num_return_sequences)
    (R, P), n_steps = seq.shape, c.max_new_tokens
    rngs = row_generators(c.seed, R) if c.do_sample else None
    stops = None if c.stop_strings is None else StopStrings(run.model.tokenizer, c.stop_strings, R)
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
        tokens = next_tokens(run, logits, rngs, decoder, counts, step)
        if not unfinished.all():
            tokens = np.where(unfinished, tokens, run.pad)
        state["scores"] += np.where(unfinished, log_probs(logits, top, rows, tokens), 0.0)
        decoder.append(tokens)
        if counts is not None:
            counts[rows, tokens] += unfinished
        if run.callback is not None:
            run.callback(step, tokens)
        yield tokens, state
        unfinished &= ~ended(run, state, tokens, unfinished, step, stops)
        if not unfinished.any():
            break
        if step + 1 < n_steps:
            logits = decoder.step()
    return state


def next_tokens(run, logits, rngs, decoder, counts, step):
    """One step's tokens (R,): the processors, then argmax or a draw from the warped chain
    (``rngs``: one Generator per row, or None for greedy decoding).

    >>> import npgpt
    >>> from npgpt._decoder import Decoder
    >>> from npgpt._run import Run
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> run = Run(model, [1, 2], None, npgpt.GenerationConfig(suppress_tokens=[0, 1, 2]), None)
    >>> logits = np.zeros((1, 10), dtype=np.float32)
    >>> next_tokens(run, logits, None, Decoder(model, run.prompt, None, 2, 0), None, 0).tolist()
    [3]
    """
    x = processed(run, logits, decoder.seq, decoder.mask, counts, decoder.length, step)
    if not run.config.do_sample:
        return x.argmax(axis=1)
    return sampling.draw(sampling.warped_probs(x, run.config), rngs)
