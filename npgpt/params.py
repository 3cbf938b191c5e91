"""The parameters of a GPT: their names and shapes, their memory layout, their initial values.

Every name comes from the layer that uses it (``npgpt.nn``'s parts: the norms, the attention,
the MLP, the embedding and output tables in ``npgpt/nn/layers.py``); this module only puts them
in order: the token table (and the position table), each block's (two norms, attention, MLP),
the final norm, the output layer — the order of the seed's ``state_dict()``.

Shapes: V vocabulary, C = d_model, F the feed-forward width, H heads, Hkv key/value heads,
D head size, L layers.
"""

from __future__ import annotations

import numpy as np

from .config import GPTConfig
from .nn.block import block_parts
from .nn.layers import OUTPUT_BIAS, OUTPUT_WEIGHT, POSITION_TABLE, TOKEN_TABLE

FLOAT_DTYPES = (np.float32, np.float64)


def parameter_shapes(config: GPTConfig) -> dict:
    """Name -> shape of every parameter, in the order of the seed's ``state_dict()``.

    With ``tie_embeddings`` there is no ``output_layer.weight`` (the token table is used);
    without ``output_bias`` there is no ``output_layer.bias``.

    Examples
    --------
    >>> shapes = parameter_shapes(GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                     num_heads=2, num_layers=1))
    >>> shapes["token_embedding.weight"], shapes["blocks.0.attn.in_proj_weight"], len(shapes)
    ((10, 16), (48, 16), 18)
    """
    V, C = config.vocab_size, config.d_model
    norm = block_parts(config)[0]
    shapes = {TOKEN_TABLE: (V, C)}
    if config.positions == "learned":
        shapes[POSITION_TABLE] = (config.context_length, C)
    for i in range(config.num_layers):
        shapes.update(block_parameter_shapes(config, i))
    shapes.update({f"{norm.names[2]}.{kind}": shape for kind, shape in norm.shapes(config).items()})
    if not config.tie_embeddings:
        shapes[OUTPUT_WEIGHT] = (V, C)
    if config.output_bias:
        shapes[OUTPUT_BIAS] = (V,)
    return shapes


def block_parameter_shapes(config: GPTConfig, i: int) -> dict:
    """Name -> shape of block i's parameters: its two norms, its attention, its MLP.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=4, num_layers=1,
    ...                 norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2, ffn_dim=40)
    >>> block_parameter_shapes(cfg, 0)
    {'blocks.0.norm1.weight': (16,), 'blocks.0.norm2.weight': (16,), 'blocks.0.attn.q_proj.weight': (16, 16), 'blocks.0.attn.k_proj.weight': (8, 16), 'blocks.0.attn.v_proj.weight': (8, 16), 'blocks.0.attn.o_proj.weight': (16, 16), 'blocks.0.mlp.gate.weight': (40, 16), 'blocks.0.mlp.up.weight': (40, 16), 'blocks.0.mlp.down.weight': (16, 40)}
    """
    norm, attention, mlp = block_parts(config)
    p = f"blocks.{i}."
    shapes = {f"{p}{name}.{kind}": shape
              for name in norm.names[:2] for kind, shape in norm.shapes(config).items()}
    shapes.update({p + name: shape for name, shape in attention.shapes(config).items()})
    shapes.update({p + name: shape for name, shape in mlp.shapes(config).items()})
    return shapes


def output_layer(params, config):
    """The output layer's weight (V, C) — the token table with ``tie_embeddings`` — and bias
    (V,) or None (without ``output_bias``).

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
    ...                 tie_embeddings=True, output_bias=False)
    >>> params = init_parameters(cfg, np.random.default_rng(0))
    >>> weight, bias = output_layer(params, cfg)
    >>> weight is params["token_embedding.weight"], bias
    (True, None)
    """
    return params[TOKEN_TABLE] if config.tie_embeddings else params[OUTPUT_WEIGHT], params.get(OUTPUT_BIAS)


def _in_block(name):
    """A block parameter's name without its ``blocks.N.`` prefix; other names unchanged."""
    return name.split(".", 2)[2] if name.startswith("blocks.") else name


def column_major(name: str, config: GPTConfig) -> bool:
    """Whether GPT keeps parameter ``name`` column-major, so that ``W.T`` in ``x @ W.T`` is a
    row-major (in, out) matrix: the attention's two projections, the feed-forward's first
    layer and the output layer (the token table when it is reused there). Those are the
    products BLAS runs fastest that way, measured on GPT-2 small's shapes: the output layer
    1.6x at batch 1, every one of them 1.3-2x at batches of 2 to 8. The feed-forward's second
    layer (4C -> C, narrowing) stays row-major, which made batch-1 decoding 18% faster. The
    values, names and shapes are PyTorch's either way; only the order of the bytes differs.
    The Llama family's follow the same rule: q and o, gate and up; k and v too, as columns of
    the one matrix they share with q (:func:`stack_groups`); down stays row-major. Each layer
    family names its column-major matrices (``Part.column_major``) and the ones it stacks
    (``Part.stacked``).

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
    >>> column_major("blocks.0.ffn.0.weight", cfg), column_major("blocks.0.ffn.2.weight", cfg)
    (True, False)
    """
    _, attention, mlp = block_parts(config)
    local = _in_block(name)
    roles = [(part, role) for part in (attention, mlp)
             for role in part.column_major + tuple(r for group in part.stacked for r in group)]
    return (any(local == part.names[role] for part, role in roles)
            or name == OUTPUT_WEIGHT or (name == TOKEN_TABLE and config.tie_embeddings))


def stacked_groups(config: GPTConfig) -> list:
    """The parameter names, per block, that :func:`stack_groups` keeps side by side in one
    matrix (``Part.stacked``): the Llama family's q, k, v and gate, up.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
    ...                 norm="rmsnorm", positions="rope", mlp="swiglu")
    >>> stacked_groups(cfg)
    [('blocks.0.attn.q_proj.weight', 'blocks.0.attn.k_proj.weight', 'blocks.0.attn.v_proj.weight'), ('blocks.0.mlp.gate.weight', 'blocks.0.mlp.up.weight')]
    """
    _, attention, mlp = block_parts(config)
    return [tuple(f"blocks.{i}.{part.names[role]}" for role in group)
            for i in range(config.num_layers) for part in (attention, mlp) for group in part.stacked]


def stacked(arrays):
    """The row-major (in, Σ out) matrix [W_a.T | W_b.T | ...] of which ``arrays`` (each
    (out, in)) are the adjacent columns, in order, as :func:`stack_groups` makes them, or None
    when they are separate arrays (then nothing is copied to make one).

    Examples
    --------
    >>> a, b = np.ones((3, 2)), np.zeros((1, 2))
    >>> stacked([a, b]) is None
    True
    >>> group = stack_groups({"a": a, "b": b}, None, [("a", "b")])
    >>> stacked([group["a"], group["b"]])
    array([[1., 1., 1., 0.],
           [1., 1., 1., 0.]])
    """
    base = arrays[0].base
    if base is None or base.ndim != 2 or not base.flags.c_contiguous:
        return None
    address, column = base.__array_interface__["data"][0], 0
    for a in arrays:
        if (a.base is not base or a.ndim != 2 or a.shape[1] != base.shape[0]
                or a.strides != (base.itemsize, base.strides[0])
                or a.__array_interface__["data"][0] != address + column * base.itemsize):
            return None
        column += a.shape[0]
    return base if column == base.shape[1] else None


def stack_groups(params: dict, config: GPTConfig, groups=None) -> dict:
    """``params`` with each group of :func:`stacked_groups` moved into one row-major
    (in, Σ out) matrix, [W_q.T | W_k.T | W_v.T], each parameter the view (out, in) of its
    columns: the values, names and shapes are unchanged, no byte is held twice, and a decoding
    step reads the group in one matrix-vector product instead of three (SmolLM2-135M: about
    13% less time in its products on one thread; ``npgpt.inference.weights`` finds the matrix
    with :func:`stacked`). Groups already stacked, or not all present, are left as they are.
    ``params`` is changed in place (and returned), one group at a time, so that loading a
    model never holds more than one group's matrices twice.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
    ...                 norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1)
    >>> p = stack_groups({k: np.ones(s) for k, s in parameter_shapes(cfg).items()}, cfg)
    >>> stacked([p["blocks.0.attn.q_proj.weight"], p["blocks.0.attn.k_proj.weight"],
    ...          p["blocks.0.attn.v_proj.weight"]]).shape                       # (C, H·D + 2·Hkv·D)
    (16, 32)
    """
    for names in (stacked_groups(config) if groups is None else groups):
        if any(n not in params for n in names):
            continue
        arrays = [params[n] for n in names]
        if stacked(arrays) is not None:
            continue
        matrix = np.empty((arrays[0].shape[1], sum(len(a) for a in arrays)), dtype=arrays[0].dtype)
        column = 0
        for name, a in zip(names, arrays):
            matrix[:, column:column + len(a)] = a.T
            params[name] = matrix[:, column:column + len(a)].T                 # (out, in), a view
            column += len(a)
    return params


def in_matmul_layout(params: dict, config: GPTConfig) -> dict:
    """``params`` with every weight matrix :func:`column_major` names stored column-major and
    each :func:`stacked_groups` group in one matrix (a copy where it is not already; the
    values are unchanged).

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
    >>> params = in_matmul_layout(init_parameters(cfg, np.random.default_rng(0)), cfg)
    >>> params["blocks.0.ffn.0.weight"].T.flags.c_contiguous
    True
    """
    grouped = {name for names in stacked_groups(config) for name in names}
    return stack_groups({name: np.asfortranarray(value)
                         if column_major(name, config) and name not in grouped else value
                         for name, value in params.items()}, config)


def init_parameters(config: GPTConfig, rng: np.random.Generator, init: str = "gpt2",
                    dtype=np.float32) -> dict:
    """Fresh parameters.

    ``init="gpt2"`` (for training): weights N(0, 0.02²), the two residual projections
    (``attn.out_proj.weight``, ``ffn.2.weight``; ``attn.o_proj.weight``, ``mlp.down.weight``)
    N(0, (0.02/√(2L))²), biases 0, LayerNorm 1/0, RMSNorm 1.
    ``init="torch"``: PyTorch's defaults for the seed's modules — embeddings N(0, 1),
    ``nn.Linear`` U(±1/√fan_in) for weight and bias, ``in_proj_weight`` Xavier-uniform,
    attention biases 0 — so a fresh model looks like a fresh seed model (e.g. its heatmaps).
    Each array is made in GPT's memory layout (:func:`column_major`) from the start, so the
    model never holds two copies of a matrix.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
    >>> params = init_parameters(cfg, np.random.default_rng(0))
    >>> float(params["blocks.0.ln1.weight"][0]), round(float(params["token_embedding.weight"].std()), 2)
    (1.0, 0.02)
    """
    if init not in ("gpt2", "torch"):
        raise ValueError(f"init must be 'gpt2' or 'torch', got {init!r}")
    shapes = parameter_shapes(config)
    params = {}
    for name, shape in shapes.items():
        value = _initial_value(name, shape, shapes, config, rng, init)
        params[name] = value.astype(dtype, order="F" if column_major(name, config) else "C")
    return stack_groups(params, config)


def _initial_value(name, shape, shapes, config, rng, init):
    """The float64 initial value of one parameter (the rules of :func:`init_parameters`)."""
    norm, attention, mlp = block_parts(config)
    local = _in_block(name)
    if local.split(".")[0] in norm.names:          # a norm: weight 1, bias 0
        return np.ones(shape) if name.endswith("weight") else np.zeros(shape)
    if init == "gpt2":
        if len(shape) == 1:
            return np.zeros(shape)
        residual = local in (attention.names["out_weight"], mlp.names["out_weight"])
        return rng.normal(0.0, 0.02 / np.sqrt(2 * config.num_layers) if residual else 0.02, shape)
    if name in (TOKEN_TABLE, POSITION_TABLE):
        return rng.normal(0.0, 1.0, shape)
    if local == attention.names.get("in_weight"):  # MultiheadAttention: Xavier-uniform, biases 0
        bound = np.sqrt(6.0 / (shape[0] + shape[1]))
        return rng.uniform(-bound, bound, shape)
    if local in (attention.names.get("in_bias"), attention.names.get("out_bias")):
        return np.zeros(shape)
    if len(shape) == 1:   # an nn.Linear bias: U(±1/√fan_in), fan_in from its weight
        weight_shape = shapes.get(name[:-len("bias")] + "weight", (None, config.d_model))
        bound = 1.0 / np.sqrt(weight_shape[1])
        return rng.uniform(-bound, bound, shape)
    bound = 1.0 / np.sqrt(shape[1])   # an nn.Linear weight (out, in): U(±1/√in)
    return rng.uniform(-bound, bound, shape)
