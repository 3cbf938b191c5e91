"""Speculative decoding (npgpt.speculative).

- Greedy: exactly plain greedy decoding's tokens (random models, exact ties, batches with
  padding, EOS, every processor, past the context window), with its scores.
- Sampling: the output follows the model's own distribution. Every 2- and 3-token
  continuation's exact probability is enumerated from the model and the sampling chain, and
  20,000 speculative samples must pass a chi-square test at alpha = 0.001 (the statistic and
  its p-value computed here, with the standard library).
- The KV cache's roll-back (``KVCache.truncate``), the checks, the bundled draft model, and
  transformers' assisted generation (recorded in tests/fixtures/speculative_assisted.json by
  tests/fixtures/make_speculative_fixtures.py, and live when transformers imports).

The equality tests use float64 models: a verification pass scores k + 1 tokens in one
matrix product, which may round differently from k + 1 one-token steps, and float64 keeps a
rounding-level difference from flipping a near-tie (exact ties are tested on their own).
"""

import importlib.util
import json
import math
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import sampling, speculative
from npgpt.generation import generate

from helpers import FIXTURES, skip_without


def random_model(seed, V=7, context=16, layers=2, d_model=16, scale=1.0, dtype=np.float64,
                 gelu="exact"):
    cfg = npgpt.GPTConfig(vocab_size=V, context_length=context, d_model=d_model, num_heads=2,
                          num_layers=layers, gelu=gelu)
    model = npgpt.GPT(cfg, seed=seed, dtype=dtype, init="torch")
    model.params["token_embedding.weight"] *= model.dtype.type(scale)   # sharper distributions
    return model


def assert_same_output(fast, plain):
    assert fast.sequences.tolist() == plain.sequences.tolist()
    assert fast.num_new_tokens.tolist() == plain.num_new_tokens.tolist()
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ the cache roll-back
@settings(max_examples=25)
@given(st.integers(0, 1000), st.lists(st.integers(1, 5), min_size=1, max_size=3),
       st.integers(1, 4), st.data())
def test_truncated_cache_continues_as_if_the_forgotten_tokens_never_came(seed, lengths, extra, data):
    """Feed left-padded prompts and some tokens, forget them, feed others: the logits equal a
    single pass over the kept history plus the others."""
    model = random_model(seed, context=20)
    P = max(lengths)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 7, (len(lengths), P + extra + 2))
    mask = np.ones_like(ids)
    for r, n in enumerate(lengths):
        mask[r, :P - n] = 0
    cache = model.new_cache(len(lengths), capacity=ids.shape[1])
    model(ids[:, :P], attention_mask=mask[:, :P], cache=cache)
    before = cache.next_position.copy()
    model(rng.integers(0, 7, (len(lengths), extra)), cache=cache)     # proposals, then forgotten
    assert cache.next_position.tolist() == (before + extra).tolist()
    keep = data.draw(st.integers(1, P))
    cache.truncate(keep)
    assert cache.length == keep
    assert cache.next_position.tolist() == mask[:, :keep].sum(axis=1).tolist()
    logits = model(ids[:, keep:], attention_mask=mask[:, keep:], cache=cache)
    full = model(ids, attention_mask=mask)
    real = mask[:, keep:].astype(bool)
    np.testing.assert_allclose(logits[real], full[:, keep:][real], rtol=0, atol=1e-10)


def test_truncate_rejects_lengths_outside_the_cache():
    model = random_model(0)
    cache = model.new_cache()
    model([[1, 2, 3]], cache=cache)
    for bad in (-1, 4, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"length must be an integer in \[0, 3\]"):
            cache.truncate(bad)
    cache.truncate(np.int64(3))
    assert cache.length == 3


# ------------------------------------------------------------ greedy = plain greedy
@settings(max_examples=30)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 6), min_size=1, max_size=6),
       st.integers(0, 14), st.integers(1, 6), st.sampled_from([6, 9, 16]),
       st.sampled_from([4, 9, 16]), st.sampled_from(["heuristic", "constant"]),
       st.sampled_from([0.0, 0.4, 0.9]))
def test_greedy_speculative_equals_plain_greedy(seed, prompt, n, k, context, draft_context,
                                                schedule, confidence):
    """Random models and drafts, any num_draft_tokens, schedule and confidence stop,
    contexts that the generation passes (the model's, the draft's or both)."""
    model = random_model(seed, context=context, scale=2.0)
    draft = random_model(seed + 1, context=draft_context, layers=1, d_model=8, scale=2.0)
    fast = generate(model, prompt, max_new_tokens=n, draft_model=draft, num_draft_tokens=k,
                    draft_schedule=schedule, draft_confidence=confidence)
    assert_same_output(fast, generate(model, prompt, max_new_tokens=n))


def test_greedy_breaks_exact_ties_at_the_lowest_id_as_plain_greedy():
    """Tokens 2 and 5 get identical logits at every position (zero output weights, equal
    biases) and are the maximum at some positions only: both ways must pick 2 there."""
    cfg = npgpt.GPTConfig(vocab_size=7, context_length=24, d_model=16, num_heads=2, num_layers=2)
    model = npgpt.GPT(cfg, seed=3, dtype=np.float64)       # float64: no near-tie but the exact one
    model.params["output_layer.weight"] *= 0.2
    model.params["output_layer.weight"][[2, 5]] = 0.0
    model.params["output_layer.bias"][:] = 0.0
    model.params["output_layer.bias"][[2, 5]] = 0.05
    draft = npgpt.GPT(cfg.replace(num_layers=1), seed=4)
    ties = 0
    for prompt in ([1], [3, 4], [6, 0, 1]):
        plain = generate(model, prompt, max_new_tokens=20)
        fast = generate(model, prompt, max_new_tokens=20, draft_model=draft, num_draft_tokens=3)
        assert fast.sequences.tolist() == plain.sequences.tolist()
        ties += int((plain.sequences[0, len(prompt):] == 2).sum())
        assert 5 not in plain.sequences[0, len(prompt):].tolist()
    assert ties >= 3, "the tied tokens were never the maximum: the test shows nothing"


def test_greedy_batch_with_padding_and_eos_equals_plain():
    model, draft = random_model(5, scale=2.0), random_model(6, layers=1, d_model=8, scale=2.0)
    ids = [[0, 0, 3, 1, 4], [2, 6, 5, 3, 1], [0, 0, 0, 0, 2]]
    mask = [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]
    free = generate(model, ids, attention_mask=mask, max_new_tokens=12)
    eos = int(free.sequences[1, 8])                              # row 1's fourth new token
    kwargs = dict(attention_mask=mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=1)
    plain = generate(model, ids, **kwargs)
    assert len(set(plain.num_new_tokens.tolist())) > 1, "EOS must end rows at different steps"
    for k in (1, 3, 5):
        assert_same_output(generate(model, ids, draft_model=draft, num_draft_tokens=k, **kwargs), plain)


PROCESSOR_OPTIONS = [
    dict(repetition_penalty=1.8),
    dict(presence_penalty=0.7, frequency_penalty=0.4),
    dict(no_repeat_ngram_size=2),
    dict(eos_token_id=3, min_new_tokens=6),
    dict(suppress_tokens=[0, 4], begin_suppress_tokens=[1]),
    dict(bad_words_ids=[[2, 2], [5]]),
    dict(logit_bias={3: 0.8, 6: -2.0}),
    dict(forced_eos_token_id=4),
]


@pytest.mark.parametrize("options", PROCESSOR_OPTIONS, ids=lambda o: ",".join(o))
def test_greedy_with_every_processor_equals_plain(options):
    """The processors see each position's own history (the proposals before it), and its
    own step number (min_new_tokens, begin_suppress_tokens, forced EOS at the last step)."""
    model, draft = random_model(7, scale=2.0), random_model(8, layers=1, d_model=8, scale=2.0)
    for prompt in ([1, 2], [[3, 3, 0], [6, 5, 4]]):
        plain = generate(model, prompt, max_new_tokens=10, **options)
        fast = generate(model, prompt, max_new_tokens=10, draft_model=draft, num_draft_tokens=4, **options)
        assert_same_output(fast, plain)


def window_score(model, seq, P):
    """Sum of log p of seq[P:], each token scored on the window of the context_length tokens
    before it (what generation past the context uses)."""
    C = model.config.context_length
    return sum(sampling.log_softmax(model(seq[max(0, t - C):t])[-1])[seq[t]] for t in range(P, len(seq)))


def test_past_the_context_the_rest_is_plain_decoding():
    """The model's context is 8: a prompt of 3 and 20 new tokens pass it (greedy equals
    plain greedy, which runs the window), the draft's context is 5 (the rounds stop
    sooner), and a prompt longer than the context runs no round at all."""
    model = random_model(9, context=8, scale=2.0)
    for draft_context, prompt in ((16, [1, 2, 3]), (5, [1, 2, 3]), (16, list(range(7)) * 2)):
        draft = random_model(10, context=draft_context, layers=1, d_model=8, scale=2.0)
        fast = generate(model, prompt, max_new_tokens=20, draft_model=draft, num_draft_tokens=3)
        assert_same_output(fast, generate(model, prompt, max_new_tokens=20))
        assert (fast.acceptance_rate is None) == (len(prompt) > 8)
    draft = random_model(10, layers=1, d_model=8)
    sampled = generate(model, [1, 2, 3], max_new_tokens=20, do_sample=True, seed=0,
                       draft_model=draft, num_draft_tokens=3)
    assert sampled.num_new_tokens.tolist() == [20]
    np.testing.assert_allclose(sampled.scores[0], window_score(model, sampled.sequences[0], 3),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("prompt, n", [([1, 2, 3], 20), ([1, 2, 3], 4), (list(range(7)) * 2, 6)])
def test_chunk_mode_past_the_context_equals_plain_chunk_mode(prompt, n):
    """context_overflow="chunk": within the context rounds run as in exact mode; the plain
    steps after them restart the chunk at the same steps as generate's own chunk mode."""
    model, draft = random_model(21, context=8, scale=2.0), random_model(22, layers=1, d_model=8)
    kwargs = dict(max_new_tokens=n, context_overflow="chunk")
    for options in (dict(), dict(eos_token_id=5)):
        fast = generate(model, prompt, draft_model=draft, num_draft_tokens=2, **kwargs, **options)
        assert_same_output(fast, generate(model, prompt, **kwargs, **options))


@pytest.mark.parametrize("include", [True, False])
def test_stop_strings_end_rows_as_in_plain_generation(include):
    from npgpt.tokenizers import CharTokenizer

    model, draft = random_model(23, scale=2.0), random_model(24, layers=1, d_model=8, scale=2.0)
    model.tokenizer = CharTokenizer("abcdefg")
    prompt = [[0, 1, 2], [3, 4, 5]]
    free = generate(model, prompt, max_new_tokens=14).sequences[0, 3:]
    stop = model.tokenizer.decode(free[4:6].tolist())                # row 0 meets it
    kwargs = dict(max_new_tokens=14, stop_strings=[stop], include_stop_string=include)
    plain = generate(model, prompt, **kwargs)
    assert plain.num_new_tokens[0] < 14
    for k in (1, 4):
        assert_same_output(generate(model, prompt, draft_model=draft, num_draft_tokens=k, **kwargs), plain)


def test_callback_sees_each_token_once_in_order():
    model, draft = random_model(11, scale=2.0), random_model(12, layers=1, d_model=8)
    seen = []
    fast = generate(model, [[1, 2], [3, 4]], max_new_tokens=9, draft_model=draft,
                    callback=lambda step, tokens: seen.append((step, tokens.copy())))
    assert [s for s, _ in seen] == list(range(9))
    np.testing.assert_array_equal(np.stack([t for _, t in seen], axis=1), fast.sequences[:, 2:])


# ---------------------------------------------------------------- acceptance, checks
def test_a_draft_equal_to_the_model_is_always_accepted():
    model = random_model(13, scale=2.0)
    for options in (dict(), dict(do_sample=True, temperature=0.7, top_k=4, top_p=0.9,
                                 repetition_penalty=1.3, seed=0)):
        out = generate(model, [1, 2], max_new_tokens=12, draft_model=model, num_draft_tokens=4, **options)
        assert out.acceptance_rate == 1.0, options


def test_a_draft_the_model_never_agrees_with_is_never_accepted():
    """The draft always proposes token 6 (a large output bias), which the model never gives
    any mass under top-k 3 (a large negative one): every proposal is rejected, and the
    output is still the model's own."""
    model, draft = random_model(14, scale=2.0), random_model(15, layers=1, d_model=8)
    model.params["output_layer.bias"][6] = -50.0
    draft.params["output_layer.bias"][6] = 50.0
    for options in (dict(), dict(do_sample=True, top_k=3, seed=1)):
        out = generate(model, [1, 2], max_new_tokens=10, draft_model=draft, **options)
        assert out.acceptance_rate == 0.0
        assert 6 not in out.sequences[0, 2:].tolist()
    assert_same_output(generate(model, [1, 2], max_new_tokens=10, draft_model=draft),
                       generate(model, [1, 2], max_new_tokens=10))


def test_acceptance_rate_with_one_proposal_a_round_replayed_by_hand():
    """num_draft_tokens=1, greedy: a round proposes the draft's argmax; it is accepted when
    it equals the model's, and the round then keeps 2 tokens, else 1; the last token (or
    a round with no room) is a plain step. Replay the rounds on the output."""
    model, draft = random_model(16, scale=2.0), random_model(17, layers=1, d_model=8, scale=2.0)
    n, prompt = 15, [1, 2]
    out = generate(model, prompt, max_new_tokens=n, draft_model=draft, num_draft_tokens=1,
                   draft_schedule="constant", draft_confidence=0.0)
    seq = out.sequences[0].tolist()
    made, proposed, accepted = 0, 0, 0
    while made < n - 1:                                  # a round needs 2 tokens left to make
        history = np.array(seq[:len(prompt) + made])
        proposed += 1
        if int(np.argmax(draft(history)[-1])) == seq[len(prompt) + made]:
            accepted += 1
            made += 2
        else:
            made += 1
    assert 0 < accepted < proposed
    assert out.acceptance_rate == accepted / proposed
    assert generate(model, [1], max_new_tokens=1, draft_model=draft).acceptance_rate is None
    zero = generate(model, [1], max_new_tokens=0, draft_model=draft)
    assert zero.sequences.tolist() == [[1]] and zero.acceptance_rate is None


@pytest.mark.parametrize("schedule, confidence", [("heuristic", 0.0), ("heuristic", 0.22),
                                                  ("constant", 0.22)])
def test_the_schedule_and_the_confidence_stop_replayed_by_hand(schedule, confidence):
    """Greedy, a draft close to the model: a round proposes up to k tokens (fewer when the
    tokens left to make are fewer), stopping after one whose draft probability is below
    ``confidence``; heuristic: k grows by 2 after a round with every proposal accepted and
    shrinks by 1 (to at least 1) after a rejection. Replay it on the output."""
    model = random_model(16, context=64, scale=2.0)
    draft = random_model(16, context=64, scale=2.0)
    rng = np.random.default_rng(0)
    for value in draft.params.values():
        value += 0.15 * rng.standard_normal(value.shape)
    n, prompt, k = 40, [1, 2], 2
    out = generate(model, prompt, max_new_tokens=n, draft_model=draft, num_draft_tokens=k,
                   draft_schedule=schedule, draft_confidence=confidence)
    assert_same_output(out, generate(model, prompt, max_new_tokens=n))
    seq = out.sequences[0].tolist()
    made = proposed = accepted = stops = 0
    sizes = []
    while made < n - 1:
        history = seq[:len(prompt) + made]
        proposals = []
        for _ in range(min(k, n - made - 1)):
            q = sampling.softmax(draft(np.array(history + proposals))[-1].astype(np.float64))
            proposals.append(int(np.argmax(q)))
            if q[proposals[-1]] < confidence:
                stops += 1
                break
        agree = 0
        while agree < len(proposals) and proposals[agree] == seq[len(prompt) + made + agree]:
            agree += 1
        proposed, accepted, made = proposed + len(proposals), accepted + agree, made + agree + 1
        sizes.append(len(proposals))
        if agree == len(proposals):
            k = k + 2 if schedule == "heuristic" else k
        elif schedule == "heuristic":
            k = max(1, k - 1)
    assert out.acceptance_rate == pytest.approx(accepted / proposed, abs=1e-12)
    assert (stops > 0) == (confidence > 0)
    assert (max(sizes) > 2) == (schedule == "heuristic"), sizes


def test_sampling_is_reproducible_and_scores_are_log_probs():
    model, draft = random_model(16, scale=2.0), random_model(17, layers=1, d_model=8, scale=2.0)
    kwargs = dict(max_new_tokens=10, do_sample=True, top_p=0.9, temperature=0.8, draft_model=draft,
                  num_draft_tokens=3, num_return_sequences=3)
    a = generate(model, [[1, 2], [3, 4]], seed=5, **kwargs)
    assert a.sequences.tolist() == generate(model, [[1, 2], [3, 4]], seed=5, **kwargs).sequences.tolist()
    assert a.sequences.tolist() != generate(model, [[1, 2], [3, 4]], seed=6, **kwargs).sequences.tolist()
    logp = sampling.log_softmax(model(a.sequences))                    # (N, T, V)
    expected = [sum(logp[r, t - 1, a.sequences[r, t]] for t in range(2, 12)) for r in range(6)]
    np.testing.assert_allclose(a.scores, expected, rtol=0, atol=1e-9)


def test_a_draft_with_another_vocabulary_or_beam_search_is_refused():
    model = random_model(18)
    with pytest.raises(ValueError, match="draft_model has vocab_size 9 but the model has 7"):
        generate(model, [1, 2], draft_model=random_model(19, V=9))
    with pytest.raises(ValueError, match="num_beams=3 with a draft_model"):
        generate(model, [1, 2], draft_model=random_model(19), num_beams=3)


# ------------------------------------------------------------- exactness of sampling
def chi_square_survival(statistic, df):
    """P(X >= statistic) for X ~ chi-square(df): Q(df/2, statistic/2), the regularized upper
    incomplete gamma function (a series for small x, Lentz's continued fraction else)."""
    a, x = df / 2.0, statistic / 2.0
    if x <= 0:
        return 1.0
    front = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1:                                           # P(a, x) = front Σ x^n / (a)_(n+1)
        term = total = 1.0 / a
        n = a
        while term > total * 1e-16:
            n += 1
            term *= x / n
            total += term
        return 1.0 - front * total
    b, c, d = x + 1 - a, 1e300, 1.0 / (x + 1 - a)          # Q(a, x) = front / (x + 1 - a - ...)
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = b + an / c
        c = c if abs(c) > 1e-300 else 1e-300
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return front * h


def test_chi_square_survival_matches_known_critical_values():
    # the 0.05 and 0.001 critical values of chi-square tables
    for df, x05, x001 in ((1, 3.841459, 10.827566), (4, 9.487729, 18.466827),
                          (30, 43.772972, 59.703218), (100, 124.342113, 149.449252)):
        assert chi_square_survival(x05, df) == pytest.approx(0.05, abs=1e-6)
        assert chi_square_survival(x001, df) == pytest.approx(0.001, abs=1e-7)
    assert chi_square_survival(2.0, 2) == pytest.approx(math.exp(-1.0), abs=1e-12)


def exact_continuations(model, prompt, n, options):
    """{continuation (n ids): probability} under the model and the sampling chain, by the
    chain rule: p(y_1 .. y_n) = Π_j distribution(logits after prompt + y_<j, history)[y_j]."""
    probs = {(): 1.0}
    for _ in range(n):
        longer = {}
        for prefix, prob in probs.items():
            ids = np.array(list(prompt) + list(prefix))
            dist = sampling.distribution(model(ids)[-1], ids, **options)
            for token in np.flatnonzero(dist):
                longer[prefix + (int(token),)] = prob * float(dist[token])
        probs = longer
    return probs


def chi_square(samples, probs):
    """(statistic, df, p-value) of the observed continuations against the exact probabilities;
    cells expecting fewer than 5 are pooled, together with any continuation the model cannot
    produce (p = 0 when only those were expected nowhere)."""
    counts = Counter(samples)
    N = len(samples)
    cells, pooled = [], [0, 0.0]
    for seq, p in probs.items():
        if N * p >= 5:
            cells.append((counts[seq], N * p))
        else:
            pooled[0] += counts[seq]
            pooled[1] += N * p
    pooled[0] += sum(n for seq, n in counts.items() if seq not in probs)   # impossible ones
    if pooled[0] or pooled[1]:
        cells.append(tuple(pooled))
    df = len(cells) - 1
    if any(e == 0 and o > 0 for o, e in cells):
        return math.inf, df, 0.0
    statistic = sum((o - e) ** 2 / e for o, e in cells)
    return statistic, df, chi_square_survival(statistic, df)


EXACTNESS_OPTIONS = dict(temperature=0.8, top_k=4, top_p=0.9, repetition_penalty=1.5)
EXACTNESS_PROMPT = [1, 4]
NEAR = 0.01


def speculative_samples(model, draft, n, total, rows, k, first_seed=0, **extra):
    """``total`` speculative continuations of n tokens, ``rows`` rows a call (independent
    Generators), and the mean acceptance rate."""
    samples, rates = [], []
    for call in range(total // rows):
        out = generate(model, EXACTNESS_PROMPT, max_new_tokens=n, do_sample=True,
                       num_return_sequences=rows, seed=first_seed + call, draft_model=draft,
                       num_draft_tokens=k, **EXACTNESS_OPTIONS, **extra)
        samples += [tuple(row) for row in out.sequences[:, len(EXACTNESS_PROMPT):].tolist()]
        rates.append(out.acceptance_rate)
    return samples, float(np.mean(rates))


def exactness_models():
    model = random_model(20, V=6, context=8, scale=3.0, gelu="tanh")
    far = random_model(21, V=6, context=8, layers=1, d_model=8, scale=3.0, gelu="tanh")
    near = random_model(20, V=6, context=8, scale=3.0, gelu="tanh")      # the model, perturbed
    rng = np.random.default_rng(0)
    for value in near.params.values():
        value += NEAR * rng.standard_normal(value.shape)
    return model, far, near


PURE_RULE = dict(draft_schedule="constant", draft_confidence=0.0)   # k proposals every round


@pytest.mark.parametrize("n, draft_name, rows, k, extra", [
    (2, "far", 40, 2, {}),      # 40 rows a call: a round keeps one token (some row rejects)
    (3, "far", 40, 4, {}),
    (3, "near", 8, 2, {}),      # a draft close to the model: many rounds keep every token,
    (3, "near", 8, 2, PURE_RULE),   # so the schedule and the confidence stop act
    (3, "far", 20, 3, dict(draft_confidence=0.9)),     # rounds cut short by the draft's doubt
])
def test_speculative_sampling_follows_the_models_distribution(n, draft_name, rows, k, extra):
    model, far, near = exactness_models()
    draft = far if draft_name == "far" else near
    probs = exact_continuations(model, EXACTNESS_PROMPT, n, EXACTNESS_OPTIONS)
    samples, rate = speculative_samples(model, draft, n, 20_000, rows, k, **extra)
    assert 0.2 < rate < 0.95, f"acceptance {rate:.2f}: one branch of the rule is barely tested"
    impossible = set(samples) - set(probs)
    assert not impossible, f"continuations of probability 0 were sampled: {sorted(impossible)[:5]}"
    statistic, df, p_value = chi_square(samples, probs)
    assert df >= 10
    assert p_value > 0.001, f"chi-square {statistic:.1f} with {df} degrees of freedom, p = {p_value:.2e}"


def _accepts_everything(p, q, x, rngs):
    return np.ones(len(x), dtype=bool), x


def _redraws_from_p(p, q, x, rngs):
    u = np.array([g.random() for g in rngs])
    accepted = u * q[np.arange(len(x)), x] < p[np.arange(len(x)), x]
    return accepted, np.where(accepted, x, sampling.draw(p, rngs))


_THE_RULE = speculative._accept_or_correct


def _ratio_upside_down(p, q, x, rngs):
    return _THE_RULE(q, p, x, rngs)


BROKEN_RULES = {"accepts every proposal (the draft's distribution)": _accepts_everything,
                "draws a rejected token from p, not from max(0, p - q)": _redraws_from_p,
                "accepts with min(1, q/p) and corrects from max(0, q - p)": _ratio_upside_down}


@pytest.mark.parametrize("broken", sorted(BROKEN_RULES))
def test_the_chi_square_test_fails_a_broken_rejection_rule(monkeypatch, broken):
    model, far, _ = exactness_models()
    probs = exact_continuations(model, EXACTNESS_PROMPT, 3, EXACTNESS_OPTIONS)
    monkeypatch.setattr(speculative, "_accept_or_correct", BROKEN_RULES[broken])
    samples, _ = speculative_samples(model, far, 3, 20_000, 8, 2)
    statistic, df, p_value = chi_square(samples, probs)
    assert p_value < 0.001, (broken, statistic, df, p_value)


# ------------------------------------------------------------------ the bundled draft
def test_the_bundled_draft_shares_the_bundled_models_tokenizer_and_speeds_nothing_up_wrongly():
    model, draft = npgpt.load("shakespeare-char"), npgpt.load("shakespeare-char-draft")
    assert draft.tokenizer.to_dict() == model.tokenizer.to_dict()
    assert draft.config.vocab_size == model.config.vocab_size
    assert draft.config.context_length == model.config.context_length
    assert draft.num_parameters() < model.num_parameters() / 4
    prompt = model.tokenizer.encode("ROMEO:\nBut soft, what light")
    fast = generate(model, prompt, max_new_tokens=40, draft_model=draft, num_draft_tokens=4)
    plain = generate(model, prompt, max_new_tokens=40)
    assert fast.sequences.tolist() == plain.sequences.tolist()
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=0, atol=1e-3)
    assert fast.acceptance_rate > 0.4


# ------------------------------------------------ transformers' assisted generation
_spec = importlib.util.spec_from_file_location(
    "make_speculative_fixtures", os.path.join(FIXTURES, "make_speculative_fixtures.py"))
S = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(S)

with open(os.path.join(FIXTURES, "speculative_assisted.json")) as _f:
    ASSISTED = json.load(_f)


@pytest.mark.parametrize("name", sorted(ASSISTED["cases"]))
def test_greedy_matches_recorded_transformers_assisted_generation(name):
    case = ASSISTED["cases"][name]
    model, draft = S.tiny_pair()
    out = generate(model, case["prompt"], draft_model=draft, **case["kwargs"])
    assert out.sequences.tolist() == case["sequences"]


@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("seed", range(2))
def test_greedy_matches_live_transformers_assisted_generation(seed):
    model, draft = S.tiny_pair(model_seed=30 + seed, draft_seed=40 + seed)
    prompt = np.random.default_rng(seed).integers(0, 30, size=5).tolist()
    kwargs = dict(max_new_tokens=14, num_draft_tokens=3, repetition_penalty=1.2)
    assert generate(model, prompt, draft_model=draft, **kwargs).sequences.tolist() == \
        S.run_assisted(model, draft, prompt, kwargs)


def test_stream_with_a_draft_yields_the_tokens_generate_returns():
    model, draft = random_model(16, scale=2.0), random_model(17, layers=1, d_model=8, scale=2.0)
    for options in (dict(), dict(do_sample=True, top_p=0.9, seed=3, num_return_sequences=2)):
        kwargs = dict(max_new_tokens=12, draft_model=draft, num_draft_tokens=3, eos_token_id=5, **options)
        out = generate(model, [1, 2], **kwargs)
        streamed = np.stack(list(npgpt.stream(model, [1, 2], **kwargs)), axis=1)
        assert streamed.tolist() == out.sequences[:, 2:].tolist()
        assert out.acceptance_rate is not None
