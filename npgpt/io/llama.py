"""Hugging Face Llama / Qwen2 / Mistral <-> npgpt: config fields and weight names.

Shapes: C = hidden_size, V = vocab_size, F = intermediate_size, H = num_attention_heads,
Hkv = num_key_value_heads, D = head_dim. Every weight is an ``nn.Linear`` (out, in), as npgpt
keeps it, so the names change and nothing is transposed::

    model.embed_tokens.weight                    (V, C)    token_embedding.weight
    model.layers.N.input_layernorm.weight        (C,)      blocks.N.norm1.weight
    model.layers.N.self_attn.q_proj.weight       (H·D, C)  blocks.N.attn.q_proj.weight
    model.layers.N.self_attn.k_proj / v_proj     (Hkv·D, C) blocks.N.attn.k_proj / v_proj
    model.layers.N.self_attn.q/k/v_proj.bias     (Qwen2)   blocks.N.attn.q/k/v_proj.bias
    model.layers.N.self_attn.o_proj.weight       (C, H·D)  blocks.N.attn.o_proj.weight
    model.layers.N.post_attention_layernorm      (C,)      blocks.N.norm2.weight
    model.layers.N.mlp.gate_proj / up_proj       (F, C)    blocks.N.mlp.gate / up.weight
    model.layers.N.mlp.down_proj                 (C, F)    blocks.N.mlp.down.weight
    model.norm.weight                            (C,)      norm_final.weight
    lm_head.weight                               (V, C)    output_layer.weight (absent when tied)

These models are npgpt with ``norm="rmsnorm"``, ``positions="rope"``, ``mlp="swiglu"``,
``residual="pre_norm"``, ``output_bias=False``, ``rope_layout="half"`` (transformers'
``rotate_half``); Qwen2 adds ``attention_bias=True``. ``max_position_embeddings`` becomes
``context_length`` and ``rms_norm_eps`` ``layer_norm_eps``.
"""

from __future__ import annotations

import os
import re

from ..nn.gqa import GQA
from ..nn.layers import OUTPUT_WEIGHT, TOKEN_TABLE
from ..nn.rmsnorm import RMSNORM
from ..nn.swiglu import SWIGLU
from .build import MAX_DIMENSION, cut, fitting_tokenizer
from .errors import CheckpointError, short_repr
from .gpt2 import layer_index, renamed
from .hf_folder import model_from_hf, read_hf_tensors, with_npgpt_names

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
                 "MistralForCausalLM": "mistral"}
_ROPE_TYPES = ("default", "linear", "llama3")
_NORM1, _NORM2, _NORM_FINAL = RMSNORM.names
_LAYER = {"input_layernorm.weight": f"{_NORM1}.weight",
          "post_attention_layernorm.weight": f"{_NORM2}.weight",
          "mlp.gate_proj.weight": SWIGLU.names["gate_weight"],
          "mlp.up_proj.weight": SWIGLU.names["up_weight"],
          "mlp.down_proj.weight": SWIGLU.names["out_weight"]}
_O_BIAS = GQA.names["out_weight"].rsplit(".", 1)[0] + ".bias"   # no npgpt model has it: the
for _name in (*GQA.names.values(), _O_BIAS):                    # state_dict check names it
    _LAYER["self_attn." + _name.split(".", 1)[1]] = _name      # self_attn.q_proj <-> attn.q_proj
_TOP = {"model.embed_tokens.weight": TOKEN_TABLE, "model.norm.weight": f"{_NORM_FINAL}.weight",
        "lm_head.weight": OUTPUT_WEIGHT}
_LAYER_RE = re.compile(r"^model\.layers\.([^.]*)\.(.+)$")
#: Buffers old Llama files carry besides the weights: the rotary frequencies, which npgpt
#: computes from the config; dropped on load.
LLAMA_BUFFERS = ("self_attn.rotary_emb.inv_freq",)        # in a layer; the model's own:
_TOP_BUFFERS = ("model.rotary_emb.inv_freq",)


def is_llama_config(hf: dict) -> bool:
    """Whether a ``config.json`` dict names a Llama-family model (by ``architectures``, else
    by ``model_type``).

    Examples
    --------
    >>> is_llama_config({"architectures": ["Qwen2ForCausalLM"]}), is_llama_config({"model_type": "gpt2"})
    (True, False)
    """
    arch = hf.get("architectures")
    if isinstance(arch, list) and arch:
        return any(a in ARCHITECTURES for a in arch if isinstance(a, str)) or (
            hf.get("model_type") in ARCHITECTURES.values())
    return hf.get("model_type") in ARCHITECTURES.values()


def _family(hf: dict) -> str:
    """'llama', 'qwen2' or 'mistral', from ``architectures`` (one entry) or ``model_type``."""
    arch = hf.get("architectures")
    if arch is not None:
        if (not isinstance(arch, list) or len(arch) != 1 or not isinstance(arch[0], str)
                or arch[0] not in ARCHITECTURES):
            raise CheckpointError(f"config.json: architectures must be one of "
                                  f"{sorted(ARCHITECTURES)}, got {short_repr(arch)}")
        return ARCHITECTURES[arch[0]]
    model_type = hf.get("model_type")
    if model_type not in ARCHITECTURES.values():
        raise CheckpointError(f"config.json: model_type must be one of "
                              f"{sorted(ARCHITECTURES.values())}, got {short_repr(model_type)}")
    return model_type


def _positive_int(hf, key, default=None):
    value = hf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"config.json: {key} must be a positive integer, got {short_repr(value)}")
    if value > MAX_DIMENSION:
        raise CheckpointError(f"config.json: {key}={short_repr(value)} is larger than any model "
                              f"(at most {MAX_DIMENSION})")
    return value


def _number(value, key, low, high):
    """value as a float in (low, high), compared exactly (never overflows), else CheckpointError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise CheckpointError(f"config.json: {key} must be a number in ({low}, {high}), got "
                              f"{short_repr(value)}")
    return float(value)


def _rope_fields(hf: dict, context_length: int) -> dict:
    """rope_theta and rope_scaling from either layout: transformers < 5 (top-level
    ``rope_theta``, ``rope_scaling``) or ≥ 5 (``rope_parameters`` with ``rope_theta`` inside).
    A non-null ``rope_scaling`` wins, as in transformers."""
    scaling = hf.get("rope_scaling")
    key = "rope_scaling"
    if scaling is None:
        scaling, key = hf.get("rope_parameters"), "rope_parameters"
    if scaling is None:
        scaling = {}
    if not isinstance(scaling, dict):
        raise CheckpointError(f"config.json: {key} must be an object, got {short_repr(scaling)}")
    scaling = dict(scaling)
    if any(isinstance(v, dict) for v in scaling.values()):
        raise CheckpointError(f"config.json: {key} per layer type is not supported, got "
                              f"{short_repr(sorted(scaling))}")
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))   # drops both keys
    if rope_type not in _ROPE_TYPES:
        raise CheckpointError(f"config.json: rope_type must be one of {_ROPE_TYPES}, got "
                              f"{short_repr(rope_type)}")
    theta = _number(scaling.pop("rope_theta", hf.get("rope_theta", 10000.0)), "rope_theta", 0, 1e300)
    factor = scaling.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if factor not in (None, 1, 1.0):
        raise CheckpointError(f"config.json: partial_rotary_factor={short_repr(factor)} is not "
                              f"supported (npgpt rotates whole heads)")
    if rope_type == "default":
        return {"rope_theta": theta, "rope_scaling": None}
    if rope_type == "llama3":
        scaling.setdefault("original_max_position_embeddings", context_length)
    for name, value in scaling.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e300:
            raise CheckpointError(f"config.json: rope scaling {name} must be a positive number, "
                                  f"got {short_repr(value)}")
    return {"rope_theta": theta, "rope_scaling": {"rope_type": rope_type, **scaling}}


def _refuse_sliding_windows(hf: dict, family: str, context_length: int) -> None:
    """A CheckpointError for a Mistral ``sliding_window`` shorter than the context, or Qwen2's
    ``use_sliding_window`` / ``layer_types`` other than full attention: npgpt has no
    sliding-window attention mask."""
    window = hf.get("sliding_window")
    if family == "mistral" and window is not None and not (
            isinstance(window, int) and not isinstance(window, bool)
            and window >= context_length):
        raise CheckpointError(f"config.json: sliding_window={short_repr(window)} is shorter than "
                              f"max_position_embeddings={context_length}; npgpt has no "
                              f"sliding-window attention mask")
    if family == "qwen2":
        if hf.get("use_sliding_window", False) is not False:
            raise CheckpointError(f"config.json: use_sliding_window="
                                  f"{short_repr(hf['use_sliding_window'])} is not supported "
                                  f"(npgpt has no sliding-window attention mask)")
        layer_types = hf.get("layer_types") or []
        if not isinstance(layer_types, list) or any(t != "full_attention" for t in layer_types):
            raise CheckpointError(f"config.json: layer_types must all be 'full_attention', got "
                                  f"{short_repr(layer_types)}")


def config_fields_from_hf(hf: dict) -> dict:
    """GPTConfig fields from a Hugging Face Llama, Qwen2 or Mistral ``config.json`` dict.

    Refuses (CheckpointError, naming the field) what npgpt does not run: another
    architecture, ``hidden_act`` other than silu, ``mlp_bias``, Llama's ``attention_bias``
    (which adds an o_proj bias too), a rope_type other than default / linear / llama3,
    ``partial_rotary_factor``, a Mistral ``sliding_window`` shorter than
    ``max_position_embeddings`` and Qwen2's ``use_sliding_window`` (npgpt has no sliding
    attention mask), and sizes that are not positive integers.

    Examples
    --------
    >>> hf = {"architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 32,
    ...       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    ...       "num_key_value_heads": 2, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
    ...       "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}
    >>> fields = config_fields_from_hf(hf)
    >>> fields["num_kv_heads"], fields["ffn_dim"], fields["rope_theta"], fields["attention_bias"]
    (2, None, 500000.0, False)
    >>> config_fields_from_hf({**hf, "hidden_act": "gelu"})
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: config.json: hidden_act 'gelu' is not supported (npgpt's SwiGLU uses 'silu')
    """
    family = _family(hf)
    C = _positive_int(hf, "hidden_size")
    H = _positive_int(hf, "num_attention_heads")
    fields = dict(vocab_size=_positive_int(hf, "vocab_size"), d_model=C, num_heads=H,
                  num_layers=_positive_int(hf, "num_hidden_layers"),
                  context_length=_positive_int(hf, "max_position_embeddings"),
                  ffn_dim=_positive_int(hf, "intermediate_size"))
    kv = _positive_int(hf, "num_key_value_heads", H) if hf.get("num_key_value_heads") is not None else H
    if H % kv:
        raise CheckpointError(f"config.json: num_key_value_heads={kv} must divide "
                              f"num_attention_heads={H}")
    head_dim = hf.get("head_dim")
    head_dim = C // H if head_dim is None else _positive_int(hf, "head_dim")
    if head_dim % 2:
        raise CheckpointError(f"config.json: head_dim={head_dim} must be even for rotary positions")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise CheckpointError(f"config.json: hidden_act {short_repr(act)} is not supported "
                              f"(npgpt's SwiGLU uses 'silu')")
    if hf.get("mlp_bias", False) is not False:
        raise CheckpointError(f"config.json: mlp_bias={short_repr(hf['mlp_bias'])} is not "
                              f"supported (npgpt's SwiGLU has no biases)")
    if family == "llama" and hf.get("attention_bias", False) is not False:
        raise CheckpointError(f"config.json: attention_bias={short_repr(hf['attention_bias'])} "
                              f"is not supported for Llama (it adds an o_proj bias); Qwen2's "
                              f"q/k/v biases are")
    _refuse_sliding_windows(hf, family, fields["context_length"])
    tie = hf.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise CheckpointError(f"config.json: tie_word_embeddings must be true or false, got "
                              f"{short_repr(tie)}")
    eps = _number(hf.get("rms_norm_eps", 1e-6), "rms_norm_eps", 0, 1)
    if fields["ffn_dim"] == 4 * C:
        fields["ffn_dim"] = None                                      # GPTConfig's default
    fields.update(num_kv_heads=kv if kv != H else None,
                  head_dim=head_dim if head_dim != C // H else None,
                  attention_bias=family == "qwen2", norm="rmsnorm", positions="rope",
                  mlp="swiglu", gelu="exact", residual="pre_norm", output_bias=False,
                  rope_layout="half",
                  tie_embeddings=tie, layer_norm_eps=eps, dropout=0.0,
                  **_rope_fields(hf, fields["context_length"]))
    return fields


def state_dict_from_hf(tensors: dict) -> dict:
    """Llama-family weights (HF names) -> npgpt names; nothing is transposed.

    ``rotary_emb.inv_freq`` buffers (:data:`LLAMA_BUFFERS` in a layer, or the model's
    ``model.rotary_emb.inv_freq``; old files) are dropped, as npgpt computes them. Every other name must be one of the table in the module
    doc, its layer number canonical (:func:`npgpt.io.gpt2.layer_index`: ``model.layers.00``
    or ``model.layers.٠`` is not layer 0), and no two names may land on one parameter
    (``output_layer.weight`` beside ``lm_head.weight``): anything else is a CheckpointError
    naming the tensor(s), as transformers would ignore such a name and compute something
    else from the same file.

    Examples
    --------
    >>> import numpy as np
    >>> hf = {"model.embed_tokens.weight": np.zeros((5, 4)),
    ...       "model.layers.0.mlp.gate_proj.weight": np.zeros((8, 4)),
    ...       "model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(2)}
    >>> sorted(state_dict_from_hf(hf))
    ['blocks.0.mlp.gate.weight', 'token_embedding.weight']
    >>> state_dict_from_hf({**hf, "model.layers.00.mlp.gate_proj.weight": np.zeros((8, 4))})
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: tensor 'model.layers.00.mlp.gate_proj.weight': layer index '00' is not a canonical number (ASCII digits 0-9, no leading zero)
    """
    def rename(name):
        match = _LAYER_RE.match(name)
        if not match:
            return (None, True) if name in _TOP_BUFFERS else (_TOP.get(name, name), name in _TOP)
        layer, rest = match.groups()
        prefix = f"blocks.{layer_index(layer, name)}."
        if rest in LLAMA_BUFFERS:
            return None, True
        return (prefix + _LAYER[rest], True) if rest in _LAYER else (name, False)
    return renamed(tensors, rename)


def load_llama_folder(folder, hf: dict, overrides: dict):
    """The model of a Hugging Face Llama / Qwen2 / Mistral folder whose ``config.json`` is
    ``hf``: the weights (:func:`npgpt.io.hf_folder.read_hf_tensors`) renamed
    (:func:`state_dict_from_hf`), and ``tokenizer.json`` (with the folder's chat template)
    when it is there.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                       output_bias=False)
    >>> npgpt.GPT(cfg, seed=0).save_hf("tiny-llama")
    >>> from npgpt.io.hf_folder import read_config_json
    >>> hf = read_config_json("tiny-llama/config.json")
    >>> load_llama_folder("tiny-llama", hf, {}).config == cfg
    True
    """
    source = os.fspath(folder)
    fields = config_fields_from_hf(hf)
    model = model_from_hf(with_npgpt_names(state_dict_from_hf, read_hf_tensors(folder, source),
                                           source), fields, overrides, source)
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        from ..tokenizers.hf import load_tokenizer_json, read_folder_extras
        try:
            tokenizer = read_folder_extras(load_tokenizer_json(path), folder)  # + chat template
        except Exception as exc:   # untrusted tokenizer.json: any failure is a bad folder
            raise CheckpointError(f"{source}: tokenizer.json is invalid: {type(exc).__name__}: "
                                  f"{cut(str(exc), 400)}") from None
        model.tokenizer = fitting_tokenizer(tokenizer, model.config, f"{source}: tokenizer.json")
    return model


def hf_state_dict(params: dict, num_layers: int) -> dict:
    """npgpt parameters -> Llama-family names (``lm_head.weight`` only when untied).

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                 norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False)
    >>> hf = hf_state_dict(GPT(cfg).params, num_layers=1)
    >>> hf["model.layers.0.mlp.down_proj.weight"].shape, "lm_head.weight" in hf
    ((8, 32), True)
    >>> sorted(state_dict_from_hf(hf)) == sorted(GPT(cfg).params)
    True
    """
    inverse_layer = {ours: theirs for theirs, ours in _LAYER.items()}
    inverse_top = {ours: theirs for theirs, ours in _TOP.items()}
    out = {}
    for name, value in params.items():
        match = re.match(r"^blocks\.(\d+)\.(.+)$", name)
        if match:
            out[f"model.layers.{match.group(1)}.{inverse_layer[match.group(2)]}"] = value
        else:
            out[inverse_top[name]] = value
    return out


def hf_config(config, dtype_name: str, architecture=None) -> dict:
    """The ``config.json`` dict of the Llama, Qwen2 or Mistral model equivalent to ``config``,
    readable by transformers 4 (``rope_theta``, ``rope_scaling``) and 5 (``rope_parameters``).

    ``architecture`` : "llama", "qwen2", "mistral" or None: Qwen2 when the model has q/k/v
    biases (``attention_bias``; Qwen2 always has them, Llama and Mistral never), else Llama.

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                 norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False,
    ...                 num_kv_heads=1, ffn_dim=24)
    >>> hf = hf_config(cfg, "float32")
    >>> hf["architectures"], hf["num_key_value_heads"], hf["intermediate_size"], hf["head_dim"]
    (['LlamaForCausalLM'], 1, 24, 4)
    >>> hf_config(cfg, "float32", "mistral")["architectures"]
    ['MistralForCausalLM']
    >>> hf_config(cfg, "float32", "qwen2")
    Traceback (most recent call last):
        ...
    ValueError: architecture 'qwen2' needs attention_bias=True (Qwen2's q, k and v projections always have biases)
    """
    family = architecture or ("qwen2" if config.attention_bias else "llama")
    if family not in ARCHITECTURES.values():
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES.values())} or None, "
                         f"got {architecture!r}")
    if family == "qwen2" and not config.attention_bias:
        raise ValueError("architecture 'qwen2' needs attention_bias=True (Qwen2's q, k and v "
                         "projections always have biases)")
    if family != "qwen2" and config.attention_bias:
        raise ValueError(f"architecture {family!r} cannot express attention_bias=True (its "
                         f"attention_bias adds an o_proj bias too); use 'qwen2'")
    names = {v: k for k, v in ARCHITECTURES.items()}
    scaling = None if config.rope_scaling is None else dict(config.rope_scaling)
    theta = float(config.rope_theta)
    hf = {
        "architectures": [names[family]], "model_type": family,
        "vocab_size": config.vocab_size, "hidden_size": config.d_model,
        "intermediate_size": config.ffn_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_size, "hidden_act": "silu",
        "max_position_embeddings": config.context_length, "rms_norm_eps": config.layer_norm_eps,
        "tie_word_embeddings": config.tie_embeddings, "rope_theta": theta,
        "rope_scaling": scaling,
        "rope_parameters": {"rope_type": "default", **(scaling or {}), "rope_theta": theta},
        "attention_dropout": 0.0, "dtype": dtype_name, "bos_token_id": None,
        "eos_token_id": None, "pad_token_id": None,
    }
    if family == "qwen2":
        hf.update(use_sliding_window=False, sliding_window=None)
    elif family == "mistral":
        hf.update(sliding_window=None)
    else:
        hf.update(attention_bias=False, mlp_bias=False)
    return hf
