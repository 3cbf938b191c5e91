"""Generation past the context window, each mode against a plain loop that runs the model on
the history the mode claims to use.

- ``context_overflow="exact"`` (the default): the model sees the last ``context_length``
  tokens, as nanoGPT's loop crops them (recorded from the seed's PyTorch loop in
  tests/fixtures/context_overflow.json, plus live when torch imports);
- ``context_overflow="chunk"``: a chunk of the newest tokens at positions from 0; when a new
  token does not fit, the chunk restarts with the newest ``context_length // 2`` tokens.

The equality tests use float64 models: the window's last block is computed for the last
position only (``inference.last_logits``), which changes the logits by rounding, and float64
keeps a rounding-level difference from flipping a near-tie.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import inference, sampling
from npgpt._decoder import Decoder
from npgpt.beam_search import beam_search
from npgpt._run import Run
from npgpt.generation import GenerationConfig, generate
from npgpt.model import positions_and_mask

from conftest import SHARED_DATA
from helpers import FIXTURES, load_model_fixture, skip_without

with open(os.path.join(FIXTURES, "context_overflow.json")) as _f:
    RECORDED = json.load(_f)


@st.composite
def models(draw, dtype=np.float64):
    heads = draw(st.sampled_from([1, 2]))
    cfg = npgpt.GPTConfig(vocab_size=draw(st.integers(2, 12)), context_length=draw(st.integers(1, 8)),
                          d_model=heads * draw(st.sampled_from([2, 4])), num_heads=heads,
                          num_layers=draw(st.integers(1, 2)),
                          residual=draw(st.sampled_from(["pre_norm", "seed"])),
                          gelu=draw(st.sampled_from(["exact", "tanh"])),
                          tie_embeddings=draw(st.booleans()), output_bias=draw(st.booleans()))
    return npgpt.GPT(cfg, seed=draw(st.integers(0, 1000)), dtype=dtype, init="torch")


def token_lists(model, max_size):
    return st.lists(st.integers(0, model.config.vocab_size - 1), min_size=1, max_size=max_size)


def log_probs(model, history):
    """log softmax of the model's next-token logits after ``history``, float64 (V,)."""
    return sampling.log_softmax(model(np.array(history))[-1].astype(np.float64))


def window_loop(model, prompt, n, tokens=None):
    """nanoGPT's loop: crop to the last context_length tokens, full forward, argmax (or
    teacher-forced with ``tokens``). Returns the ids and the sum of log p of the new tokens."""
    C = model.config.context_length
    ids, score = list(prompt), 0.0
    for i in range(n):
        logp = log_probs(model, ids[-C:])
        ids.append(int(np.argmax(logp)) if tokens is None else int(tokens[i]))
        score += logp[ids[-1]]
    return ids, score


def chunk_loop(model, prompt, n, tokens=None, eos=None):
    """The chunk mode's histories, run plainly: the chunk starts with the prompt's last
    context_length tokens; when the next token would not fit, it restarts with the newest
    context_length // 2 (at least 1). Greedy, or teacher-forced with ``tokens``; stops after
    ``eos``. Returns the ids and the sum of log p of the new tokens."""
    C = model.config.context_length
    keep = max(1, C // 2)
    ids, score, start = list(prompt), 0.0, max(0, len(prompt) - C)
    for i in range(n):
        if len(ids) - start > C:
            start = len(ids) - keep
        logp = log_probs(model, ids[start:])
        ids.append(int(np.argmax(logp)) if tokens is None else int(tokens[i]))
        score += logp[ids[-1]]
        if ids[-1] == eos:
            break
    return ids, score


def left_padded(prompts, pad=0):
    P = max(map(len, prompts))
    ids = [[pad] * (P - len(p)) + list(p) for p in prompts]
    mask = [[0] * (P - len(p)) + [1] * len(p) for p in prompts]
    return np.array(ids), np.array(mask)


def fixture_model(name):
    """The bundled model by name, else a parity fixture's model (tests/fixtures/<name>.npz)."""
    return npgpt.load(name) if name == "shakespeare-char" else load_model_fixture(name)[0]


# ----------------------------------------------------------------- the window's forward
@settings(max_examples=40)
@given(st.data())
def test_last_logits_equal_the_full_forward_up_to_rounding(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    model = data.draw(models(dtype))
    C = model.config.context_length
    prompts = data.draw(st.lists(token_lists(model, C), min_size=1, max_size=3))
    ids, mask = left_padded(prompts)
    real = None if mask.all() else mask.astype(bool)
    positions, bias = positions_and_mask(ids.shape[1], real, None, model.dtype)
    w = inference.weights(model.params, model.config)
    got = inference.last_logits(w, ids, positions, bias)
    expected = model(ids, attention_mask=real, last_only=True)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


# ------------------------------------------- both modes against their plain loops
MODES = [("exact", window_loop), ("chunk", chunk_loop)]


@pytest.mark.parametrize("overflow, loop", MODES)
@settings(max_examples=40)
@given(data=st.data())
def test_greedy_equals_the_plain_loop_on_the_modes_histories(overflow, loop, data):
    """exact: nanoGPT's loop token for token; chunk: the model run on the chunked histories.
    Prompts shorter and longer than the context, up to four contexts of new tokens."""
    model = data.draw(models())
    C = model.config.context_length
    prompt = data.draw(token_lists(model, 2 * C + 1))
    n = data.draw(st.integers(1, 4 * C + 2))
    ids, score = loop(model, prompt, n)
    out = generate(model, prompt, max_new_tokens=n, context_overflow=overflow)
    assert out.sequences[0].tolist() == ids
    np.testing.assert_allclose(out.scores[0], score, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("overflow, loop", MODES)
@settings(max_examples=25)
@given(data=st.data())
def test_each_row_of_a_padded_batch_follows_its_own_history(overflow, loop, data):
    model = data.draw(models())
    C = model.config.context_length
    prompts = data.draw(st.lists(token_lists(model, 2 * C), min_size=2, max_size=3))
    n = data.draw(st.integers(1, 3 * C + 2))
    ids, mask = left_padded(prompts)
    out = generate(model, ids, attention_mask=mask, max_new_tokens=n, context_overflow=overflow)
    for row, prompt in enumerate(prompts):
        expected, score = loop(model, prompt, n)
        assert out.sequences[row, -len(expected):].tolist() == expected
        np.testing.assert_allclose(out.scores[row], score, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------- exact mode
def test_a_prompt_longer_than_the_context_keeps_its_last_context_length_tokens():
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=9, context_length=4, d_model=8, num_heads=2,
                                      num_layers=1), seed=3, dtype=np.float64)
    prompt = [1, 2, 3, 4, 5, 6, 7]
    first = generate(model, prompt, max_new_tokens=1)
    assert first.sequences[0, -1] == int(np.argmax(model(np.array(prompt[-4:]))[-1]))
    # the older tokens do not matter: any other start gives the same continuation
    other = generate(model, [8, 8, 8] + prompt[-4:], max_new_tokens=6)
    assert other.sequences[0, 3:].tolist() == generate(model, prompt, max_new_tokens=6).sequences[0, 3:].tolist()


# ----------------------------------------------------------------------- chunk mode
@settings(max_examples=20)
@given(st.data())
def test_chunk_mode_samples_from_the_chunked_histories(data):
    """Each sampled row's score is the sum of log p of its tokens, each under the chunk
    history the mode claims to use: the reference recomputes it teacher-forced."""
    model = data.draw(models())
    C = model.config.context_length
    prompt = data.draw(token_lists(model, 2 * C))
    n = data.draw(st.integers(C + 1, 3 * C + 2))                # past the context
    out = generate(model, prompt, max_new_tokens=n, context_overflow="chunk", do_sample=True,
                   seed=data.draw(st.integers(0, 2 ** 16)), num_return_sequences=3)
    for row in range(3):
        new = out.sequences[row, len(prompt):]
        _, score = chunk_loop(model, prompt, n, tokens=new)
        np.testing.assert_allclose(out.scores[row], score, rtol=1e-10, atol=1e-10)


@settings(max_examples=20)
@given(st.data())
def test_chunk_mode_rows_stop_at_eos_and_each_follows_its_chunks_until_then(data):
    model = data.draw(models())
    C, V = model.config.context_length, model.config.vocab_size
    prompts = data.draw(st.lists(token_lists(model, 2 * C), min_size=1, max_size=3))
    n = data.draw(st.integers(1, 3 * C + 2))
    eos = data.draw(st.integers(0, V - 1))
    ids, mask = left_padded(prompts)
    out = generate(model, ids, attention_mask=mask, max_new_tokens=n, context_overflow="chunk",
                   eos_token_id=eos, pad_token_id=0)
    P = ids.shape[1]
    for row, prompt in enumerate(prompts):
        expected, score = chunk_loop(model, prompt, n, eos=eos)
        new = expected[len(prompt):]
        assert out.num_new_tokens[row] == len(new)
        assert out.sequences[row, P:P + len(new)].tolist() == new
        assert (out.sequences[row, P + len(new):] == 0).all()          # pad after EOS
        np.testing.assert_allclose(out.scores[row], score, rtol=1e-10, atol=1e-10)


class CountingDecoder(Decoder):
    """A Decoder that counts its re-encodings and checks its chunk after each one."""
    encodes = 0

    def _encode(self):
        self.encodes += 1
        logits = super()._encode()
        assert self.cache.next_position.max() <= self.C          # every position fits
        return logits


@pytest.mark.parametrize("C, P, n", [(8, 3, 40), (8, 20, 40), (7, 7, 30), (1, 1, 5), (2, 5, 9)])
def test_chunk_mode_stays_within_the_context_and_re_encodes_once_per_restart(C, P, n):
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=C, d_model=8, num_heads=2,
                                      num_layers=1), seed=0)
    keep = max(1, C // 2)
    prompt = np.arange(P)[None, :] % 10
    decoder = CountingDecoder(model, prompt, None, max_new=n, pad=0, overflow="chunk")
    decoder.first()
    rng = np.random.default_rng(0)
    for _ in range(n - 1):
        decoder.append(rng.integers(0, 10, 1))
        decoder.step()
        assert keep <= decoder.count[0] <= C
        assert decoder.length - decoder.start[0] == decoder.count[0]
        assert decoder.cache.length == decoder.count[0]             # the cache holds the chunk
    # a restart after the first C tokens, then one every C - keep + 1 new tokens
    first_restart = C + 1 - min(P, C)
    restarts = 0 if n - 1 < first_restart else 1 + (n - 1 - first_restart) // (C + 1 - keep)
    assert decoder.encodes == 1 + restarts


@pytest.mark.parametrize("overflow", ["exact", "chunk"])
def test_beam_search_with_one_beam_equals_greedy_past_the_context(overflow):
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=7, context_length=5, d_model=8, num_heads=2,
                                      num_layers=2), seed=1, dtype=np.float64)
    ids, mask = left_padded([[1, 2, 3, 4, 5, 6, 1], [2, 3]])
    cfg = GenerationConfig(max_new_tokens=14, context_overflow=overflow)
    beam = beam_search(Run(model, ids, mask, cfg, None))
    greedy = generate(model, ids, cfg, attention_mask=mask)
    assert beam.sequences.tolist() == greedy.sequences.tolist()


def test_beam_search_in_chunk_mode_scores_its_beams_on_their_chunks():
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8, num_heads=2,
                                      num_layers=1), seed=2, dtype=np.float64)
    prompt = [1, 2, 3]
    out = generate(model, prompt, max_new_tokens=9, num_beams=3, num_return_sequences=3,
                   length_penalty=0.0, context_overflow="chunk")
    for row, score in zip(out.sequences, out.scores):
        _, expected = chunk_loop(model, prompt, 9, tokens=row[len(prompt):])
        np.testing.assert_allclose(score, expected, rtol=1e-6, atol=1e-6)     # float32 beam scores


def test_on_the_bundled_model_the_modes_agree_within_the_context_and_chunk_restarts_past_it():
    model = npgpt.load("shakespeare-char")
    C, keep = model.config.context_length, model.config.context_length // 2
    prompt = model.tokenizer.encode("ROMEO:")
    n = C - len(prompt) + 6                                   # 6 tokens past the context
    exact = generate(model, prompt, max_new_tokens=n).sequences[0].tolist()
    chunk = generate(model, prompt, max_new_tokens=n, context_overflow="chunk").sequences[0].tolist()
    assert chunk[:C + 1] == exact[:C + 1]                     # the same while everything fits
    for t in range(C + 1, len(chunk)):                        # then the chunk of the newest half
        # its argmax up to rounding: the cached steps sum in another order (float32)
        logits = model(np.array(chunk[C + 1 - keep:t]))[-1]
        assert logits[chunk[t]] >= logits.max() - 1e-5 * np.abs(logits).max(), t


def test_an_unknown_context_overflow_is_refused():
    with pytest.raises(ValueError, match="context_overflow must be 'exact', 'chunk' or 'slide', got 'window'"):
        GenerationConfig(context_overflow="window")


# ------------------------------------------------- against the seed's PyTorch loop
@pytest.mark.parametrize("case", range(len(RECORDED["cases"])))
def test_exact_mode_matches_the_recorded_pytorch_loop(case):
    case = RECORDED["cases"][case]
    model = fixture_model(case["model"])
    out = generate(model, case["prompt"], max_new_tokens=case["new_tokens"])
    assert out.sequences[0].tolist() == case["sequence"]


@pytest.mark.torch
@skip_without("torch")
@pytest.mark.parametrize("trial", range(3))
def test_exact_mode_matches_the_pytorch_loop_live(trial):
    from torch_reference import seed_model, state_dict_numpy

    if FIXTURES not in sys.path:
        sys.path.insert(0, FIXTURES)
    from make_context_overflow_fixtures import torch_window_loop

    rng = np.random.default_rng(trial)
    cfg = npgpt.GPTConfig(vocab_size=int(rng.integers(3, 20)), context_length=int(rng.integers(2, 10)),
                          d_model=8, num_heads=2, num_layers=2, gelu=["exact", "tanh"][trial % 2],
                          residual=["seed", "pre_norm"][trial % 2])
    reference = seed_model(cfg, seed=trial)
    model = npgpt.GPT(cfg)
    model.load_state_dict(state_dict_numpy(reference))
    prompt = rng.integers(0, cfg.vocab_size, int(rng.integers(1, 2 * cfg.context_length))).tolist()
    n = 3 * cfg.context_length
    assert generate(model, prompt, max_new_tokens=n).sequences[0].tolist() == \
        torch_window_loop(reference, prompt, n, cfg.context_length)


# ------------------------------------------------------ benchmarks/measure_chunk_loss.py
def measure_chunk_loss():
    path = os.path.join(os.path.dirname(FIXTURES), os.pardir, "benchmarks", "measure_chunk_loss.py")
    spec = importlib.util.spec_from_file_location("measure_chunk_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_chunk_loss_measurement_skips_without_the_data(tmp_path, capsys):
    assert measure_chunk_loss().main(["--data", str(tmp_path / "absent.txt")]) is None
    assert "skipped" in capsys.readouterr().out


def test_the_chunk_loss_measurement_knows_what_the_chunk_mode_saw():
    module = measure_chunk_loss()
    assert module.history_lengths(12, 4).tolist() == [1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3]
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=6, context_length=4, d_model=8, num_heads=2,
                                      num_layers=1), seed=0, dtype=np.float64)
    tokens = [1, 2, 3, 4, 5, 0, 1, 2, 3]
    for overflow, loop in MODES:                 # teacher forcing through generate's Decoder
        losses = module.teacher_forced_losses(model, tokens, overflow)
        for t in range(1, len(tokens)):
            _, score = loop(model, tokens[:1], t, tokens=tokens[1:])
            np.testing.assert_allclose(-losses[:t].sum(), score, rtol=1e-10, atol=1e-10)


@pytest.mark.shared_data
@pytest.mark.skipif(not os.path.exists(os.path.join(SHARED_DATA, "tinyshakespeare.txt")),
                    reason="tinyshakespeare.txt is not in ../shared/data")
def test_the_chunk_loss_measurement_runs_on_tinyshakespeare():
    exact, chunk = measure_chunk_loss().main(["--stretches", "1", "--length", "160"])
    assert exact.shape == chunk.shape == (1, 160)
    assert abs(chunk[:, 128:].mean() - exact[:, 128:].mean()) < 0.5      # nats: same ballpark
