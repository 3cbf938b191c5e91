"""The GPT model: its forward pass as a pure function of the parameters, then the ``GPT``
class that holds the parameters, checks inputs and keeps the KV cache.

Read :func:`gpt_forward` first: token ids in, next-token logits out, one layer after another
(each layer is a pure function in :mod:`npgpt.nn`). :func:`gpt_backward` beside it sends the
loss's gradient back through the same layers. Everything after them is machinery: parameter
shapes and initialisation, input checks, and the bookkeeping of cached and left-padded
decoding (:class:`KVCache`).

Shapes: ids (B, T) int; x (B, T, C); logits (B, T, V) (``GPT`` also takes (T,) ids and then
returns (T, V) logits). Legend: B batch, T tokens, C = d_model, H heads, D = C / H, V vocabulary.

Parameter names are exactly those of the seed tutorial's PyTorch ``GPTModel.state_dict()``
(``token_embedding.weight``, ``position_encoding.weight``, ``blocks.N.ln1.weight``,
``blocks.N.attn.in_proj_weight``, ``blocks.N.ffn.0.weight``, ``ln_final.weight``,
``output_layer.weight``, ...), so weights move between the two without renaming.

The Llama-family block (``GPTConfig(norm="rmsnorm", positions="rope", mlp="swiglu")``) has no
position table and names its parts ``blocks.N.norm1.weight``, ``blocks.N.attn.q_proj.weight``
(``k_proj``, ``v_proj``, ``o_proj``; ``.bias`` of q, k, v with ``attention_bias``),
``blocks.N.norm2.weight``, ``blocks.N.mlp.gate.weight`` (``up``, ``down``) and
``norm_final.weight`` (:mod:`npgpt.io.llama` maps them to Hugging Face's names).
"""

from __future__ import annotations

import numpy as np

from .config import GPTConfig, positive_int
from .nn.attention import causal_bias, causal_mask
from .nn.block import block_backward, block_forward, norm_backward, norm_forward, norm_names
from .nn.crossentropy import cross_entropy_backward, cross_entropy_forward
from .nn.layers import embedding_backward, embedding_forward, linear_backward, linear_forward
from .nn.rope import rope_frequencies, rope_tables


def gpt_forward(params, ids, config, positions=None, mask=None, kv_cache=None,
                last_only=False, rng=None, saved=None):
    """logits = ln_final(blocks(token_embedding[ids] + position_encoding[positions])) @ W_outᵀ + b_out.

    With rotary positions (``config.positions == "rope"``) there is no table to add: x =
    token_embedding[ids], and the positions turn the queries and keys in every block (their
    cos/sin tables, :func:`rope_tables`, are made once here for all blocks).

    Parameters
    ----------
    params : dict name -> ndarray, keyed like the seed's ``state_dict()`` (``GPT.params``).
    ids : int ndarray (B, T), token ids in [0, V).
    config : GPTConfig
    positions : int ndarray (T,) or (B, T), default 0, 1, ..., T - 1.
    mask : additive attention mask broadcastable to (B, H, T, Tk): 0 where a token may
        attend to a key, -inf where not. Default: :func:`causal_mask` (token t sees 0..t).
    kv_cache : KVCache or None; with one, the new tokens also attend to the cached ones.
    last_only : bool, compute the logits of the last position only (all that decoding needs).
    rng : numpy.random.Generator or None; with one, dropout is on (training mode).
    saved : dict or None; if given, it receives what :func:`gpt_backward` needs.

    Returns
    -------
    logits : ndarray (B, T, V), or (B, V) with ``last_only``.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    >>> gpt_forward(model.params, np.array([[1, 2, 3]]), model.config).shape
    (1, 3, 10)
    """
    p = params
    T = ids.shape[-1]
    if positions is None:
        positions = np.arange(T)                                      # 0, 1, ..., T-1
    if mask is None:
        mask = causal_mask(T, p["token_embedding.weight"].dtype)      # (T, T): token t sees 0..t
    rope = None
    if config.positions == "learned":
        x, embedding_cache = embedding_forward(ids, p["token_embedding.weight"],
                                               p["position_encoding.weight"], positions)  # (B, T) -> (B, T, C)
    else:
        x, embedding_cache = p["token_embedding.weight"][ids], ids    # (B, T) -> (B, T, C)
        rope = rope_tables(positions, rope_inv_freq(config), x.dtype)  # 2 x (T or (B, T), D/2)
    block_caches = []
    for i in range(config.num_layers):
        kv = None if kv_cache is None else kv_cache.layer(i)
        x, block_cache = block_forward(x, p, f"blocks.{i}.", config, mask, kv=kv, rng=rng,
                                       rope=rope)                     # (B, T, C)
        block_caches.append(block_cache)
    if last_only:
        x = x[:, -1]                                                  # (B, T, C) -> (B, C)
    x, ln_final_cache = norm_forward(x, p, norm_names(config)[2], config)
    out_weight = p["token_embedding.weight"] if config.tie_embeddings else p["output_layer.weight"]
    logits, output_cache = linear_forward(x, out_weight, p.get("output_layer.bias"))  # (.., C) -> (.., V)
    if saved is not None:
        saved.update(embedding=embedding_cache, blocks=block_caches, ln_final=ln_final_cache,
                     output=output_cache)
    return logits


def gpt_backward(dlogits, saved, config) -> dict:
    """The gradient of every parameter, from dlogits (B, T, V) and what :func:`gpt_forward`
    saved: each layer's backward, last layer first.

    forward: x = emb(ids); x = block_L(...block_1(x)); logits = ln_final(x) @ W_outᵀ + b_out.
    With tied embeddings the token table is used twice (lookup and output), so its two
    gradients add.

    Returns
    -------
    dict name -> ndarray, the parameters' names and shapes.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    >>> saved = {}
    >>> logits = gpt_forward(model.params, np.array([[1, 2, 3]]), model.config, saved=saved)
    >>> grads = gpt_backward(np.ones_like(logits), saved, model.config)
    >>> grads["blocks.0.ffn.0.weight"].shape, grads["token_embedding.weight"].shape
    ((64, 16), (10, 16))
    """
    grads = {}
    dx, d_out_weight, grads["output_layer.bias"] = linear_backward(dlogits, saved["output"])  # (B, T, V) -> (B, T, C)
    dx, final_grads = norm_backward(dx, saved["ln_final"])
    grads.update({f"{norm_names(config)[2]}.{name}": g for name, g in final_grads.items()})
    for i in reversed(range(config.num_layers)):
        dx, block_grads = block_backward(dx, saved["blocks"][i])                  # (B, T, C)
        grads.update({f"blocks.{i}.{name}": g for name, g in block_grads.items()})
    if config.positions == "rope":                # x = token_table[ids]: scatter-add the rows
        ids = saved["embedding"]
        dtoken = d_out_weight if config.tie_embeddings else np.zeros_like(d_out_weight)
        np.add.at(dtoken, ids.ravel(), dx.reshape(-1, dx.shape[-1]))
        grads["token_embedding.weight"] = dtoken
        if not config.tie_embeddings:
            grads["output_layer.weight"] = d_out_weight
    elif config.tie_embeddings:                   # the table is used twice: gradients add
        grads["token_embedding.weight"], grads["position_encoding.weight"] = embedding_backward(
            dx, saved["embedding"], dtoken=d_out_weight)
    else:
        grads["token_embedding.weight"], grads["position_encoding.weight"] = embedding_backward(
            dx, saved["embedding"])
        grads["output_layer.weight"] = d_out_weight
    if not config.output_bias:
        del grads["output_layer.bias"]
    return grads


def rope_inv_freq(config):
    """The rotary frequencies of ``config`` (:func:`npgpt.nn.rope.rope_frequencies` of its
    head size, ``rope_theta`` and ``rope_scaling``), float64 (D/2,).

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
    ...                 positions="rope", head_dim=4)
    >>> rope_inv_freq(cfg).tolist()
    [1.0, 0.009999999776482582]
    """
    return rope_frequencies(config.head_size, float(config.rope_theta), config.rope_scaling)


# ----------------------------------------------------------------------------- parameters
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
    shapes = {"token_embedding.weight": (V, C)}
    if config.positions == "learned":
        shapes["position_encoding.weight"] = (config.context_length, C)
    for i in range(config.num_layers):
        shapes.update(block_parameter_shapes(config, i))
    shapes.update({f"{norm_names(config)[2]}.{kind}": shape
                   for kind, shape in _norm_shapes(config).items()})
    if not config.tie_embeddings:
        shapes["output_layer.weight"] = (V, C)
    if config.output_bias:
        shapes["output_layer.bias"] = (V,)
    return shapes


def _norm_shapes(config):
    """{"weight": (C,), "bias": (C,)} for LayerNorm; RMSNorm has no bias."""
    C = config.d_model
    return {"weight": (C,), "bias": (C,)} if config.norm == "layernorm" else {"weight": (C,)}


def block_parameter_shapes(config: GPTConfig, i: int) -> dict:
    """Name -> shape of block i's parameters: its two norms, its attention, its MLP.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=4, num_layers=1,
    ...                 norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2, ffn_dim=40)
    >>> block_parameter_shapes(cfg, 0)
    {'blocks.0.norm1.weight': (16,), 'blocks.0.norm2.weight': (16,), 'blocks.0.attn.q_proj.weight': (16, 16), 'blocks.0.attn.k_proj.weight': (8, 16), 'blocks.0.attn.v_proj.weight': (8, 16), 'blocks.0.attn.o_proj.weight': (16, 16), 'blocks.0.mlp.gate.weight': (40, 16), 'blocks.0.mlp.up.weight': (40, 16), 'blocks.0.mlp.down.weight': (16, 40)}
    """
    C, F, H, Hkv, D = (config.d_model, config.ffn_size, config.num_heads, config.kv_heads,
                       config.head_size)
    p = f"blocks.{i}."
    shapes = {}
    for name in norm_names(config)[:2]:
        shapes.update({f"{p}{name}.{kind}": shape for kind, shape in _norm_shapes(config).items()})
    if config.positions == "learned":
        shapes.update({p + "attn.in_proj_weight": (3 * C, C), p + "attn.in_proj_bias": (3 * C,),
                       p + "attn.out_proj.weight": (C, C), p + "attn.out_proj.bias": (C,)})
    else:
        shapes[p + "attn.q_proj.weight"] = (H * D, C)
        if config.attention_bias:
            shapes[p + "attn.q_proj.bias"] = (H * D,)
        for name in ("k_proj", "v_proj"):
            shapes[f"{p}attn.{name}.weight"] = (Hkv * D, C)
            if config.attention_bias:
                shapes[f"{p}attn.{name}.bias"] = (Hkv * D,)
        shapes[p + "attn.o_proj.weight"] = (C, H * D)
    if config.mlp == "gelu":
        shapes.update({p + "ffn.0.weight": (F, C), p + "ffn.0.bias": (F,),
                       p + "ffn.2.weight": (C, F), p + "ffn.2.bias": (C,)})
    else:
        shapes.update({p + "mlp.gate.weight": (F, C), p + "mlp.up.weight": (F, C),
                       p + "mlp.down.weight": (C, F)})
    return shapes


def column_major(name: str, config: GPTConfig) -> bool:
    """Whether GPT keeps parameter ``name`` column-major, so that ``W.T`` in ``x @ W.T`` is a
    row-major (in, out) matrix: the attention's two projections, the feed-forward's first
    layer and the output layer (the token table when it is reused there). Those are the
    products BLAS runs fastest that way, measured on GPT-2 small's shapes: the output layer
    1.6x at batch 1, every one of them 1.3-2x at batches of 2 to 8. The feed-forward's second
    layer (4C -> C, narrowing) stays row-major, which made batch-1 decoding 18% faster. The
    values, names and shapes are PyTorch's either way; only the order of the bytes differs.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
    >>> column_major("blocks.0.ffn.0.weight", cfg), column_major("blocks.0.ffn.2.weight", cfg)
    (True, False)
    """
    return (name.endswith(("in_proj_weight", "out_proj.weight", "ffn.0.weight", "output_layer.weight"))
            or (name == "token_embedding.weight" and config.tie_embeddings))


def in_matmul_layout(params: dict, config: GPTConfig) -> dict:
    """``params`` with every weight matrix :func:`column_major` names stored column-major (a
    copy where it is not already; the values are unchanged).

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
    >>> params = in_matmul_layout(init_parameters(cfg, np.random.default_rng(0)), cfg)
    >>> params["blocks.0.ffn.0.weight"].T.flags.c_contiguous
    True
    """
    return {name: np.asfortranarray(value) if column_major(name, config) else value
            for name, value in params.items()}


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
    L = config.num_layers
    params = {}
    shapes = parameter_shapes(config)
    for name, shape in shapes.items():
        if name.startswith(("ln", "norm")) or ".ln" in name or ".norm" in name:
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif init == "gpt2":
            if len(shape) == 1:
                value = np.zeros(shape)
            else:
                residual = ("out_proj.weight", "ffn.2.weight", "o_proj.weight", "mlp.down.weight")
                std = 0.02 / np.sqrt(2 * L) if name.endswith(residual) else 0.02
                value = rng.normal(0.0, std, shape)
        elif name.endswith(("embedding.weight", "encoding.weight")):
            value = rng.normal(0.0, 1.0, shape)
        elif name.endswith("in_proj_weight"):
            bound = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-bound, bound, shape)
        elif name.endswith(("in_proj_bias", "out_proj.bias")):
            value = np.zeros(shape)
        elif len(shape) == 1:   # an nn.Linear bias: U(±1/√fan_in), fan_in from its weight
            weight_shape = shapes.get(name[:-len("bias")] + "weight", (None, config.d_model))
            bound = 1.0 / np.sqrt(weight_shape[1])
            value = rng.uniform(-bound, bound, shape)
        else:                   # an nn.Linear weight (out, in): U(±1/√in)
            bound = 1.0 / np.sqrt(shape[1])
            value = rng.uniform(-bound, bound, shape)
        params[name] = value.astype(dtype, order="F" if column_major(name, config) else "C")
    return params


# ----------------------------------------------------------------------------- input checks
def _as_ids(ids, vocab_size: int) -> np.ndarray:
    """Validate token ids: integers in [0, vocab_size), non-empty, (T,) or (B, T)."""
    arr = np.asarray(ids)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        if arr.dtype == object or arr.size == 0:
            raise ValueError(f"ids must be a non-empty integer array, got {ids!r}"[:200])
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"ids must have shape (T,) or (B, T), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"ids is empty (shape {arr.shape}); give at least one token")
    bad = arr[(arr < 0) | (arr >= vocab_size)]
    if bad.size:
        shown = ", ".join(str(int(b)) for b in np.unique(bad)[:10])
        raise ValueError(f"token ids out of range [0, {vocab_size}): {shown}")
    return arr.astype(np.int64, copy=False)


def _as_mask(attention_mask, shape) -> np.ndarray:
    """Validate an attention mask of 0/1 (or bool) with the given shape; return it as bool."""
    mask = np.asarray(attention_mask)
    if mask.shape != shape:
        raise ValueError(f"attention_mask must have the shape of ids {shape}, got {mask.shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1 (or booleans)")
        mask = mask.astype(bool)
    return mask


# ----------------------------------------------------------------- left padding, KV cache
def positions_of_real_tokens(first, real, T):
    """Position ids (B, T) of T new tokens that count real tokens only.

    Row b's real tokens get ``first[b], first[b] + 1, ...``; a padding token (``real``
    False) repeats its row's previous position (or 0), a harmless stand-in, since no real
    token attends to it. Without ``real`` (no padding) the positions are consecutive.

    Examples
    --------
    >>> positions_of_real_tokens(np.array([0, 0]), np.array([[0, 1, 1], [1, 1, 1]], bool), 3).tolist()
    [[0, 0, 1], [0, 1, 2]]
    """
    if real is None:
        return first[:, None] + np.arange(T)                          # (B, T)
    return np.maximum(first[:, None] + np.cumsum(real, axis=1) - 1, 0)


def positions_and_mask(T, real, cache, dtype):
    """Position ids and the attention mask of T new tokens (``real`` (B, T) bool, False at
    padding, or None): the cache's bookkeeping with a cache (:meth:`KVCache.add_tokens`),
    padding-aware ones for a left-padded batch without one, else None and None (the defaults
    of ``gpt_forward``: positions 0..T-1, the causal mask).

    Examples
    --------
    >>> positions, mask = positions_and_mask(2, np.array([[False, True]]), None, np.float64)
    >>> positions.tolist(), mask[0, 0].tolist()
    ([[0, 0]], [[0.0, -inf], [-inf, 0.0]])
    """
    if cache is not None:
        return cache.add_tokens(T, real)
    if real is None:
        return None, None
    positions = positions_of_real_tokens(np.zeros(len(real), dtype=np.int64), real, T)
    return positions, causal_bias(T, T, dtype, key_valid=real)


class _LayerKV:
    """One layer's view of a :class:`KVCache`: what ``attention_forward`` calls ``kv``."""

    __slots__ = ("cache", "layer")

    def __init__(self, cache, layer):
        self.cache, self.layer = cache, layer

    def append(self, k, v):
        """Store k, v (B, H, T, D) in the slots reserved by :meth:`KVCache.add_tokens` and
        return every key and value so far, (B, H, length, D) each."""
        c, i = self.cache, self.layer
        c.k[i, :, :, c.start:c.length] = k
        c.v[i, :, :, c.start:c.length] = v
        return c.k[i, :, :, :c.length], c.v[i, :, :, :c.length]


class KVCache:
    """Keys and values of every layer for the tokens seen so far, and the bookkeeping that
    cached and left-padded decoding needs.

    ``k`` and ``v`` are (L, B, Hkv, S, D), Hkv = num_kv_heads (H for GPT), S the slots
    allocated (:attr:`allocated`); ``length`` slots are filled. The cache holds at most
    ``capacity`` tokens; it starts with ``reserve`` slots (default: all of them) and, when
    :meth:`add_tokens` needs more, grows by doubling up to ``capacity`` — amortised O(1) per
    token, and memory that follows the tokens added, not the most that could come (a
    ``context_length`` of 131,072, or 2**31 - 1, costs nothing until used). Where the keys
    live changes nothing computed: each attention reads the first ``length`` slots,
    row-major (T, D) matrices whatever S is.
    ``key_valid`` (B, S) marks slots holding real tokens (``None`` while no padding has been
    seen), ``next_position`` (B,) is each row's position id for its next real token (with
    rotary positions it may pass ``context_length``: :meth:`drop_oldest`).
    Create one with :meth:`GPT.new_cache`; pass it to ``model(ids, cache=cache)``, which
    appends the new tokens and returns their logits.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    >>> cache = model.new_cache(batch_size=1)
    >>> _ = model([[1, 2, 3]], cache=cache)
    >>> cache.length, cache.next_position.tolist()
    (3, [3])
    """

    def __init__(self, config: GPTConfig, batch_size: int, capacity: int, dtype, reserve=None):
        reserve = capacity if reserve is None else min(reserve, capacity)
        shape = (config.num_layers, batch_size, config.kv_heads, reserve, config.head_size)
        self.config = config
        self._capacity = capacity
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0
        self.start = 0                    # first slot of the tokens being added
        self.key_valid = None
        self.next_position = np.zeros(batch_size, dtype=np.int64)
        self._layers = [_LayerKV(self, i) for i in range(config.num_layers)]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def capacity(self) -> int:
        """The most tokens the cache may hold."""
        return self._capacity

    @property
    def allocated(self) -> int:
        """The slots allocated now (``k.shape[3]``), between ``length`` and ``capacity``."""
        return self.k.shape[3]

    def _grow(self, needed) -> None:
        """Reallocate k, v (and key_valid) with room for ``needed`` slots, at least twice the
        present room (up to ``capacity``), the filled slots copied over."""
        size = min(self.capacity, max(needed, 2 * self.allocated))
        n = self.length
        k = np.zeros(self.k.shape[:3] + (size,) + self.k.shape[4:], dtype=self.k.dtype)
        v = np.zeros_like(k)
        k[:, :, :, :n], v[:, :, :, :n] = self.k[:, :, :, :n], self.v[:, :, :, :n]
        self.k, self.v = k, v
        if self.key_valid is not None:
            key_valid = np.ones((len(self.key_valid), size), dtype=bool)
            key_valid[:, :n] = self.key_valid[:, :n]
            self.key_valid = key_valid

    def layer(self, i):
        """Layer i's view, whose ``append(k, v)`` stores the new keys and values.

        Examples
        --------
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> cache = model.new_cache()
        >>> _ = cache.add_tokens(2)
        >>> k, v = cache.layer(0).append(np.ones((1, 2, 2, 8)), np.ones((1, 2, 2, 8)))
        >>> k.shape
        (1, 2, 2, 8)
        """
        return self._layers[i]

    def add_tokens(self, T, real=None):
        """Reserve the slots of T new tokens; return their positions and attention mask.

        Parameters
        ----------
        T : int, the number of new tokens.
        real : bool ndarray (B, T) or None, False where a new token is padding.

        Returns
        -------
        positions : int ndarray (B, T), counting each row's real tokens only.
        mask : the additive attention mask (B or 1, 1, T, length + T) of the new tokens
            over every slot: causal, and -inf at padding slots; the scalar 0.0 when nothing
            is hidden (one new token and no padding anywhere).

        Raises
        ------
        ValueError
            The tokens do not fit in the cache, or a position would pass ``context_length``
            (nothing is changed then).

        Examples
        --------
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> cache = model.new_cache()
        >>> positions, mask = cache.add_tokens(2)
        >>> positions.tolist(), mask[0, 0].tolist(), cache.length
        ([[0, 1]], [[0.0, -inf], [0.0, 0.0]], 2)
        """
        start, B = self.length, self.batch_size
        if start + T > self.capacity:
            raise ValueError(
                f"the cache holds {start} tokens and has room for {self.capacity}; "
                f"{T} more do not fit (context_length {self.config.context_length})")
        positions = positions_of_real_tokens(self.next_position, real, T)
        if self.config.positions == "learned":          # rotary positions have no table to pass
            _check_positions(positions, self.config.context_length)
        if start + T > self.allocated:
            self._grow(start + T)
        if real is not None and self.key_valid is None:
            self.key_valid = np.ones((B, self.allocated), dtype=bool)
        if self.key_valid is not None:
            self.key_valid[:, start:start + T] = True if real is None else real
        self.next_position = self.next_position + (T if real is None else real.sum(axis=1))
        self.start, self.length = start, start + T
        if T == 1 and self.key_valid is None:
            return positions, 0.0
        key_valid = None if self.key_valid is None else self.key_valid[:, :start + T]
        return positions, causal_bias(T, start + T, self.k.dtype, key_valid)

    def reorder(self, index) -> None:
        """Keep rows ``index`` (B_new,) of the batch, in that order (beam search).

        Only the ``length`` filled slots are moved; with as many rows as before (a beam
        search step) they are moved in place, without reallocating the buffers.

        Examples
        --------
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> cache = model.new_cache(batch_size=2)
        >>> _ = model([[1, 2], [3, 4]], cache=cache)
        >>> cache.reorder([1, 1, 0])
        >>> cache.batch_size
        3
        """
        index = np.asarray(index, dtype=np.int64)
        n = self.length
        if len(index) == self.batch_size:
            self.k[:, :, :, :n] = self.k[:, index, :, :n]             # (L, B, H, n, D), rows permuted
            self.v[:, :, :, :n] = self.v[:, index, :, :n]
        else:
            k = np.zeros((self.k.shape[0], len(index)) + self.k.shape[2:], dtype=self.k.dtype)
            v = np.zeros_like(k)
            k[:, :, :, :n] = self.k[:, index, :, :n]
            v[:, :, :, :n] = self.v[:, index, :, :n]
            self.k, self.v = k, v
        self.next_position = self.next_position[index]
        if self.key_valid is not None:
            self.key_valid = self.key_valid[index]

    def drop_oldest(self, n=1) -> None:
        """Forget the ``n`` oldest slots and move the others to the front, making room for
        ``n`` more tokens (``context_overflow="slide"``).

        ``next_position`` does not change: the next token gets the position it would have
        had, so positions go on past ``context_length``. That is right for rotary positions
        only (their attention scores depend on the distance between query and key, and no
        table ends); with learned positions the next :meth:`add_tokens` past the table raises.
        Moving ``length - n`` slots of every layer costs about as much as reading them once,
        which the next token's attention does anyway.

        Raises
        ------
        ValueError
            ``n`` is not an integer in [0, ``self.length``].

        Examples
        --------
        >>> cfg = GPTConfig(vocab_size=10, context_length=4, d_model=16, num_heads=2, num_layers=1,
        ...                 positions="rope")
        >>> model = GPT(cfg)
        >>> cache = model.new_cache(capacity=4)
        >>> _ = model([[1, 2, 3, 4]], cache=cache)
        >>> cache.drop_oldest(1)
        >>> cache.length, cache.next_position.tolist()
        (3, [4])
        >>> model([[5]], cache=cache).shape        # position 4, attending to tokens 2, 3, 4, 5
        (1, 1, 10)
        """
        if (isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer))
                or not 0 <= n <= self.length):
            raise ValueError(f"n must be an integer in [0, {self.length}] (the cached tokens), "
                             f"got {n!r}")
        n, keep = int(n), self.length - int(n)
        self.k[:, :, :, :keep] = self.k[:, :, :, n:self.length]      # (L, B, Hkv, keep, D)
        self.v[:, :, :, :keep] = self.v[:, :, :, n:self.length]
        if self.key_valid is not None:
            self.key_valid[:, :keep] = self.key_valid[:, n:self.length]
        self.length = keep
        self.start = max(0, self.start - n)

    def truncate(self, length) -> None:
        """Forget every slot from ``length`` on, as if only the first ``length`` had been
        added (speculative decoding rolls back the rejected proposals this way).

        Each row's ``next_position`` goes back by the real tokens it forgets (the slots
        ``key_valid`` marks, all of them without padding), so the next token added gets the
        position it would have had; the forgotten keys and values are overwritten by the
        next :meth:`add_tokens`.

        Raises
        ------
        ValueError
            ``length`` is not an integer in [0, ``self.length``].

        Examples
        --------
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> cache = model.new_cache()
        >>> _ = model([[1, 2, 3, 4]], cache=cache)
        >>> cache.truncate(2)
        >>> cache.length, cache.next_position.tolist()
        (2, [2])
        >>> logits = model([[3, 4]], cache=cache)        # the same logits as before
        >>> bool(np.allclose(logits[0, -1], model([1, 2, 3, 4])[-1], atol=1e-5))
        True
        """
        if (isinstance(length, (bool, np.bool_)) or not isinstance(length, (int, np.integer))
                or not 0 <= length <= self.length):
            raise ValueError(f"length must be an integer in [0, {self.length}] (the cached "
                             f"tokens), got {length!r}")
        if self.key_valid is None:
            forgotten = self.length - int(length)                     # every slot is real
        else:
            forgotten = self.key_valid[:, length:self.length].sum(axis=1)   # (B,)
        self.next_position = self.next_position - forgotten
        self.length = int(length)
        self.start = min(self.start, self.length)


def _check_positions(positions, context_length):
    if int(positions.max()) >= context_length:
        raise ValueError(
            f"position {int(positions.max())} is past context_length {context_length}: "
            f"the model has no position embedding for it")


class GPT:
    """A GPT language model: parameters keyed like the seed's PyTorch ``GPTModel``.

    Parameters
    ----------
    config : GPTConfig
    seed : int, the seed of the initialisation (a ``numpy.random.Generator``).
    dtype : np.float32 (default) or np.float64.
    init : {"gpt2", "torch"}, see :func:`init_parameters`.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
    >>> model = GPT(cfg, seed=0)
    >>> model([1, 2, 3]).shape
    (3, 10)
    """

    def __init__(self, config: GPTConfig, seed: int = 0, dtype=np.float32, init: str = "gpt2"):
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        dtype = np.dtype(dtype).type
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
        self.config = config
        self.tokenizer = None
        self.params = init_parameters(config, np.random.default_rng(seed), init, dtype)

    # ------------------------------------------------------------------ state
    @property
    def dtype(self):
        return self.params["token_embedding.weight"].dtype

    def num_parameters(self) -> int:
        """How many numbers the parameters hold.

        >>> GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)).num_parameters()
        3770
        """
        return int(sum(p.size for p in self.params.values()))

    def state_dict(self) -> dict:
        """A copy of every parameter, keyed and ordered like the seed's ``state_dict()``.

        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> list(model.state_dict())[:3]
        ['token_embedding.weight', 'position_encoding.weight', 'blocks.0.ln1.weight']
        """
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state_dict) -> None:
        """Replace every parameter (strict; values are copied and cast to the model's dtype).

        ``blocks.N.causal_mask`` buffers (N < num_layers) are accepted and ignored. With ``tie_embeddings``,
        an ``output_layer.weight`` equal to ``token_embedding.weight`` is accepted (PyTorch
        saves tied weights twice). Anything missing, unexpected or mis-shaped raises one
        ValueError listing every problem; nothing is changed then.

        >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1)
        >>> model = GPT(cfg, seed=1)
        >>> model.load_state_dict(GPT(cfg, seed=2).state_dict())
        >>> model.load_state_dict({"token_embedding.weight": np.zeros((3, 16))})
        Traceback (most recent call last):
        ...
        ValueError: load_state_dict: missing: position_encoding.weight, ...
        """
        expected = parameter_shapes(self.config)
        problems = []
        masks = {f"blocks.{i}.causal_mask" for i in range(self.config.num_layers)}
        given = {k: v for k, v in state_dict.items() if k not in masks}   # constants, rebuilt
        if self.config.tie_embeddings and "output_layer.weight" in given:
            out_w = np.asarray(given.pop("output_layer.weight"))
            emb = given.get("token_embedding.weight")
            if emb is None or np.shape(out_w) != np.shape(emb) or not np.array_equal(out_w, emb):
                problems.append("output_layer.weight differs from token_embedding.weight but "
                                "the config ties them (tie_embeddings=True)")
        missing = [k for k in expected if k not in given]
        unexpected = [k for k in given if k not in expected]
        if missing:
            problems.append("missing: " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        new = {}
        for name, shape in expected.items():
            if name not in given:
                continue
            value = np.asarray(given[name])
            if value.shape != shape:
                problems.append(f"{name}: expected shape {shape}, got {value.shape}")
            elif value.dtype.kind != "f":
                problems.append(f"{name}: expected floating-point values, got dtype {value.dtype}")
            else:
                new[name] = np.array(value, dtype=self.dtype,
                                     order="F" if column_major(name, self.config) else "C")
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        self.params = new

    def astype(self, dtype) -> "GPT":
        """A new GPT holding this model's parameters converted to ``dtype`` (float32 or
        float64); like ``ndarray.astype`` it returns a copy and leaves this model as it is.

        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> model.astype(np.float64).dtype, model.dtype
        (dtype('float64'), dtype('float32'))
        """
        dtype = np.dtype(dtype).type
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
        other = object.__new__(GPT)
        other.__dict__.update(self.__dict__)
        other.params = {k: v.astype(dtype) for k, v in self.params.items()}
        return other

    def new_cache(self, batch_size: int = 1, capacity: int | None = None,
                  reserve: int | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` rows and at most ``capacity`` tokens
        (default: ``context_length``; padding slots count, so left-padded batches may
        want ``context_length`` plus the padding), with ``reserve`` slots allocated now
        (default: all ``capacity``); it grows by doubling as tokens come (:class:`KVCache`).

        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> cache = model.new_cache(batch_size=2)
        >>> cache.batch_size, cache.capacity, cache.k.shape        # (L, B, H, capacity, D)
        (2, 8, (1, 2, 2, 8, 8))
        >>> cache = model.new_cache(capacity=8, reserve=2)
        >>> _ = model([[1, 2, 3]], cache=cache)
        >>> cache.length, cache.allocated, cache.capacity          # 2 slots grew to 4
        (3, 4, 8)
        """
        batch_size = positive_int(batch_size, "batch_size")
        capacity = positive_int(self.config.context_length if capacity is None else capacity, "capacity")
        if reserve is not None:
            reserve = positive_int(reserve, "reserve")
        return KVCache(self.config, batch_size, capacity, self.dtype, reserve)

    # ---------------------------------------------------------------- forward
    def __call__(self, ids, attention_mask=None, cache: KVCache | None = None,
                 last_only: bool = False):
        return self.forward(ids, attention_mask=attention_mask, cache=cache, last_only=last_only)

    def forward(self, ids, attention_mask=None, cache: KVCache | None = None,
                last_only: bool = False, return_attention: bool = False):
        """Next-token logits at every position: checks the inputs, prepares positions and
        the attention mask (:class:`KVCache` keeps them for cached and padded decoding), and
        calls :func:`gpt_forward`.

        Parameters
        ----------
        ids : int array (T,) or (B, T), values in [0, vocab_size).
        attention_mask : 0/1 array shaped like ids, or None
            0 marks padding (left padding for batches of unequal prompts). Real tokens get
            positions 0, 1, 2, ... counted over real tokens only, and never attend to
            padding, so a padded row's logits at its real positions equal the row run alone.
        cache : KVCache or None
            If given, ids are appended after the cached tokens and attend to them too; the
            mask then covers only the new ids (the cache remembers earlier padding).
        last_only : bool
            Return only the last position's logits, (B, V) (or (V,)), skipping the output
            projection for the others (what generation needs).
        return_attention : bool
            Also return the attention probabilities, a list of L arrays (B, H, T, Tk).

        Returns
        -------
        logits : ndarray (B, T, V) for (B, T) ids, (T, V) for (T,) ids; the model's dtype.

        Raises
        ------
        ValueError
            Non-integer, empty or out-of-range ids; a mask of the wrong shape or values;
            T (or cached + T) longer than ``context_length`` / the cache capacity.

        Examples
        --------
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> model.forward([1, 2, 3]).shape, model.forward([[1, 2, 3]], last_only=True).shape
        ((3, 10), (1, 10))
        """
        ids, real, squeeze = self._check_inputs(ids, attention_mask, cache)
        positions, mask = positions_and_mask(ids.shape[1], real, cache, self.dtype)
        saved = {} if return_attention else None
        logits = gpt_forward(self.params, ids, self.config, positions, mask, cache, last_only,
                             saved=saved)
        if squeeze:
            logits = logits[0]
        if not return_attention:
            return logits
        attention = [block["attn"]["probs"] for block in saved["blocks"]]
        return logits, [a[0] for a in attention] if squeeze else attention

    def _check_inputs(self, ids, attention_mask, cache):
        """ids as (B, T) int64, the mask as (B, T) bool or None (no padding), and whether
        the input was 1-D; every problem a ValueError naming the value."""
        cfg = self.config
        ids = _as_ids(ids, cfg.vocab_size)
        squeeze = ids.ndim == 1
        if squeeze:
            ids = ids[None, :]                                        # (T,) -> (1, T)
        real = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            real = _as_mask(mask[None, :] if squeeze else mask, ids.shape)
            if real.all():
                real = None
        if cache is None and ids.shape[1] > cfg.context_length:
            raise ValueError(
                f"sequence length {ids.shape[1]} exceeds context_length {cfg.context_length}; "
                f"pass at most {cfg.context_length} tokens (generate() keeps the last "
                f"context_length tokens for you)")
        if cache is not None and cache.batch_size != ids.shape[0]:
            raise ValueError(f"the cache holds {cache.batch_size} rows but ids has {ids.shape[0]}")
        return ids, real, squeeze

    # ------------------------------------------------------- delegations
    def generate(self, ids, **kwargs):
        """``npgpt.generate(self, ids, **kwargs)``: see :func:`npgpt.generate.generate`.

        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> model.generate([1, 2], max_new_tokens=3).sequences.shape
        (1, 5)
        """
        from .generate import generate
        return generate(self, ids, **kwargs)

    def save(self, path, dtype=None) -> None:
        """Write npgpt's own safetensors file (config and tokenizer in its metadata),
        atomically; ``npgpt.load(path)`` reads it back bit-exactly. ``dtype=np.float16``
        stores half the bytes (loaded back as float32). See :mod:`npgpt.io`.

        >>> import npgpt
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> model.save("tiny.safetensors")
        >>> np.array_equal(npgpt.load("tiny.safetensors")([1, 2]), model([1, 2]))
        True
        """
        from .io import save_npgpt
        save_npgpt(self, path, dtype=dtype)

    def save_gpt2(self, folder) -> None:
        """Write a Hugging Face GPT-2 folder (config.json + model.safetensors) that
        ``transformers.GPT2LMHeadModel.from_pretrained`` loads. See :mod:`npgpt.io`.

        >>> import npgpt, os
        >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
        ...                 gelu="tanh", tie_embeddings=True, output_bias=False)
        >>> GPT(cfg).save_gpt2("tiny-gpt2")
        >>> sorted(os.listdir("tiny-gpt2")), npgpt.load("tiny-gpt2").config == cfg
        (['config.json', 'model.safetensors'], True)
        """
        from .io import save_gpt2
        save_gpt2(self, folder)

    def save_hf(self, folder, architecture=None) -> None:
        """Write a Hugging Face Llama folder (Qwen2 with q/k/v biases; or ``architecture=
        "mistral"``): config.json + model.safetensors, which
        ``transformers.AutoModelForCausalLM.from_pretrained`` loads. See :func:`npgpt.io.save_hf`.

        >>> import npgpt, os
        >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
        ...                 norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False)
        >>> GPT(cfg).save_hf("tiny-llama")
        >>> npgpt.load("tiny-llama").config == cfg
        True
        """
        from .io import save_hf
        save_hf(self, folder, architecture)

    # --------------------------------------------------------------- training
    def loss_and_grads(self, ids, targets, rng: np.random.Generator | None = None):
        """Mean next-token cross-entropy and its gradient for every parameter.

        Parameters
        ----------
        ids : int array (B, T) or (T,), the inputs; T ≤ context_length.
        targets : int array of the same shape, the token expected after each input position.
        rng : numpy.random.Generator or None
            Training mode: with a Generator and ``config.dropout > 0``, dropout is applied
            where the seed applies it (attention weights, feed-forward output), drawing its
            masks from ``rng``. Without one (evaluation mode) the pass is dropout-free.

        Returns
        -------
        loss : float
        grads : dict keyed like ``state_dict()``, arrays of the parameters' shapes and dtype
            (a tied output projection's gradient is added into ``token_embedding.weight``).

        Examples
        --------
        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> loss, grads = model.loss_and_grads([[1, 2, 3]], [[2, 3, 4]])
        >>> round(loss, 1), grads["ln_final.weight"].shape              # about log(10) at the start
        (2.3, (16,))
        """
        cfg = self.config
        arr = _as_ids(ids, cfg.vocab_size)
        tgt = _as_ids(targets, cfg.vocab_size)
        if tgt.shape != arr.shape:
            raise ValueError(f"targets must have the shape of ids {arr.shape}, got {tgt.shape}")
        if arr.ndim == 1:
            arr, tgt = arr[None, :], tgt[None, :]                     # (T,) -> (1, T)
        if arr.shape[1] > cfg.context_length:
            raise ValueError(f"sequence length {arr.shape[1]} exceeds context_length {cfg.context_length}")
        saved = {}
        logits = gpt_forward(self.params, arr, cfg, rng=rng, saved=saved)
        loss, ce_cache = cross_entropy_forward(logits, tgt)
        grads = gpt_backward(cross_entropy_backward(ce_cache), saved, cfg)
        return loss, {name: grads[name] for name in self.params}      # state_dict order

    def __repr__(self) -> str:
        return f"GPT({self.config!r}, parameters={self.num_parameters():,}, dtype={np.dtype(self.dtype).name})"
