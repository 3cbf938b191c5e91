"""Invariants of generate(): beam search against greedy and brute force, scores against a
recomputation, determinism and independence of the rows of a batch."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import sampling
from npgpt.beam_search import beam_search
from npgpt._run import Run
from npgpt.generation import GenerationConfig, generate

from helpers import assert_greedy_up_to_rounding


def tiny_model(seed, V=7, context=10):
    cfg = npgpt.GPTConfig(vocab_size=V, context_length=context, d_model=8, num_heads=2, num_layers=1)
    model = npgpt.GPT(cfg, seed=seed, init="torch", dtype=np.float64)
    return model


def sequence_logprob(model, seq, P):
    """sum of log p(seq[t] | seq[:t]) over t >= P, one forward pass (float64)."""
    logp = sampling.log_softmax(model(np.asarray(seq)))
    return float(sum(logp[t - 1, seq[t]] for t in range(P, len(seq))))


seeds = st.integers(0, 10_000)
prompts = st.lists(st.integers(0, 6), min_size=1, max_size=4)


@settings(max_examples=15)
@given(seeds, prompts, st.integers(1, 6))
def test_beam_search_with_one_beam_equals_greedy(seed, prompt, n):
    model = tiny_model(seed)
    assert generate(model, prompt, max_new_tokens=n, num_beams=1).sequences.tolist() == \
        generate(model, prompt, max_new_tokens=n).sequences.tolist()
    # and through the beam-search code itself (generate() sends num_beams=1 to greedy)
    beam = beam_search(Run(model, prompt, None, GenerationConfig(max_new_tokens=n), None))
    assert beam.sequences.tolist() == generate(model, prompt, max_new_tokens=n).sequences.tolist()


@settings(max_examples=15)
@given(seeds, prompts, st.integers(2, 5), st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       st.sampled_from([True, False, "never"]), st.booleans())
def test_returned_beams_are_distinct_sorted_and_scores_are_logprob_over_length_power(
        seed, prompt, beams, alpha, early, with_eos):
    model = tiny_model(seed)
    eos = 3 if with_eos else None
    out = generate(model, prompt, max_new_tokens=5, num_beams=beams, num_return_sequences=beams,
                   length_penalty=alpha, early_stopping=early, eos_token_id=eos, pad_token_id=0)
    P = len(prompt)
    rows = [tuple(r[:P + n]) for r, n in zip(out.sequences.tolist(), out.num_new_tokens)]
    assert len(set(rows)) == len(rows), "returned beams are not distinct"
    assert (np.diff(out.scores) <= 1e-6).all(), "returned beams are not sorted by score"
    for row, n, score in zip(rows, out.num_new_tokens, out.scores):
        expected = sequence_logprob(model, row, P) / n ** alpha
        np.testing.assert_allclose(score, expected, rtol=0, atol=1e-4)
        if eos is not None and n < 5:
            assert row[-1] == eos


@settings(max_examples=12)
@given(seeds, st.integers(2, 3), st.integers(1, 3), st.sampled_from([0.0, 1.0]))
def test_beam_width_at_least_v_to_the_steps_finds_the_brute_force_optimum(seed, V, steps, alpha):
    model = tiny_model(seed, V=V)
    prompt = [0, 1]
    width = V ** steps
    out = generate(model, prompt, max_new_tokens=steps, num_beams=width, num_return_sequences=width,
                   length_penalty=alpha)
    scored = sorted(((sequence_logprob(model, prompt + list(c), 2), c)
                     for c in itertools.product(range(V), repeat=steps)), reverse=True)
    assert tuple(out.sequences[0, 2:]) == scored[0][1]
    np.testing.assert_allclose(out.scores[0], scored[0][0] / steps ** alpha, atol=1e-6)
    # every candidate is returned, in the brute-force order
    np.testing.assert_allclose(out.scores, [s / steps ** alpha for s, _ in scored], atol=1e-6)


@settings(max_examples=10)
@given(seeds, st.integers(0, 2 ** 32))
def test_same_seed_gives_identical_output(seed, sample_seed):
    model = tiny_model(seed)
    kw = dict(max_new_tokens=6, do_sample=True, top_p=0.9, temperature=1.3, seed=sample_seed)
    a = generate(model, [[1, 2], [3, 4]], **kw)
    b = generate(model, [[1, 2], [3, 4]], **kw)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.scores, b.scores)


@settings(max_examples=10)
@given(seeds, st.integers(0, 2 ** 32), prompts, prompts)
def test_a_rows_samples_do_not_depend_on_the_other_rows(seed, sample_seed, other_a, other_b):
    model = tiny_model(seed)
    kw = dict(max_new_tokens=6, do_sample=True, top_k=4, seed=sample_seed)
    mine = [2, 5, 1, 3]

    def batch(other):
        P = max(len(mine), len(other))
        ids = [[0] * (P - len(mine)) + mine, [0] * (P - len(other)) + other]
        mask = [[0] * (P - len(mine)) + [1] * len(mine), [0] * (P - len(other)) + [1] * len(other)]
        return generate(model, ids, attention_mask=mask, **kw).sequences[0, P:]
    np.testing.assert_array_equal(batch(other_a), batch(other_b))


@settings(max_examples=10)
@given(seeds, st.lists(st.integers(0, 6), min_size=1, max_size=14), st.integers(1, 12))
def test_generation_past_the_context_sees_the_last_context_length_tokens(seed, prompt, n):
    model = tiny_model(seed, context=6)
    ids = generate(model, prompt, max_new_tokens=n).sequences[0].tolist()
    assert len(ids) == len(prompt) + n and ids[:len(prompt)] == prompt
    assert_greedy_up_to_rounding(model, ids, len(prompt))     # nanoGPT's loop
