"""Llama-family checkpoints: Hugging Face Llama / Qwen2 / Mistral folders against transformers.

The folders under ``fixtures/llama/`` were written by transformers' own ``save_pretrained``
(``fixtures/make_llama_fixtures.py``), with the logits and ``generate`` outputs transformers
gave for them. Here npgpt loads each folder with NumPy alone and must give the same logits
(≤ 1e-5 relative to the largest logit) and the same greedy and beam-search tokens. When
transformers imports, the same checks also run live, and ``save_hf`` folders are loaded
back by transformers.
"""

import json
import os
import shutil

import numpy as np
import pytest

import npgpt
from npgpt import inference
from npgpt.generation import generate
from npgpt.io import CheckpointError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "llama")
NAMES = ["llama_gqa", "llama_tied_llama3", "llama_linear_head16", "qwen2", "mistral",
         "llama_bf16", "llama_sharded"]
INPUTS = json.load(open(os.path.join(FIXTURES, "inputs.json")))
RELATIVE = 1e-5


def expected(name, key):
    with np.load(os.path.join(FIXTURES, "expected.npz")) as e:
        return e[f"{name}/{key}"]


def relative_error(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def hf_config(name):
    return json.load(open(os.path.join(FIXTURES, name, "config.json")))


# ----------------------------------------------------------------------------- fixtures
@pytest.mark.parametrize("name", NAMES)
def test_config_json_becomes_the_llama_block(name):
    hf, cfg = hf_config(name), npgpt.load(os.path.join(FIXTURES, name)).config
    assert (cfg.norm, cfg.positions, cfg.mlp, cfg.residual, cfg.output_bias) == (
        "rmsnorm", "rope", "swiglu", "pre_norm", False)
    assert cfg.d_model == hf["hidden_size"] and cfg.num_layers == hf["num_hidden_layers"]
    assert cfg.num_heads == hf["num_attention_heads"] and cfg.kv_heads == hf["num_key_value_heads"]
    assert cfg.head_size == (hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"])
    assert cfg.ffn_size == hf["intermediate_size"]
    assert cfg.tie_embeddings == hf["tie_word_embeddings"]
    assert cfg.attention_bias == (hf["model_type"] == "qwen2")
    assert cfg.layer_norm_eps == hf["rms_norm_eps"]
    assert cfg.context_length == hf["max_position_embeddings"]
    rope = hf["rope_parameters"]
    assert cfg.rope_theta == rope["rope_theta"]
    assert (cfg.rope_scaling or {}).get("rope_type", "default") == rope["rope_type"]


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_transformers(name):
    model = npgpt.load(os.path.join(FIXTURES, name))
    assert model.dtype == np.float32                      # bf16 is widened on load
    logits = model(np.array([INPUTS["prompt"]]))[0]
    assert relative_error(logits, expected(name, "logits")) <= RELATIVE


@pytest.mark.parametrize("name", NAMES)
def test_left_padded_batch_logits_equal_transformers(name):
    model = npgpt.load(os.path.join(FIXTURES, name))
    mask = np.array(INPUTS["batch_mask"])
    logits = model(np.array(INPUTS["batch"]), attention_mask=mask)
    real = mask.astype(bool)                               # padded rows' logits are not compared
    assert relative_error(logits[real], expected(name, "batch_logits")[real]) <= RELATIVE


@pytest.mark.parametrize("name", NAMES)
def test_greedy_and_beam_search_equal_transformers_generate(name):
    model = npgpt.load(os.path.join(FIXTURES, name))
    n = INPUTS["max_new_tokens"]
    greedy = generate(model, [INPUTS["prompt"]], max_new_tokens=n).sequences
    np.testing.assert_array_equal(greedy, expected(name, "greedy"))
    batch = generate(model, np.array(INPUTS["batch"]), attention_mask=np.array(INPUTS["batch_mask"]),
                     max_new_tokens=n, pad_token_id=INPUTS["pad_token_id"]).sequences
    np.testing.assert_array_equal(batch, expected(name, "batch_greedy"))
    K = INPUTS["num_beams"]
    beam = generate(model, [INPUTS["prompt"]], max_new_tokens=n, num_beams=K, num_return_sequences=K)
    np.testing.assert_array_equal(beam.sequences, expected(name, "beam"))
    np.testing.assert_allclose(beam.scores, expected(name, "beam_scores"), rtol=1e-5, atol=1e-6)


def test_bf16_is_the_top_half_of_a_float32():
    """The bf16 folder's weights are exactly the float32 ones with the low 16 bits cut."""
    bf16 = npgpt.load(os.path.join(FIXTURES, "llama_bf16"))
    for value in bf16.params.values():
        bits = np.ascontiguousarray(value, np.float32).view(np.uint32)
        assert not (bits & 0xFFFF).any()


def test_sharded_folder_equals_its_tensors_in_one_file(tmp_path):
    sharded = npgpt.load(os.path.join(FIXTURES, "llama_sharded"))
    index = json.load(open(os.path.join(FIXTURES, "llama_sharded", "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) > 1
    sharded.save_hf(tmp_path / "single")
    single = npgpt.load(tmp_path / "single")
    assert single.config == sharded.config
    for name, value in sharded.params.items():
        np.testing.assert_array_equal(single.params[name], value)


# ----------------------------------------------------------------------------- save_hf
@pytest.mark.parametrize("name", ["llama_gqa", "llama_tied_llama3", "llama_linear_head16", "qwen2"])
def test_save_hf_round_trips_through_npgpt(name, tmp_path):
    model = npgpt.load(os.path.join(FIXTURES, name))
    model.save_hf(tmp_path / "out")
    back = npgpt.load(tmp_path / "out")
    assert back.config == model.config
    ids = np.array([INPUTS["prompt"]])
    np.testing.assert_array_equal(back(ids), model(ids))


def test_save_hf_refuses_what_a_llama_folder_cannot_express(tmp_path):
    model = npgpt.load(os.path.join(FIXTURES, "llama_gqa"))
    with pytest.raises(ValueError, match="qwen2.*attention_bias"):
        model.save_hf(tmp_path / "q", architecture="qwen2")
    with pytest.raises(ValueError, match="architecture must be"):
        model.save_hf(tmp_path / "q", architecture="phi")
    assert not os.path.exists(tmp_path / "q")
    for field, value in (("rope_layout", "interleaved"), ("output_bias", True), ("mlp", "gelu")):
        other = npgpt.GPT(model.config.replace(**{field: value}))
        with pytest.raises(ValueError, match=field):
            other.save_hf(tmp_path / field)
        assert not os.path.exists(tmp_path / field)


# ----------------------------------------------------------------------------- refusals
def edited_folder(tmp_path, name="llama_gqa", **changes):
    folder = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), folder)
    hf = hf_config(name)
    for key, value in changes.items():
        if value is ...:
            hf.pop(key, None)
        else:
            hf[key] = value
    (folder / "config.json").write_text(json.dumps(hf))
    return folder


@pytest.mark.parametrize("changes,message", [
    (dict(architectures=["PhiForCausalLM"]), "architectures"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(mlp_bias=True), "mlp_bias"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(num_key_value_heads=3), "num_key_value_heads"),
    (dict(head_dim=7), "head_dim"),
    (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}), "rope_type"),
    (dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                           "partial_rotary_factor": 0.5}), "partial_rotary_factor"),
    (dict(rms_norm_eps="tiny"), "rms_norm_eps"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(num_hidden_layers=3), "3 layers"),
    (dict(tie_word_embeddings=True), "lm_head|output_layer|tensor"),
])
def test_unsupported_llama_configs_are_refused_naming_the_field(tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=message):
        npgpt.load(edited_folder(tmp_path, **changes))


def test_a_mistral_sliding_window_shorter_than_the_context_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="sliding_window=16"):
        npgpt.load(edited_folder(tmp_path, "mistral", sliding_window=16))
    assert npgpt.load(edited_folder(tmp_path / "b", "mistral", sliding_window=None)).config


def test_qwen2_sliding_window_in_use_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="use_sliding_window"):
        npgpt.load(edited_folder(tmp_path, "qwen2", use_sliding_window=True))


def test_both_rope_layouts_of_config_json_are_read(tmp_path):
    """transformers < 5 writes rope_theta / rope_scaling at the top level; ≥ 5 writes
    rope_parameters. Both describe the same model."""
    new = npgpt.load(os.path.join(FIXTURES, "llama_tied_llama3"))
    params = dict(hf_config("llama_tied_llama3")["rope_parameters"])
    theta = params.pop("rope_theta")
    old = npgpt.load(edited_folder(tmp_path, "llama_tied_llama3", rope_parameters=...,
                                   rope_theta=theta, rope_scaling=params))
    assert old.config == new.config
    ids = np.array([INPUTS["prompt"]])
    np.testing.assert_array_equal(old(ids), new(ids))


def test_a_missing_shard_is_named(tmp_path):
    folder = edited_folder(tmp_path, "llama_sharded")
    shard = sorted(f for f in os.listdir(folder) if f.startswith("model-"))[1]
    os.remove(folder / shard)
    with pytest.raises(CheckpointError, match=shard):
        npgpt.load(folder)


def test_a_shard_name_outside_the_folder_is_refused(tmp_path):
    folder = edited_folder(tmp_path, "llama_sharded")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "../model.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="shard"):
        npgpt.load(folder)


# ----------------------------------------------------------------------------- live
def hf_classes():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return transformers


@pytest.mark.parametrize("name", ["llama_gqa", "llama_tied_llama3", "llama_linear_head16",
                                  "qwen2", "mistral", "llama_sharded"])
def test_live_transformers_logits(name):
    transformers = hf_classes()
    import torch
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(FIXTURES, name), dtype=torch.float32).eval()
    model = npgpt.load(os.path.join(FIXTURES, name))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 20))
    with torch.no_grad():
        want = reference(torch.tensor(ids)).logits.numpy()
    assert relative_error(model(ids), want) <= RELATIVE


@pytest.mark.parametrize("fields,architecture", [
    (dict(num_kv_heads=2, tie_embeddings=False), None),
    (dict(num_kv_heads=1, tie_embeddings=True, rope_theta=500000.0,
          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8}), "llama"),
    (dict(num_kv_heads=2, attention_bias=True, tie_embeddings=True), None),     # Qwen2
    (dict(num_kv_heads=2, head_dim=8, rope_scaling={"rope_type": "linear", "factor": 2.0}),
     "mistral"),
])
def test_live_save_hf_folder_loads_in_transformers(fields, architecture, tmp_path):
    transformers = hf_classes()
    import torch
    cfg = npgpt.GPTConfig(vocab_size=50, context_length=32, d_model=16, num_heads=4, num_layers=2,
                          norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False,
                          ffn_dim=40, layer_norm_eps=1e-6, **fields)
    model = npgpt.GPT(cfg, seed=3, init="torch")
    model.save_hf(tmp_path / "out", architecture=architecture)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", dtype=torch.float32).eval()
    family = architecture or ("qwen2" if cfg.attention_bias else "llama")
    assert reference.config.model_type == family
    assert npgpt.load(tmp_path / "out").config == cfg
    ids = np.random.default_rng(1).integers(0, 50, (1, 12))
    with torch.no_grad():
        want = reference(torch.tensor(ids)).logits.numpy()
        greedy = reference.generate(torch.tensor(ids), max_new_tokens=10, do_sample=False,
                                    pad_token_id=0).numpy()
    assert relative_error(model(ids), want) <= RELATIVE
    np.testing.assert_array_equal(generate(model, ids, max_new_tokens=10).sequences, greedy)



@pytest.mark.parametrize("name", ["llama2", "llama3"])
def test_save_hf_writes_the_tokenizer_json_back(name, tmp_path):
    from npgpt.tokenizers import load_tokenizer_json
    tokenizer = load_tokenizer_json(os.path.join(os.path.dirname(__file__), "fixtures",
                                                 "hf_tokenizers", f"{name}.json"))
    cfg = npgpt.GPTConfig(vocab_size=tokenizer.vocab_size, context_length=32, d_model=16,
                          num_heads=2, num_layers=1, norm="rmsnorm", positions="rope",
                          mlp="swiglu", output_bias=False)
    model = npgpt.GPT(cfg, seed=0)
    model.tokenizer = tokenizer
    model.save_hf(tmp_path / "out")
    back = npgpt.load(tmp_path / "out")
    assert back.tokenizer == tokenizer
    text = "Hello, world: ▁ bytes 日本語 🙂"
    assert back.tokenizer.encode(text) == tokenizer.encode(text)
    out = generate(back, back.tokenizer.encode("Hello"), max_new_tokens=3)
    assert out.sequences.shape == (1, len(back.tokenizer.encode("Hello")) + 3)
    model.tokenizer = None      # saving without one removes the folder's file, saying so
    with pytest.warns(UserWarning, match="model.tokenizer is None, so the folder's tokenizer.json"):
        model.save_hf(tmp_path / "out")
    assert npgpt.load(tmp_path / "out").tokenizer is None
    assert not (tmp_path / "out" / "tokenizer.json").exists()


def test_the_llama_qkv_and_gate_up_are_kept_side_by_side_o_column_major_and_down_row_major():
    # x @ W.T runs fastest from a row-major (in, out) W.T for the widening and square matrices,
    # and one product over [W_q | W_k | W_v] (and [W_gate | W_up]) beats three (two) at batch 1;
    # down stays as PyTorch lays it out. The layout survives astype and load_state_dict.
    from npgpt.params import stacked
    cfg = npgpt.GPTConfig(vocab_size=32, context_length=16, d_model=16, num_heads=4, num_layers=2,
                          norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2, output_bias=False)
    qkv = [f"attn.{n}_proj.weight" for n in "qkv"]
    gate_up = ["mlp.gate.weight", "mlp.up.weight"]

    def check(model):
        p = model.params
        for i in range(cfg.num_layers):
            block = lambda names: [p[f"blocks.{i}.{n}"] for n in names]
            assert stacked(block(qkv)).shape == (16, 16 + 2 * 8)            # (C, H·D + 2·Hkv·D)
            assert stacked(block(gate_up)).shape == (16, 2 * cfg.ffn_size)
            assert not np.shares_memory(p[f"blocks.{i}.{qkv[0]}"], p[f"blocks.{(i + 1) % 2}.{qkv[0]}"])
            assert p[f"blocks.{i}.attn.o_proj.weight"].T.flags.c_contiguous
            assert p[f"blocks.{i}.mlp.down.weight"].flags.c_contiguous
        ids = np.array([1, 2, 3, 4])
        assert inference.weights(p, model.config)["blocks"][0].attn.kind == "stacked"
        np.testing.assert_array_equal(inference.forward(inference.weights(p, model.config), ids[None]),
                                      model(ids)[None])

    for model in (npgpt.GPT(cfg, seed=0), npgpt.GPT(cfg, seed=0).astype(np.float64)):
        check(model)
        state = model.state_dict()
        again = npgpt.GPT(cfg, seed=1, dtype=model.params["blocks.0.mlp.up.weight"].dtype)
        again.load_state_dict({k: np.ascontiguousarray(v) for k, v in state.items()})
        check(again)
        np.testing.assert_array_equal(again(np.array([1, 2, 3, 4])), model(np.array([1, 2, 3, 4])))


def test_a_llama_whose_parameters_were_replaced_one_by_one_still_decodes_the_same():
    # replacing q alone breaks the side-by-side layout: inference takes three products then
    cfg = npgpt.GPTConfig(vocab_size=32, context_length=16, d_model=16, num_heads=4, num_layers=1,
                          norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2, output_bias=False)
    model = npgpt.GPT(cfg, seed=0)
    before = model(np.array([1, 2, 3]))
    for name in ("blocks.0.attn.q_proj.weight", "blocks.0.mlp.up.weight"):
        model.params[name] = model.params[name].copy()
    w = inference.weights(model.params, model.config)
    assert w["blocks"][0].attn.kind == "separate" and w["blocks"][0].mlp.weights[3] is None
    np.testing.assert_array_equal(inference.forward(w, np.array([[1, 2, 3]]))[0], before)
    np.testing.assert_array_equal(model(np.array([1, 2, 3])), before)
