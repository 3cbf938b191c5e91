"""Bad numbers and bad options in decoding: NaN or infinite logits stop every decoding path with
a ValueError that says so, memory follows the tokens produced (not max_new_tokens), messages
name the user's parameter, and an empty history is a no-op for every history transform."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npgpt
import npgpt.inference
from npgpt import sampling as S
from npgpt import testing as kit

from helpers import assert_greedy_up_to_rounding

PATHS = [dict(), dict(do_sample=True, top_p=0.9), dict(num_beams=3), "stream"]


def tiny(seed=0, V=9, context=16):
    cfg = npgpt.GPTConfig(vocab_size=V, context_length=context, d_model=8, num_heads=2, num_layers=1)
    return npgpt.GPT(cfg, seed=seed, init="torch")


def decode(model, path, **kw):
    if path == "stream":
        return list(npgpt.stream(model, [1, 2, 3], **kw))
    return npgpt.generate(model, [1, 2, 3], **path, **kw)


@pytest.mark.parametrize("path", PATHS, ids=["greedy", "sampling", "beam", "stream"])
@pytest.mark.parametrize("damage", ["one NaN in the output bias", "all weights NaN"])
def test_nan_logits_raise_on_every_decoding_path(path, damage):
    model = tiny()
    if damage == "all weights NaN":
        for value in model.params.values():
            value[...] = np.nan
    else:
        model.params["output_layer.bias"][4] = np.nan
    with pytest.raises(ValueError, match="the model produced NaN logits at step 0"):
        decode(model, path, max_new_tokens=4)


@pytest.mark.parametrize("path", PATHS, ids=["greedy", "sampling", "beam", "stream"])
def test_an_infinite_logit_raises_rather_than_giving_a_nan_score(path):
    model = tiny()
    model.params["output_layer.bias"][4] = np.inf
    with pytest.raises(ValueError, match="infinite logits"):
        decode(model, path, max_new_tokens=4)


def test_nan_appearing_later_names_its_step(monkeypatch):
    model = tiny(V=9)
    calls = []
    forward = npgpt.inference.forward

    def breaks_at_the_third_call(*args, **kwargs):
        logits = forward(*args, **kwargs)
        calls.append(1)
        return logits * np.float32(np.nan) if len(calls) == 3 else logits
    monkeypatch.setattr(npgpt.inference, "forward", breaks_at_the_third_call)
    with pytest.raises(ValueError, match="NaN logits at step 2"):
        npgpt.generate(model, [1, 2], max_new_tokens=5)


@pytest.mark.parametrize("kw", [dict(), dict(num_beams=2)])
def test_memory_follows_the_tokens_produced_not_max_new_tokens(kw):
    model = tiny()
    eos = int(np.argmax(model([1, 2, 3])[-1]))            # greedy's first token: it stops at once
    tracemalloc.start()
    out = npgpt.generate(model, [1, 2, 3], max_new_tokens=10 ** 12, eos_token_id=eos, **kw)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000, peak
    assert out.sequences.shape[1] <= 3 + 2
    first = next(npgpt.stream(model, [1, 2, 3], max_new_tokens=10 ** 12, eos_token_id=eos))
    assert first.tolist() == [eos]


def test_buffers_that_grow_past_their_first_room_give_the_same_tokens_as_a_plain_loop():
    model = tiny(V=7, context=12)
    out = npgpt.generate(model, [1, 2], max_new_tokens=600)
    assert out.sequences.shape == (1, 602) and out.sequences[0, :2].tolist() == [1, 2]
    assert_greedy_up_to_rounding(model, out.sequences[0], 2)  # nanoGPT's loop, the last 12 tokens
    beams = npgpt.generate(model, [1, 2], max_new_tokens=300, num_beams=2)
    assert beams.sequences.shape == (1, 302) and beams.num_new_tokens.tolist() == [300]


def test_a_too_small_temperature_names_the_temperature():
    x = np.array([1.0, 2.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"temperature=1e-300 is too small"):
        S.temperature(x, 1e-300)
    with pytest.raises(ValueError, match=r"temperature=1e-40 is too small"):
        npgpt.generate(tiny(), [1, 2], do_sample=True, temperature=1e-40, max_new_tokens=2)
    np.testing.assert_array_equal(S.temperature(np.array([-np.inf, 1.0]), 1e-300)[0], -np.inf)


@pytest.mark.parametrize("kw, message", [
    (dict(do_sample="no"), "do_sample must be True or False, got 'no'"),
    (dict(do_sample=1), "do_sample must be True or False, got 1"),
    (dict(seed="x"), "seed must be None, a non-negative int or a numpy Generator, got 'x'"),
    (dict(seed=-1), "seed must be None"),
    (dict(seed=1.5), "seed must be None"),
    (dict(early_stopping="yes", num_beams=2), "early_stopping must be True, False or 'never'"),
])
def test_booleans_must_be_booleans_and_seeds_ints_or_generators_in_every_mode(kw, message):
    with pytest.raises(ValueError, match=message):
        npgpt.generate(tiny(), [1, 2], max_new_tokens=2, **kw)


def test_numpy_booleans_are_booleans():
    cfg = npgpt.GenerationConfig(do_sample=np.True_, early_stopping=np.False_, num_beams=1)
    assert cfg.do_sample is True and cfg.early_stopping is False


EMPTY = [np.zeros(0, dtype=np.int64), [], np.zeros((2, 0), dtype=np.int64)]


@given(kit.logits(min_rows=2, max_rows=2), st.sampled_from(range(len(EMPTY))), st.floats(0.1, 3.0),
       st.integers(1, 4))
def test_an_empty_history_is_a_no_op_for_every_history_transform(x, which, penalty, n):
    ids = EMPTY[which]
    np.testing.assert_array_equal(S.repetition_penalty(x, ids, penalty), x)
    np.testing.assert_array_equal(S.presence_frequency_penalty(x, ids, penalty, penalty), x)
    np.testing.assert_array_equal(S.no_repeat_ngram(x, ids, n), x)
    chain = dict(repetition_penalty=penalty, presence_penalty=penalty, frequency_penalty=penalty,
                 no_repeat_ngram_size=n)
    np.testing.assert_array_equal(S.process(x, ids, **chain), x)
    np.testing.assert_array_equal(S.distribution(x, ids, **chain), S.softmax(x))
