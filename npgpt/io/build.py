"""From fields and tensors read from a file to a GPT, the step every loader ends with
(:mod:`npgpt.io.loading`, :mod:`npgpt.io.hf_folder`, :mod:`npgpt.io.gguf`): each config value
checked before GPTConfig sees it, the caller's overrides merged, the model built without a
random init, a tokenizer checked to fit the embedding table.
"""

from __future__ import annotations

import numpy as np

from .errors import CheckpointError, short_repr

#: No size of a model (vocabulary, context, width, heads, layers) is larger: a config that
#: says otherwise is refused before anything is allocated.
MAX_DIMENSION = 2 ** 31 - 1
#: GPTConfig fields the weights' shapes fix: an override must agree with them.
SHAPE_FIELDS = ("vocab_size", "context_length", "d_model", "num_layers",
                "tie_embeddings", "output_bias")
_UNKNOWABLE = ("num_heads", "residual", "gelu")      # what a state_dict's shapes cannot tell
_INT_FIELDS = ("vocab_size", "context_length", "d_model", "num_heads", "num_layers")
MAX_MESSAGE = 600         # characters of a model-side message quoted in a CheckpointError


def _config_fields():
    import dataclasses
    from ..config import GPTConfig
    return {f.name for f in dataclasses.fields(GPTConfig)}


def _field_problem(name: str, value):
    """Why ``value`` cannot be the GPTConfig field ``name`` (a short phrase), or None.

    Checked before GPTConfig sees the value, with exact comparisons only: an integer too
    large for a float, a float or a bool where an integer belongs, a size no model has.
    """
    from ..config import GELU_KINDS, RESIDUAL_KINDS
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if name in _INT_FIELDS:
        if not number or not isinstance(value, int) or value <= 0:
            return "must be a positive integer"
        if value > MAX_DIMENSION:
            return f"is larger than any model (at most {MAX_DIMENSION})"
    elif name == "dropout" and not (number and 0 <= value < 1):
        return "must be a number in [0, 1)"
    elif name == "layer_norm_eps" and not (number and 0 < value < 1):
        return "must be a number in (0, 1)"
    elif name in ("gelu", "residual"):
        kinds = GELU_KINDS if name == "gelu" else RESIDUAL_KINDS
        if not isinstance(value, str) or value not in kinds:
            return f"must be one of {kinds}"
    elif name in ("tie_embeddings", "output_bias", "attention_bias") and not isinstance(value, bool):
        return "must be True or False"
    elif name in ("num_kv_heads", "head_dim", "ffn_dim") and value is not None:
        if not number or not isinstance(value, int) or value <= 0:
            return "must be a positive integer or null"
        if value > MAX_DIMENSION:
            return f"is larger than any model (at most {MAX_DIMENSION})"
    elif name in ("norm", "positions", "mlp", "rope_layout") and not isinstance(value, str):
        return "must be a string"
    elif name == "rope_theta" and not (number and 0 < value < 1e300):
        return "must be a positive number"
    elif name == "rope_scaling" and value is not None and not isinstance(value, dict):
        return "must be an object or null"
    return None


def checked_config(fields: dict, source: str, what: str = "invalid config"):
    """GPTConfig from ``fields`` read from a file, or a CheckpointError naming the field.

    Every value is checked before GPTConfig sees it, so each message is short and no
    value of the wrong kind reaches arithmetic (``float(10**400)`` raises OverflowError).

    >>> fields = dict(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1)
    >>> checked_config(fields, "m.json").d_model
    8
    >>> checked_config({**fields, "num_layers": 1.0}, "m.json")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: m.json: invalid config: num_layers must be a positive integer, got 1.0
    """
    from ..config import GPTConfig
    unknown = sorted(str(name) for name in set(fields) - _config_fields())
    if unknown:
        raise CheckpointError(f"{source}: {what}: unknown GPTConfig field(s) "
                              f"{short_repr(unknown, 200)}")
    for name, value in fields.items():
        problem = _field_problem(name, value)
        if problem:
            raise CheckpointError(f"{source}: {what}: {name} {problem}, got "
                                  f"{short_repr(value)}")
    try:
        return GPTConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {what}: {exc}") from None


def make_config(fields: dict, overrides: dict, source: str, inferred=()):
    """GPTConfig from ``fields`` updated by ``overrides``.

    Overrides of ``inferred`` fields (read from the weights) must agree with them.

    >>> shapes = dict(vocab_size=10, context_length=8, d_model=8, num_layers=1,
    ...               tie_embeddings=False, output_bias=True)
    >>> told = dict(num_heads=2, residual="seed", gelu="exact")
    >>> make_config(shapes, told, "seed.pt", SHAPE_FIELDS).num_heads
    2
    >>> make_config(shapes, {**told, "d_model": 16}, "seed.pt", SHAPE_FIELDS)
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: seed.pt: override d_model=16 contradicts the weights, which say d_model=8
    """
    unknown = sorted(set(overrides) - _config_fields())
    if unknown:
        raise ValueError(f"unknown config override(s): {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(_config_fields()))}")
    for name in inferred:
        if name in overrides and name in fields and overrides[name] != fields[name]:
            raise CheckpointError(f"{source}: override {name}={short_repr(overrides[name])} "
                                  f"contradicts the weights, which say "
                                  f"{name}={short_repr(fields[name])}")
    merged = {**fields, **overrides}
    missing = [n for n in _UNKNOWABLE if n not in merged]
    if missing:
        example = ", ".join(f"{n}=..." for n in missing)
        raise CheckpointError(
            f"{source}: a state_dict's shapes cannot tell {', '.join(missing)}; pass "
            f"them: npgpt.load(path, {example}) (the seed's GPTModel uses "
            f"residual='seed', gelu='exact')")
    return checked_config(merged, source)


def model_dtype(tensors: dict, source: str):
    """float64 if every floating tensor is float64, else float32.

    >>> model_dtype({"a": np.zeros(2)}, "m").__name__, model_dtype({"a": np.zeros(2, np.float16)}, "m").__name__
    ('float64', 'float32')
    """
    kinds = {np.dtype(v.dtype) for v in tensors.values()}
    if kinds and all(k == np.float64 for k in kinds):
        return np.float64
    return np.float32


def build_model(config, state: dict, dtype, source: str):
    """A GPT with ``config`` holding ``state``, without spending time on a random init.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1)
    >>> state = npgpt.GPT(cfg, seed=0).state_dict()
    >>> build_model(cfg, state, np.float32, "m.safetensors").config == cfg
    True
    """
    from ..config import GPTConfig
    from ..model import GPT, block_parameter_shapes
    per_block = len(block_parameter_shapes(config, 0))
    if per_block * config.num_layers > len(state):    # before parameter_shapes builds a huge dict
        raise CheckpointError(f"{source}: the config has {config.num_layers} layers but the "
                              f"file holds only {len(state)} tensors")
    stub = GPTConfig(vocab_size=1, context_length=1, d_model=1, num_heads=1, num_layers=1)
    model = GPT(stub, dtype=dtype)          # a few numbers; replaced wholesale below
    model.config = config
    try:
        model.load_state_dict(state)
    except ValueError as exc:             # its message lists names read from the file: cut it
        raise CheckpointError(f"{source}: the tensors do not fit the config: "
                              f"{cut(str(exc))}") from None
    return model


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, cut to ``limit`` characters with ``...`` when longer.

    >>> cut("abcdefgh", 6), cut("abc", 6)
    ('abc...', 'abc')
    """
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fitting_tokenizer(tokenizer, config, source: str):
    """``tokenizer``, if its ids all index the model's embedding table.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=2, context_length=8, d_model=8, num_heads=2, num_layers=1)
    >>> fitting_tokenizer(npgpt.CharTokenizer.from_text("abc"), cfg, "m")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: m: the tokenizer has ids up to 2 but the model's vocab_size is 2: ids from 2 on would index past the embedding table
    """
    size = getattr(tokenizer, "vocab_size", None)
    if isinstance(size, int) and size > config.vocab_size:
        raise CheckpointError(f"{source}: the tokenizer has ids up to {size - 1} but the model's "
                              f"vocab_size is {config.vocab_size}: ids from "
                              f"{config.vocab_size} on would index past the embedding table")
    return tokenizer
