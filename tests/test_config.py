import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import GPTConfig

BASE = dict(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)


def test_defaults_match_the_design():
    cfg = GPTConfig(**BASE)
    assert (cfg.dropout, cfg.gelu, cfg.residual) == (0.0, "exact", "pre_norm")
    assert (cfg.tie_embeddings, cfg.output_bias, cfg.layer_norm_eps) == (False, True, 1e-5)
    assert cfg.head_size == 32


def test_config_is_frozen():
    cfg = GPTConfig(**BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 64


@pytest.mark.parametrize("field", ["vocab_size", "context_length", "d_model", "num_heads", "num_layers"])
@pytest.mark.parametrize("value", [0, -3, 2.5, "8", True, None])
def test_sizes_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a positive integer, got {value!r}"):
        GPTConfig(**{**BASE, field: value})


def test_d_model_divisible_by_heads_names_both():
    with pytest.raises(ValueError, match="d_model=130 and num_heads=4"):
        GPTConfig(**{**BASE, "d_model": 130})


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_dropout_range(value):
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        GPTConfig(**{**BASE, "dropout": value})


@pytest.mark.parametrize("field, value, allowed", [("gelu", "relu", "exact"),
                                                   ("residual", "post_norm", "pre_norm")])
def test_enumerated_fields(field, value, allowed):
    with pytest.raises(ValueError, match=f"{field} must be one of .*{allowed}.*got '{value}'"):
        GPTConfig(**{**BASE, field: value})


@pytest.mark.parametrize("field", ["tie_embeddings", "output_bias"])
def test_flags_must_be_bool(field):
    with pytest.raises(ValueError, match=f"{field} must be True or False, got 1"):
        GPTConfig(**{**BASE, field: 1})


@pytest.mark.parametrize("value", [0.0, -1e-5, 1.0, float("nan")])
def test_layer_norm_eps(value):
    with pytest.raises(ValueError, match="layer_norm_eps"):
        GPTConfig(**{**BASE, "layer_norm_eps": value})


def test_dict_round_trip_and_unknown_fields():
    cfg = GPTConfig(**BASE, residual="seed", gelu="tanh", tie_embeddings=True)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown GPTConfig field.*'n_embd'"):
        GPTConfig.from_dict({**BASE, "n_embd": 3})
    with pytest.raises(ValueError, match="missing GPTConfig field.*'num_layers'"):
        GPTConfig.from_dict({k: v for k, v in BASE.items() if k != "num_layers"})
    assert cfg.replace(num_layers=2).num_layers == 2


# ----------------------------------------------------------------- the Llama-family switches
ROPE = dict(BASE, positions="rope")


@pytest.mark.parametrize("field, value", [("norm", "batchnorm"), ("positions", "alibi"),
                                          ("mlp", "relu"), ("rope_layout", "sideways")])
def test_llama_switches_are_enumerated(field, value):
    with pytest.raises(ValueError, match=f"{field} must be one of .*got '{value}'"):
        GPTConfig(**{**ROPE, field: value})


@pytest.mark.parametrize("field", ["num_kv_heads", "head_dim", "ffn_dim"])
@pytest.mark.parametrize("value", [0, -2, 2.5, "4", True])
def test_llama_sizes_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a positive integer, got {value!r}"):
        GPTConfig(**{**ROPE, field: value})


def test_grouped_query_heads_and_rotary_head_size_are_checked():
    with pytest.raises(ValueError, match="num_kv_heads must divide num_heads, got num_kv_heads=3 and num_heads=4"):
        GPTConfig(**ROPE, num_kv_heads=3)
    with pytest.raises(ValueError, match="head_dim must be even for rotary positions, got 5"):
        GPTConfig(**ROPE, head_dim=5)
    with pytest.raises(ValueError, match="attention_bias must be True or False, got 1"):
        GPTConfig(**ROPE, attention_bias=1)


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), "1e4", True])
def test_rope_theta_must_be_positive_and_finite(value):
    with pytest.raises(ValueError, match=f"rope_theta must be a positive finite number, got {value!r}"):
        GPTConfig(**ROPE, rope_theta=value)


@pytest.mark.parametrize("scaling, message", [
    ("llama3", "rope_scaling must be a dict or None, got 'llama3'"),
    ({"rope_type": "yarn", "factor": 4.0}, "rope_type must be one of .*got 'yarn'"),
    ({"rope_type": "linear", "factor": -2.0}, "factor"),
    ({"rope_type": "llama3", "factor": 8.0}, "low_freq_factor|high_freq_factor|original_max"),
])
def test_rope_scaling_is_checked_naming_the_value(scaling, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**ROPE, rope_scaling=scaling)


@pytest.mark.parametrize("field, value", [("num_kv_heads", 2), ("head_dim", 16), ("attention_bias", True)])
def test_rotary_only_fields_need_rotary_positions(field, value):
    with pytest.raises(ValueError, match=f"{field}=.*needs positions='rope'"):
        GPTConfig(**BASE, **{field: value})


def test_dropout_needs_gpts_attention_and_mlp():
    with pytest.raises(ValueError, match="dropout=0.1 needs positions='learned' and mlp='gelu'"):
        GPTConfig(**ROPE, dropout=0.1)
    with pytest.raises(ValueError, match="dropout=0.1 needs positions='learned' and mlp='gelu'"):
        GPTConfig(**BASE, mlp="swiglu", dropout=0.1)


def test_llama_config_round_trips_and_copies_its_scaling():
    scaling = {"rope_type": "linear", "factor": 2.0}
    cfg = GPTConfig(**ROPE, norm="rmsnorm", mlp="swiglu", num_kv_heads=2, head_dim=16,
                    attention_bias=True, ffn_dim=344, rope_theta=5e5, rope_scaling=scaling,
                    rope_layout="interleaved")
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    scaling["factor"] = 4.0                                   # the frozen config kept its own copy
    assert cfg.rope_scaling["factor"] == 2.0
    assert (cfg.kv_heads, cfg.head_size, cfg.ffn_size) == (2, 16, 344)


# ----------------------------------------------------------------- the rotary angles they make
@pytest.mark.parametrize("changes, message", [
    (dict(rope_theta=1e-300), r"rope_theta=1e-300 .*not finite and positive: inv_freq = \[1.0, inf"),
    (dict(rope_theta=1e299), r"rope_theta=1e\+299 .*not finite and positive: inv_freq = \[1.0, 0.0"),
    (dict(rope_theta=1e-30, head_dim=128, context_length=2 ** 31 - 1),
     r"rope_theta=1e-30 .*context_length=2147483647 .*overflow float32"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 1e299}),
     r"rope_scaling=\{'rope_type': 'linear', 'factor': 1e\+299\}.*not finite and positive"),
])
def test_rope_settings_whose_angles_break_the_model_are_refused(changes, message):
    """Each of these passed the fields' own range checks and made every logit NaN (or
    froze all pairs but the first)."""
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**ROPE, **changes})


def test_a_config_json_with_a_tiny_rope_theta_is_refused_naming_the_folder(tmp_path):
    import json
    import os
    import shutil
    import npgpt
    from npgpt.io import CheckpointError
    source = os.path.join(os.path.dirname(__file__), "fixtures", "llama", "llama_gqa")
    folder = tmp_path / "tiny_theta"
    shutil.copytree(source, folder)
    hf = json.loads((folder / "config.json").read_text())
    hf["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e-300}
    (folder / "config.json").write_text(json.dumps(hf))
    with pytest.raises(CheckpointError, match=r"tiny_theta.*rope_theta=1e-300"):
        npgpt.load(folder)


@settings(max_examples=200, deadline=None)
@given(theta=st.floats(1e-300, 1e299), head_dim=st.sampled_from([2, 4, 8, 64, 128, 256]),
       context=st.integers(1, 2 ** 31 - 1),
       factor=st.none() | st.floats(1.0, 1e300))
def test_an_accepted_rope_config_has_finite_positive_frequencies_and_angles(theta, head_dim,
                                                                            context, factor):
    """Invariant: GPTConfig accepts a rotary config only if the cos/sin tables of every
    position it allows are finite, so its logits can be."""
    import numpy as np
    from npgpt.model import rope_inv_freq
    from npgpt.nn.rope import rope_tables
    scaling = None if factor is None else {"rope_type": "linear", "factor": factor}
    try:
        cfg = GPTConfig(**{**ROPE, "context_length": context, "head_dim": head_dim},
                        rope_theta=theta, rope_scaling=scaling)
    except ValueError as exc:
        assert "rope_theta=" in str(exc)
        return
    inv_freq = rope_inv_freq(cfg)
    assert np.isfinite(inv_freq).all() and (inv_freq > 0).all()
    for dtype in (np.float32, np.float64):
        cos, sin = rope_tables(np.array([0, context - 1]), inv_freq, dtype)
        assert np.isfinite(cos).all() and np.isfinite(sin).all()


def test_slide_past_the_context_refuses_positions_whose_angles_overflow():
    """Within the context the config's angles are finite; slide mode's positions go on
    counting, so generate checks the last one it could reach before the first token (here
    position 136 would overflow: 136 x 2.5e36 > 3.4e38, float32's largest; the model made
    NaN logits there, and blamed its weights)."""
    import numpy as np
    import npgpt
    cfg = GPTConfig(**{**ROPE, "head_dim": 128, "d_model": 256, "num_heads": 2},
                    rope_theta=1e-37, norm="rmsnorm", mlp="swiglu")
    model = npgpt.GPT(cfg, seed=0)
    out = model.generate([1, 2], max_new_tokens=100, context_overflow="slide")
    assert np.isfinite(out.scores).all()
    with pytest.raises(ValueError, match=r"context_overflow='slide' turns rotary positions up "
                                         r"to 201.*rope_theta=1e-37 overflow float32"):
        model.generate([1, 2], max_new_tokens=200, context_overflow="slide")
