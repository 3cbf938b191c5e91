"""What every decoding strategy shares: a call's checked inputs (:class:`Run`), one
Generator per row (:func:`row_generators`), stop strings (:class:`StopStrings`), a step's
processed logits (:func:`processed`) and the log-probabilities of its tokens
(:func:`log_probs`), the end of a row (:func:`ended`), and the output of a greedy or
sampling run (:func:`finish`). Greedy decoding and sampling (``npgpt.greedy``), beam search
(``npgpt.beam_search``) and speculative decoding (``npgpt.speculative``) import these;
``npgpt.generation`` makes the :class:`Run` and picks the strategy.

Shapes: B prompts, P padded prompt length, V vocabulary, R rows decoded together.
"""

from __future__ import annotations

import numpy as np

from ._decoder import check_overflow
from .decoding import GenerateOutput
from .kv_cache import KVCache
from .model import as_ids, as_mask
from .processors import Processors, token_mask

__all__ = ["Run", "row_generators", "StopStrings", "ended", "log_probs", "processed", "finish",
           "to_the_end"]

_add_reduce = np.add.reduce


# ------------------------------------------------------------------------ the inputs
class Run:
    """A call's inputs, checked against the model: prompts (B, P) int64, ``real`` (B, P) bool
    or None (left padding), the config, EOS ids as an array, the pad id, the callback, and
    the processors of its options, made once (:class:`npgpt.processors.Processors`)."""

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
        for name in TOKEN_ID_OPTIONS:                     # ids >= V raise, in this order
            if getattr(c, name) is not None:
                token_mask(getattr(c, name), V, name)
        eos = c.eos_token_id
        self.eos = np.array((eos,) if isinstance(eos, int) else (eos or ()), dtype=np.int64)
        pad = c.pad_token_id
        self.pad = pad if pad is not None else (int(self.eos[0]) if self.eos.size else 0)
        self.processors = Processors(c, V, self.eos)
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
        if self.processors.has_penalties:
            real = seq if mask is None else np.where(mask, seq, V)
            flat = (real + np.arange(R)[:, None] * (V + 1)).ravel()     # padding counts as V
            counts = np.bincount(flat, minlength=R * (V + 1)).reshape(R, V + 1)[:, :V]
        return seq, mask, counts

    def process(self, x, seq, mask, counts, length, new):
        """The processors of greedy, sampling and beam search on logits x (R, V)
        (:class:`npgpt.processors.Processors`, transformers' order), with each row's history
        ``seq[:, :length]``, its real tokens ``mask[:, :length]`` (None: no padding) and its
        token counts. ``new``: the tokens each row has generated before this step."""
        return self.processors(x, seq[:, :length], None if mask is None else mask[:, :length], counts, new)

    def needs_processing(self, new):
        """Does :meth:`process` change anything at step ``new``?"""
        return self.processors.needs_processing(new)


#: the options holding token ids, checked against the vocabulary by :class:`Run`
TOKEN_ID_OPTIONS = ("eos_token_id", "pad_token_id", "forced_eos_token_id", "suppress_tokens",
                    "begin_suppress_tokens")


def _prefix_cache(cache, model, run, config):
    """``cache`` checked for ``npgpt.generate``'s ``cache=``: a KVCache of this model with one
    row, holding fewer tokens than the prompt, in a mode that feeds the prompt through it."""
    if cache is None:
        return None
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


def _prompts(model, ids, attention_mask):
    """ids (T,) or (B, T) -> (B, P) int64 and a (B, P) bool mask (None without padding),
    checked as the model checks its input, and the mask as left padding."""
    arr = as_ids(ids, model.config.vocab_size)
    if arr.ndim == 1:
        arr = arr[None, :]
    if attention_mask is None:
        return arr, None
    mask = np.asarray(attention_mask)
    mask = as_mask(mask[None, :] if mask.ndim == 1 else mask, arr.shape)
    if not mask[:, -1].all() or (np.diff(mask.astype(np.int8), axis=1) < 0).any():
        raise ValueError("attention_mask must be left padding: each row 0...0 1...1 with a real last token")
    return arr, (None if mask.all() else mask)


# ------------------------------------------------------------------- a run's steps
def row_generators(seed, R):
    """One Generator per row, spawned from the seed, so a row's draws never depend on the
    other rows of the batch."""
    return [np.random.default_rng(child) for child in _seed_sequence(seed).spawn(R)]


def _seed_sequence(seed):
    """The SeedSequence a run's row Generators are spawned from (a Generator seed gives one
    draw of its own stream)."""
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2 ** 63)))
    return np.random.SeedSequence(seed)


def ended(run, state, tokens, unfinished, step, stops):
    """The rows (R,) bool that end with this step's tokens, among the unfinished: EOS, or a
    stop string in the row's new text (``stops``, a :class:`StopStrings` or None).

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


class StopStrings:
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


def log_probs(logits, top, rows, tokens):
    """log softmax(logits)[row, token] for each row, (R,): the chosen logit minus the row's
    log-sum-exp, in the logits' precision, the exponentials taken in place."""
    z = logits - top[:, None]                                           # (R, V), max 0
    np.exp(z, out=z)
    return logits[rows, tokens] - top - np.log(_add_reduce(z, axis=1))


def processed(run, logits, seq, mask, counts, length, step):
    """The logits (R, V) after ``run.process`` (when it changes anything at this step), with
    the history ``seq[:, :length]``; a row left without a possible token raises."""
    if not run.needs_processing(step):
        return logits
    x = run.process(logits, seq, mask, counts, length, step)
    if np.isneginf(x.max(axis=1)).any():
        raise ValueError(f"row {int(np.argmax(np.isneginf(x.max(axis=1))))}: every token "
                         f"was removed at step {step}")
    return x


def finish(state):
    """GenerateOutput of a greedy / sampling run."""
    decoder, P = state["decoder"], state["prompt_length"]
    return GenerateOutput(sequences=decoder.seq[:, :decoder.length].copy(), scores=state["scores"],
                          num_new_tokens=np.minimum(state["stop"], decoder.length - P))


def to_the_end(steps):
    """Run a decoding loop written as a generator (``token_steps``, ``beam_steps``,
    ``speculative_steps``) to its end, dropping what it yields: its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
