"""GPT: input validation, state_dict contract, dtypes, masks."""

import subprocess
import sys

import numpy as np
import pytest

import npgpt
from npgpt.model import parameter_shapes

from helpers import load_model_fixture, tiny_config


@pytest.fixture(scope="module")
def model():
    return npgpt.GPT(tiny_config(), seed=0)


def test_output_shapes_and_dtype(model):
    assert model([1, 2, 3]).shape == (3, 17)
    assert model([[1, 2, 3], [4, 5, 6]]).shape == (2, 3, 17)
    assert model(np.array([1, 2], dtype=np.uint8)).dtype == np.float32
    assert model([[1, 2, 3]], last_only=True).shape == (1, 17)
    np.testing.assert_allclose(model([[1, 2, 3]], last_only=True)[0], model([1, 2, 3])[-1], atol=1e-6)


@pytest.mark.parametrize("ids, message", [
    ([0.0, 1.0], "ids must be integers, got dtype float64"),
    ([True, False], "ids must be integers, got dtype bool"),
    ([], "non-empty"),
    (np.zeros((1, 0), dtype=int), r"ids is empty \(shape \(1, 0\)\)"),
    (np.zeros((1, 1, 2), dtype=int), r"shape \(T,\) or \(B, T\), got shape \(1, 1, 2\)"),
    ([3, 17, -1, 40], r"token ids out of range \[0, 17\): -1, 17, 40"),
    (list(range(13)), "sequence length 13 exceeds context_length 12"),
    ("abc", "ids must be"),
])
def test_bad_ids_raise_a_clear_value_error(model, ids, message):
    with pytest.raises(ValueError, match=message):
        model(ids)


def test_bad_attention_mask(model):
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of ids \(1, 3\), got \(1, 2\)"):
        model([[1, 2, 3]], attention_mask=[[1, 1]])
    with pytest.raises(ValueError, match="only 0 and 1"):
        model([[1, 2, 3]], attention_mask=[[1, 2, 1]])


def test_cache_overflow_and_batch_mismatch(model):
    cache = model.new_cache(1, capacity=4)
    model([[1, 2, 3]], cache=cache)
    with pytest.raises(ValueError, match="the cache holds 3 tokens and has room for 4"):
        model([[1, 2]], cache=cache)
    with pytest.raises(ValueError, match="the cache holds 1 rows but ids has 2"):
        model([[1], [2]], cache=cache)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        model.new_cache(0)


def test_positions_past_the_context_are_refused(model):
    cache = model.new_cache(1, capacity=20)
    model([list(range(12))], cache=cache)
    with pytest.raises(ValueError, match="position 12 is past context_length 12"):
        model([[1]], cache=cache)


def test_state_dict_keys_are_exactly_the_seeds():
    # The fixture's keys come from torch's GPTModel.state_dict() (the seed's code).
    model, _, _, torch_state = load_model_fixture("seed_model")
    torch_keys = [k for k in torch_state if not k.endswith("causal_mask")]
    assert list(model.state_dict()) == torch_keys
    for key, value in model.state_dict().items():
        assert value.shape == torch_state[key].shape


def test_state_dict_is_a_copy(model):
    sd = model.state_dict()
    sd["ln_final.weight"][:] = 7.0
    assert not np.any(model.params["ln_final.weight"] == 7.0)


def test_load_state_dict_reports_every_problem_at_once(model):
    sd = model.state_dict()
    del sd["blocks.0.ln1.bias"]
    sd["blocks.1.ffn.0.weight"] = np.zeros((3, 3), dtype=np.float32)
    sd["extra.weight"] = np.zeros(2)
    sd["blocks.0.causal_mask"] = np.zeros((12, 12))   # accepted and ignored
    before = model.state_dict()
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    text = str(err.value)
    assert "missing: blocks.0.ln1.bias" in text
    assert "unexpected: extra.weight" in text
    assert "blocks.1.ffn.0.weight: expected shape (64, 16), got (3, 3)" in text
    for key, value in model.state_dict().items():          # nothing changed
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_round_trip_and_cast():
    a = npgpt.GPT(tiny_config(), seed=1)
    b = npgpt.GPT(tiny_config(), seed=2)
    b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})
    assert b.dtype == np.float32
    np.testing.assert_array_equal(a([1, 2, 3]), b([1, 2, 3]))


def test_tied_embeddings_and_no_output_bias():
    cfg = tiny_config(tie_embeddings=True, output_bias=False)
    m = npgpt.GPT(cfg, seed=0)
    assert "output_layer.weight" not in m.state_dict()
    assert "output_layer.bias" not in m.state_dict()
    assert set(parameter_shapes(cfg)) == set(m.state_dict())
    sd = m.state_dict()
    x = m([1, 2])
    np.testing.assert_allclose(x, m.forward([1, 2]))
    m.load_state_dict({**sd, "output_layer.weight": sd["token_embedding.weight"]})   # torch-style
    with pytest.raises(ValueError, match="output_layer.weight differs from token_embedding.weight"):
        m.load_state_dict({**sd, "output_layer.weight": sd["token_embedding.weight"] + 1})


def test_astype_float64_is_a_new_model_with_the_same_function(model):
    m64 = model.astype(np.float64)
    assert m64.dtype == np.float64 and model.dtype == np.float32
    out = m64([1, 2, 3])
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, model([1, 2, 3]), atol=1e-5)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int32"):
        model.astype(np.int32)


def test_init_kinds_and_seed_determinism():
    a = npgpt.GPT(tiny_config(), seed=5)
    b = npgpt.GPT(tiny_config(), seed=5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    t = npgpt.GPT(tiny_config(), seed=5, init="torch")
    assert 0.8 < t.params["token_embedding.weight"].std() < 1.2      # nn.Embedding: N(0, 1)
    assert a.params["token_embedding.weight"].std() < 0.05           # GPT-2: N(0, 0.02²)
    assert np.all(np.abs(t.params["blocks.0.ffn.0.bias"]) <= 0.25)
    with pytest.raises(ValueError, match="init must be 'gpt2' or 'torch', got 'xavier'"):
        npgpt.GPT(tiny_config(), init="xavier")


def test_import_needs_only_numpy():
    code = ("import sys, npgpt; bad = [m for m in ('torch', 'transformers', 'matplotlib', "
            "'safetensors', 'hypothesis') if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("index", [[1, 0, 0], [2, 1], [0, 0, 0, 1, 2]])
def test_cache_reorder_moves_rows_like_running_them_in_that_order(index):
    model = npgpt.GPT(tiny_config(), seed=3, dtype=np.float64)
    ids = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    cache = model.new_cache(3)
    model(ids, cache=cache)
    cache.reorder(index)
    nxt = np.arange(len(index))[:, None] + 10
    step = model(nxt, cache=cache)
    expected = model(np.concatenate([ids[index], nxt], axis=1))[:, -1:]
    np.testing.assert_allclose(step, expected, atol=1e-12)
