"""npgpt's own checkpoint file: save -> load bit-exact, atomic writes, tokenizers, bundled models."""

import json
import os
import sys
import types

import numpy as np
import pytest

import npgpt
import npgpt.io
from npgpt.io import CheckpointError, read_safetensors, write_safetensors
from helpers import skip_without, tiny_config


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("changes", [dict(), dict(residual="seed", gelu="tanh", output_bias=False),
                                     dict(tie_embeddings=True, layer_norm_eps=1e-6, dropout=0.1)])
def test_save_then_load_is_bit_exact(tmp_path, dtype, changes):
    model = npgpt.GPT(tiny_config(**changes), seed=4, dtype=dtype)
    model.save(tmp_path / "m.safetensors")
    back = npgpt.io.load(tmp_path / "m.safetensors")
    assert back.config == model.config
    assert back.dtype == model.dtype
    assert list(back.params) == list(model.params)
    for name, value in model.params.items():
        assert back.params[name].tobytes() == value.tobytes(), name
    ids = np.arange(8) % model.config.vocab_size
    np.testing.assert_array_equal(back(ids), model(ids))


def test_the_file_is_plain_safetensors_with_seed_names_and_metadata(tmp_path):
    model = npgpt.GPT(tiny_config(), seed=1)
    model.save(tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(tmp_path / "m.safetensors")
    assert list(tensors) == list(model.state_dict())
    assert meta["format"] == "npgpt"
    assert meta["npgpt_version"] == npgpt.__version__
    assert json.loads(meta["config"]) == model.config.to_dict()
    assert "tokenizer" not in meta


def test_format_is_recognised_from_content_not_the_file_name(tmp_path):
    model = npgpt.GPT(tiny_config(), seed=1)
    model.save(tmp_path / "weights.pt")           # a misleading name
    back = npgpt.io.load(tmp_path / "weights.pt")
    np.testing.assert_array_equal(back.params["ln_final.bias"], model.params["ln_final.bias"])


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    model = npgpt.GPT(tiny_config(), seed=1)
    path = tmp_path / "m.safetensors"
    model.save(path)
    before = path.read_bytes()
    assert os.listdir(tmp_path) == ["m.safetensors"]

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        npgpt.GPT(tiny_config(), seed=2).save(path)
    assert path.read_bytes() == before            # the old checkpoint is untouched
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_overrides_apply_to_free_fields_and_contradictions_are_refused(tmp_path):
    model = npgpt.GPT(tiny_config(), seed=1)
    model.save(tmp_path / "m.safetensors")
    assert npgpt.io.load(tmp_path / "m.safetensors", dropout=0.2).config.dropout == 0.2
    with pytest.raises(CheckpointError, match="d_model=32 contradicts"):
        npgpt.io.load(tmp_path / "m.safetensors", d_model=32)


def test_a_bare_seed_named_safetensors_file_infers_its_config(tmp_path):
    model = npgpt.GPT(tiny_config(output_bias=False), seed=1)
    write_safetensors(tmp_path / "sd.safetensors", model.state_dict())
    with pytest.raises(CheckpointError, match=r"num_heads=\.\.\., residual=\.\.\., gelu=\.\.\."):
        npgpt.io.load(tmp_path / "sd.safetensors")
    back = npgpt.io.load(tmp_path / "sd.safetensors", num_heads=4, residual="pre_norm",
                         gelu="exact")
    assert back.config == model.config


@pytest.mark.parametrize("problem,message", [
    ("config", "invalid config"), ("no config", "without a 'config'"),
    ("dtype", "only F32 or only F64"), ("missing", "missing: ln_final.bias"),
    ("extra", "unexpected: spare"), ("layers", "1000000000 layers"),
])
def test_broken_npgpt_files_raise_checkpoint_error(tmp_path, problem, message):
    model = npgpt.GPT(tiny_config(), seed=1)
    tensors = model.state_dict()
    meta = {"format": "npgpt", "config": model.config.to_json()}
    if problem == "config":
        meta["config"] = json.dumps({**model.config.to_dict(), "num_heads": 3})
    elif problem == "no config":
        del meta["config"]
    elif problem == "dtype":
        tensors["ln_final.bias"] = tensors["ln_final.bias"].astype(np.float64)
    elif problem == "missing":
        del tensors["ln_final.bias"]
    elif problem == "extra":
        tensors["spare"] = np.zeros(2, np.float32)
    else:
        meta["config"] = json.dumps({**model.config.to_dict(), "num_layers": 10 ** 9})
    write_safetensors(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=message):
        npgpt.io.load(tmp_path / "bad.safetensors")


# -------------------------------------------------------------------------- tokenizers
class DummyTokenizer:
    def __init__(self, chars):
        self.chars = chars

    def to_dict(self):
        return {"type": "dummy", "chars": self.chars}


def test_the_tokenizer_travels_in_the_metadata(tmp_path, monkeypatch):
    fake = types.ModuleType("npgpt.tokenizers")
    fake.tokenizer_from_dict = lambda d: DummyTokenizer(d["chars"])
    monkeypatch.setitem(sys.modules, "npgpt.tokenizers", fake)
    model = npgpt.GPT(tiny_config(), seed=1)
    model.tokenizer = DummyTokenizer("abcé")
    model.save(tmp_path / "m.safetensors")
    meta = read_safetensors(tmp_path / "m.safetensors")[1]
    assert json.loads(meta["tokenizer"]) == {"type": "dummy", "chars": "abcé"}
    back = npgpt.io.load(tmp_path / "m.safetensors")
    assert isinstance(back.tokenizer, DummyTokenizer) and back.tokenizer.chars == "abcé"

    fake.tokenizer_from_dict = lambda d: d["missing key"]
    with pytest.raises(CheckpointError, match="tokenizer in the metadata is invalid"):
        npgpt.io.load(tmp_path / "m.safetensors")


def test_a_tokenizer_without_to_dict_cannot_be_saved(tmp_path):
    model = npgpt.GPT(tiny_config(), seed=1)
    model.tokenizer = object()
    with pytest.raises(ValueError, match="no to_dict"):
        model.save(tmp_path / "m.safetensors")
    assert not os.listdir(tmp_path)


def test_without_npgpt_tokenizers_the_weights_load_with_a_warning(tmp_path, monkeypatch):
    model = npgpt.GPT(tiny_config(), seed=1)
    model.tokenizer = DummyTokenizer("xy")
    model.save(tmp_path / "m.safetensors")
    monkeypatch.setitem(sys.modules, "npgpt.tokenizers", None)
    with pytest.warns(UserWarning, match="tokenizer"):
        back = npgpt.io.load(tmp_path / "m.safetensors")
    assert back.tokenizer is None


def test_real_tokenizer_round_trip(tmp_path):
    tokenizers = pytest.importorskip("npgpt.tokenizers")
    if not hasattr(tokenizers, "CharTokenizer") or not hasattr(tokenizers, "tokenizer_from_dict"):
        pytest.skip("npgpt.tokenizers has no CharTokenizer/tokenizer_from_dict yet")
    tok = tokenizers.CharTokenizer.from_text("hello world")
    model = npgpt.GPT(tiny_config(), seed=1)
    model.tokenizer = tok
    model.save(tmp_path / "m.safetensors")
    back = npgpt.io.load(tmp_path / "m.safetensors")
    assert type(back.tokenizer) is type(tok)
    assert back.tokenizer.to_dict() == tok.to_dict()
    assert back.tokenizer.encode("hello") == tok.encode("hello")


# ----------------------------------------------------------------------- bundled models
def test_a_bundled_model_is_found_by_name(tmp_path, monkeypatch):
    model = npgpt.GPT(tiny_config(), seed=9)
    model.save(tmp_path / "tiny-test.safetensors")
    monkeypatch.setattr(npgpt.io.loading, "DATA_DIR", str(tmp_path))
    assert npgpt.io.bundled_models() == ["tiny-test"]
    back = npgpt.io.load("tiny-test")
    np.testing.assert_array_equal(back.params["ln_final.weight"], model.params["ln_final.weight"])


def test_an_unknown_name_lists_the_bundled_models(tmp_path, monkeypatch):
    npgpt.GPT(tiny_config()).save(tmp_path / "alpha.safetensors")
    monkeypatch.setattr(npgpt.io.loading, "DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no bundled model.*bundled models: alpha"):
        npgpt.io.load("shakespeare-char")
    monkeypatch.setattr(npgpt.io.loading, "DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="none installed"):
        npgpt.io.load("shakespeare-char")


# --------------------------------------------------------- back to PyTorch (README recipe)
@pytest.mark.torch
@skip_without("torch")
@skip_without("safetensors")
def test_readme_recipe_npgpt_file_loads_into_the_seed_torch_model(tmp_path):
    import torch
    from safetensors.torch import load_file
    from torch_reference import GPTModel
    cfg = tiny_config(residual="seed")
    model = npgpt.GPT(cfg, seed=2, init="torch")
    model.save(tmp_path / "m.safetensors")
    torch_model = GPTModel(cfg.vocab_size, cfg.d_model, cfg.num_heads, cfg.num_layers, 0.0,
                           cfg.context_length, residual="seed", gelu="exact").eval()
    result = torch_model.load_state_dict(load_file(tmp_path / "m.safetensors"), strict=False)
    assert sorted(result.missing_keys) == [f"blocks.{i}.causal_mask" for i in range(cfg.num_layers)]
    assert result.unexpected_keys == []
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, cfg.context_length))
    with torch.no_grad():
        want = torch_model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(model(ids), want, atol=1e-5, rtol=0)


def test_save_in_float16_halves_the_file_and_loads_as_float32(tmp_path):
    import numpy as np

    import npgpt

    cfg = npgpt.GPTConfig(vocab_size=11, context_length=8, d_model=16, num_heads=2, num_layers=1)
    model = npgpt.GPT(cfg, seed=0)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    model.save(str(full))
    model.save(str(half), dtype=np.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = npgpt.load(str(half))
    assert loaded.dtype == np.float32
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], value.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="dtype must be float16, float32 or float64, got int32"):
        model.save(str(tmp_path / "x.safetensors"), dtype=np.int32)
