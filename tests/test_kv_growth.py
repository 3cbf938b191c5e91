"""The KV cache grows as tokens come: memory follows the tokens made, not ``max_new_tokens``
or ``context_length``.

A config may say ``max_position_embeddings = 2**31 - 1`` (Llama 3.1 says 131,072), and a
caller may ask for ``max_new_tokens=10**12`` that EOS ends after a few tokens: a cache sized
to the most that could come would ask for 64 GiB before the first token. So the cache's
``capacity`` is the most it may need and its allocation starts at the prompt plus a few
hundred slots, doubling up to the capacity (``npgpt.model.KVCache``).

What it promises, checked here:

- every decoding mode (exact, slide, chunk, beam search, speculative) on a model whose
  context is 2**31 - 1 runs a short generation in small memory (tracemalloc's peak);
- growth changes nothing computed: the cache's logits equal those of a cache allocated in
  full up front, bit for bit, through padding, reordering, dropping and truncating, and
  ``generate``'s outputs (tokens and scores) are the same in every mode, batch and beam
  width (properties).
"""

import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import _decoder
from npgpt.generation import generate
from properties.test_inference import batches, models

HUGE = 2 ** 31 - 1
EOS = 5
MODES = {
    "exact": dict(context_overflow="exact"),
    "slide": dict(context_overflow="slide"),
    "chunk": dict(context_overflow="chunk"),
    "beams": dict(num_beams=3),
    "sampling": dict(do_sample=True, seed=0, num_return_sequences=2),
    "draft": dict(draft="same"),
    "draft sampling": dict(draft="other", do_sample=True, seed=1),
}


def huge_context_model(seed=0):
    """A tiny rotary model whose context is 2**31 - 1, EOS favoured by a large bias (the
    generation ends as soon as min_new_tokens allows)."""
    cfg = npgpt.GPTConfig(vocab_size=16, context_length=HUGE, d_model=8, num_heads=2,
                          num_layers=2, norm="rmsnorm", positions="rope", mlp="swiglu",
                          num_kv_heads=1)
    model = npgpt.GPT(cfg, seed=seed)
    model.params["output_layer.bias"][EOS] = 100.0
    return model


def options(model, mode):
    kw = dict(MODES[mode])
    draft = kw.pop("draft", None)
    if draft is not None:
        kw["draft_model"] = model if draft == "same" else huge_context_model(seed=1)
    return kw


@pytest.mark.parametrize("mode", list(MODES))
def test_a_short_generation_with_a_huge_context_and_max_new_tokens_runs_in_small_memory(mode):
    model = huge_context_model()
    kw = options(model, mode)
    tracemalloc.start()
    try:
        out = generate(model, [[1, 2, 3], [4, 6, 7]], max_new_tokens=10 ** 12, eos_token_id=EOS,
                       min_new_tokens=3, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20, f"{mode}: peak {peak / 2 ** 20:.1f} MiB"
    assert out.sequences.shape[1] == 3 + 4 and (out.sequences[:, -1] == EOS).all()


def test_the_cache_allocates_what_it_holds_and_doubles():
    model = huge_context_model()
    cache = model.new_cache(batch_size=2, capacity=HUGE, reserve=4)
    assert (cache.capacity, cache.allocated) == (HUGE, 4)
    sizes = []
    for _ in range(20):
        model(np.array([[1], [2]]), cache=cache)
        sizes.append(cache.allocated)
    assert sizes == [4] * 4 + [8] * 4 + [16] * 8 + [32] * 4      # doubling: 3 copies for 20 tokens
    with pytest.raises(ValueError, match="reserve must be a positive integer, got 0"):
        model.new_cache(reserve=0)


def test_a_cache_stops_growing_at_its_capacity():
    model = huge_context_model()
    cache = model.new_cache(capacity=5, reserve=2)
    model(np.array([[1, 2, 3]]), cache=cache)
    assert cache.allocated == 4
    model(np.array([[1, 2]]), cache=cache)
    assert (cache.length, cache.allocated) == (5, 5)
    with pytest.raises(ValueError, match="has room for 5"):
        model(np.array([[1]]), cache=cache)


# --------------------------------------------------------------------- nothing computed changes
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_growing_cache_gives_the_logits_of_a_full_one_bit_for_bit(data):
    """Invariant: the allocation is invisible. The same tokens through a cache reserving one
    slot (so it grows at 1, 2, 4, ...) and a cache allocated in full give identical logits,
    whatever happens in between: padded prompts, beam reordering (to more or fewer rows),
    sliding (drop_oldest), speculative rollback (truncate)."""
    model = data.draw(models())
    ids, real = data.draw(batches(model))
    B, T = ids.shape
    capacity = model.config.context_length + 4
    grown, full = model.new_cache(B, capacity, reserve=1), model.new_cache(B, capacity)
    np.testing.assert_array_equal(model(ids, attention_mask=real, cache=grown),
                                  model(ids, attention_mask=real, cache=full))
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["step", "reorder", "drop", "truncate"]))
        if op == "reorder":
            rows = np.array(data.draw(st.lists(st.integers(0, grown.batch_size - 1), min_size=1, max_size=4)))
            grown.reorder(rows)
            full.reorder(rows)
        elif op == "drop" and model.config.positions == "rope":
            n = data.draw(st.integers(0, grown.length))
            grown.drop_oldest(n)
            full.drop_oldest(n)
        elif op == "truncate":
            n = data.draw(st.integers(0, grown.length))
            grown.truncate(n)
            full.truncate(n)
        room = min(capacity - grown.length, model.config.context_length - int(grown.next_position.max()))
        if room <= 0:
            break
        t = data.draw(st.integers(1, min(room, 3)))
        new = np.array(data.draw(st.lists(st.lists(st.integers(0, model.config.vocab_size - 1), min_size=t,
                                                   max_size=t), min_size=grown.batch_size,
                                          max_size=grown.batch_size)))
        np.testing.assert_array_equal(model(new, cache=grown), model(new, cache=full))
        assert grown.length <= grown.allocated <= capacity
    np.testing.assert_array_equal(grown.k[:, :, :, :grown.length], full.k[:, :, :, :full.length])


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_generate_with_growing_caches_equals_generate_with_full_ones(data):
    """Invariant: every decoding mode gives the same tokens and scores, bit for bit, whether
    its caches and buffers start with one slot of room (growing at every doubling) or with
    room for everything (``ROOM`` larger than any run)."""
    model = data.draw(models())
    ids, real = data.draw(batches(model))
    cfg = model.config
    modes = ["exact", "chunk", "beams", "sampling", "draft"] + (["slide"] if cfg.positions == "rope" else [])
    mode = data.draw(st.sampled_from(modes))
    kw = dict(MODES[mode])
    if kw.pop("draft", None):
        kw["draft_model"] = model
    if mode == "beams":
        kw["num_beams"] = data.draw(st.integers(2, 3))
    kw.update(max_new_tokens=data.draw(st.integers(1, 3 * cfg.context_length)),
              eos_token_id=data.draw(st.none() | st.integers(0, cfg.vocab_size - 1)))
    outputs = []
    for room in (1, 10 ** 9):
        with mock.patch.object(_decoder, "ROOM", room):
            outputs.append(generate(model, ids, attention_mask=real, **kw))
    grown, full = outputs
    np.testing.assert_array_equal(grown.sequences, full.sequences)
    np.testing.assert_array_equal(grown.scores, full.scores)
