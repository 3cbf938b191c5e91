"""Training the Llama-style model: ``npgpt.train.model_config("llama", ...)`` and
``npgpt train --arch llama`` (RMSNorm, rotary positions, SwiGLU sized for the GPT's parameter
count, no output bias), its checkpoints and resume."""

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.train import (AdamW, TrainConfig, TrainState, decayed_parameters, estimate_loss, load_checkpoint,
                         matched_ffn_dim, model_config, num_parameters, split_corpus, train)

from helpers import run_cli as run

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8



def tiny_gpt(vocab_size=20, **changes):
    fields = dict(vocab_size=vocab_size, context_length=16, d_model=16, num_heads=4, num_layers=2)
    return npgpt.GPTConfig(**{**fields, **changes})


# ----------------------------------------------------------------------- the config
@given(d_model=st.sampled_from([16, 32, 48, 64, 128]), heads=st.sampled_from([1, 2, 4]),
       layers=st.integers(1, 6), context=st.integers(1, 256), vocab=st.integers(2, 300),
       tie=st.booleans(), grouped=st.booleans())
@settings(max_examples=60, deadline=None)
def test_llama_width_matches_the_gpt_parameter_count(d_model, heads, layers, context, vocab, tie, grouped):
    """The SwiGLU width F (a multiple of 8) puts the Llama-style count within half a step of F
    (3·C·L·4 parameters) of the GPT's — unless the GPT is smaller than the smallest F gives."""
    gpt = npgpt.GPTConfig(vocab_size=vocab, context_length=context, d_model=d_model,
                          num_heads=heads, num_layers=layers, tie_embeddings=tie)
    kv = 1 if grouped else None
    llama = model_config("llama", gpt, num_kv_heads=kv)
    assert (llama.norm, llama.positions, llama.mlp, llama.output_bias) == ("rmsnorm", "rope", "swiglu", False)
    assert llama.kv_heads == (1 if grouped else heads) and llama.ffn_dim % 8 == 0
    gap = num_parameters(llama) - num_parameters(gpt)
    assert abs(gap) <= 3 * d_model * layers * 4 or (llama.ffn_dim == 8 and gap > 0)
    assert num_parameters(llama) == npgpt.GPT(llama).num_parameters()


def test_the_shakespeare_sizes():
    gpt = npgpt.GPTConfig(vocab_size=65, context_length=128, d_model=128, num_heads=4, num_layers=4)
    llama = model_config("llama", gpt)
    assert llama.ffn_dim == matched_ffn_dim(gpt) == 352                # 8C/3 = 341, plus the position table
    assert (num_parameters(gpt), num_parameters(llama)) == (826_433, 820_608)


@pytest.mark.parametrize("changes, message", [
    (dict(dropout=0.1), "dropout=0.1 has no counterpart"),
    (dict(gelu="tanh"), "gelu='tanh' has no counterpart"),
    (dict(residual="seed"), "residual='seed' has no counterpart"),
])
def test_gpt_only_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        model_config("llama", tiny_gpt(**changes))


def test_bad_arch_and_kv_heads_for_gpt():
    with pytest.raises(ValueError, match=r"arch must be one of \('gpt', 'llama'\), got 'bert'"):
        model_config("bert", tiny_gpt())
    with pytest.raises(ValueError, match="num_kv_heads=2 needs arch='llama'"):
        model_config("gpt", tiny_gpt(), num_kv_heads=2)


def test_weight_decay_skips_rmsnorm_gains():
    model = npgpt.GPT(model_config("llama", tiny_gpt()))
    decayed = decayed_parameters(model.params)
    assert not [n for n in decayed if "norm" in n or "embedding" in n]
    assert "blocks.0.mlp.gate.weight" in decayed and "blocks.1.attn.q_proj.weight" in decayed


# ----------------------------------------------------------------------- training
def test_a_few_steps_decrease_the_loss():
    ids = np.array([ord(c) % 20 for c in TEXT])
    train_data, val_data = split_corpus(ids)
    model = npgpt.GPT(model_config("llama", tiny_gpt(), num_kv_heads=2), seed=0)
    tc = TrainConfig(batch_size=8, steps=30, lr=1e-2, min_lr=1e-3, warmup=5, eval_interval=30,
                     eval_iters=4, seed=0)
    state = TrainState.new(model, tc)
    before = estimate_loss(model, val_data, 8, 16, 4, seed=0)
    train(state, train_data, val_data)
    after = estimate_loss(model, val_data, 8, 16, 4, seed=0)
    assert before > np.log(20) - 0.5 and after < before - 0.8, (before, after)


# ----------------------------------------------------------------------- the command line
TINY = ("--layers", "2", "--heads", "4", "--d-model", "16", "--context", "8", "--batch-size", "4",
        "--eval-interval", "3", "--eval-iters", "2", "--warmup", "2")


def test_cli_arch_llama_round_trip(capsys, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(out_dir), "--arch", "llama",
                         "--kv-heads", "2", "--steps", "6", *TINY)
    assert code == 0, err
    model = npgpt.load(str(out_dir))
    cfg = model.config
    assert (cfg.norm, cfg.positions, cfg.mlp, cfg.kv_heads, cfg.output_bias) == ("rmsnorm", "rope", "swiglu", 2, False)
    gpt = npgpt.GPTConfig(vocab_size=cfg.vocab_size, context_length=8, d_model=16, num_heads=4, num_layers=2)
    assert cfg == model_config("llama", gpt, num_kv_heads=2)
    assert f"{model.num_parameters():,} parameters (the GPT of these sizes: {num_parameters(gpt):,})" in err
    assert "Llama-style" in err and model.tokenizer.decode(model.tokenizer.encode("Speak")) == "Speak"
    with zipfile.ZipFile(out_dir / "ckpt.npz") as archive:           # the checkpoint's config
        meta = json.loads(np.load(archive.open("meta.npy")).item()) if "meta.npy" in archive.namelist() else None
    saved = load_checkpoint(str(out_dir / "ckpt.npz")).model.config
    assert saved == cfg and saved.to_dict()["num_kv_heads"] == 2 and saved.to_dict()["ffn_dim"] == cfg.ffn_dim
    assert meta is None or meta["config"]["positions"] == "rope"
    out = model.generate(np.array(model.tokenizer.encode("All:")), max_new_tokens=12,
                         context_overflow="slide")               # past the context of 8
    assert out.sequences.shape == (1, 4 + 12)


def test_cli_resume_llama_is_bit_identical(capsys, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(capsys, "train", "--data", str(data), "--out", str(straight), "--arch", "llama",
               "--steps", "6", *TINY)[0] == 0
    assert run(capsys, "train", "--data", str(data), "--out", str(split), "--arch", "llama",
               "--steps", "3", *TINY)[0] == 0
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(split), "--resume", "--steps", "6")
    assert code == 0 and "resuming from" in err and "after 6 steps" in out, err
    a, b = load_checkpoint(str(straight / "ckpt.npz")), load_checkpoint(str(split / "ckpt.npz"))
    assert b.model.config.positions == "rope" and a.step == b.step == 6
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
        assert np.array_equal(a.optimizer.v[name], b.optimizer.v[name]), name
    assert a.history == b.history
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(split), "--resume",
                       "--arch", "gpt", "--steps", "8")
    assert code == 2 and "--arch gpt contradicts the checkpoint's llama" in err
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(split), "--resume",
                       "--kv-heads", "1", "--steps", "8")
    assert code == 2 and "--kv-heads 1 contradicts" in err


@pytest.mark.parametrize("argv, message", [
    (("--arch", "bert"), "argument --arch: invalid choice: 'bert'"),
    (("--kv-heads", "2"), "--kv-heads needs --arch llama"),
    (("--arch", "llama", "--kv-heads", "3"), "--kv-heads must divide --heads, got --kv-heads 3 and --heads 4"),
    (("--arch", "llama", "--dropout", "0.1"), "--dropout 0.1 is a GPT setting: the Llama-style block "
                                              "(--arch llama) has no dropout"),
    (("--arch", "llama", "--gelu", "exact"), "--gelu exact is a GPT setting"),
    (("--arch", "llama", "--residual", "seed"), "--residual seed is a GPT setting"),
])
def test_cli_bad_arch_options_are_clear_errors(capsys, tmp_path, argv, message):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"), *argv)
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists()


def test_cli_gpt_is_the_default(capsys, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"),
                       "--steps", "2", *TINY)
    assert code == 0 and "model: GPT," in err
    assert npgpt.load(str(tmp_path / "run")).config.positions == "learned"


def test_adamw_state_of_a_llama_model_round_trips(tmp_path):
    """The optimiser state keyed by the Llama parameter names saves and loads."""
    model = npgpt.GPT(model_config("llama", tiny_gpt()), seed=1)
    opt = AdamW(model.params, decay=decayed_parameters(model.params))
    state = opt.state_dict()
    again = AdamW(model.params, decay=decayed_parameters(model.params))
    again.load_state_dict(state)
    assert again.t == opt.t and set(again.m) == set(model.params)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("positions, kv, bias", [("learned", None, False), ("rope", None, False),
                                                 ("rope", 1, True)])
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("tie, output_bias", [(False, True), (True, False)])
def test_num_parameters_counts_every_parameter(norm, positions, kv, bias, mlp, tie, output_bias):
    """The closed form (no per-layer table: ``--layers 1000000000`` is counted, not built)."""
    cfg = npgpt.GPTConfig(vocab_size=7, context_length=5, d_model=8, num_heads=2, num_layers=2,
                          norm=norm, positions=positions, mlp=mlp, tie_embeddings=tie,
                          output_bias=output_bias, num_kv_heads=kv, attention_bias=bias,
                          ffn_dim=12 if mlp == "swiglu" else None)
    assert num_parameters(cfg) == npgpt.GPT(cfg).num_parameters()
    huge = model_config("llama", npgpt.GPTConfig(vocab_size=65, context_length=64, d_model=128,
                                                 num_heads=4, num_layers=10**9))
    assert num_parameters(huge) > 10**14
