"""Training: parity with torch autograd and torch.optim.AdamW, dropout modes, the schedule,
clipping, batches, and bit-identical resume."""

import json
import math
import os
import signal

import numpy as np
import pytest

import npgpt
from npgpt.train import (AdamW, TrainConfig, TrainState, clip_grad_norm, decayed_parameters,
                         get_batch, learning_rate, load_checkpoint, save_checkpoint, split_corpus,
                         train, train_step)

from helpers import FIXTURES, skip_without, tiny_config


def load_train_fixture(name):
    data = np.load(os.path.join(FIXTURES, name + ".npz"))
    cfg = npgpt.GPTConfig(**json.loads(str(data["config"])))
    model = npgpt.GPT(cfg)
    model.load_state_dict({k[6:]: data[k] for k in data.files if k.startswith("param:")})
    return model, data


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


@pytest.mark.parametrize("name", ["train_seed", "train_prenorm"])
def test_loss_and_gradients_match_torch_autograd(name):
    model, data = load_train_fixture(name)
    loss, grads = model.loss_and_grads(data["ids"], data["targets"])
    assert abs(loss - float(data["loss"])) <= 1e-5
    for key in model.params:
        assert rel_err(grads[key], data["grad:" + key]) <= 1e-4, key


@pytest.mark.parametrize("name", ["train_seed", "train_prenorm"])
def test_ten_adamw_steps_reproduce_torch_losses(name):
    model, data = load_train_fixture(name)
    tc = TrainConfig(batch_size=3, steps=10, lr=3e-3, min_lr=3e-4, warmup=3, weight_decay=0.1,
                     beta2=0.99, grad_clip=0.5)
    state = TrainState.new(model, tc)
    losses = [train_step(state, x, y)["loss"] for x, y in zip(data["batch_x"], data["batch_y"])]
    np.testing.assert_allclose(losses, data["adam_losses"], rtol=0, atol=1e-4)
    assert losses[-1] < losses[0]


@pytest.mark.torch
@skip_without("torch")
@pytest.mark.parametrize("residual", ["seed", "pre_norm"])
def test_live_gradients_match_torch_autograd(residual):
    import torch

    from torch_reference import seed_model, state_dict_numpy

    cfg = tiny_config(residual=residual, dropout=0.2)
    ref = seed_model(cfg, seed=7).train(False)
    model = npgpt.GPT(cfg)
    model.load_state_dict(state_dict_numpy(ref))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, cfg.vocab_size, (2, 9)), rng.integers(0, cfg.vocab_size, (2, 9))
    loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(ids)).reshape(-1, cfg.vocab_size),
                                             torch.from_numpy(targets).reshape(-1))
    loss.backward()
    ours, grads = model.loss_and_grads(ids, targets)      # no rng: evaluation mode
    assert abs(ours - loss.item()) <= 1e-5
    for name, p in ref.named_parameters():
        assert rel_err(grads[name], p.grad.numpy()) <= 1e-4, name


def test_dropout_only_in_training_mode_and_reproducible():
    model = npgpt.GPT(tiny_config(dropout=0.3), seed=0, dtype=np.float64)
    ids, targets = np.arange(10).reshape(2, 5), np.arange(1, 11).reshape(2, 5)
    eval_loss, _ = model.loss_and_grads(ids, targets)
    plain = npgpt.GPT(tiny_config(dropout=0.0), seed=0, dtype=np.float64)
    assert eval_loss == plain.loss_and_grads(ids, targets)[0]     # eval == dropout-free model
    a, ga = model.loss_and_grads(ids, targets, rng=np.random.default_rng(5))
    b, gb = model.loss_and_grads(ids, targets, rng=np.random.default_rng(5))
    c, _ = model.loss_and_grads(ids, targets, rng=np.random.default_rng(6))
    assert a == b and a != eval_loss and a != c
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])


def test_learning_rate_schedule_warmup_cosine_floor():
    tc = TrainConfig(steps=100, lr=1e-3, min_lr=1e-4, warmup=10)
    assert learning_rate(0, tc) == pytest.approx(1e-3 / 11)
    assert learning_rate(9, tc) == pytest.approx(1e-3 * 10 / 11)
    assert learning_rate(10, tc) == pytest.approx(1e-3)
    assert learning_rate(55, tc) == pytest.approx(5.5e-4)
    assert learning_rate(100, tc) == pytest.approx(1e-4)
    lrs = [learning_rate(s, tc) for s in range(10, 101)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))


def test_clip_grad_norm_scales_to_the_max_norm_only_when_above():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    total = math.sqrt(sum(float(np.sum(g ** 2)) for g in grads.values()))
    assert total == pytest.approx(1.0, abs=1e-6)


def test_weight_decay_skips_biases_layernorm_and_embeddings_unless_asked():
    names = list(npgpt.GPT(tiny_config()).params)
    decayed = decayed_parameters(names)
    assert "blocks.0.attn.in_proj_weight" in decayed and "output_layer.weight" in decayed
    assert not any(n.endswith("bias") or "ln" in n.split(".")[-2] for n in decayed)
    assert "token_embedding.weight" not in decayed
    assert "token_embedding.weight" in decayed_parameters(names, decay_embeddings=True)
    with pytest.raises(ValueError, match="decay names parameters that do not exist"):
        AdamW({"w": np.zeros(2)}, decay=["nope"])


def test_batches_are_contiguous_shifted_windows():
    data = np.arange(100)
    x, y = get_batch(data, 4, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match="the data has 5 tokens"):
        get_batch(np.arange(5), 1, 8, np.random.default_rng(0))
    tr, va = split_corpus(np.arange(10))
    assert tr.tolist() == list(range(9)) and va.tolist() == [9]


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "batch_size must be a positive integer, got 0"),
    ("lr", -1.0, "lr must be a finite number >= 0, got -1.0"),
    ("beta2", 1.0, r"beta2 must be in \[0, 1\), got 1.0"),
    ("min_lr", 1.0, "min_lr must be <= lr"),
    ("warmup", -1, "warmup must be a non-negative integer"),
])
def test_train_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def _run(model_seed=0, steps=6):
    cfg = tiny_config(dropout=0.1)
    tc = TrainConfig(batch_size=2, steps=steps, eval_interval=3, eval_iters=2, warmup=2)
    return TrainState.new(npgpt.GPT(cfg, seed=model_seed), tc)


def test_resume_is_bit_identical(tmp_path):
    data = np.random.default_rng(0).integers(0, 17, 400)
    tr, va = split_corpus(data)
    straight = train(_run(), tr, va)
    first = train(_run(), tr, va, stop_at=4)
    path = str(tmp_path / "ckpt.npz")
    save_checkpoint(path, first)
    resumed = train(load_checkpoint(path), tr, va)
    assert resumed.step == straight.step == 6
    assert_same_state(resumed, straight)


def assert_same_state(got, want):
    """Every parameter, both AdamW moments, the Generator and the history: bit for bit."""
    assert got.step == want.step and got.optimizer.t == want.optimizer.t
    for k in want.model.params:
        assert np.array_equal(got.model.params[k], want.model.params[k]), k
        assert np.array_equal(got.optimizer.m[k], want.optimizer.m[k]), k
        assert np.array_equal(got.optimizer.v[k], want.optimizer.v[k]), k
    assert got.rng.bit_generator.state == want.rng.bit_generator.state
    assert got.history == want.history and got.best_val == want.best_val


def sigint():
    os.kill(os.getpid(), signal.SIGINT)


class Countdown:
    """Calls ``action`` on the ``at``-th call (1-based), once."""

    def __init__(self, at, action=sigint):
        self.at, self.calls, self.action = at, 0, action

    def __call__(self, *_):
        self.calls += 1
        if self.calls == self.at:
            self.action()


class Midway(dict):
    """AdamW.step's gradients: ``countdown`` is called as the parameter loop reads each one."""

    def __init__(self, grads, countdown):
        super().__init__(grads)
        self.countdown = countdown

    def __getitem__(self, name):
        self.countdown()
        return super().__getitem__(name)


def call_first(patch, owner, name, countdown):
    """Patch ``owner.name`` to call ``countdown()`` before it does its work."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        countdown()
        return original(*args, **kwargs)

    patch.setattr(owner, name, wrapper)


def in_adamw(patch, at_step, action=sigint):
    """``action`` when the ``at_step``-th AdamW update has done half the parameters."""
    step, calls = AdamW.step, Countdown(at_step, action=lambda: None)

    def midway(self, params, grads, lr):
        calls()
        if calls.calls == at_step:
            grads = Midway(grads, Countdown(len(grads) // 2, action))
        return step(self, params, grads, lr)

    patch.setattr(AdamW, "step", midway)


def sigint_between_steps(monkeypatch, at_step):
    return Countdown(at_step)                                        # on_step: after a step


def sigint_in_forward_backward(monkeypatch, at_step):
    import npgpt.model

    call_first(monkeypatch, npgpt.model, "gpt_backward", Countdown(at_step))   # after the forward


def sigint_in_adamw(monkeypatch, at_step):
    in_adamw(monkeypatch, at_step)


def sigint_in_evaluation(monkeypatch, at_call):
    import npgpt.train

    call_first(monkeypatch, npgpt.train.loop, "estimate_loss", Countdown(at_call))


@pytest.mark.parametrize("where, at", [
    (sigint_between_steps, 2),          # an ordinary step
    (sigint_between_steps, 3),          # after the step, before its evaluation
    (sigint_between_steps, 8),          # after the last step, before the final evaluation
    (sigint_in_forward_backward, 5),    # dropout masks drawn, no update yet
    (sigint_in_forward_backward, 1),    # before any checkpoint exists
    (sigint_in_adamw, 5),               # half the parameters updated
    (sigint_in_adamw, 2),
    (sigint_in_evaluation, 3),          # the evaluation at step 6, between its two splits
    (sigint_in_evaluation, 1),          # the first evaluation
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_sigint_then_resume_is_bit_identical(tmp_path, monkeypatch, where, at):
    data = np.random.default_rng(0).integers(0, 17, 400)
    tr, va = split_corpus(data)
    straight = train(_run(steps=8), tr, va, out_dir=str(tmp_path / "straight"))
    out = tmp_path / "broken"
    with monkeypatch.context() as patch:
        on_step = where(patch, at)
        with pytest.raises(KeyboardInterrupt):
            train(_run(steps=8), tr, va, out_dir=str(out), on_step=on_step)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = train(load_checkpoint(str(out / "ckpt.npz")), tr, va, out_dir=str(out))
    assert_same_state(resumed, straight)
    best = npgpt.load(str(out / "model.safetensors"))
    want = npgpt.load(str(tmp_path / "straight" / "model.safetensors"))
    for k in want.params:
        assert np.array_equal(best.params[k], want.params[k]), k


def test_checkpoint_is_not_a_pickle_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(str(path), _run())
    with np.load(path, allow_pickle=False) as f:      # would raise if anything needed a pickle
        assert "meta" in f.files
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read training checkpoint"):
        load_checkpoint(str(tmp_path / "bad.npz"))


def test_train_writes_a_model_that_npgpt_load_reads_with_its_tokenizer(tmp_path):
    from npgpt.tokenizers import CharTokenizer

    text = "to be or not to be, that is the question. " * 20
    tok = CharTokenizer.from_text(text)
    cfg = npgpt.GPTConfig(vocab_size=tok.vocab_size, context_length=8, d_model=8, num_heads=2, num_layers=1)
    model = npgpt.GPT(cfg, seed=0)
    model.tokenizer = tok
    tr, va = split_corpus(np.array(tok.encode(text)))
    out = tmp_path / "new" / "folder"                      # created on demand
    state = train(TrainState.new(model, TrainConfig(batch_size=2, steps=4, eval_interval=2, eval_iters=1)),
                  tr, va, out_dir=str(out))
    loaded = npgpt.load(str(out / "model.safetensors"))
    assert loaded.tokenizer == tok
    assert [r["step"] for r in state.history] == [2, 4]
    assert (out / "ckpt.npz").exists()
    resumed = load_checkpoint(str(out / "ckpt.npz"))
    assert resumed.step == 4 and resumed.model.tokenizer == tok


def test_keyboard_interrupt_saves_the_checkpoint_before_it_propagates(tmp_path):
    data = np.random.default_rng(0).integers(0, 17, 400)
    tr, va = split_corpus(data)

    def interrupt(info):
        if info["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_run(), tr, va, out_dir=str(tmp_path), on_step=interrupt)
    assert load_checkpoint(str(tmp_path / "ckpt.npz")).step == 2


def test_split_loss_covers_the_data_in_whole_windows():
    from npgpt.nn.crossentropy import cross_entropy_forward
    from npgpt.train import split_loss

    model = npgpt.GPT(tiny_config(context_length=4), seed=0, dtype=np.float64)
    data = np.arange(14) % 17
    x = np.stack([data[0:4], data[4:8], data[8:12]])
    expected = cross_entropy_forward(model(x), x + 1)[0]        # data is 0..13: target = id + 1
    assert split_loss(model, data, batch_size=2) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="a window needs 5"):
        split_loss(model, np.arange(3))
