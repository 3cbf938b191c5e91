"""Beam sampling, ``generate(do_sample=True, num_beams=K)``, as transformers' ``_beam_search``
with ``do_sample``; and ``stream()`` with beams.

- The draws: chi-square tests (significance 0.001, the p-value computed here without scipy)
  of npgpt's first-step candidates and two-step outcomes against their exact probabilities,
  enumerated from the model; of transformers' recorded outcomes against the same
  probabilities; broken samplers (with replacement, without the warpers, unsorted) fail them.
- Parity with transformers where it draws no choice, and of the first step's processed
  scores (tests/fixtures/beam_sampling.json, made by make_beam_sampling_fixtures.py; live too).
- Structure: candidates distinct and best first, scores recomputed, EOS, early stopping and
  num_return_sequences, seeds, temperature -> 0 is beam search.
- stream() with beams: the best running beam each step, then generate's best sequence.
"""

import importlib.util
import itertools
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import beam_search as bs
from npgpt import sampling
from npgpt._run import Run
from npgpt.generation import GenerationConfig, generate, stream

from helpers import FIXTURES, skip_without

_spec = importlib.util.spec_from_file_location(
    "make_beam_sampling_fixtures", os.path.join(FIXTURES, "make_beam_sampling_fixtures.py"))
M = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)
F = M.F                                               # make_decoding_fixtures: the tiny GPT-2

with open(os.path.join(FIXTURES, "beam_sampling.json")) as _f:
    RECORDED = json.load(_f)

ALPHA = 0.001
COUNTS = RECORDED["counts"]
WARPERS = {k: v for k, v in COUNTS["kwargs"].items() if k in ("temperature", "top_k")}


# ------------------------------------------------------------------ chi-square, exactly
def chi_square_p_value(stat, dof):
    """P(X >= stat) for X ~ chi-square(dof): the regularised upper incomplete gamma function
    Q(dof / 2, stat / 2), by its series below a + 1 and its continued fraction above."""
    a, x = dof / 2.0, stat / 2.0
    if x <= 0.0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:                                   # P(a, x) = front * sum x^n / (a (a+1) ... (a+n))
        term = total = 1.0 / a
        n = 0
        while term > total * 1e-16:
            n += 1
            term *= x / (a + n)
            total += term
        return max(0.0, 1.0 - math.exp(log_front) * total)
    tiny = 1e-300                                     # Q(a, x) by Lentz's method
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return math.exp(log_front) * h


def chi_square(observed, probs, n):
    """(statistic, degrees of freedom, p-value) of counts {outcome: count} against exact
    probabilities {outcome: p}, n draws; outcomes expected fewer than 5 times are pooled
    (least probable first). An outcome of probability 0 that occurred gives p-value 0."""
    if any(probs.get(key, 0.0) == 0.0 for key in observed):
        return math.inf, 0, 0.0
    expected, seen = [], []
    pool_e = pool_o = 0.0
    for key in sorted(probs, key=probs.get):
        pool_e += probs[key] * n
        pool_o += observed.get(key, 0)
        if pool_e >= 5.0:
            expected.append(pool_e)
            seen.append(pool_o)
            pool_e = pool_o = 0.0
    expected[-1] += pool_e
    seen[-1] += pool_o
    e, o = np.array(expected), np.array(seen)
    stat = float(((o - e) ** 2 / e).sum())
    return stat, len(e) - 1, chi_square_p_value(stat, len(e) - 1)


@pytest.mark.parametrize("dof", [1, 2, 4, 10, 30, 60, 200])
def test_the_chi_square_p_value_matches_its_closed_forms(dof):
    for x in (0.05, 0.7, 3.0, 9.0, dof * 0.5, dof + 1.5, dof * 2.0, dof * 3.0 + 20):
        if dof == 1:
            exact = math.erfc(math.sqrt(x / 2))
        else:                                         # even dof: Q(k, y) = e^-y sum_{i<k} y^i / i!
            exact = math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(dof // 2))
        if dof % 2 == 0 or dof == 1:
            assert chi_square_p_value(x, dof) == pytest.approx(exact, rel=1e-9, abs=1e-15), x
    assert chi_square_p_value(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)


# ------------------------------------------------------------- exact probabilities
def ordered_draws(scores, n):
    """Every ordered draw of n distinct candidates without replacement, each next one with
    probability proportional to exp(score) among those left: (M, n) candidate indices and
    (M,) probabilities. Candidates at -inf or at the dead-beam score have probability 0."""
    live = np.flatnonzero(scores > bs._DEAD / 2)
    w = np.exp(scores[live].astype(np.float64) - scores[live].max())
    w /= w.sum()
    perms = np.array(list(itertools.permutations(range(live.size), n)))
    pw = w[perms]
    before = np.cumsum(pw, axis=1) - pw                                 # mass drawn earlier
    return live[perms], np.prod(pw / (1.0 - before), axis=1)


def warped(model, seq, **options):
    """The processed next-token scores of one sequence, float32 (V,): log-softmax, then the
    warpers keeping at least 2 tokens (a beam's rule without EOS)."""
    logits = model(np.array([seq]))[0, -1].astype(np.float64)
    logp = (logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())).astype(np.float32)
    return sampling.process(logp, min_tokens_to_keep=2, **options)


def by_score(candidates, scores):
    return np.take_along_axis(candidates, np.argsort(-scores[candidates], axis=1, kind="stable"), axis=1)


def two_step_outcomes(model, prompt, **options):
    """{"x1 y1 x2 y2": probability}: the two final hypotheses (new tokens, best first) of
    beam sampling with K = 2 beams, 2 steps, no EOS: 4 candidates drawn at each step."""
    V, K = model.config.vocab_size, 2
    s0 = warped(model, prompt, **options)
    first, p0 = ordered_draws(s0, 2 * K)
    running = by_score(first, s0)[:, :K]                         # the 2 best drawn continue
    out = {}
    for beams in np.unique(running, axis=0):
        s1 = np.concatenate([s0[t] + warped(model, prompt + [int(t)], **options) for t in beams])
        second, p1 = ordered_draws(s1, 2 * K)
        top = by_score(second, s1)[:, :K]                         # at the last step all end
        keys = np.stack([beams[top[:, 0] // V], top[:, 0] % V, beams[top[:, 1] // V], top[:, 1] % V], 1)
        weight = p0[(running == beams).all(axis=1)].sum()
        for key, p in zip(map(" ".join, keys.astype(str).tolist()), p1):
            out[key] = out.get(key, 0.0) + weight * p
    return out


def outcome_counts(out, n):
    new = out.sequences[:, -2:].reshape(n, 4)                          # 2 hypotheses × 2 tokens
    keys, counts = np.unique(new, axis=0, return_counts=True)
    return {" ".join(map(str, k)): int(c) for k, c in zip(keys.tolist(), counts)}


@pytest.fixture(scope="module")
def counts_model():
    return M.counts_model()


@pytest.fixture(scope="module")
def exact_outcomes(counts_model):
    probs = two_step_outcomes(counts_model, COUNTS["prompt"], **WARPERS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9)
    return probs


# ------------------------------------------------------------------ the draws
def first_step_scores(model, prompt, config):
    """npgpt's scores of the first step's candidates, (1, K * V): beam 0's processed
    log-probabilities, the other beams' at the dead score."""
    run = Run(model, prompt, None, config, None)
    decoder, logits, counts, running = bs._start(run, config.num_beams)
    return bs._candidate_scores(run, logits, running, decoder, counts, len(prompt), 0, bs._Sampler(run, 1))


def test_first_step_candidates_are_distinct_sorted_and_follow_the_exact_probabilities(counts_model):
    config = GenerationConfig(do_sample=True, seed=0, **COUNTS["kwargs"])
    scores = first_step_scores(counts_model, COUNTS["prompt"], config)
    n = 20_000
    run = Run(counts_model, COUNTS["prompt"], None, config, None)
    drawn = bs._Sampler(run, n).draw(np.repeat(scores, n, axis=0), 4)    # (n, 4)
    drawn_scores = scores[0, drawn]
    assert (np.diff(drawn_scores, axis=1) <= 0).all(), "not ordered best first"
    assert (np.sort(drawn, axis=1)[:, 1:] != np.sort(drawn, axis=1)[:, :-1]).all(), "a repeat"
    assert np.isfinite(drawn_scores).all() and (drawn_scores > bs._DEAD / 2).all()
    perms, probs = ordered_draws(scores[0], 4)                          # sets: sum over orders
    exact = {}
    for key, p in zip(map(str, np.sort(perms, axis=1).tolist()), probs):
        exact[key] = exact.get(key, 0.0) + p
    keys, counts = np.unique(np.sort(drawn, axis=1), axis=0, return_counts=True)
    stat, dof, p = chi_square(dict(zip(map(str, keys.tolist()), counts)), exact, n)
    assert dof >= 10 and p > ALPHA, (stat, dof, p)


def beam_sampling_outcomes(model, n, seed):
    out = generate(model, np.repeat([COUNTS["prompt"]], n, axis=0), do_sample=True, seed=seed,
                   **COUNTS["kwargs"])
    return outcome_counts(out, n)


def test_two_step_outcomes_follow_the_exact_probabilities(counts_model, exact_outcomes):
    n = 10_000
    stat, dof, p = chi_square(beam_sampling_outcomes(counts_model, n, seed=0), exact_outcomes, n)
    assert dof >= 50 and p > ALPHA, (stat, dof, p)


def test_transformers_recorded_outcomes_follow_the_same_exact_probabilities(exact_outcomes):
    # the exact probabilities are what transformers' beam sampling does, not only npgpt's idea
    stat, dof, p = chi_square(COUNTS["counts"], exact_outcomes, COUNTS["draws"])
    assert dof >= 50 and p > ALPHA, (stat, dof, p)


def _with_replacement(self, scores, n):
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    drawn = np.stack([rng.choice(len(row), size=n, p=row) for rng, row in zip(self.rngs, probs)])
    return by_score_rows(drawn, scores)


def by_score_rows(drawn, scores):
    order = np.argsort(-np.take_along_axis(scores, drawn, axis=1), axis=1, kind="stable")
    return np.take_along_axis(drawn, order, axis=1)


def _in_drawing_order(self, scores, n):
    keys = scores + np.stack([rng.gumbel(size=scores.shape[1]) for rng in self.rngs])
    return np.argsort(-keys, axis=1)[:, :n]


BROKEN = {
    "with replacement": ("draw", _with_replacement),
    "without the warpers": ("warp", lambda self, logp: logp),
    "without the temperature (every outcome possible)":
        ("warp", lambda self, logp: sampling.warp(logp, self.options.replace(temperature=1.0))),
    "in drawing order, not by score": ("draw", _in_drawing_order),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_beam_sampler_fails_the_chi_square(monkeypatch, counts_model, exact_outcomes, broken):
    name, method = BROKEN[broken]
    monkeypatch.setattr(bs._Sampler, name, method)
    n = 4000
    stat, dof, p = chi_square(beam_sampling_outcomes(counts_model, n, seed=1), exact_outcomes, n)
    assert p < ALPHA, (broken, stat, dof, p)


@pytest.mark.transformers
@skip_without("transformers")
def test_live_transformers_outcomes_follow_the_exact_probabilities(counts_model, exact_outcomes):
    import torch

    n = 3000
    seqs, _, _ = M.run_beam_sampling(F.to_hf_gpt2(counts_model), [COUNTS["prompt"]] * n,
                                     COUNTS["kwargs"], seed=int(torch.randint(0, 1000, ())) + 7)
    keys, counts = np.unique(seqs[:, len(COUNTS["prompt"]):].reshape(n, 4), axis=0, return_counts=True)
    stat, dof, p = chi_square(dict(zip((" ".join(map(str, k)) for k in keys.tolist()), counts)),
                              exact_outcomes, n)
    assert p > ALPHA, (stat, dof, p)


# ----------------------------------------------------------- parity with transformers
@pytest.fixture(scope="module")
def gpt2_tiny():
    return F.tiny_model()


def kept_and_values(model, case):
    config = GenerationConfig(do_sample=True, max_new_tokens=1, **case["kwargs"])
    row = first_step_scores(model, case["prompt"], config)[0, :model.config.vocab_size]
    kept = np.flatnonzero(np.isfinite(row))
    return kept.tolist(), row[kept]


@pytest.mark.parametrize("name", sorted(RECORDED["first_step"]))
def test_first_step_processing_matches_recorded_transformers(gpt2_tiny, name):
    case = RECORDED["first_step"][name]
    kept, values = kept_and_values(gpt2_tiny, case)
    assert kept == case["kept"], name
    np.testing.assert_allclose(values, case["values"], rtol=0, atol=2e-5)


def test_the_warpers_keep_two_tokens_per_beam_or_one_more_than_the_eos_ids(gpt2_tiny):
    for eos, kept in ((None, 2), (7, 2), ([7, 15], 3), ([7, 15, 16], 4)):
        case = dict(prompt=F.PROMPTS[0], kwargs=dict(num_beams=2, top_k=1, eos_token_id=eos))
        assert len(kept_and_values(gpt2_tiny, case)[0]) == kept, eos
    case = dict(prompt=F.PROMPTS[0], kwargs=dict(num_beams=2, top_k=1, min_tokens_to_keep=5))
    assert len(kept_and_values(gpt2_tiny, case)[0]) == 5                 # a larger one is kept


def run_case(model, case, seed=0):
    return generate(model, case["prompt"], do_sample=True, seed=seed, **case["kwargs"])


@pytest.mark.parametrize("name", sorted(RECORDED["deterministic"]))
def test_beam_sampling_matches_recorded_transformers_where_it_draws_no_choice(gpt2_tiny, name):
    case = RECORDED["deterministic"][name]
    for seed in (0, 1):
        out = run_case(gpt2_tiny, case, seed)
        assert out.sequences.tolist() == case["sequences"], (name, seed)
        np.testing.assert_allclose(out.scores, case["scores"], rtol=0, atol=1e-4)


@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("seed", range(2))
def test_live_transformers_first_steps_and_undrawn_runs_match(seed):
    model = npgpt.GPT(npgpt.GPTConfig(**F.TINY_GPT2), seed=20 + seed, init="torch")
    model.params["token_embedding.weight"] *= np.float32(0.4)
    hf = F.to_hf_gpt2(model)
    prompt = np.random.default_rng(seed).integers(0, 30, size=5).tolist()
    for kwargs in (dict(num_beams=3, temperature=0.7, top_k=4, top_p=0.8, eos_token_id=[7, 9]),
                   dict(num_beams=2, min_p=0.3, typical_p=0.9, repetition_penalty=1.3)):
        _, _, scores = M.run_beam_sampling(hf, [prompt], dict(kwargs, max_new_tokens=1), seed)
        kept, values = kept_and_values(model, dict(prompt=prompt, kwargs=kwargs))
        assert kept == np.flatnonzero(np.isfinite(scores[0])).tolist(), kwargs
        np.testing.assert_allclose(values, scores[0, kept], rtol=0, atol=2e-5)
    kwargs = dict(num_beams=2, top_k=1, temperature=0.8, max_new_tokens=8, num_return_sequences=2,
                  eos_token_id=int(prompt[0]), pad_token_id=1, early_stopping=[True, "never"][seed])
    seqs, scores, _ = M.run_beam_sampling(hf, [prompt], kwargs, seed)
    out = generate(model, prompt, do_sample=True, seed=seed, **kwargs)
    assert out.sequences.tolist() == seqs.tolist()
    np.testing.assert_allclose(out.scores, scores, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------- structure
def tiny_model(seed, V=9):
    cfg = npgpt.GPTConfig(vocab_size=V, context_length=12, d_model=8, num_heads=2, num_layers=1)
    return npgpt.GPT(cfg, seed=seed, init="torch", dtype=np.float64)


def recomputed_score(model, row, P, n_new, temperature, alpha):
    """sum over the new tokens of log p / temperature (the warped score of a kept token),
    divided by n_new ** alpha, from one forward pass."""
    logp = sampling.log_softmax(model(np.asarray(row[:P + n_new])).astype(np.float64))
    return sum(logp[t - 1, row[t]] for t in range(P, P + n_new)) / temperature / n_new ** alpha


@settings(max_examples=30)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 8), min_size=1, max_size=3),
       st.integers(2, 4), st.sampled_from([0.0, 1.0, 2.0]), st.sampled_from([True, False, "never"]),
       st.sampled_from([None, 3, [3, 5]]), st.sampled_from([0.6, 1.0, 1.7]),
       st.sampled_from([dict(), dict(top_k=3), dict(top_p=0.7), dict(min_p=0.2)]), st.data())
def test_returned_hypotheses_are_distinct_sorted_and_scored_as_recomputed(
        seed, prompt, K, alpha, early, eos, temperature, warper, data):
    model = tiny_model(seed)
    n_return = data.draw(st.integers(1, K))
    out = generate(model, prompt, max_new_tokens=5, num_beams=K, num_return_sequences=n_return,
                   do_sample=True, seed=seed, temperature=temperature, length_penalty=alpha,
                   early_stopping=early, eos_token_id=eos, pad_token_id=0, **warper)
    P, ends = len(prompt), np.atleast_1d(eos if eos is not None else [])
    assert out.sequences.shape[0] == n_return and out.beam_sequences.shape[:2] == (1, K)
    live = out.beam_scores[0] > bs._DEAD / 2                 # a dead beam may be drawn only to fill
    assert live[:n_return].all()
    assert (np.diff(out.beam_scores[0]) <= 1e-6).all(), "hypotheses not best first"
    rows = [tuple(r[:P + n]) for r, n in zip(out.sequences.tolist(), out.num_new_tokens)]
    assert len(set(rows)) == len(rows), "a hypothesis returned twice"
    for row, full, n, score in zip(rows, out.sequences.tolist(), out.num_new_tokens, out.scores):
        assert 1 <= n <= 5 and not np.isin(row[P:-1], ends).any()      # EOS only at the end
        assert n == 5 or row[-1] in ends
        assert all(t == 0 for t in full[P + n:])                       # pad after it
        expected = recomputed_score(model, row, P, n, temperature, alpha)
        np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-4)


def test_the_early_stopping_modes_and_num_return_sequences_work_with_sampling():
    # one prompt: runs with the same seed are the same until one stops, and True stops no
    # later than False, False no later than "never" (length_penalty > 0)
    model, ended, differ = tiny_model(0, V=6), 0, 0
    for seed in range(4):
        steps, outputs = {}, set()
        for early in (True, False, "never"):
            calls = []
            kwargs = dict(max_new_tokens=8, num_beams=3, do_sample=True, seed=seed, eos_token_id=2,
                          pad_token_id=0, early_stopping=early, length_penalty=1.5, temperature=1.3)
            every = generate(model, [1, 4], num_return_sequences=3, callback=lambda *a: calls.append(a),
                             **kwargs)
            best = generate(model, [1, 4], num_return_sequences=2, **kwargs)
            assert best.sequences.shape[0] == 2 and every.sequences.shape[0] == 3
            np.testing.assert_array_equal(best.scores, every.scores[:2])
            np.testing.assert_array_equal(best.sequences, every.sequences[:2, :best.sequences.shape[1]])
            steps[early], ended = len(calls), ended + int((every.num_new_tokens < 8).sum())
            outputs.add(every.sequences.tobytes())
        assert steps[True] <= steps[False] <= steps["never"], steps
        differ += len(outputs) > 1
    assert ended >= 3 and differ >= 2, (ended, differ)


def test_same_seed_same_output_and_each_prompt_draws_from_its_own_generator():
    model = tiny_model(5)
    kwargs = dict(max_new_tokens=6, num_beams=3, do_sample=True, num_return_sequences=3, top_k=5)
    a = generate(model, [[1, 2], [3, 4]], seed=11, **kwargs)
    np.testing.assert_array_equal(a.sequences, generate(model, [[1, 2], [3, 4]], seed=11, **kwargs).sequences)
    np.testing.assert_array_equal(a.scores, generate(model, [[1, 2], [3, 4]], seed=11, **kwargs).scores)
    alone = generate(model, [[1, 2]], seed=11, **kwargs)        # prompt 0's Generator is the same
    np.testing.assert_array_equal(alone.sequences, a.sequences[:3])
    others = {generate(model, [[1, 2]], seed=s, **kwargs).sequences.tobytes() for s in range(12, 18)}
    assert len(others | {alone.sequences.tobytes()}) > 1, "the seed changes nothing"


@pytest.mark.parametrize("K, eos", [(2, None), (3, 4), (4, [2, 6])])
def test_temperature_to_zero_is_beam_search(K, eos):
    for seed in range(3):
        model = tiny_model(seed, V=11)
        kwargs = dict(max_new_tokens=7, num_beams=K, num_return_sequences=K, eos_token_id=eos,
                      pad_token_id=0)
        beam = generate(model, [seed, 1, 2], **kwargs)
        zero = generate(model, [seed, 1, 2], do_sample=True, temperature=0.0, seed=seed, **kwargs)
        np.testing.assert_array_equal(zero.sequences, beam.sequences)
        np.testing.assert_array_equal(zero.scores, beam.scores)
        cold = generate(model, [seed, 1, 2], do_sample=True, temperature=1e-6, seed=seed, **kwargs)
        np.testing.assert_array_equal(cold.sequences, beam.sequences)
        np.testing.assert_allclose(cold.scores * 1e-6, beam.scores, rtol=1e-5, atol=1e-6)
        warm = generate(model, [seed, 1, 2], do_sample=True, temperature=1.0, seed=seed, **kwargs)
        assert warm.sequences.shape[0] == K                            # (and it may differ)


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 8), min_size=1, max_size=3),
       st.sampled_from([1.0, 0.5]), st.sampled_from([0.0, 1.0, 2.0]))
def test_two_beams_with_top_k_1_are_beam_search(seed, prompt, temperature, alpha):
    # the warpers keep 2 tokens per beam, so 2 beams draw all 4 live candidates; the best 2
    # of every beam hold the best 2 overall, and without EOS only those 2 are used
    model, kwargs = tiny_model(seed), dict(max_new_tokens=5, num_beams=2, num_return_sequences=2,
                                           length_penalty=alpha)
    beam = generate(model, prompt, **kwargs)
    drawn = generate(model, prompt, do_sample=True, top_k=1, temperature=temperature, seed=seed, **kwargs)
    np.testing.assert_array_equal(drawn.sequences, beam.sequences)
    np.testing.assert_allclose(drawn.scores * temperature, beam.scores, rtol=1e-6, atol=1e-6)


def test_more_beams_with_top_k_1_are_not_beam_search():
    # three beams still keep only 2 tokens each (transformers' rule), so a beam's third best
    # token, which beam search may take, is never drawn: the results differ on some models
    differ = 0
    for seed in range(6):
        kwargs = dict(max_new_tokens=6, num_beams=3, num_return_sequences=3)
        beam = generate(tiny_model(seed), [1, 2], **kwargs)
        drawn = generate(tiny_model(seed), [1, 2], do_sample=True, top_k=1, seed=seed, **kwargs)
        differ += beam.sequences.tolist() != drawn.sequences.tolist()
    assert differ >= 1


# ---------------------------------------------------------------------------- stream
@pytest.mark.parametrize("kwargs", [dict(), dict(do_sample=True, seed=4, top_p=0.9),
                                    dict(eos_token_id=3, pad_token_id=0, num_return_sequences=2)])
def test_stream_with_beams_yields_the_best_running_beam_then_generates_best_sequence(kwargs):
    model = tiny_model(8)
    ids, mask = [[0, 5, 1], [2, 6, 7]], [[0, 1, 1], [1, 1, 1]]
    options = dict(max_new_tokens=6, num_beams=3, **kwargs)
    yields = list(stream(model, ids, attention_mask=mask, **options))
    out = generate(model, ids, attention_mask=mask, **options)
    n = options.get("num_return_sequences", 1)
    assert all(y.dtype == np.int64 and y.shape[0] == 2 for y in yields)
    np.testing.assert_array_equal(yields[-1], out.sequences[::n, 3:])
    for t, best in enumerate(yields[:-1], start=1):                 # step t: the best running beam
        assert best.shape == (2, t)
        if "eos_token_id" not in kwargs:                           # = the best of a t-step search
            shorter = generate(model, ids, attention_mask=mask, **dict(options, max_new_tokens=t))
            np.testing.assert_array_equal(best, shorter.sequences[::n, 3:])


def test_stream_with_beams_can_change_its_mind():
    # the best running beam at one step need not extend the one before: over a few models
    # some later yield does not start with the earlier one
    changed = 0
    for seed in range(8):
        yields = list(stream(tiny_model(seed), [1, 2], max_new_tokens=6, num_beams=3))
        changed += any((later[:, :len(earlier[0])] != earlier).any()
                       for earlier, later in zip(yields, yields[1:]))
    assert changed >= 1


def test_stream_with_beams_and_no_new_tokens_yields_the_empty_result():
    assert [y.shape for y in stream(tiny_model(0), [1, 2], max_new_tokens=0, num_beams=2)] == [(1, 0)]
