import dataclasses

import pytest

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
