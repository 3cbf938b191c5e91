"""npgpt.generate: parity with transformers' generate() on a tiny GPT-2 (recorded in
tests/fixtures/decoding_generate.json, plus live when transformers imports), the KV cache
against a plain full-recompute loop, scores, batching, streaming and bad input."""

import importlib.util
import json
import os

import numpy as np
import pytest

import npgpt
from npgpt import sampling
from npgpt.generation import GenerateOutput, generate, stream

from helpers import FIXTURES, assert_greedy_up_to_rounding, skip_without, tiny_config

_spec = importlib.util.spec_from_file_location(
    "make_decoding_fixtures", os.path.join(FIXTURES, "make_decoding_fixtures.py"))
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

with open(os.path.join(FIXTURES, "decoding_generate.json")) as _f:
    RECORDED = json.load(_f)


def run_case(model, case):
    return generate(model, case["prompt"], attention_mask=case.get("attention_mask"), **case["kwargs"])


@pytest.fixture(scope="module")
def gpt2_tiny():
    return F.tiny_model()


# ------------------------------------------------------------------------ parity
def test_fixture_covers_every_mode():
    names = {name.split("/")[0] for name in RECORDED["cases"]}
    for mode in ("true", "false", "never"):
        for lp in ("0", "1", "2"):
            assert f"beam4_eos_{mode}_lp{lp}" in names
    assert {"greedy", "beam4", "padded_greedy", "padded_beam3"} <= names
    # the early-stopping modes must not all agree, or the fixture would not tell them apart
    differing = 0
    for lp in ("0", "1", "2"):
        for i in range(len(F.PROMPTS)):
            outs = {json.dumps(RECORDED["cases"][f"beam4_eos_{mode}_lp{lp}/{i}"]["sequences"])
                    for mode in ("true", "false", "never")}
            differing += len(outs) > 1
    assert differing >= 3


@pytest.mark.parametrize("name", sorted(RECORDED["cases"]))
def test_generate_matches_recorded_transformers_generate(gpt2_tiny, name):
    case = RECORDED["cases"][name]
    out = run_case(gpt2_tiny, case)
    assert out.sequences.dtype == np.int64
    assert out.sequences.tolist() == case["sequences"], name
    if case["scores"] is not None:
        np.testing.assert_allclose(out.scores, case["scores"], rtol=0, atol=1e-4)


@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("seed", range(2))
def test_generate_matches_live_transformers_generate(seed):
    model = npgpt.GPT(npgpt.GPTConfig(**F.TINY_GPT2), seed=10 + seed, init="torch")
    model.params["token_embedding.weight"] *= np.float32(0.5)
    hf = F.to_hf_gpt2(model)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 30, size=6).tolist()
    cases = [dict(max_new_tokens=12),
             dict(max_new_tokens=10, num_beams=4, num_return_sequences=3, eos_token_id=int(rng.integers(30)),
                  pad_token_id=1, length_penalty=float(rng.uniform(0, 2)),
                  early_stopping=["never", True, False][seed % 3])]
    for kwargs in cases:
        seqs, scores = F.run_transformers_generate(hf, prompt, kwargs)
        out = generate(model, prompt, **kwargs)
        assert out.sequences.tolist() == seqs, kwargs
        if scores is not None:
            np.testing.assert_allclose(out.scores, scores, rtol=0, atol=1e-4)


# ------------------------------------------------------------- against a naive loop
@pytest.mark.parametrize("prompt_len, new", [(3, 5), (6, 6), (4, 12), (15, 4), (1, 30)])
def test_greedy_with_cache_equals_full_recompute_even_past_the_context(prompt_len, new):
    model = npgpt.GPT(tiny_config(), seed=3)          # context_length 12
    prompt = np.random.default_rng(prompt_len).integers(0, 17, prompt_len)
    out = generate(model, prompt, max_new_tokens=new)
    assert out.sequences.shape == (1, prompt_len + new) and out.sequences[0, :prompt_len].tolist() == prompt.tolist()
    assert_greedy_up_to_rounding(model, out.sequences[0], prompt_len)    # nanoGPT's loop


def test_scores_equal_log_probs_recomputed_by_one_forward_pass():
    model = npgpt.GPT(tiny_config(), seed=4)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    for kwargs in (dict(), dict(do_sample=True, top_k=5, temperature=0.8, seed=1),
                   dict(do_sample=True, top_p=0.9, repetition_penalty=1.3, seed=2)):
        out = generate(model, prompt, max_new_tokens=8, **kwargs)
        logp = sampling.log_softmax(model.astype(np.float64)(out.sequences))    # (N, T, V)
        T = out.sequences.shape[1]
        expected = [sum(logp[r, t - 1, out.sequences[r, t]] for t in range(3, T)) for r in range(2)]
        np.testing.assert_allclose(out.scores, expected, rtol=0, atol=1e-4)


def test_scores_stay_exact_over_long_generations():
    model = npgpt.GPT(tiny_config(context_length=100), seed=4)
    out = generate(model, [[1, 2], [3, 4]], max_new_tokens=90, do_sample=True, temperature=1.5, seed=0)
    logp = sampling.log_softmax(model.astype(np.float64)(out.sequences))
    expected = [sum(logp[r, t - 1, out.sequences[r, t]] for t in range(2, 92)) for r in range(2)]
    np.testing.assert_allclose(out.scores, expected, rtol=0, atol=1e-3)
    assert out.num_new_tokens.tolist() == [90, 90]


def test_scores_stop_at_eos_and_rows_are_padded_after_it():
    model = npgpt.GPT(tiny_config(), seed=5)
    prompt = np.array([[1, 2, 3], [7, 8, 9]])
    free = generate(model, prompt, max_new_tokens=8)
    eos = int(free.sequences[0, 5])                       # row 0's third new token
    out = generate(model, prompt, max_new_tokens=8, eos_token_id=eos, pad_token_id=0)
    row = out.sequences[0].tolist()
    end = row.index(eos, 3)
    assert all(t == 0 for t in row[end + 1:])
    assert out.num_new_tokens[0] == end - 2
    logp = sampling.log_softmax(model.astype(np.float64)(out.sequences[:1, :end + 1]))[0]
    expected = sum(logp[t - 1, row[t]] for t in range(3, end + 1))
    np.testing.assert_allclose(out.scores[0], expected, atol=1e-4)


def test_min_new_tokens_bans_eos_until_reached():
    model = npgpt.GPT(tiny_config(), seed=5)
    free = generate(model, [1, 2, 3], max_new_tokens=6)
    eos = int(free.sequences[0, 3])                       # the very first greedy token
    out = generate(model, [1, 2, 3], max_new_tokens=6, eos_token_id=eos, min_new_tokens=3)
    assert eos not in out.sequences[0, 3:6].tolist()
    assert out.sequences[0, 3] != eos


def test_left_padded_rows_match_their_unpadded_generation():
    # float64: padding changes the length of attention's sums, which may round a float32
    # near-tie the other way
    model = npgpt.GPT(tiny_config(), seed=6, dtype=np.float64)
    rows = [[5, 6, 7, 8, 9], [3, 4], [11]]
    P = max(map(len, rows))
    ids = np.array([[0] * (P - len(r)) + r for r in rows])
    mask = np.array([[0] * (P - len(r)) + [1] * len(r) for r in rows])
    for kwargs in (dict(), dict(num_beams=3), dict(do_sample=True, top_k=4, seed=0)):
        out = generate(model, ids, attention_mask=mask, max_new_tokens=6, **kwargs)
        for i, r in enumerate(rows):
            alone = generate(model, r, max_new_tokens=6, **kwargs)
            if "seed" in kwargs:      # a row's generator is spawned by its index in the batch
                continue
            assert out.sequences[i, P:].tolist() == alone.sequences[0, len(r):].tolist(), (kwargs, i)


def test_streaming_yields_the_same_tokens_as_generate_and_callback_sees_them():
    model = npgpt.GPT(tiny_config(), seed=7)
    kwargs = dict(max_new_tokens=7, do_sample=True, top_p=0.9, seed=11)
    out = generate(model, [[1, 2], [3, 4]], **kwargs)
    streamed = np.stack(list(stream(model, [[1, 2], [3, 4]], **kwargs)), axis=1)
    np.testing.assert_array_equal(streamed, out.sequences[:, 2:])
    seen = []
    generate(model, [[1, 2], [3, 4]], callback=lambda step, tokens: seen.append((step, tokens.copy())), **kwargs)
    assert [s for s, _ in seen] == list(range(7))
    np.testing.assert_array_equal(np.stack([t for _, t in seen], axis=1), out.sequences[:, 2:])


def test_model_generate_delegates_and_output_type():
    model = npgpt.GPT(tiny_config(), seed=8)
    a = model.generate([1, 2, 3], max_new_tokens=4)
    b = generate(model, [1, 2, 3], max_new_tokens=4)
    assert isinstance(a, GenerateOutput) and a.sequences.tolist() == b.sequences.tolist()
    zero = generate(model, [1, 2, 3], max_new_tokens=0)
    assert zero.sequences.tolist() == [[1, 2, 3]] and zero.scores.tolist() == [0.0]


def test_num_return_sequences_with_sampling_repeats_each_prompt():
    model = npgpt.GPT(tiny_config(), seed=9)
    out = generate(model, [[1, 2], [3, 4]], max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=0)
    assert out.sequences.shape == (6, 7)
    assert out.sequences[:3, :2].tolist() == [[1, 2]] * 3 and out.sequences[3:, :2].tolist() == [[3, 4]] * 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(eos_token_id=17), "eos_token_id 17 is out of range \\[0, 17\\)"),
    (dict(eos_token_id=[1, -1]), "eos_token_id -1 is out of range"),
    (dict(pad_token_id=99), "pad_token_id 99 is out of range"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences \\(3\\) must be <= num_beams \\(2\\)"),
    (dict(num_return_sequences=2), "needs do_sample=True"),
    (dict(min_new_tokens=9, max_new_tokens=3), "min_new_tokens \\(9\\) exceeds max_new_tokens \\(3\\)"),
    (dict(early_stopping="sometimes"), "early_stopping must be True, False or 'never', got 'sometimes'"),
    (dict(num_beams=2, do_sample=True, num_return_sequences=3), "num_return_sequences \\(3\\) must be <= num_beams"),
    (dict(do_sample=True, top_p=1.5), "top_p must be in \\(0, 1\\], got 1.5"),
    (dict(do_sample=True, temperature=-0.5), "temperature must be in \\[0, inf\\), got -0.5"),
    (dict(max_new_tokens=-1), "max_new_tokens must be a non-negative integer, got -1"),
    (dict(num_beams=0), "num_beams must be a positive integer, got 0"),
    (dict(length_penalty=float("nan")), "length_penalty must be finite"),
    (dict(attention_mask=[[1, 1, 0]]), "left padding"),
    (dict(seed=-3, do_sample=True), "seed must be None, a non-negative int"),
])
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, message):
    model = npgpt.GPT(tiny_config(), seed=0)
    with pytest.raises(ValueError, match=message):
        generate(model, [[1, 2, 3]], **kwargs)


def test_bad_ids_and_bad_beam_options_in_stream_raise():
    model = npgpt.GPT(tiny_config(), seed=0)
    with pytest.raises(ValueError, match="token ids out of range \\[0, 17\\): 40"):
        generate(model, [1, 40])
    with pytest.raises(ValueError, match="num_return_sequences \\(3\\) must be <= num_beams \\(2\\)"):
        next(stream(model, [1, 2], num_beams=2, num_return_sequences=3))


def test_a_generator_seed_is_drawn_from_once_per_run_and_never_by_the_config():
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=11, context_length=16, d_model=8, num_heads=2,
                                      num_layers=1), seed=3)
    rng = np.random.default_rng(5)
    cfg = npgpt.GenerationConfig(max_new_tokens=6, do_sample=True, seed=rng).replace(top_k=5)
    assert rng.bit_generator.state == np.random.default_rng(5).bit_generator.state
    first = generate(model, [1, 2], cfg).sequences
    expected = generate(model, [1, 2], cfg.replace(seed=np.random.default_rng(5))).sequences
    np.testing.assert_array_equal(first, expected)
    # the same Generator continues: a second run draws from where the first left it
    again = np.random.default_rng(5)
    again.integers(2 ** 63)
    np.testing.assert_array_equal(generate(model, [1, 2], cfg).sequences,
                                  generate(model, [1, 2], cfg.replace(seed=again)).sequences)


def test_the_greedy_check_up_to_rounding_fails_on_a_token_that_is_not_the_maximum():
    model = npgpt.GPT(tiny_config(), seed=3)
    ids = generate(model, [1, 2], max_new_tokens=4).sequences[0].tolist()
    assert_greedy_up_to_rounding(model, ids, 2)
    logits = model(np.array(ids[:4]))[-1]
    ids[4] = int(np.argmin(logits))                            # far below the maximum
    with pytest.raises(AssertionError, match="token 4"):
        assert_greedy_up_to_rounding(model, ids, 2)
