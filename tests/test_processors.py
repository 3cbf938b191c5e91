"""The token-id processors (suppress_tokens, begin_suppress_tokens, bad_words_ids,
logit_bias, forced_eos_token_id) and stop strings: parity with transformers' processors, the
order of its processor list and its generate() (recorded in tests/fixtures/processors.npz and
processors_generate.json by tests/fixtures/make_processor_fixtures.py, plus live when
transformers imports), each rule as a property, and the stop-string semantics."""

import importlib.util
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npgpt
from npgpt import sampling as S
from npgpt._run import Run, StopStrings
from npgpt.generation import GenerationConfig, generate, stream
from npgpt.processors import Processors
from npgpt.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

from helpers import FIXTURES, skip_without

_spec = importlib.util.spec_from_file_location(
    "make_processor_fixtures", os.path.join(FIXTURES, "make_processor_fixtures.py"))
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

RECORDED = np.load(os.path.join(FIXTURES, "processors.npz"))
with open(os.path.join(FIXTURES, "processors_generate.json")) as _f:
    RECORDED_GENERATE = json.load(_f)

# npgpt's call for each processor of the fixture (same parameters as transformers')
NPGPT_CALLS = {
    "suppress": lambda x, ids: S.suppress_tokens(x, F.SUPPRESS),
    "begin_suppress_first_step": lambda x, ids: S.suppress_tokens(x, F.SUPPRESS),
    "begin_suppress_later_step": lambda x, ids: x,
    "bad_words": lambda x, ids: S.bad_words(x, ids, F.BAD_WORDS),
    "bad_words_eos": lambda x, ids: S.bad_words(x, ids, Processors(
        GenerationConfig(bad_words_ids=F.BAD_WORDS_WITH_EOS), x.shape[1], np.array(F.EOS_IDS)).bad_words),
    "sequence_bias": lambda x, ids: S.logit_bias(x, F.SEQUENCE_BIAS),
    "forced_eos_last_step": lambda x, ids: S.forced_eos(x, 4),
    "forced_eos_several": lambda x, ids: S.forced_eos(x, F.FORCED_EOS),
    "forced_eos_earlier_step": lambda x, ids: x,
}
# transformers' processor classes -> npgpt's steps, in the order npgpt documents
NPGPT_ORDER = {"SequenceBiasLogitsProcessor": "logit_bias",
               "RepetitionPenaltyLogitsProcessor": "repetition_penalty",
               "NoRepeatNGramLogitsProcessor": "no_repeat_ngram_size",
               "NoBadWordsLogitsProcessor": "bad_words_ids",
               "MinNewTokensLengthLogitsProcessor": "min_new_tokens",
               "ForcedEOSTokenLogitsProcessor": "forced_eos_token_id",
               "SuppressTokensLogitsProcessor": "suppress_tokens",
               "SuppressTokensAtBeginLogitsProcessor": "begin_suppress_tokens"}


def assert_same(got, expected, what):
    assert got.dtype == expected.dtype, what
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected), err_msg=f"{what}: -inf differ")
    kept = ~np.isneginf(expected)
    np.testing.assert_allclose(got[kept], expected[kept], rtol=0, atol=1e-6, err_msg=what)


def run_chain(options, logits, ids):
    """npgpt's processors in generate (``Run.process``) at the first new token, on logits
    (R, V) with histories ids (R, T) as the prompts."""
    V = logits.shape[1]
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=V, context_length=16, d_model=8, num_heads=2,
                                      num_layers=1), seed=0)
    run = Run(model, ids, None, GenerationConfig(**options), None)
    seq, mask, counts = run.buffers(1)
    assert run.needs_processing(0)
    return run.process(logits, seq, mask, counts, ids.shape[1], 0)


def char_model(seed=0, chars=F.CHARS):
    """The tiny GPT-2 of the fixtures (or a fresh one) with the 30-character tokenizer."""
    if seed == 0:
        model = F.D.tiny_model()
    else:
        model = npgpt.GPT(npgpt.GPTConfig(**F.D.TINY_GPT2), seed=10 + seed, init="torch")
        model.params["token_embedding.weight"] *= np.float32(0.5)
    model.tokenizer = CharTokenizer(chars)
    return model


@pytest.fixture(scope="module")
def gpt2_tiny():
    return char_model()


# ------------------------------------------------------------------ recorded parity
@pytest.mark.parametrize("name", sorted(F.PROCESSORS))
def test_processor_matches_recorded_transformers_processor(name):
    logits, ids = RECORDED["logits"], RECORDED["ids"]
    assert_same(NPGPT_CALLS[name](logits, ids), RECORDED[name], name)
    changed = not np.array_equal(RECORDED[name], logits)
    assert changed == (name not in ("begin_suppress_later_step", "forced_eos_earlier_step")), name


def test_recorded_bad_words_ban_where_the_prefix_matches_and_nowhere_else():
    banned = np.isneginf(RECORDED["bad_words"]) & ~np.isneginf(RECORDED["logits"])
    # [5] everywhere; [11, 17] rows 0, 1; [2, 8, 30] row 2 (not row 3: [9, 8]); [13, 33] row 4
    expected = {0: {5, 17}, 1: {5, 17}, 2: {5, 30}, 3: {5}, 4: {5, 33}, 5: {5}}
    assert {r: set(np.flatnonzero(banned[r]).tolist()) for r in range(6)} == expected


@pytest.mark.parametrize("name", sorted(F.CHAINS))
def test_processor_order_is_transformers_order(name):
    order = [NPGPT_ORDER[c] for c in RECORDED[f"chain_order_{name}"]]
    assert order == [step for step in NPGPT_ORDER.values() if step in order]
    assert_same(run_chain(F.CHAINS[name], RECORDED["logits"], RECORDED["ids"]),
                RECORDED[f"chain_{name}"], name)


def test_the_chain_fixture_tells_the_orders_apart():
    """Applying bias after the repetition penalty, or forced EOS before bad words, or
    suppress_tokens before forced EOS, would give other logits than the recorded ones."""
    logits, ids = RECORDED["logits"], RECORDED["ids"]
    first = F.CHAINS["first_step"]
    swapped = S.logit_bias(S.repetition_penalty(logits, ids, first["repetition_penalty"]), F.SEQUENCE_BIAS)
    in_order = S.repetition_penalty(S.logit_bias(logits, F.SEQUENCE_BIAS), ids, first["repetition_penalty"])
    kept = ~np.isneginf(RECORDED["chain_first_step"])
    assert np.abs(swapped - in_order)[kept].max() > 0.1
    last = RECORDED["chain_last_step"]
    assert (np.isfinite(last).sum(axis=1) == 2).all()          # 17 and 30 forced, 7 suppressed
    assert np.isneginf(S.bad_words(S.forced_eos(logits, [17, 30]), ids, F.BAD_WORDS)[[0, 2]]).sum() == 2 * 40 - 2


def case_options(case, table):
    name = case.split("/")[0]
    options = table[name]
    assert json.loads(json.dumps(options)) == RECORDED_GENERATE["cases" if table is F.GENERATE_CASES
                                                                 else "different"][case]["kwargs"]
    return options


@pytest.mark.parametrize("case", sorted(RECORDED_GENERATE["cases"]))
def test_generate_matches_recorded_transformers_generate(gpt2_tiny, case):
    recorded = RECORDED_GENERATE["cases"][case]
    options = case_options(case, F.GENERATE_CASES)
    out = generate(gpt2_tiny, recorded["prompt"], **options)
    assert out.sequences.tolist() == recorded["sequences"], case
    if recorded["scores"] is not None:
        np.testing.assert_allclose(out.scores, recorded["scores"], rtol=0, atol=1e-4)
    if options.get("num_beams", 1) == 1:       # every case changes plain greedy's continuation
        plain = generate(gpt2_tiny, recorded["prompt"], max_new_tokens=options["max_new_tokens"])
        assert out.sequences.tolist() != plain.sequences.tolist(), case


def test_stop_strings_differ_from_transformers_only_where_documented(gpt2_tiny):
    """transformers also stops on a stop string that starts in the prompt; npgpt matches the
    new text only, so there it continues as without the stop string, elsewhere it agrees."""
    decode, crossing = gpt2_tiny.tokenizer.decode, 0
    for case, recorded in RECORDED_GENERATE["different"].items():
        options = case_options(case, F.DIFFERENT_CASES)
        out = generate(gpt2_tiny, recorded["prompt"], **options)
        theirs, P = decode(recorded["sequences"][0]), len(recorded["prompt"])
        if any(s in theirs[P - len(s) + 1:] and s not in theirs[P:] for s in options["stop_strings"]):
            crossing += 1                         # a match across the prompt's end
            plain = generate(gpt2_tiny, recorded["prompt"], max_new_tokens=options["max_new_tokens"])
            assert out.sequences.tolist() == plain.sequences.tolist()
            assert len(recorded["sequences"][0]) < out.sequences.shape[1], case
        else:
            assert out.sequences.tolist() == recorded["sequences"], case
    assert crossing >= 1


# ---------------------------------------------------------------------- live parity
@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("seed", range(2))
def test_processors_match_live_transformers(seed):
    rng = np.random.default_rng(200 + seed)
    logits = (rng.normal(size=(8, 40)) * rng.uniform(0.5, 4)).astype(np.float32)
    ids = rng.integers(0, 20, size=(8, 12))
    ids[:3, -1], ids[3:5, -2:], ids[5, -1] = 11, [2, 8], 13
    for name, (cls, kwargs) in F.PROCESSORS.items():
        expected = F.run_transformers_processor(cls, kwargs, logits, ids)
        assert_same(NPGPT_CALLS[name](logits, ids), expected, f"{name} seed {seed}")
    hf = F.D.to_hf_gpt2(F.D.tiny_model())
    for name, options in F.CHAINS.items():
        expected, _ = F.run_transformers_chain(hf, options, logits, ids)
        assert_same(run_chain(options, logits, ids), expected, f"chain {name} seed {seed}")


@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("seed", [1])
def test_generate_matches_live_transformers_generate(seed):
    model = char_model(seed)
    hf, tokenizer = F.D.to_hf_gpt2(model), F.hf_char_tokenizer()
    prompt = np.random.default_rng(seed).integers(0, 30, size=6).tolist()
    free = generate(model, prompt, max_new_tokens=15).sequences[0, 6:]
    text = model.tokenizer.decode(free)
    cases = dict(F.GENERATE_CASES, stop_here=dict(max_new_tokens=15, stop_strings=[text[7:9], text[3:6]]),
                 suppress_here=dict(max_new_tokens=10, suppress_tokens=free[:3].tolist(),
                                    begin_suppress_tokens=free[3:4].tolist()))
    for name, options in cases.items():
        seqs, scores = F.run_transformers_generate(hf, prompt, options, tokenizer)
        out = generate(model, prompt, **options)
        assert out.sequences.tolist() == seqs, name
        if scores is not None:
            np.testing.assert_allclose(out.scores, scores, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- rules as properties
finite_logits = st.integers(1, 12).flatmap(lambda V: st.lists(
    st.lists(st.floats(-50, 50, width=32), min_size=V, max_size=V), min_size=1, max_size=4)
    ).map(lambda rows: np.array(rows, dtype=np.float32))


@given(finite_logits, st.data())
def test_suppressed_tokens_are_minus_inf_and_nothing_else_changes(logits, data):
    V = logits.shape[1]
    ids = data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=V))
    before = logits.copy()
    out = S.suppress_tokens(logits, ids)
    np.testing.assert_array_equal(logits, before)
    suppressed = np.isin(np.arange(V), ids)
    assert out.dtype == logits.dtype and np.isneginf(out[:, suppressed]).all()
    np.testing.assert_array_equal(out[:, ~suppressed], logits[:, ~suppressed])


@given(finite_logits, st.data())
def test_logit_bias_adds_exactly_the_bias_in_the_logits_dtype(logits, data):
    V = logits.shape[1]
    bias = data.draw(st.dictionaries(st.integers(0, V - 1), st.floats(-100, 100), max_size=V))
    out = S.logit_bias(logits, bias)
    assert out.dtype == logits.dtype
    for i in range(V):
        expected = logits[:, i] + np.float32(bias.get(i, 0.0))
        np.testing.assert_array_equal(out[:, i], expected)


def naive_bad_words(ids_row, V, words):
    banned = set()
    for word in words:
        prefix = list(word[:-1])
        if len(prefix) <= len(ids_row) and list(ids_row[len(ids_row) - len(prefix):]) == prefix:
            banned.add(word[-1])
    return [i in banned for i in range(V)]


@given(st.integers(2, 6), st.data())
def test_bad_words_are_banned_exactly_when_the_history_ends_with_their_prefix(V, data):
    R = data.draw(st.integers(1, 4))
    T = data.draw(st.integers(0, 6))
    ids = np.array(data.draw(st.lists(st.lists(st.integers(0, V - 1), min_size=T, max_size=T),
                                      min_size=R, max_size=R)), dtype=np.int64).reshape(R, T)
    words = data.draw(st.lists(st.lists(st.integers(0, V - 1), min_size=1, max_size=4), min_size=1, max_size=5))
    logits = np.zeros((R, V))
    out = S.bad_words(logits, ids, words)
    for r in range(R):
        assert np.isneginf(out[r]).tolist() == naive_bad_words(ids[r], V, words), (ids[r], words)
    assert (out[np.isfinite(out)] == 0).all()


@given(finite_logits, st.data())
def test_forced_eos_leaves_only_the_eos_ids_at_zero(logits, data):
    V = logits.shape[1]
    eos = data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=3))
    out = S.forced_eos(logits, eos)
    is_eos = np.isin(np.arange(V), eos)
    assert out.shape == logits.shape and out.dtype == logits.dtype
    assert (out[:, is_eos] == 0).all() and np.isneginf(out[:, ~is_eos]).all()
    assert (S.greedy(out) == min(eos)).all()


@given(finite_logits, st.data())
def test_process_applies_the_new_steps_in_transformers_order(logits, data):
    V = logits.shape[1]
    ids = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=3, max_size=3)))
    bias = {0: 1.5, V - 1: -2.0}
    words = [[V - 1], [int(ids[-1]), 0]]
    suppress = [V // 2]
    options = dict(logit_bias=bias, repetition_penalty=1.7, no_repeat_ngram_size=2,
                   bad_words_ids=words, suppress_tokens=suppress)
    try:
        x = S.repetition_penalty(S.logit_bias(logits, bias), ids, 1.7)
        expected = S.suppress_tokens(S.bad_words(S.no_repeat_ngram(x, ids, 2), ids, words), suppress)
    except ValueError:                               # every token removed: so in process too
        expected = None
    if expected is None or np.isneginf(expected).all(axis=-1).any():
        # a row left with no possible token (by any step, the last one too) is refused by name
        with pytest.raises(ValueError, match="all -inf"):
            S.process(logits, ids, **options)
        return
    np.testing.assert_array_equal(S.process(logits, ids, **options), expected)


# ----------------------------------------------------------- generate with the options
def small_model(seed=0, V=17):
    return npgpt.GPT(npgpt.GPTConfig(vocab_size=V, context_length=40, d_model=16, num_heads=2,
                                     num_layers=1), seed=seed)


@given(st.integers(0, 50), st.booleans())
def test_generated_tokens_obey_the_processors(seed, do_sample):
    model = small_model(seed % 5)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 17, size=(2, 4))
    free = generate(model, prompt, max_new_tokens=8).sequences[:, 4:]
    suppress, begin = free[0, :2].tolist(), free[1, :1].tolist()
    words = [[int(free[0, 2])], free[1, 1:3].tolist(), free[0, 3:6].tolist()]
    forced = int(rng.integers(17))
    options = dict(max_new_tokens=8, do_sample=do_sample, seed=seed, suppress_tokens=suppress,
                   begin_suppress_tokens=begin, bad_words_ids=words, forced_eos_token_id=forced)
    try:
        out = generate(model, prompt, **options)
    except ValueError as err:                    # forced EOS among the suppressed tokens
        assert forced in suppress and "every token was removed" in str(err)
        return
    new = out.sequences[:, 4:]
    assert not np.isin(new, suppress).any()
    assert not np.isin(new[:, 0], begin).any()
    assert (new[:, -1] == forced).all()                  # forced EOS overrides the bans before it
    for full in out.sequences.tolist():
        for t in range(4, len(full) - 1):               # no bad word ends at a new token
            assert not any(full[max(0, t + 1 - len(w)):t + 1] == w for w in words), (full, t)


def test_logit_bias_of_plus_100_forces_and_minus_100_bans():
    model = small_model(1)
    free = generate(model, [1, 2, 3], max_new_tokens=6).sequences[0, 3:]
    forced = generate(model, [1, 2, 3], max_new_tokens=6, logit_bias={11: 100.0}).sequences[0, 3:]
    assert forced.tolist() == [11] * 6
    top = int(free[0])
    banned = generate(model, [1, 2, 3], max_new_tokens=6, logit_bias={top: -100.0}).sequences[0, 3:]
    assert top in free.tolist() and top not in banned.tolist()
    sampled = generate(model, [[1, 2, 3]] * 4, max_new_tokens=20, do_sample=True, seed=0,
                       logit_bias={top: -100.0}).sequences[:, 3:]
    assert top not in sampled


def test_forced_eos_with_several_ids_is_the_lowest_in_greedy_and_any_in_sampling():
    model = small_model(3)
    out = generate(model, [1, 2], max_new_tokens=4, forced_eos_token_id=[9, 4, 13])
    assert out.sequences[0, -1] == 4 and out.num_new_tokens.tolist() == [4]
    last = generate(model, [[1, 2]] * 60, max_new_tokens=2, do_sample=True, seed=0,
                    forced_eos_token_id=[9, 4, 13]).sequences[:, -1]
    counts = np.bincount(last, minlength=17)
    assert set(np.flatnonzero(counts)) == {4, 9, 13} and counts.min(initial=60, where=counts > 0) >= 10


def test_a_bad_word_prefix_never_matches_left_padding():
    model = small_model(5)
    ids, mask = np.array([[7, 7, 1], [2, 3, 1]]), np.array([[0, 0, 1], [1, 1, 1]])
    out = generate(model, ids, attention_mask=mask, max_new_tokens=1, logit_bias={9: 50.0},
                   bad_words_ids=[[7, 1, 9], [3, 1, 9]])
    assert out.sequences[:, -1].tolist()[0] == 9 and out.sequences[1, -1] != 9


@pytest.mark.parametrize("option, value, message", [
    ("suppress_tokens", [1, 17], "suppress_tokens 17 is out of range \\[0, 17\\)"),
    ("begin_suppress_tokens", 30, "begin_suppress_tokens 30 is out of range \\[0, 17\\)"),
    ("bad_words_ids", [[1], [2, 99]], "bad_words_ids 99 is out of range \\[0, 17\\)"),
    ("logit_bias", {3: 1.0, 17: -1.0}, "logit_bias 17 is out of range \\[0, 17\\)"),
    ("forced_eos_token_id", [2, 20], "forced_eos_token_id 20 is out of range \\[0, 17\\)"),
    ("logit_bias", {3: float("inf")}, "logit_bias\\[3\\] must be a finite number"),
    ("bad_words_ids", [[]], "bad_words_ids is an empty list"),
    ("stop_strings", ["ab"], "stop_strings=\\['ab'\\] need the model's tokenizer"),
])
def test_bad_processor_options_raise_naming_the_option(option, value, message):
    with pytest.raises(ValueError, match=message):
        generate(small_model(), [[1, 2, 3]], **{option: value})


def test_suppressing_every_token_raises():
    with pytest.raises(ValueError, match="every token was removed at step 0"):
        generate(small_model(), [1, 2], suppress_tokens=list(range(17)))


def test_sampling_process_checks_the_new_options():
    with pytest.raises(ValueError, match="need ids"):
        S.process(np.zeros(4), bad_words_ids=[[1, 2]])
    assert np.isneginf(S.process(np.zeros(4), bad_words_ids=[[1]])[1])
    with pytest.raises(ValueError, match="suppress_tokens 4 is out of range"):
        S.process(np.zeros(4), suppress_tokens=[4])


# ------------------------------------------------------------------------ stop strings
CHARS = "abcdefghijklmnopq"                                    # 17 tokens


def stop_model(seed):
    model = small_model(seed)
    model.tokenizer = CharTokenizer(CHARS)
    return model


def text_of(model, tokens):
    return model.tokenizer.decode([int(t) for t in tokens])


@given(st.integers(0, 200), st.booleans(), st.integers(1, 3))
def test_a_row_stops_at_its_stop_string_and_can_drop_it(seed, do_sample, length):
    model = stop_model(seed % 4)
    prompt = np.random.default_rng(seed).integers(0, 17, size=(2, 3))
    kwargs = dict(max_new_tokens=16, do_sample=do_sample, seed=seed, num_return_sequences=2 if do_sample else 1)
    free = generate(model, prompt, **kwargs)
    text = text_of(model, free.sequences[0, 3:])
    at = seed % (16 - length)
    stop = text[at:at + length]                               # row 0 surely meets it
    kept = generate(model, prompt, stop_strings=[stop, "zz" * 9], **kwargs)
    dropped = generate(model, prompt, stop_strings=stop, include_stop_string=False, **kwargs)
    for r in range(len(free.sequences)):
        full = text_of(model, free.sequences[r, 3:])
        n, m = int(kept.num_new_tokens[r]), int(dropped.num_new_tokens[r])
        first = full.find(stop)
        if first < 0:
            assert n == m == 16 and kept.sequences[r].tolist() == free.sequences[r].tolist()
            continue
        assert n == first + length and m == first              # one character per token
        assert kept.sequences[r, :3 + n].tolist() == free.sequences[r, :3 + n].tolist()
        assert dropped.sequences[r, :3 + m].tolist() == free.sequences[r, :3 + m].tolist()
        assert (kept.sequences[r, 3 + n:] == 0).all() and (dropped.sequences[r, 3 + m:] == 0).all()
        for out, k in ((kept, n), (dropped, m)):               # the score of the kept tokens
            alone = generate(model, prompt, **dict(kwargs, max_new_tokens=max(k, 1)))
            expected = alone.scores[r] if k else 0.0
            # float32 log-probs: with max_new_tokens=1 `alone` runs without the KV cache
            # (inference.last_logits), equal to the cached pass up to rounding, a float32
            # step of a logit (~1e-6 near 10) per token, at most 16 tokens.
            np.testing.assert_allclose(out.scores[r], expected, rtol=0, atol=2e-5)


def scripted_model(successor, tokenizer):
    """A GPT whose greedy choice after token t is ``successor[t]`` (a permutation of the
    vocabulary), every other token tied second: embeddings one-hot, blocks zero (each adds
    nothing to the residual), the output layer reads the current token's slot."""
    V = len(successor)
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=V, context_length=32, d_model=V, num_heads=1,
                                      num_layers=1, tie_embeddings=False), seed=0)
    for value in model.params.values():
        value[...] = 0
    model.params["token_embedding.weight"][...] = 10 * np.eye(V)
    model.params["ln_final.weight"][...] = 1
    model.params["output_layer.weight"][successor, np.arange(V)] = 1       # row successor[t] reads t
    model.tokenizer = tokenizer
    return model


WORDS = ["the", "cat", "sat", "on", "mat", "a"]
# the -> cat -> sat -> on -> a -> mat -> the: from prompt "mat", "the cat sat on a mat the ..."
WORD_SCRIPT = [1, 2, 3, 5, 0, 4]


def test_the_scripted_model_follows_its_script():
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    out = generate(model, [4], max_new_tokens=8)
    assert model.tokenizer.decode(out.sequences[0, 1:]) == "the cat sat on a mat the cat"


def test_begin_suppress_applies_at_the_first_new_token_only():
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    out = generate(model, [4], max_new_tokens=8, begin_suppress_tokens=[0]).sequences[0, 1:]
    # "the" is banned first, so the tied runner-up with the lowest id, "cat", comes first
    assert model.tokenizer.decode(out) == "cat sat on a mat the cat sat"


def test_a_bad_word_that_is_an_eos_id_is_not_banned_as_in_transformers():
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    out = generate(model, [4], max_new_tokens=6, eos_token_id=2, bad_words_ids=[[2]])
    assert out.sequences[0, 1:].tolist() == [0, 1, 2] and out.num_new_tokens.tolist() == [3]
    banned = generate(model, [4], max_new_tokens=6, bad_words_ids=[[2]]).sequences[0, 1:]
    assert model.tokenizer.decode(banned) == "the cat the cat the cat"   # the runner-up for "sat"


def test_a_stop_string_inside_tokens_keeps_the_completing_token_or_drops_every_token_it_touches():
    """Stop string "at s" starts inside " cat" and ends inside " sat". include_stop_string=True
    keeps the whole of " sat" (text past the stop string too, as transformers); False drops
    every token holding a byte of it: " cat" goes too, though its "c" comes before it."""
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    kept = generate(model, [4], max_new_tokens=8, stop_strings="at s")
    dropped = generate(model, [4], max_new_tokens=8, stop_strings="at s", include_stop_string=False)
    assert kept.num_new_tokens.tolist() == [3] and dropped.num_new_tokens.tolist() == [1]
    assert model.tokenizer.decode(kept.sequences[0, 1:4]) == "the cat sat"
    assert dropped.sequences[0].tolist() == [4, 0] + [0] * 2           # padding: pad id 0
    np.testing.assert_allclose(dropped.scores, generate(model, [4], max_new_tokens=1).scores, rtol=0, atol=0)
    np.testing.assert_allclose(kept.scores, generate(model, [4], max_new_tokens=3).scores, rtol=0, atol=0)
    assert kept.scores[0] < dropped.scores[0] < 0
    # two stop strings completed by the same token: the cut is before the earlier one
    both = generate(model, [4], max_new_tokens=8, stop_strings=["sat", "cat sat"], include_stop_string=False)
    assert both.num_new_tokens.tolist() == [1]


def test_a_stop_string_split_inside_a_utf8_character_matches_its_bytes():
    """Byte-level BPE: "é" is two byte tokens (0xC3, 0xA9). The stop string "é" is met when
    its second byte arrives; without the stop string, the bytes before it are kept."""
    text = "hé!".encode("utf-8")                                  # 68 C3 A9 21
    model = scripted_model(_permutation_through([ord("x")] + list(text)), BPETokenizer([]))
    free = generate(model, [ord("x")], max_new_tokens=4).sequences[0, 1:]
    assert bytes(free.tolist()) == text
    for stop, include, n in (("é", True, 3), ("é", False, 1), ("é!", False, 1), ("h", False, 0), ("!", True, 4)):
        out = generate(model, [ord("x")], max_new_tokens=4, stop_strings=stop, include_stop_string=include)
        assert out.num_new_tokens.tolist() == [n], (stop, include)
        assert out.sequences[0, 1:1 + n].tolist() == free[:n].tolist()


def _permutation_through(cycle, V=256):
    """A permutation of range(V) that maps cycle[i] -> cycle[i + 1] (and the last to the
    first), every other id to itself."""
    successor = list(range(V))
    for a, b in zip(cycle, cycle[1:] + cycle[:1]):
        successor[a] = b
    return successor


def test_stream_stops_with_the_stop_string_and_yields_padding_after_it():
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    streamed = [t.tolist() for t in stream(model, [[4], [1]], max_new_tokens=8, stop_strings=["on a"])]
    out = generate(model, [[4], [1]], max_new_tokens=8, stop_strings=["on a"])
    assert np.stack(streamed, axis=1).tolist() == out.sequences[:, 1:].tolist()
    # row 0: the cat sat on a (5 tokens); row 1 (after "cat"): sat on a (3), then padding
    assert out.num_new_tokens.tolist() == [5, 3] and len(streamed) == 5


def naive_first_stop(tokenizer, ids, stops):
    """The first n such that decode(ids[:n]) contains a stop string (None if none)."""
    for n in range(1, len(ids) + 1):
        if any(s in tokenizer.decode(ids[:n]) for s in stops):
            return n
    return None


TOKENIZERS = {
    "bpe": BPETokenizer.train("héllo wörld, € l'été à côté" * 3, vocab_size=275),
    "char": CharTokenizer("ab é€\n"),
    "word": WordTokenizer(["a", "b", "ab", "é", "ba"]),
}


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
@given(st.data())
def test_incremental_stop_string_search_equals_decoding_the_whole_text(kind, data):
    tok = TOKENIZERS[kind]
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), min_size=1, max_size=30))
    text = tok.decode(ids)
    stops = data.draw(st.lists(st.one_of(
        st.text(alphabet="ab é€lo", min_size=1, max_size=4),
        st.integers(0, len(text) - 1).flatmap(lambda i: st.integers(i + 1, min(i + 5, len(text))).map(
            lambda j: text[i:j]))), min_size=1, max_size=3))
    stops = [s for s in stops if "\ufffd" not in s] or ["zz"]
    finder = StopStrings(tok, stops, 1)
    found = None
    for n, token in enumerate(ids, start=1):
        start = finder.add(0, token, -float(n))
        if start is not None:
            found = n
            break
    assert found == naive_first_stop(tok, ids, stops)
    if found is not None:                       # the cut: tokens wholly before the match
        raw = b"".join(_bytes_of(tok, ids[:found]))
        first = min(raw.find(s.encode()) for s in stops if raw.find(s.encode()) >= 0)
        assert start == first
        k, score = finder.kept(0, start)
        assert len(b"".join(_bytes_of(tok, ids[:k]))) <= start < len(b"".join(_bytes_of(tok, ids[:k + 1])))
        assert score == (-float(k) if k else 0.0)


def _bytes_of(tok, ids):
    """Each token's bytes in the text of ids (decoding prefixes: slow, for the check only)."""
    if hasattr(tok, "token_bytes"):
        return [tok.token_bytes(i) for i in ids]
    texts = [tok.decode(ids[:n]).encode() for n in range(len(ids) + 1)]
    return [b[len(a):] for a, b in zip(texts, texts[1:])]


def test_the_stop_string_search_costs_the_same_per_token_however_long_the_text():
    """Each step decodes at most two tokens per row and searches at most the longest stop
    string's length plus the new token's bytes: no work grows with the text."""
    class Counting(CharTokenizer):
        calls = []

        def decode(self, ids):
            self.calls.append(len(ids))
            return super().decode(ids)
    model = stop_model(0)
    model.tokenizer = Counting(CHARS)
    out = generate(model, [[1, 2], [3, 4]], max_new_tokens=36, stop_strings=["qqqqqqqqq", "pp"])
    steps = int(out.num_new_tokens.sum())
    assert max(Counting.calls) <= 2 and len(Counting.calls) <= 2 * steps
    finder = StopStrings(CharTokenizer(CHARS), ["abcd"], 1)
    for token in range(200):
        finder.add(0, token % 17, 0.0)
        assert len(finder.tail[0]) <= 3


def test_beam_search_helpers_find_without_adding_and_reorder_rows_apart():
    finder = StopStrings(CharTokenizer(CHARS), ["bc"], 2)
    finder.add(0, 1, -1.0)                                   # row 0: "b"
    finder.add(1, 0, -2.0)                                   # row 1: "a"
    assert finder.find(0, 2) == 0 and finder.find(1, 2) is None
    assert finder.ends == [[1], [1]]                         # find changed nothing
    finder.reorder([0, 0])                                   # both rows continue row 0
    assert finder.add(1, 2, -3.0) == 0 and finder.ends == [[1], [1, 2]]
    assert finder.kept(1, 0) == (0, 0.0) and finder.kept(1, 1) == (1, -1.0)


def test_a_tokenizer_whose_text_cannot_be_decoded_token_by_token_is_refused():
    class Joining(CharTokenizer):
        def decode(self, ids):
            return "+".join(super().decode(ids))[::-1]
    model = stop_model(0)
    model.tokenizer = Joining(CHARS)
    with pytest.raises(ValueError, match="cannot be decoded token by token"):
        generate(model, [1, 2], max_new_tokens=5, stop_strings=["zz"])
