"""Hugging Face GPT-2 <-> npgpt: config fields and weight names.

Shapes: C = n_embd, V = vocab_size, F = 4 C. GPT-2 uses ``Conv1D`` layers that store their
weight as (in, out) — the transpose of ``nn.Linear``'s (out, in) — so::

    h.N.attn.c_attn.weight (C, 3C)  = blocks.N.attn.in_proj_weight.T   (3C, C)
    h.N.attn.c_proj.weight (C, C)   = blocks.N.attn.out_proj.weight.T
    h.N.mlp.c_fc.weight    (C, F)   = blocks.N.ffn.0.weight.T           (F, C)
    h.N.mlp.c_proj.weight  (F, C)   = blocks.N.ffn.2.weight.T           (C, F)
    wte (V, C) = token_embedding.weight, wpe (n_positions, C) = position_encoding.weight,
    h.N.ln_1 / ln_2 = blocks.N.ln1 / ln2, ln_f = ln_final, lm_head.weight tied to wte.

GPT-2 is npgpt with ``residual="pre_norm"``, ``gelu="tanh"`` (``gelu_new``),
``tie_embeddings=True`` and ``output_bias=False``.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..nn.attention import ATTENTION
from ..nn.layers import LAYERNORM, OUTPUT_WEIGHT, POSITION_TABLE, TOKEN_TABLE
from ..nn.mlp import MLP
from .build import MAX_DIMENSION, cut, fitting_tokenizer
from .errors import CheckpointError, short_repr
from .hf_folder import (MAX_CONFIG_BYTES, model_from_hf, read_config_json,  # noqa: F401
                        read_hf_tensors, with_npgpt_names)

_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
_EXACT_GELUS = ("gelu",)
_TRANSPOSED = {"attn.c_attn.weight": ATTENTION.names["in_weight"],
               "attn.c_proj.weight": ATTENTION.names["out_weight"],
               "mlp.c_fc.weight": MLP.names["fc_weight"],
               "mlp.c_proj.weight": MLP.names["out_weight"]}
_LN1, _LN2, _LN_FINAL = LAYERNORM.names
_PLAIN = {"attn.c_attn.bias": ATTENTION.names["in_bias"],
          "attn.c_proj.bias": ATTENTION.names["out_bias"],
          "mlp.c_fc.bias": MLP.names["fc_bias"], "mlp.c_proj.bias": MLP.names["out_bias"],
          "ln_1.weight": f"{_LN1}.weight", "ln_1.bias": f"{_LN1}.bias",
          "ln_2.weight": f"{_LN2}.weight", "ln_2.bias": f"{_LN2}.bias"}
_TOP = {"wte.weight": TOKEN_TABLE, "wpe.weight": POSITION_TABLE,
        "ln_f.weight": f"{_LN_FINAL}.weight", "ln_f.bias": f"{_LN_FINAL}.bias",
        "lm_head.weight": OUTPUT_WEIGHT}
_BLOCK_RE = re.compile(r"^h\.([^.]*)\.(.+)$")
#: Buffers old GPT-2 files carry besides the weights (the causal mask and its fill value):
#: constants npgpt rebuilds, dropped on load.
GPT2_BUFFERS = ("attn.bias", "attn.masked_bias")
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,5}", re.ASCII)


def layer_index(text: str, name: str) -> int:
    """The layer number ``text`` written in ``name``, in its one canonical spelling: ASCII
    digits without a leading zero (``"00"`` or an Arabic-Indic ``"٠"`` would be a second name
    for layer 0), else CheckpointError naming the tensor.

    Examples
    --------
    >>> layer_index("12", "h.12.ln_1.weight")
    12
    >>> layer_index("01", "h.01.ln_1.weight")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: tensor 'h.01.ln_1.weight': layer index '01' is not a canonical number (ASCII digits 0-9, no leading zero)
    """
    if not _INDEX_RE.fullmatch(text):
        raise CheckpointError(f"tensor {short_repr(name)}: layer index {short_repr(text)} is not "
                              f"a canonical number (ASCII digits 0-9, no leading zero)")
    return int(text)


def renamed(tensors: dict, rename) -> dict:
    """``{rename(name): value}`` for every tensor whose ``rename`` is not None (a buffer
    dropped), refusing two names that land on one parameter (CheckpointError naming both):
    either one would silently replace the other. ``rename(name)`` returns (new name,
    known); a name not ``known`` is kept as it is for the collision check, then refused.

    Examples
    --------
    >>> renamed({"a": 1, "b": 2}, lambda n: (n.upper(), True))
    {'A': 1, 'B': 2}
    >>> renamed({"x.a": 1, "a": 2}, lambda n: (n.split(".")[-1], True))
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: tensors 'x.a' and 'a' are both the parameter 'a'; one would silently replace the other
    """
    out, source, unknown = {}, {}, []
    for name, value in tensors.items():
        new, known = rename(name)
        if new is None:
            continue
        if new in source:
            raise CheckpointError(f"tensors {short_repr(source[new])} and {short_repr(name)} "
                                  f"are both the parameter {short_repr(new)}; one would "
                                  f"silently replace the other")
        source[new], out[new] = name, value
        if not known:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"unknown tensor name(s) {short_repr(unknown[:5], 300)}"
                              f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}")
    return out


def config_fields_from_hf(hf: dict) -> dict:
    """GPTConfig fields from a Hugging Face GPT-2 config dict.

    Refuses (CheckpointError, naming the field) what npgpt cannot run: another model_type,
    an activation other than GELU, n_inner != 4 n_embd, cross-attention, unscaled or
    layer-scaled attention; and values of the wrong kind: a size that is not a positive
    integer (``64.0``, ``true``) or is above :data:`MAX_DIMENSION`, a layer_norm_epsilon
    that is not a number in (0, 1).

    Examples
    --------
    >>> hf = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}
    >>> fields = config_fields_from_hf(hf)
    >>> fields["d_model"], fields["context_length"], fields["gelu"], fields["tie_embeddings"]
    (768, 1024, 'tanh', True)
    >>> config_fields_from_hf({**hf, "model_type": "llama"})
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: config.json: model_type must be 'gpt2', got 'llama'
    """
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise CheckpointError(f"config.json: model_type must be 'gpt2', got "
                              f"{short_repr(model_type)}")
    fields = {}
    for ours, theirs in (("vocab_size", ("vocab_size",)), ("d_model", ("n_embd",)),
                         ("num_heads", ("n_head",)), ("num_layers", ("n_layer",)),
                         ("context_length", ("n_positions", "n_ctx"))):
        value = next((hf[k] for k in theirs if k in hf), None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CheckpointError(f"config.json: {theirs[0]} must be a positive integer, "
                                  f"got {short_repr(value)}")
        if value > MAX_DIMENSION:
            raise CheckpointError(f"config.json: {theirs[0]}={short_repr(value)} is larger "
                                  f"than any model (at most {MAX_DIMENSION})")
        fields[ours] = value
    act = hf.get("activation_function", "gelu_new")
    if act in _TANH_GELUS:
        fields["gelu"] = "tanh"
    elif act in _EXACT_GELUS:
        fields["gelu"] = "exact"
    else:
        raise CheckpointError(f"config.json: activation_function {short_repr(act)} is not "
                              f"supported (npgpt has {', '.join(_TANH_GELUS + _EXACT_GELUS)})")
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * fields["d_model"]:
        raise CheckpointError(f"config.json: n_inner={short_repr(n_inner)} is not supported "
                              f"(npgpt's feed-forward width is 4*n_embd)")
    for key, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                        ("add_cross_attention", False)):
        if hf.get(key, wanted) != wanted:
            raise CheckpointError(f"config.json: {key}={short_repr(hf[key])} is not "
                                  f"supported (npgpt needs {wanted})")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise CheckpointError(f"config.json: layer_norm_epsilon must be a number in (0, 1), "
                              f"got {short_repr(eps)}")      # compared exactly: never overflows
    tie = hf.get("tie_word_embeddings", True)
    if not isinstance(tie, bool):
        raise CheckpointError(f"config.json: tie_word_embeddings must be true or false, "
                              f"got {short_repr(tie)}")
    fields.update(residual="pre_norm", tie_embeddings=tie, output_bias=False,
                  layer_norm_eps=float(eps), dropout=0.0)
    return fields


def load_gpt2_folder(folder, overrides: dict):
    """The model of a Hugging Face GPT-2 folder: ``config.json``, the weights
    (:func:`npgpt.io.hf_folder.read_hf_tensors`) renamed and transposed
    (:func:`state_dict_from_hf`), and ``vocab.json`` + ``merges.txt`` when both are there.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> npgpt.GPT(cfg, seed=0).save_gpt2("tiny-gpt2")
    >>> load_gpt2_folder("tiny-gpt2", {}).config == cfg
    True
    """
    source = os.fspath(folder)
    hf = read_config_json(os.path.join(folder, "config.json"))
    fields = config_fields_from_hf(hf)
    model = model_from_hf(with_npgpt_names(state_dict_from_hf, read_hf_tensors(folder, source),
                                           source), fields, overrides, source)
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if os.path.exists(vocab) and os.path.exists(merges):
        try:
            from ..tokenizers import BPETokenizer
            from_gpt2 = BPETokenizer.from_gpt2
        except (ImportError, AttributeError):
            return model                       # tokenizers not available yet: weights only
        try:
            tokenizer = from_gpt2(vocab, merges)
        except Exception as exc:   # untrusted vocab/merges: any failure is a bad folder
            raise CheckpointError(f"{source}: vocab.json/merges.txt are invalid: "
                                  f"{type(exc).__name__}: {cut(str(exc), 400)}") from None
        model.tokenizer = fitting_tokenizer(tokenizer, model.config, f"{source}: vocab.json")
    return model


def is_gpt2_state_dict(tensors) -> bool:
    """Whether the names look like GPT-2's (``wte.weight``, optionally ``transformer.``).

    Examples
    --------
    >>> is_gpt2_state_dict({"transformer.wte.weight": None}), is_gpt2_state_dict({"wte.weight": None})
    (True, True)
    >>> is_gpt2_state_dict({"token_embedding.weight": None})       # the seed's names
    False
    """
    return any(k in ("wte.weight", "transformer.wte.weight") for k in tensors)


def state_dict_from_hf(tensors: dict) -> dict:
    """GPT-2 weights (HF names) -> npgpt/seed names, Conv1D weights transposed.

    ``h.N.attn.bias`` / ``h.N.attn.masked_bias`` (:data:`GPT2_BUFFERS`, mask buffers of old
    files) are dropped. Every other name must be GPT-2's, with or without the
    ``transformer.`` prefix, its layer number canonical (:func:`layer_index`), and no two
    names may land on one parameter (:func:`renamed`): anything else is a CheckpointError
    naming the tensor(s), as transformers would ignore such a name and compute something
    else from the same file.

    Examples
    --------
    >>> hf = {"transformer.wte.weight": np.zeros((5, 4)),              # (V, C)
    ...       "transformer.h.0.mlp.c_fc.weight": np.zeros((4, 16)),     # Conv1D (C, F)
    ...       "transformer.h.0.attn.bias": np.ones((1, 1, 8, 8))}       # a causal-mask buffer
    >>> {name: value.shape for name, value in state_dict_from_hf(hf).items()}
    {'token_embedding.weight': (5, 4), 'blocks.0.ffn.0.weight': (16, 4)}
    >>> state_dict_from_hf({"h.0.ln_1.weight": np.ones(4), "transformer.h.0.ln_1.weight": np.ones(4)})
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: tensors 'h.0.ln_1.weight' and 'transformer.h.0.ln_1.weight' are both the parameter 'blocks.0.ln1.weight'; one would silently replace the other
    """
    def rename(name):
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        match = _BLOCK_RE.match(key)
        if not match:
            return _TOP.get(key, name), key in _TOP
        layer, rest = match.groups()
        prefix = f"blocks.{layer_index(layer, name)}."
        if rest in GPT2_BUFFERS:
            return None, True
        if rest in _TRANSPOSED:
            shape = np.shape(tensors[name])
            if len(shape) != 2:
                raise CheckpointError(f"{short_repr(name)}: expected a 2-D Conv1D weight, "
                                      f"got shape {short_repr(shape)}")
            return prefix + _TRANSPOSED[rest], True
        return (prefix + _PLAIN[rest], True) if rest in _PLAIN else (name, False)

    out = renamed(tensors, rename)
    for name in out:
        if name.endswith(tuple(_TRANSPOSED.values())):                 # Conv1D (in, out) -> (out, in)
            out[name] = np.ascontiguousarray(np.asarray(out[name]).T)
    return out


def hf_state_dict(params: dict, num_layers: int) -> dict:
    """npgpt parameters -> GPT-2 names (``transformer.`` prefix, Conv1D layout), no lm_head.

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> params = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=4, num_heads=2,
    ...                        num_layers=1), seed=0).params
    >>> hf = hf_state_dict(params, num_layers=1)
    >>> params["blocks.0.ffn.0.weight"].shape, hf["transformer.h.0.mlp.c_fc.weight"].shape
    ((16, 4), (4, 16))
    >>> np.array_equal(state_dict_from_hf(hf)["blocks.0.ffn.0.weight"], params["blocks.0.ffn.0.weight"])
    True
    """
    p = params
    out = {"transformer.wte.weight": p[TOKEN_TABLE], "transformer.wpe.weight": p[POSITION_TABLE]}
    for i in range(num_layers):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for hf_name, name in _PLAIN.items():
            out[theirs + hf_name] = p[ours + name]
        for hf_name, name in _TRANSPOSED.items():
            out[theirs + hf_name] = np.ascontiguousarray(p[ours + name].T)
    out["transformer.ln_f.weight"] = p[_TOP["ln_f.weight"]]
    out["transformer.ln_f.bias"] = p[_TOP["ln_f.bias"]]
    return out


def hf_config(config, dtype_name: str) -> dict:
    """The ``config.json`` dict of a GPT-2 equivalent to ``config`` (a GPTConfig).

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> gpt2_small = GPTConfig(vocab_size=50257, context_length=1024, d_model=768, num_heads=12,
    ...                        num_layers=12, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> hf = hf_config(gpt2_small, "float32")
    >>> hf["n_embd"], hf["n_head"], hf["activation_function"], hf["eos_token_id"]
    (768, 12, 'gelu_new', 50256)
    """
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.context_length,
        "n_embd": config.d_model, "n_layer": config.num_layers, "n_head": config.num_heads,
        "n_inner": None, "activation_function": "gelu_new",
        "layer_norm_epsilon": config.layer_norm_eps, "tie_word_embeddings": True,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout, "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "dtype": dtype_name,
        # GPT-2's <|endoftext|> when the vocabulary has it, else none
        "bos_token_id": 50256 if config.vocab_size > 50256 else None,
        "eos_token_id": 50256 if config.vocab_size > 50256 else None,
    }
