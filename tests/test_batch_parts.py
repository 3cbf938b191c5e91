"""A training step's batch cut into parts run side by side (npgpt.train.batch_loss_and_grads):
the same loss and gradients as the whole batch, the same numbers on any thread count."""

import numpy as np
from hypothesis import given, settings, strategies as st

import npgpt
from npgpt import threads
from npgpt.train import BATCH_PARTS, TrainConfig, TrainState, batch_loss_and_grads, train_step

CFG = npgpt.GPTConfig(vocab_size=11, context_length=8, d_model=16, num_heads=2, num_layers=2)
BIG = 1e12                      # flops above threads.MIN_FLOPS: the batch is cut


def batch(rows, T, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, CFG.vocab_size, (rows, T)), rng.integers(0, CFG.vocab_size, (rows, T))


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(2, 7), T=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_parts_weighted_by_their_positions_equal_the_whole_batch(rows, T, seed):
    model = npgpt.GPT(CFG, seed=seed % 7)
    x, y = batch(rows, T, seed)
    loss, grads = model.loss_and_grads(x, y)
    part_loss, part_grads = batch_loss_and_grads(model, x, y, flops=BIG)
    assert abs(part_loss - loss) <= 1e-6 * max(1.0, abs(loss))
    for name, g in grads.items():
        scale = float(np.abs(g).max()) or 1.0
        np.testing.assert_allclose(part_grads[name], g, rtol=0, atol=2e-6 * scale, err_msg=name)


def test_the_numbers_do_not_depend_on_the_threads():
    model = npgpt.GPT(CFG, seed=0)
    x, y = batch(12, 8, 1)
    runs = []
    for n in (1, 2, 1):
        with threads.using(n):
            runs.append(batch_loss_and_grads(model, x, y, flops=BIG))
    for loss, grads in runs[1:]:
        assert loss == runs[0][0]
        for name, g in grads.items():
            np.testing.assert_array_equal(g, runs[0][1][name], err_msg=name)


def test_the_parts_really_differ_from_one_pass_only_by_rounding():
    """The cut happens (a batch of several rows, large work): its loss is the mean of the parts'."""
    model = npgpt.GPT(CFG, seed=0)
    x, y = batch(2 * BATCH_PARTS, 8, 2)
    half = len(x) // BATCH_PARTS
    parts = [model.loss_and_grads(x[i:i + half], y[i:i + half])[0] for i in range(0, len(x), half)]
    assert batch_loss_and_grads(model, x, y, flops=BIG)[0] == float(sum(p / BATCH_PARTS for p in parts))


def test_small_work_and_dropout_run_the_whole_batch_in_one_pass():
    model = npgpt.GPT(CFG, seed=0)
    x, y = batch(4, 8, 3)
    whole = model.loss_and_grads(x, y)
    assert batch_loss_and_grads(model, x, y, flops=10)[0] == whole[0]
    dropped = npgpt.GPT(npgpt.GPTConfig(**{**CFG.__dict__, "dropout": 0.3}), seed=0)
    a = dropped.loss_and_grads(x, y, rng=np.random.default_rng(5))
    b = batch_loss_and_grads(dropped, x, y, rng=np.random.default_rng(5), flops=BIG)
    assert a[0] == b[0]


def test_train_step_results_do_not_depend_on_the_threads():
    cfg = npgpt.GPTConfig(vocab_size=65, context_length=64, d_model=64, num_heads=4, num_layers=2)
    x, y = np.random.default_rng(0).integers(0, 65, (2, 12, 64))
    params = []
    for n in (1, 2):
        state = TrainState.new(npgpt.GPT(cfg, seed=0), TrainConfig(batch_size=12))
        with threads.using(n):
            for _ in range(2):
                train_step(state, x, y)
        params.append(state.model.params)
    for name in params[0]:
        np.testing.assert_array_equal(params[0][name], params[1][name], err_msg=name)
