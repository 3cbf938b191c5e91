"""Speculative decoding: a small draft model guesses the next tokens, the model checks them
all in one forward pass, and the output is still a draw from the model itself (Leviathan,
Kalman and Matias 2023, "Fast Inference from Transformers via Speculative Decoding"; Chen et
al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling").

Shapes: R rows decoded together, V vocabulary, k proposals in a round (``num_draft_tokens``,
fewer near the end). p_j is the model's (the target's) distribution of the j-th new token of
a round, q_j the draft's; both are the processed distributions ``generate`` draws from (the
processors of ``Run.process``, then temperature, top-k, top-p, ...: the same options), so
every option composes.

A round, for all rows at once (:meth:`_Speculation.round`):

1. propose: the draft, with its own KV cache, draws x_1, ..., x_k one after the other,
   x_j ~ q_j (greedy: x_j = argmax q_j), and stops early after a proposal it gave a
   probability q_j(x_j) below ``draft_confidence`` (it is likely to be rejected, and every
   proposal after it wasted);
2. verify: the model runs ONE forward pass over [its last token, x_1, ..., x_k] with its KV
   cache, which gives p_1, ..., p_{k+1} (p_j sees x_1 .. x_{j-1});
3. accept, position by position (j = 1, 2, ...): x_j is kept with probability
   min(1, p_j(x_j) / q_j(x_j)); a row that rejects it draws its token from
   normalise(max(0, p_j - q_j)) instead, and the round ends there. When all k are kept, a
   bonus token is drawn from p_{k+1}. Greedy: x_j is kept if it equals argmax p_j, and a
   row's token is argmax p_j either way, exactly greedy decoding's token;
4. roll back: both caches forget the proposals not kept (:meth:`npgpt.model.KVCache.truncate`).

k starts at ``num_draft_tokens``; with ``draft_schedule="heuristic"`` (the default, as
transformers' ``num_assistant_tokens_schedule="heuristic"``) a round whose proposals were
all accepted makes the next one 2 longer, any rejection 1 shorter (at least 1). Greedy
decoding of a small model often runs into stretches the draft predicts perfectly (a repeated
phrase), where long rounds pay most.

Why the tokens follow p exactly. Token t comes out of step 3 either as an accepted proposal,
with probability q(t) · min(1, p(t)/q(t)) = min(p(t), q(t)), or after a rejection, which
happens with probability 1 - Σ_s min(p(s), q(s)) = Σ_s max(0, p(s) - q(s)), from the residual,
max(0, p(t) - q(t)) / Σ_s max(0, p(s) - q(s)). In all: min(p(t), q(t)) + max(0, p(t) - q(t))
= p(t), whatever the draft. How many proposals a round makes depends only on what came
before them (past rounds, the draft's own draws), never on the model's verdict on them, so
this holds position by position. Each new token is a draw from p given the tokens before it, so
the sequence is a draw from the model, as with ``generate(do_sample=True)`` alone (not the
same draws: the random numbers are used differently). A good draft only makes it faster: a
round makes 1 to k + 1 tokens for k draft steps and one pass of the model.

A batch. Rows accept different numbers of proposals; here all rows keep the same number of
tokens in a round, so the token buffer and both caches stay rectangular and roll back to one
length: the round ends after the first position where any unfinished row rejects. Up to
there every row has accepted; at that position each row keeps its own token (its proposal if
it accepted it, else its residual draw). This stays exact: whether a round goes on to
position j depends only on what happened before position j (the round ends by a stopping
rule), and every token kept is a draw from p given the tokens before it. The price: the
larger the batch, the fewer tokens a round keeps, so speculative decoding is for one prompt
or a few. It pays when scoring k + 1 tokens in one pass costs about as much as scoring one
and a draft step far less (``benchmarks/bench_speculative.py`` measures both).

Past the context. Each model keeps its KV cache while its positions fit its
``context_length`` (the Decoder's rule). A round proposes only as many tokens as both caches
have room for; once none fit (or one token is left to make), the rest is plain decoding by
the model alone, generate's own steps: past the context the window of the last
``context_length`` tokens (or, with ``context_overflow="chunk"``, generate's chunks; with
``"slide"``, generate's sliding cache). So
rounds speed up the tokens within the context of both models, and the distribution (greedy:
the tokens) stays generate's throughout.

Stop strings and EOS end a row as in generate (its ``ended``), token by token as the kept
tokens are appended. Unlike generate's sampling, a row's draws depend on the other rows of
its batch (how many tokens a round keeps does); its distribution does not.
"""

from __future__ import annotations

import numpy as np

from . import inference, sampling
from ._decoder import Decoder, check_logits
from ._run import StopStrings, ended, finish, log_probs, processed, row_generators, to_the_end
from .decoding import GenerateOutput
from .greedy import next_tokens
from .kv_cache import positions_and_mask

__all__ = ["speculative_generate", "speculative_steps"]


def speculative_generate(run) -> GenerateOutput:
    """Greedy decoding or sampling with a draft model (``generate(model, ids,
    draft_model=small, num_draft_tokens=k)`` comes here): rounds of k proposals checked by
    the model (see the module doc), then plain steps when the caches are out of room.

    Parameters
    ----------
    run : ``npgpt._run.Run``, a call's checked inputs; ``run.config.draft_model`` is an
        npgpt.GPT with the model's vocabulary.

    Returns
    -------
    GenerateOutput as generate's: ``sequences`` (N, P + T_new), ``scores`` (sum of log p of
    the new tokens under the model's raw logits), ``num_new_tokens``, and
    ``acceptance_rate``: proposals accepted / proposals made, over the rows still
    generating (a round's proposals past its end, the first rejection in any row, are
    made but not accepted); None if no round was run.

    Raises
    ------
    ValueError
        The draft's vocabulary size differs from the model's, or ``num_beams > 1``.

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=16, d_model=16, num_heads=2,
    ...                       num_layers=2)
    >>> model, draft = npgpt.GPT(cfg, seed=0), npgpt.GPT(cfg.replace(num_layers=1), seed=1)
    >>> fast = npgpt.generate(model, [1, 2, 3], max_new_tokens=8, draft_model=draft)
    >>> plain = npgpt.generate(model, [1, 2, 3], max_new_tokens=8)
    >>> np.array_equal(fast.sequences, plain.sequences), 0 <= fast.acceptance_rate <= 1
    (True, True)
    """
    return to_the_end(speculative_steps(run))


def speculative_steps(run):
    """The speculative loop as an iterator (what ``npgpt.stream`` runs with a draft model):
    yields each new token of every row, (R,) int64 (pad for finished rows), as it is kept,
    several per round; returns the GenerateOutput of :func:`speculative_generate`.

    Examples
    --------
    >>> import npgpt
    >>> from npgpt._run import Run
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=16, d_model=16, num_heads=2,
    ...                       num_layers=2)
    >>> model, draft = npgpt.GPT(cfg, seed=0), npgpt.GPT(cfg.replace(num_layers=1), seed=1)
    >>> run = Run(model, [1, 2, 3], None, npgpt.GenerationConfig(max_new_tokens=5, draft_model=draft), None)
    >>> [tokens.shape for tokens in speculative_steps(run)]
    [(1,), (1,), (1,), (1,), (1,)]
    """
    _check_draft(run)
    spec = _Speculation(run)
    while spec.unfinished.any() and spec.target.length - spec.P < spec.n_steps:
        k = spec.round_size()
        yield from (spec.round(k) if k else spec.plain_step())
    out = finish(spec.state)
    out.acceptance_rate = spec.kept / spec.proposed if spec.proposed else None
    return out


def _check_draft(run):
    c, draft = run.config, run.config.draft_model
    if draft.config.vocab_size != run.V:
        raise ValueError(f"draft_model has vocab_size {draft.config.vocab_size} but the model has "
                         f"{run.V}: the draft must share the model's vocabulary (token ids)")
    if c.num_beams > 1:
        raise ValueError(f"num_beams={c.num_beams} with a draft_model: speculative decoding runs "
                         f"greedy decoding or sampling (num_beams=1), not beam search")


class _Speculation:
    """A speculative run's state: the model's Decoder (the token buffer, its KV cache), the
    draft's (its weights and KV cache; it reads the model's token buffer), the token counts
    of the penalties, each row's Generator, the scores, and the acceptance counts.

    Invariant between rounds: each cache holds the tokens of the buffer's columns
    0 .. ``cache.length`` - 1 (a slot per column), the model's all but the last column.
    """

    def __init__(self, run):
        c = run.config
        seq, mask, self.counts = run.buffers(c.num_return_sequences)
        (R, self.P), self.n_steps, self.k = seq.shape, c.max_new_tokens, c.num_draft_tokens
        self.confidence = c.draft_confidence
        self.run, self.rows, self.unfinished = run, np.arange(R), np.ones(R, dtype=bool)
        self.rngs = row_generators(c.seed, R) if c.do_sample else None
        self.stops = None if c.stop_strings is None else StopStrings(run.model.tokenizer, c.stop_strings, R)
        self.target = Decoder(run.model, seq, mask, self.n_steps, run.pad, "exact")
        self.draft = Decoder(c.draft_model, seq, mask, self.n_steps, run.pad, "exact")
        self.state = dict(decoder=self.target, prompt_length=self.P, scores=np.zeros(R),
                          stop=np.full(R, self.n_steps, dtype=np.int64))
        self.proposed = self.kept = 0
        self.speculating = self.target.cache is not None and self.draft.cache is not None
        self.plain = False
        if self.speculating and self.P > 1:                  # all but the last prompt token
            self._feed(self.target, self.P - 1)
            self._feed(self.draft, self.P - 1)

    def round_size(self):
        """This round's proposals: num_draft_tokens, fewer when fewer tokens are left to make
        or a cache has less room (verifying feeds columns L-1 .. L+k-1 to the model,
        proposing columns up to L+k-2 to the draft); 0 from the first round that cannot
        propose on: plain steps then."""
        if self.speculating:
            L = self.target.length
            k = min(self.k, self.n_steps - (L - self.P) - 1,
                    self.target.cache.capacity - L, self.draft.cache.capacity - L + 1)
            self.speculating = k > 0
        return k if self.speculating else 0

    def round(self, k):
        """Propose k tokens, score them in one pass of the model, then walk the positions:
        each row's token at position j is its proposal if accepted, else the correction;
        the round stops after the first position where an unfinished row rejects (or after
        the bonus token), and both caches roll back to the tokens kept."""
        L, made = self.target.length, self.target.length - self.P
        x, q = self._propose(k, made)                                   # (R, k), (R, k, V)
        k = x.shape[1]                                  # fewer when the draft lost confidence
        logits = self._feed(self.target, L + k, last_only=False)        # (R, k+1, V)
        self.proposed += k * int(self.unfinished.sum())
        self.target.length = L                  # the kept tokens are appended again, in order
        p = self._all_p(logits, made)                                   # (R, k+1, V) or None
        for j in range(k + 1):
            live = self.unfinished
            top = check_logits(logits[:, j], made + j)
            if p is None:
                z = processed(self.run, logits[:, j], self.target.seq, self.target.mask,
                               self.counts, L + j, made + j)            # p_j sees x_1 .. x_{j-1}
            if self.rngs is None:                                       # greedy: argmax p_j
                token = z.argmax(axis=1)
                accepted = token == x[:, j] if j < k else None
            elif j < k:
                p_j = self._p(z) if p is None else p[:, j]
                accepted, token = _accept_or_correct(p_j, q[:, j], x[:, j], self.rngs)
            else:                                                       # the bonus token
                accepted, token = None, sampling.draw(self._p(z) if p is None else p[:, j], self.rngs)
            yield self._emit(token, logits[:, j], top, made + j)
            if accepted is None or not self.unfinished.any() or not accepted[live].all():
                break
            self.kept += int(live.sum())
        if accepted is not None:
            self.kept += int((accepted & live).sum())
        if self.run.config.draft_schedule == "heuristic":   # all accepted: 2 more, else 1 fewer
            self.k = self.k + 2 if accepted is None else max(1, self.k - 1)
        self.target.cache.truncate(L + j)     # the last token kept is fed with the next round
        self.draft.cache.truncate(min(self.draft.cache.length, L + j))

    def _propose(self, k, made):
        """The draft's k proposals (R, k), each written to the token buffer (the history of
        the next), and their distributions q (R, k, V) (greedy: None)."""
        run, L = self.run, self.target.length
        xs, qs = [], []
        for j in range(k):
            logits = self._feed(self.draft, L + j)                      # (R, V)
            check_logits(logits, made + j)
            z = processed(run, logits, self.target.seq, self.target.mask, self.counts, L + j, made + j)
            if self.rngs is None:
                x = z.argmax(axis=1)
                sure = self._confident(sampling.softmax(z, check=False), x) if self.confidence else True
            else:
                qs.append(self._p(z))
                x = sampling.draw(qs[-1], self.rngs)
                sure = self._confident(qs[-1], x) if self.confidence else True
            x = np.where(self.unfinished, x, run.pad)
            self.target.append(x)
            self._count(x, +1)
            xs.append(x)
            if not sure:
                break
        x = np.stack(xs, axis=1)
        self._count(x, -1)                     # the kept tokens are counted as they are kept
        return x, (np.stack(qs, axis=1) if qs else None)

    def _confident(self, q, x):
        """Did the draft give every unfinished row's proposal x (R,) a probability (under
        its distribution q (R, V)) of at least ``draft_confidence``? If not, the round
        proposes no more: a proposal the draft doubts is likely rejected, and every one
        after it wasted."""
        return bool((q[self.rows, x] >= self.confidence)[self.unfinished].all())

    def _all_p(self, logits, made):
        """Sampling with no processor acting at these steps (no penalty, nothing that
        depends on the history): every position's p at once from the verification's
        logits (R, k+1, V), one warp for all. Else None: each p_j is made in turn, after
        the tokens before it are counted."""
        if self.rngs is None or any(self.run.needs_processing(made + j) for j in range(logits.shape[1])):
            return None
        R, T, V = logits.shape
        with np.errstate(all="ignore"):         # a position with bad logits raises when reached
            return sampling.warped_probs(logits.reshape(R * T, V), self.run.config).reshape(R, T, V)

    def _p(self, z):
        """The distribution drawn from: softmax of the warped processed logits (R, V)."""
        return sampling.warped_probs(z, self.run.config)

    def plain_step(self):
        """One token from the model alone, generate's own step: its KV cache while it has
        room, then past the context what ``context_overflow`` says."""
        made = self.target.length - self.P
        logits = self.target.step() if self.plain else self._to_plain()
        self.plain = True
        top = check_logits(logits, made)
        tokens = next_tokens(self.run, logits, self.rngs, self.target, self.counts, made)
        yield self._emit(tokens, logits, top, made)

    def _to_plain(self):
        """The logits of the first plain step, in the state generate's own loop would be
        in: the model's cache holds all but the last column (or no round ran: the prompt in
        one pass). In chunk mode, unless the cache holds everything to the end (chunk mode
        is then exact mode), a chunk-mode Decoder over the tokens so far takes over (its
        chunk: the same tokens, restarting at the same steps). In slide mode likewise a
        slide-mode Decoder (:meth:`_to_slide`)."""
        target, cache = self.target, self.target.cache
        fits = cache is not None and cache.capacity >= self.P + self.n_steps - 1
        overflow = self.run.config.context_overflow
        if overflow == "slide" and not fits:
            return self._to_slide()
        if overflow == "chunk" and not fits:
            L, mask = target.length, target.mask
            self.target = Decoder(self.run.model, target.seq[:, :L], None if mask is None else mask[:, :L],
                                  self.n_steps - (L - self.P), self.run.pad, "chunk")
            self.state["decoder"] = self.target
            return self.target.first()
        return target.first() if cache is None or cache.length == 0 else target.step()

    def _to_slide(self):
        """The logits of the first plain step in slide mode, from a slide-mode Decoder in the
        state generate's would be in. Rounds ran only within the context, so generate's
        sliding cache would hold every column but the last (dropping at most padding columns,
        which no row attends to) and then take the last: the new Decoder encodes the columns
        but the last in one pass, then steps with the last (with no round run, the prompt)."""
        target = self.target
        L, mask = target.length, target.mask
        n = L - 1 if L > self.P else L                    # the columns generate's cache holds
        self.target = Decoder(self.run.model, target.seq[:, :n], None if mask is None else mask[:, :n],
                              self.n_steps - (n - self.P), self.run.pad, "slide")
        self.state["decoder"] = self.target
        logits = self.target.first()
        if n == L:
            return logits
        self.target.append(target.seq[:, L - 1])
        return self.target.step()

    def _emit(self, tokens, logits, top, step):
        """Append one token per row as generate's loop does: pad for finished rows; log p
        under the model's raw logits (R, V) joins the score; EOS or a stop string finishes a
        row (generate's ``ended``). Returns the tokens appended (R,)."""
        run, live = self.run, self.unfinished
        tokens = np.where(live, tokens, run.pad)
        self.state["scores"] += np.where(live, log_probs(logits, top, self.rows, tokens), 0.0)
        self.target.append(tokens)
        self._count(tokens, +1)
        if run.callback is not None:
            run.callback(step, tokens)
        self.unfinished = live & ~ended(run, self.state, tokens, live, step, self.stops)
        return tokens

    def _count(self, tokens, sign):
        """Add (sign +1) or take back (-1) tokens (R,) or (R, k) in the unfinished rows'
        token counts (the penalties' history)."""
        if self.counts is None:
            return
        tokens = tokens.reshape(len(tokens), -1)
        for j in range(tokens.shape[1]):                # a column at a time: a row may repeat a token
            self.counts[self.rows, tokens[:, j]] += sign * self.unfinished

    def _feed(self, side, hi, last_only=True):
        """Feed ``side`` (the model's or the draft's Decoder) the buffer's columns from its
        cache length to ``hi``, through its KV cache: logits (R, V) of the last, or
        (R, T, V) of every column fed."""
        cache, seq, mask = side.cache, self.target.seq, self.target.mask
        lo = cache.length
        real = None if mask is None or mask[:, lo:hi].all() else mask[:, lo:hi]
        positions, bias = positions_and_mask(hi - lo, real, cache, side.model.dtype)
        return inference.forward(side.weights, seq[:, lo:hi], positions, bias, cache,
                                 last_only=last_only)


def _accept_or_correct(p, q, x, rngs):
    """One position of the rule for every row: x (R,) is accepted with probability
    min(1, p(x) / q(x)) (a uniform u < p/q, tested as u q < p); a row that rejects draws its
    token from normalise(max(0, p - q)) instead. p, q (R, V); one Generator per row.
    Returns (accepted (R,) bool, token (R,)).

    A row that rejected x has p(x) < q(x), so its residual has mass; should rounding leave
    none, p itself is drawn from."""
    rows = np.arange(len(x))
    u = np.array([g.random() for g in rngs])                           # (R,) in [0, 1)
    accepted = u * q[rows, x] < p[rows, x]
    if accepted.all():
        return accepted, x
    residual = np.maximum(p - q, 0.0)                                  # (R, V)
    empty = residual.sum(axis=1) <= 0
    residual[empty] = p[empty]
    return accepted, np.where(accepted, x, sampling.draw(residual, rngs))
