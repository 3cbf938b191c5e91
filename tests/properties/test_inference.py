"""The inference forward (npgpt.inference, what generate, stream and beam search run) gives
logits bit-identical to GPT.forward (the learner's gpt_forward) for GPT's block, and within
``STACKED_ULPS`` ulps of each row's largest logit for a block with the Llama family's parts
(whose q, k, v and gate, up inference multiplies as one matrix each: a product of another width
may sum in another order): for any configuration and dtype, with and without left padding,
over a whole sequence or its last position, and step by step through a KV cache. Past the context, where each step reruns the window through
``inference.last_logits`` (the last block for the last position only, so equal up to
rounding), greedy generation picks the tokens of the model run on each window."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import inference
from npgpt.model import positions_and_mask

from helpers import assert_greedy_up_to_rounding


@st.composite
def models(draw):
    """GPT and Llama-family models: every switch of GPTConfig drawn (norm, positions, mlp,
    grouped-query heads, head_dim, q/k/v biases, ffn_dim, rope scaling and layout)."""
    heads = draw(st.sampled_from([1, 2, 4]))
    positions = draw(st.sampled_from(["learned", "rope"]))
    rope = {}
    if positions == "rope":
        rope = dict(num_kv_heads=draw(st.sampled_from([h for h in (1, 2, 4) if heads % h == 0])),
                    head_dim=draw(st.sampled_from([None, 2, 6])),
                    attention_bias=draw(st.booleans()),
                    rope_theta=draw(st.sampled_from([10000.0, 500000.0])),
                    rope_scaling=draw(st.sampled_from([None, {"rope_type": "linear", "factor": 2.0}])),
                    rope_layout=draw(st.sampled_from(["half", "interleaved"])))
    cfg = npgpt.GPTConfig(vocab_size=draw(st.integers(2, 40)), context_length=draw(st.integers(4, 12)),
                          d_model=heads * draw(st.sampled_from([2, 4, 8])), num_heads=heads,
                          num_layers=draw(st.integers(1, 3)),
                          residual=draw(st.sampled_from(["pre_norm", "seed"])),
                          gelu=draw(st.sampled_from(["exact", "tanh"])),
                          tie_embeddings=draw(st.booleans()), output_bias=draw(st.booleans()),
                          norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
                          mlp=draw(st.sampled_from(["gelu", "swiglu"])),
                          ffn_dim=draw(st.sampled_from([None, 6])), positions=positions, **rope)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return npgpt.GPT(cfg, seed=draw(st.integers(0, 1000)), dtype=dtype, init="torch")


@st.composite
def batches(draw, model, max_T=None):
    """ids (B, T) and a left-padding mask (B, T) bool, or None; T ≤ max_T (default: the
    context length)."""
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, max_T or model.config.context_length))
    ids = np.array(draw(st.lists(st.lists(st.integers(0, model.config.vocab_size - 1), min_size=T,
                                          max_size=T), min_size=B, max_size=B)))
    if not draw(st.booleans()):
        return ids, None
    pads = [draw(st.integers(0, T - 1)) for _ in range(B)]
    return ids, np.array([[t >= p for t in range(T)] for p in pads])


#: the stacked products' logits, in ulps of each row's largest |logit| (3,000 drawn models and
#: batches of up to 3 layers, float32 and float64: at most 5)
STACKED_ULPS = 16


def stacks(model):
    """Whether inference reads q, k, v (or gate, up) of ``model`` as one product."""
    return model.config.positions == "rope" or model.config.mlp == "swiglu"


def assert_same_logits(got, expected, model):
    """Bit-identical for GPT's block; within ``STACKED_ULPS`` with stacked products."""
    assert got.dtype == expected.dtype
    if not stacks(model):
        np.testing.assert_array_equal(got, expected)
        return
    ulp = np.spacing(np.abs(expected).max(axis=-1, keepdims=True))
    assert (np.abs(got - expected) <= STACKED_ULPS * ulp).all(), (np.abs(got - expected) / ulp).max()


def infer(model, ids, real, cache=None, last_only=False):
    real = None if real is None or real.all() else real
    positions, mask = positions_and_mask(ids.shape[1], real, cache, model.dtype)
    w = inference.weights(model.params, model.config)
    return inference.forward(w, ids, positions, mask, cache, last_only=last_only)


@settings(max_examples=60)
@given(st.data())
def test_the_inference_forward_equals_gpt_forward_bit_for_bit_or_within_ulps_when_stacked(data):
    model = data.draw(models())
    ids, real = data.draw(batches(model))
    for last_only in (False, True):
        expected = model(ids, attention_mask=real, last_only=last_only)
        assert_same_logits(infer(model, ids, real, last_only=last_only), expected, model)


@settings(max_examples=40)
@given(st.data())
def test_step_by_step_through_a_cache_the_logits_stay_equal(data):
    model = data.draw(models())
    ids, real = data.draw(batches(model))
    B, T = ids.shape
    room = model.config.context_length - T
    steps = data.draw(st.integers(0, room))
    capacity = T + max(steps, 1)
    ours, theirs = model.new_cache(B, capacity), model.new_cache(B, capacity)
    assert_same_logits(infer(model, ids, real, ours, last_only=True),
                       model(ids, attention_mask=real, cache=theirs, last_only=True), model)
    for _ in range(steps):
        tokens = np.array(data.draw(st.lists(st.integers(0, model.config.vocab_size - 1),
                                             min_size=B, max_size=B)))[:, None]
        assert_same_logits(infer(model, tokens, None, ours, last_only=True),
                           model(tokens, cache=theirs, last_only=True), model)
    if not stacks(model):
        np.testing.assert_array_equal(ours.k[:, :, :, :ours.length], theirs.k[:, :, :, :theirs.length])


@settings(max_examples=25)
@given(st.data())
def test_generation_past_the_context_matches_the_model_run_on_each_window(data):
    model = data.draw(models())
    C = model.config.context_length
    prompt = data.draw(st.lists(st.integers(0, model.config.vocab_size - 1), min_size=1, max_size=C))
    n = data.draw(st.integers(1, 2 * C))
    out = npgpt.generate(model, prompt, max_new_tokens=n)
    ids = out.sequences[0].tolist()
    assert len(ids) == len(prompt) + n and ids[:len(prompt)] == prompt
    # each token the argmax of the window of the last C tokens, up to rounding (last_logits
    # rounds otherwise: a float32 near-tie may go either way)
    assert_greedy_up_to_rounding(model, ids, len(prompt))
    score = sum(float(npgpt.sampling.log_softmax(model(np.array(ids[max(0, t - C):t]))[-1]
                                                 .astype(np.float64))[ids[t]])
                for t in range(len(prompt), len(ids)))
    np.testing.assert_allclose(out.scores[0], score, rtol=1e-5, atol=1e-5)
