"""``context_overflow="slide"``: a rotary-positions model keeps its KV cache past the context,
dropping the oldest slot before each new token, while position ids go on counting.

What it promises, checked here against the exact recompute (the model run on the last
``context_length`` tokens, positions from 0):

- one layer: the same logits at every step past the context (rotary attention scores depend
  only on query - key distances, and the one layer's keys and values depend only on their own
  token), so the same greedy tokens and the same samples;
- two layers: different logits (the second layer's cached keys were computed when their
  tokens could still see tokens that have left the window) — an approximation;
- batches with left padding, EOS, stream(), beam search and speculative decoding;
- learned positions refuse it, naming the option and ``config.positions``.

Float64 models: the comparisons are up to rounding.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt._decoder import Decoder
from npgpt.cli import build_parser
from npgpt.generation import GenerationConfig, generate, stream


def rotary_model(num_layers=1, context_length=6, vocab_size=11, num_kv_heads=None, seed=0,
                 dtype=np.float64):
    cfg = npgpt.GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=16,
                          num_heads=4, num_layers=num_layers, norm="rmsnorm", positions="rope",
                          mlp="swiglu", output_bias=False, num_kv_heads=num_kv_heads, ffn_dim=24)
    return npgpt.GPT(cfg, seed=seed, dtype=dtype, init="torch")


def decoder_logits(model, prompt, tokens, overflow, mask=None):
    """The Decoder's logits (1 + len(tokens), R, V): after the prompt (R, P), then after each
    of the tokens (R,) appended in turn."""
    decoder = Decoder(model, np.array(prompt, dtype=np.int64), mask, max_new=len(tokens) + 1,
                      pad=0, overflow=overflow)
    out = [decoder.first()]
    for t in tokens:
        decoder.append(np.asarray(t, dtype=np.int64))
        out.append(decoder.step())
    return np.stack(out)


def recomputed(model, history):
    """The exact recompute: the model on the last context_length tokens, its last logits (V,)."""
    C = model.config.context_length
    return model(np.array(history[-C:]))[-1]


def test_one_layer_slide_equals_exact_recompute_at_every_step():
    model = rotary_model(num_layers=1, context_length=6)
    rng = np.random.default_rng(0)
    prompt = [3, 1, 4, 1]
    tokens = rng.integers(0, 11, size=20)                   # 24 tokens: 4 contexts of 6
    slide = decoder_logits(model, [prompt], [[t] for t in tokens], "slide")[:, 0]
    history = list(prompt)
    for step, t in enumerate(list(tokens) + [None]):
        np.testing.assert_allclose(slide[step], recomputed(model, history), rtol=0, atol=1e-10)
        history.append(t)


@given(context_length=st.integers(1, 6), prompt_length=st.integers(1, 10), n=st.integers(1, 12),
       kv=st.sampled_from([None, 1, 2]), seed=st.integers(0, 100))
@settings(max_examples=30, deadline=None)
def test_one_layer_slide_equals_exact_property(context_length, prompt_length, n, kv, seed):
    """The invariant over contexts, prompt lengths (longer than the context too) and grouped
    key/value heads: one layer slides exactly."""
    model = rotary_model(num_layers=1, context_length=context_length, num_kv_heads=kv, seed=seed)
    rng = np.random.default_rng(seed)
    history = list(rng.integers(0, 11, size=prompt_length))
    tokens = rng.integers(0, 11, size=n)
    slide = decoder_logits(model, [history], [[t] for t in tokens], "slide")[:, 0]
    for step in range(n + 1):
        np.testing.assert_allclose(slide[step], recomputed(model, history), rtol=0, atol=1e-9)
        if step < n:
            history.append(tokens[step])


def test_two_layers_slide_differs_from_exact_past_the_context():
    """An approximation in deeper models: equal while the tokens fit, different after."""
    model = rotary_model(num_layers=2, context_length=6)
    prompt, tokens = [3, 1, 4, 1], [5, 9, 2, 6, 5, 3, 5, 8, 9, 7]
    slide = decoder_logits(model, [prompt], [[t] for t in tokens], "slide")[:, 0]
    exact = decoder_logits(model, [prompt], [[t] for t in tokens], "exact")[:, 0]
    fits = 6 - len(prompt) + 1                              # steps whose history fits the context
    np.testing.assert_allclose(slide[:fits], exact[:fits], rtol=0, atol=1e-10)
    gaps = np.abs(slide[fits:] - exact[fits:]).max(axis=1)
    assert (gaps > 1e-4).all(), f"two layers: slide should differ from exact, gaps {gaps}"


@pytest.mark.parametrize("options", [dict(do_sample=False),
                                     dict(do_sample=True, seed=3, temperature=1.3),
                                     dict(do_sample=True, seed=5, top_k=4)],
                         ids=["greedy", "sampling", "top-k"])
def test_one_layer_generate_slide_equals_exact(options):
    model = rotary_model(num_layers=1, context_length=5)
    exact = generate(model, [[2, 7, 1]], max_new_tokens=25, **options)
    slide = generate(model, [[2, 7, 1]], max_new_tokens=25, context_overflow="slide", **options)
    np.testing.assert_array_equal(slide.sequences, exact.sequences)
    np.testing.assert_allclose(slide.scores, exact.scores, rtol=0, atol=1e-9)


def test_left_padded_batch_rows_slide_as_alone():
    """A one-layer batch with left padding: every row's logits equal its own exact recompute,
    the batch samples as exact mode does, and greedy rows equal each prompt alone."""
    model = rotary_model(num_layers=1, context_length=5)
    prompts = [[4, 2, 9, 9, 1, 3], [0, 0, 0, 6, 5, 8], [0, 0, 0, 0, 0, 7]]
    mask = np.array([[True] * 6, [False] * 3 + [True] * 3, [False] * 5 + [True]])
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 11, size=(12, 3))
    slide = decoder_logits(model, prompts, tokens, "slide", mask=mask.copy())
    for row in range(3):
        history = [t for t, real in zip(prompts[row], mask[row]) if real]
        for step in range(len(tokens) + 1):
            np.testing.assert_allclose(slide[step, row], recomputed(model, history), rtol=0, atol=1e-9)
            if step < len(tokens):
                history.append(tokens[step, row])
    sampled = [generate(model, prompts, attention_mask=mask.astype(int), max_new_tokens=10,
                        context_overflow=mode, do_sample=True, seed=2) for mode in ("slide", "exact")]
    np.testing.assert_array_equal(sampled[0].sequences, sampled[1].sequences)
    out = generate(model, prompts, attention_mask=mask.astype(int), max_new_tokens=10,
                   context_overflow="slide")
    for row in range(3):
        alone = generate(model, [prompts[row][int((~mask[row]).sum()):]], max_new_tokens=10,
                         context_overflow="slide")
        assert out.sequences[row, 6:].tolist() == alone.sequences[0, -10:].tolist()


def test_two_layer_padded_batch_rows_slide_as_alone():
    """Padding is invisible also where slide is an approximation: a row's tokens are those
    of its prompt alone."""
    model = rotary_model(num_layers=2, context_length=4)
    prompts = [[1, 2, 3, 4, 5], [0, 0, 9, 8, 7]]
    mask = np.array([[1] * 5, [0, 0, 1, 1, 1]])
    out = generate(model, prompts, attention_mask=mask, max_new_tokens=12, context_overflow="slide")
    for row, start in ((0, 0), (1, 2)):
        alone = generate(model, [prompts[row][start:]], max_new_tokens=12, context_overflow="slide")
        assert out.sequences[row, 5:].tolist() == alone.sequences[0, -12:].tolist()


def test_eos_and_stream():
    model = rotary_model(num_layers=2, context_length=4)
    sample = dict(max_new_tokens=15, context_overflow="slide", do_sample=True, seed=0)
    new = generate(model, [[1, 2, 3]], **sample).sequences[0, 3:].tolist()
    stop = next(j for j in range(3, 15) if new[j] not in new[:j])    # past the context, a new token
    eos = new[stop]
    out = generate(model, [[1, 2, 3], [4, 5, 6]], eos_token_id=eos, pad_token_id=0, **sample)
    first = out.sequences[0, 3:].tolist()
    assert first[:stop + 1] == new[:stop + 1] and set(first[stop + 1:]) <= {0}
    assert out.num_new_tokens[0] == stop + 1
    steps = list(stream(model, [[1, 2, 3], [4, 5, 6]], eos_token_id=eos, pad_token_id=0, **sample))
    np.testing.assert_array_equal(np.stack(steps, axis=1)[:, :out.sequences.shape[1] - 3],
                                  out.sequences[:, 3:])


def test_beam_search_slide():
    """One layer: beam search with slide keeps exact mode's beams; two layers: it runs."""
    model = rotary_model(num_layers=1, context_length=5)
    exact = generate(model, [[2, 7, 1]], max_new_tokens=12, num_beams=3, num_return_sequences=2)
    slide = generate(model, [[2, 7, 1]], max_new_tokens=12, num_beams=3, num_return_sequences=2,
                     context_overflow="slide")
    np.testing.assert_array_equal(slide.sequences, exact.sequences)
    deep = generate(rotary_model(num_layers=2, context_length=5), [[2, 7, 1], [3, 3, 3]],
                    max_new_tokens=12, num_beams=3, context_overflow="slide")
    assert deep.sequences.shape == (2, 15)


@pytest.mark.parametrize("prompt", [[2, 7, 1], [1, 2, 3, 4, 5, 6, 7, 8]], ids=["short", "longer-than-context"])
def test_speculative_slide_gives_generates_tokens(prompt):
    """Greedy speculative decoding with slide gives generate's slide tokens, two layers."""
    model = rotary_model(num_layers=2, context_length=6, seed=1)
    draft = rotary_model(num_layers=1, context_length=6, seed=2)
    plain = generate(model, [prompt], max_new_tokens=20, context_overflow="slide")
    fast = generate(model, [prompt], max_new_tokens=20, context_overflow="slide", draft_model=draft)
    np.testing.assert_array_equal(fast.sequences, plain.sequences)


def test_slide_cache_stays_within_the_context():
    """Past the context slide feeds one token a step into a cache that never holds more than
    context_length slots, while the position ids go on counting."""
    model = rotary_model(num_layers=2, context_length=4)
    decoder = Decoder(model, np.array([[1, 2, 3]]), None, max_new=10, pad=0, overflow="slide")
    decoder.first()
    for t in range(9):
        decoder.append(np.array([t]))
        decoder.step()
        assert decoder.cache.length == min(4, 4 + t)
    assert decoder.cache.next_position.tolist() == [12]


def test_learned_positions_refuse_slide():
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=4, d_model=8, num_heads=2,
                                      num_layers=1), seed=0)
    with pytest.raises(ValueError, match=r"context_overflow='slide'.*config.positions='learned'"):
        generate(model, [1, 2, 3], max_new_tokens=8, context_overflow="slide")
    with pytest.raises(ValueError, match=r"config.positions='learned'"):
        list(stream(model, [1, 2, 3], max_new_tokens=8, context_overflow="slide"))


def test_generation_config_and_cli_accept_slide():
    assert GenerationConfig(context_overflow="slide").context_overflow == "slide"
    with pytest.raises(ValueError, match=r"'exact', 'chunk' or 'slide', got 'slid'"):
        GenerationConfig(context_overflow="slid")
    args = build_parser().parse_args(["generate", "--prompt", "a", "--context-overflow", "slide"])
    assert args.context_overflow == "slide"


# ------------------------------------------------------------------- KVCache.drop_oldest
@given(length=st.integers(1, 6), n=st.integers(0, 6), padded=st.booleans())
@settings(max_examples=40, deadline=None)
def test_drop_oldest_moves_the_newest_slots_to_the_front(length, n, padded):
    n = min(n, length)
    model = rotary_model(num_layers=2, context_length=6)
    cache = model.new_cache(batch_size=2, capacity=6)
    real = np.ones((2, length), dtype=bool)
    if padded:
        real[1, :length // 2] = False
    model(np.arange(2 * length).reshape(2, length) % 11, cache=cache,
          attention_mask=real.astype(int))
    k, v = cache.k[:, :, :, :length].copy(), cache.v[:, :, :, :length].copy()
    valid = None if cache.key_valid is None else cache.key_valid[:, :length].copy()
    positions = cache.next_position.copy()
    cache.drop_oldest(n)
    assert cache.length == length - n
    np.testing.assert_array_equal(cache.k[:, :, :, :length - n], k[:, :, :, n:])
    np.testing.assert_array_equal(cache.v[:, :, :, :length - n], v[:, :, :, n:])
    if valid is not None:
        np.testing.assert_array_equal(cache.key_valid[:, :length - n], valid[:, n:])
    np.testing.assert_array_equal(cache.next_position, positions)     # positions go on


@pytest.mark.parametrize("n", [-1, 4, 1.0, True, "1"])
def test_drop_oldest_rejects_bad_counts(n):
    model = rotary_model()
    cache = model.new_cache(capacity=6)
    model(np.array([[1, 2, 3]]), cache=cache)
    with pytest.raises(ValueError, match=r"n must be an integer in \[0, 3\]"):
        cache.drop_oldest(n)
