"""Hugging Face GPT-2 folders: loading (safetensors and .bin) and save_gpt2."""

import json
import os
import shutil
import sys
import types

import numpy as np
import pytest

import npgpt
import npgpt.io
from npgpt.io import CheckpointError
from helpers import FIXTURES, skip_without, tiny_config

FOLDERS = ["tiny_gpt2_safetensors", "tiny_gpt2_bin"]


def gpt2_config(**changes):
    fields = dict(residual="pre_norm", gelu="tanh", tie_embeddings=True, output_bias=False)
    fields.update(changes)
    return tiny_config(**fields)


@pytest.mark.parametrize("name", FOLDERS)
def test_hf_folder_fixture_matches_transformers_logits(name):
    e = np.load(os.path.join(FIXTURES, "checkpoint_expected.npz"))
    model = npgpt.io.load(os.path.join(FIXTURES, name))
    cfg = model.config
    assert (cfg.residual, cfg.gelu, cfg.tie_embeddings, cfg.output_bias) == (
        "pre_norm", "tanh", True, False)
    hf = json.load(open(os.path.join(FIXTURES, name, "config.json")))
    assert cfg.layer_norm_eps == hf["layer_norm_epsilon"]
    assert cfg.context_length == hf["n_positions"] and cfg.num_heads == hf["n_head"]
    np.testing.assert_allclose(model(e[name + ":ids"]), e[name + ":logits"], atol=1e-5, rtol=0)


def copy_folder(tmp_path, name="tiny_gpt2_safetensors"):
    dst = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), dst)
    return dst


def edit_config(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes,message", [
    (dict(model_type="llama"), "model_type"),
    (dict(activation_function="relu"), "activation_function"),
    (dict(n_inner=5), "n_inner"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    (dict(n_head=0), "n_head"),
    (dict(n_head=3), "d_model must be divisible"),
    (dict(n_layer=4), "4 layers"),
    (dict(n_embd=9), "n_embd|shape|divisible"),
    (dict(tie_word_embeddings=False), "lm_head.weight"),
    (dict(layer_norm_epsilon="tiny"), "layer_norm_epsilon"),
])
def test_gpt2_configs_npgpt_cannot_run_are_refused_naming_the_field(tmp_path, changes, message):
    folder = copy_folder(tmp_path)
    edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        npgpt.io.load(folder)


def test_gpt2_folder_problems(tmp_path):
    folder = copy_folder(tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        npgpt.io.load(folder)
    folder = copy_folder(tmp_path, "tiny_gpt2_bin")
    os.remove(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="no model.safetensors, model.safetensors.index.json or pytorch_model.bin"):
        npgpt.io.load(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="without config.json"):
        npgpt.io.load(empty)


def test_extra_or_missing_tensors_in_a_gpt2_file_are_reported(tmp_path):
    folder = copy_folder(tmp_path)
    tensors, meta = npgpt.io.read_safetensors(folder / "model.safetensors")
    tensors = dict(tensors)
    del tensors["transformer.ln_f.bias"]
    npgpt.io.write_safetensors(folder / "model.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="missing: ln_final.bias"):
        npgpt.io.load(folder)
    tensors["transformer.h.0.attn.surprise"] = np.zeros(2, np.float32)    # a name GPT-2 has not
    npgpt.io.write_safetensors(folder / "model.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="unknown tensor name.*transformer.h.0.attn.surprise"):
        npgpt.io.load(folder)


def test_a_single_gpt2_safetensors_file_loads_with_num_heads(tmp_path):
    src = os.path.join(FIXTURES, "tiny_gpt2_safetensors", "model.safetensors")
    e = np.load(os.path.join(FIXTURES, "checkpoint_expected.npz"))
    with pytest.raises(CheckpointError, match=r"num_heads=\.\.\."):
        npgpt.io.load(src)
    model = npgpt.io.load(src, num_heads=2)
    np.testing.assert_allclose(model(e["tiny_gpt2_safetensors:ids"]),
                               e["tiny_gpt2_safetensors:logits"], atol=1e-5, rtol=0)


def test_vocab_and_merges_are_handed_to_bpe_tokenizer_from_gpt2(tmp_path, monkeypatch):
    folder = copy_folder(tmp_path)
    (folder / "vocab.json").write_text("{}")
    (folder / "merges.txt").write_text("#version: 0.2\n")
    calls = []

    class FakeBPE:
        @classmethod
        def from_gpt2(cls, vocab, merges):
            calls.append((vocab, merges))
            return "the tokenizer"
    fake = types.ModuleType("npgpt.tokenizers")
    fake.BPETokenizer = FakeBPE
    monkeypatch.setitem(sys.modules, "npgpt.tokenizers", fake)
    model = npgpt.io.load(folder)
    assert model.tokenizer == "the tokenizer"
    assert calls == [(str(folder / "vocab.json"), str(folder / "merges.txt"))]

    def broken(cls, vocab, merges):
        raise KeyError("Ġthe")
    FakeBPE.from_gpt2 = classmethod(broken)
    with pytest.raises(CheckpointError, match="vocab.json/merges.txt are invalid"):
        npgpt.io.load(folder)


def test_without_a_tokenizers_module_the_weights_still_load(tmp_path, monkeypatch):
    folder = copy_folder(tmp_path)
    (folder / "vocab.json").write_text("{}")
    (folder / "merges.txt").write_text("")
    monkeypatch.setitem(sys.modules, "npgpt.tokenizers", None)   # import fails
    model = npgpt.io.load(folder)
    assert model.tokenizer is None


# ------------------------------------------------------------------------ save_gpt2
def test_save_gpt2_then_load_gives_the_same_model(tmp_path):
    model = npgpt.GPT(gpt2_config(layer_norm_eps=1e-6), seed=3)
    model.save_gpt2(tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    back = npgpt.io.load(tmp_path / "out")
    assert back.config == model.config
    for name, value in model.params.items():
        np.testing.assert_array_equal(back.params[name], value, err_msg=name)
    tensors, meta = npgpt.io.read_safetensors(tmp_path / "out" / "model.safetensors")
    assert meta == {"format": "pt"}
    assert "lm_head.weight" not in tensors
    np.testing.assert_array_equal(tensors["transformer.h.0.attn.c_attn.weight"],
                                  model.params["blocks.0.attn.in_proj_weight"].T)


@pytest.mark.parametrize("field,value", [("residual", "seed"), ("gelu", "exact"),
                                         ("tie_embeddings", False), ("output_bias", True)])
def test_save_gpt2_refuses_configs_gpt2_cannot_express_naming_the_field(tmp_path, field, value):
    model = npgpt.GPT(gpt2_config(**{field: value}))
    with pytest.raises(ValueError, match=f"GPT-2 cannot express {field}="):
        model.save_gpt2(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.transformers
@skip_without("transformers")
@skip_without("torch")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_live_transformers_loads_save_gpt2_with_identical_logits(tmp_path, dtype):
    import torch
    from transformers import GPT2LMHeadModel
    model = npgpt.GPT(gpt2_config(layer_norm_eps=1e-6), seed=5, dtype=dtype)
    model.save_gpt2(tmp_path / "out")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.double().numpy()
    np.testing.assert_allclose(model(ids), want, atol=1e-5, rtol=0)


@pytest.mark.transformers
@skip_without("transformers")
@skip_without("torch")
def test_live_transformers_save_pretrained_loads_in_npgpt(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=23, n_positions=9, n_embd=12, n_layer=2, n_head=4,
                                    bos_token_id=None, eos_token_id=None)).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = npgpt.io.load(tmp_path / "hf")
    ids = np.random.default_rng(1).integers(0, 23, (3, 9))
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(model(ids), want, atol=1e-5, rtol=0)


def test_a_bare_gpt2_pytorch_model_bin_loads_with_num_heads():
    e = np.load(os.path.join(FIXTURES, "checkpoint_expected.npz"))
    path = os.path.join(FIXTURES, "tiny_gpt2_bin", "pytorch_model.bin")
    model = npgpt.io.load(path, num_heads=3, layer_norm_eps=1e-6)
    assert model.config.tie_embeddings and model.config.gelu == "tanh"
    np.testing.assert_allclose(model(e["tiny_gpt2_bin:ids"]), e["tiny_gpt2_bin:logits"],
                               atol=1e-5, rtol=0)


def test_real_bpe_tokenizer_is_attached_from_vocab_and_merges(tmp_path):
    tokenizers = pytest.importorskip("npgpt.tokenizers")
    if not hasattr(tokenizers, "BPETokenizer") or not hasattr(tokenizers, "bytes_to_unicode"):
        pytest.skip("npgpt.tokenizers has no BPETokenizer yet")
    spell = tokenizers.bytes_to_unicode()
    vocab = {spell[b]: b for b in range(256)}
    vocab[spell[ord("h")] + spell[ord("i")]] = 256                  # one merge: "h i" -> 256
    vocab["<|endoftext|>"] = 257
    folder = tmp_path / "gpt2"
    npgpt.GPT(gpt2_config(vocab_size=258), seed=0).save_gpt2(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\nh i\n", encoding="utf-8")
    model = npgpt.io.load(folder)
    assert isinstance(model.tokenizer, tokenizers.BPETokenizer)
    assert model.tokenizer.encode("hi") == [256]
    assert model.tokenizer.decode([256, ord("!")]) == "hi!"


def test_save_gpt2_writes_the_bpe_tokenizer_and_load_brings_it_back(tmp_path):
    import numpy as np

    import npgpt

    text = "the quick brown fox jumps over the lazy dog. " * 20
    tok = npgpt.BPETokenizer.train(text, vocab_size=300)
    cfg = npgpt.GPTConfig(vocab_size=tok.vocab_size, context_length=8, d_model=8, num_heads=2,
                          num_layers=1, residual="pre_norm", gelu="tanh", tie_embeddings=True,
                          output_bias=False)
    model = npgpt.GPT(cfg, seed=0)
    model.tokenizer = tok
    model.save_gpt2(str(tmp_path / "gpt2"))
    assert (tmp_path / "gpt2" / "vocab.json").exists() and (tmp_path / "gpt2" / "merges.txt").exists()
    loaded = npgpt.load(str(tmp_path / "gpt2"))
    sample = "the lazy fox"
    assert loaded.tokenizer.encode(sample) == tok.encode(sample)
    np.testing.assert_allclose(loaded(tok.encode(sample)), model(tok.encode(sample)), atol=1e-6)


def test_a_sharded_gpt2_folder_equals_the_single_file(tmp_path):
    """model.safetensors.index.json's weight_map spreads the tensors over shards in the folder."""
    from npgpt.io import read_safetensors, write_safetensors
    single = os.path.join(FIXTURES, "tiny_gpt2_safetensors")
    folder = tmp_path / "sharded"
    shutil.copytree(single, folder)
    tensors, _ = read_safetensors(folder / "model.safetensors")
    os.remove(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        write_safetensors(folder / shard, {k: tensors[k] for k in keys}, {"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(npgpt.load(folder)(ids), npgpt.load(single)(ids))
