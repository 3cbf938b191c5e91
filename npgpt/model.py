"""GPT: the parameters of a GPT model and its forward pass, with a KV cache.

Shapes: ids (B, T) int; x (B, T, C); logits (B, T, V). A 1-D ids (T,) gives logits (T, V).

Parameter names are exactly those of the seed tutorial's PyTorch ``GPTModel.state_dict()``
(``token_embedding.weight``, ``position_encoding.weight``, ``blocks.N.ln1.weight``,
``blocks.N.attn.in_proj_weight``, ``blocks.N.ffn.0.weight``, ``ln_final.weight``,
``output_layer.weight``, ...), so weights move between the two without renaming.
"""

from __future__ import annotations

import numpy as np

from .config import GPTConfig, positive_int
from .nn.attention import causal_bias
from .nn.block import block_backward, block_forward
from .nn.crossentropy import cross_entropy_backward, cross_entropy_forward
from .nn.embedding import embedding_backward, embedding_forward
from .nn.layernorm import layernorm_backward, layernorm_forward
from .nn.linear import linear_backward, linear_forward

_IGNORED_SUFFIXES = (".causal_mask",)   # the seed's mask buffers: constants, rebuilt on the fly
FLOAT_DTYPES = (np.float32, np.float64)


def parameter_shapes(config: GPTConfig) -> dict:
    """Name -> shape of every parameter, in the order of the seed's ``state_dict()``.

    With ``tie_embeddings`` there is no ``output_layer.weight`` (the token table is used);
    without ``output_bias`` there is no ``output_layer.bias``.
    """
    V, C, F = config.vocab_size, config.d_model, 4 * config.d_model
    shapes = {"token_embedding.weight": (V, C),
              "position_encoding.weight": (config.context_length, C)}
    for i in range(config.num_layers):
        p = f"blocks.{i}."
        shapes.update({
            p + "ln1.weight": (C,), p + "ln1.bias": (C,),
            p + "ln2.weight": (C,), p + "ln2.bias": (C,),
            p + "attn.in_proj_weight": (3 * C, C), p + "attn.in_proj_bias": (3 * C,),
            p + "attn.out_proj.weight": (C, C), p + "attn.out_proj.bias": (C,),
            p + "ffn.0.weight": (F, C), p + "ffn.0.bias": (F,),
            p + "ffn.2.weight": (C, F), p + "ffn.2.bias": (C,),
        })
    shapes.update({"ln_final.weight": (C,), "ln_final.bias": (C,)})
    if not config.tie_embeddings:
        shapes["output_layer.weight"] = (V, C)
    if config.output_bias:
        shapes["output_layer.bias"] = (V,)
    return shapes


def init_parameters(config: GPTConfig, rng: np.random.Generator, init: str = "gpt2",
                    dtype=np.float32) -> dict:
    """Fresh parameters.

    ``init="gpt2"`` (for training): weights N(0, 0.02²), the two residual projections
    (``attn.out_proj.weight``, ``ffn.2.weight``) N(0, (0.02/√(2L))²), biases 0, LayerNorm 1/0.
    ``init="torch"``: PyTorch's defaults for the seed's modules — embeddings N(0, 1),
    ``nn.Linear`` U(±1/√fan_in) for weight and bias, ``in_proj_weight`` Xavier-uniform,
    attention biases 0 — so a fresh model looks like a fresh seed model (e.g. its heatmaps).
    """
    if init not in ("gpt2", "torch"):
        raise ValueError(f"init must be 'gpt2' or 'torch', got {init!r}")
    L = config.num_layers
    params = {}
    shapes = parameter_shapes(config)
    for name, shape in shapes.items():
        if name.startswith("ln") or ".ln" in name:
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif init == "gpt2":
            if len(shape) == 1:
                value = np.zeros(shape)
            else:
                std = 0.02 / np.sqrt(2 * L) if name.endswith(("out_proj.weight", "ffn.2.weight")) else 0.02
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
        params[name] = value.astype(dtype)
    return params


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


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated.

    ``k`` and ``v`` are (L, B, H, capacity, D); ``length`` slots are filled. ``key_valid``
    (B, capacity) marks slots holding real tokens (``None`` while no padding has been seen),
    ``next_position`` (B,) is each row's position id for its next real token.
    Create one with :meth:`GPT.new_cache`; pass it to ``model(ids, cache=cache)``, which
    appends the new tokens and returns their logits.
    """

    def __init__(self, config: GPTConfig, batch_size: int, capacity: int, dtype):
        shape = (config.num_layers, batch_size, config.num_heads, capacity, config.head_size)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0
        self.key_valid = None
        self.next_position = np.zeros(batch_size, dtype=np.int64)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def reorder(self, index) -> None:
        """Keep rows ``index`` (B_new,) of the batch, in that order (beam search).

        Only the ``length`` filled slots are moved; with as many rows as before (a beam
        search step) they are moved in place, without reallocating the buffers."""
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
        return int(sum(p.size for p in self.params.values()))

    def state_dict(self) -> dict:
        """A copy of every parameter, keyed and ordered like the seed's ``state_dict()``."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state_dict) -> None:
        """Replace every parameter (strict; values are copied and cast to the model's dtype).

        ``blocks.N.causal_mask`` buffers are accepted and ignored. With ``tie_embeddings``,
        an ``output_layer.weight`` equal to ``token_embedding.weight`` is accepted (PyTorch
        saves tied weights twice). Anything missing, unexpected or mis-shaped raises one
        ValueError listing every problem; nothing is changed then.
        """
        expected = parameter_shapes(self.config)
        problems = []
        given = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
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
                new[name] = value.astype(self.dtype, copy=True)
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        self.params = new

    def astype(self, dtype) -> "GPT":
        """The same model with parameters in ``dtype`` (float32 or float64), as a new GPT."""
        dtype = np.dtype(dtype).type
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
        other = object.__new__(GPT)
        other.__dict__.update(self.__dict__)
        other.params = {k: v.astype(dtype) for k, v in self.params.items()}
        return other

    def new_cache(self, batch_size: int = 1, capacity: int | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` rows and ``capacity`` token slots
        (default: ``context_length``; padding slots count, so left-padded batches may
        want ``context_length`` plus the padding)."""
        batch_size = positive_int(batch_size, "batch_size")
        capacity = positive_int(self.config.context_length if capacity is None else capacity, "capacity")
        return KVCache(self.config, batch_size, capacity, self.dtype)

    # ---------------------------------------------------------------- forward
    def __call__(self, ids, attention_mask=None, cache: KVCache | None = None,
                 last_only: bool = False):
        return self.forward(ids, attention_mask=attention_mask, cache=cache, last_only=last_only)

    def forward(self, ids, attention_mask=None, cache: KVCache | None = None,
                last_only: bool = False, return_attention: bool = False):
        """Next-token logits at every position.

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
        """
        cfg = self.config
        arr = _as_ids(ids, cfg.vocab_size)
        squeeze = arr.ndim == 1
        if squeeze:
            arr = arr[None, :]                                        # (T,) -> (1, T)
        B, T = arr.shape
        mask = None if attention_mask is None else _as_mask(
            attention_mask if not squeeze else np.asarray(attention_mask)[None, :], arr.shape)
        if mask is not None and mask.all():
            mask = None

        start = 0 if cache is None else cache.length
        if cache is None:
            if T > cfg.context_length:
                raise ValueError(
                    f"sequence length {T} exceeds context_length {cfg.context_length}; "
                    f"pass at most {cfg.context_length} tokens (generate() keeps the last "
                    f"context_length tokens for you)")
            base = np.zeros(B, dtype=np.int64)
            key_valid = mask
        else:
            if cache.batch_size != B:
                raise ValueError(f"the cache holds {cache.batch_size} rows but ids has {B}")
            if start + T > cache.capacity:
                raise ValueError(
                    f"the cache holds {start} tokens and has room for {cache.capacity}; "
                    f"{T} more do not fit (context_length {cfg.context_length})")
            base = cache.next_position
            if mask is not None and cache.key_valid is None:
                cache.key_valid = np.ones((B, cache.capacity), dtype=bool)
            if cache.key_valid is not None:
                cache.key_valid[:, start:start + T] = True if mask is None else mask
                key_valid = cache.key_valid[:, :start + T]
            else:
                key_valid = None

        if mask is None:
            positions = base[:, None] + np.arange(T)                  # (B, T)
            next_position = base + T
        else:
            counts = np.cumsum(mask, axis=1)                          # (B, T) real tokens so far
            positions = np.maximum(base[:, None] + counts - 1, 0)     # pads reuse a valid row
            next_position = base + counts[:, -1]
        if int(positions.max()) >= cfg.context_length:
            raise ValueError(
                f"position {int(positions.max())} is past context_length {cfg.context_length}: "
                f"the model has no position embedding for it")

        if T == 1 and key_valid is None:
            bias = None                          # one query that may see every key: no mask
        else:
            bias = causal_bias(T, start + T, self.dtype, key_valid)
        logits, caches = self._forward(arr, positions, bias, cache, start, last_only)
        if cache is not None:
            cache.length = start + T
            cache.next_position = next_position
        if squeeze:
            logits = logits[0]
        if not return_attention:
            return logits
        attention = [c["attn"]["probs"] for c in caches["blocks"]]
        return logits, [a[0] for a in attention] if squeeze else attention

    # ------------------------------------------------------- delegations
    def generate(self, ids, **kwargs):
        """``npgpt.generate(self, ids, **kwargs)``: see :func:`npgpt.generate.generate`."""
        from .generate import generate
        return generate(self, ids, **kwargs)

    def save(self, path, dtype=None) -> None:
        """Write npgpt's own safetensors file (config and tokenizer in its metadata),
        atomically; ``npgpt.load(path)`` reads it back bit-exactly. ``dtype=np.float16``
        stores half the bytes (loaded back as float32). See :mod:`npgpt.io`."""
        from .io import save_npgpt
        save_npgpt(self, path, dtype=dtype)

    def save_gpt2(self, folder) -> None:
        """Write a Hugging Face GPT-2 folder (config.json + model.safetensors) that
        ``transformers.GPT2LMHeadModel.from_pretrained`` loads. See :mod:`npgpt.io`."""
        from .io import save_gpt2
        save_gpt2(self, folder)

    def _forward(self, ids, positions, bias, cache=None, start=0, last_only=False, rng=None):
        """The forward pass proper on validated inputs; returns (logits, caches), the caches
        being what the backward pass needs (and the attention maps)."""
        cfg, p = self.config, self.params
        dropout = cfg.dropout if rng is not None else 0.0
        x, emb_cache = embedding_forward(ids, p["token_embedding.weight"],
                                         p["position_encoding.weight"], positions)   # (B, T) -> (B, T, C)
        block_caches = []
        for i in range(cfg.num_layers):
            kv = None if cache is None else (cache.k[i], cache.v[i], start)
            x, block_cache = block_forward(
                x, p, f"blocks.{i}.", cfg.num_heads, cfg.residual, cfg.gelu, cfg.layer_norm_eps,
                bias=bias, kv=kv, dropout=dropout, rng=rng)           # (B, T, C) -> (B, T, C)
            block_caches.append(block_cache)
        if last_only:
            x = x[:, -1]                                              # (B, T, C) -> (B, C)
        x, lnf_cache = layernorm_forward(x, p["ln_final.weight"], p["ln_final.bias"], cfg.layer_norm_eps)
        out_weight = p["token_embedding.weight" if cfg.tie_embeddings else "output_layer.weight"]
        logits, out_cache = linear_forward(x, out_weight, p.get("output_layer.bias"))   # (.., C) -> (.., V)
        return logits, {"embedding": emb_cache, "blocks": block_caches, "ln_final": lnf_cache,
                        "output": out_cache}

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
        """
        cfg = self.config
        arr = _as_ids(ids, cfg.vocab_size)
        tgt = _as_ids(targets, cfg.vocab_size)
        if tgt.shape != arr.shape:
            raise ValueError(f"targets must have the shape of ids {arr.shape}, got {tgt.shape}")
        if arr.ndim == 1:
            arr, tgt = arr[None, :], tgt[None, :]                     # (T,) -> (1, T)
        T = arr.shape[1]
        if T > cfg.context_length:
            raise ValueError(f"sequence length {T} exceeds context_length {cfg.context_length}")
        logits, caches = self._forward(arr, np.arange(T), causal_bias(T, T, self.dtype), rng=rng)
        loss, ce_cache = cross_entropy_forward(logits, tgt)
        return loss, self._backward(cross_entropy_backward(ce_cache), caches)

    def _backward(self, dlogits, caches) -> dict:
        """Backpropagate dlogits (B, T, V) through the caches of :meth:`_forward`."""
        cfg = self.config
        grads = {}
        dx, d_out_weight, d_out_bias = linear_backward(dlogits, caches["output"])   # (B, T, V) -> (B, T, C)
        if cfg.output_bias:
            grads["output_layer.bias"] = d_out_bias
        dx, grads["ln_final.weight"], grads["ln_final.bias"] = layernorm_backward(dx, caches["ln_final"])
        for i in reversed(range(cfg.num_layers)):
            dx, block_grads = block_backward(dx, caches["blocks"][i])                # (B, T, C)
            grads.update({f"blocks.{i}.{name}": g for name, g in block_grads.items()})
        d_token, d_position = embedding_backward(dx, caches["embedding"])
        if cfg.tie_embeddings:
            d_token += d_out_weight                  # the table is used twice: gradients add
        else:
            grads["output_layer.weight"] = d_out_weight
        grads["token_embedding.weight"] = d_token
        grads["position_encoding.weight"] = d_position
        return {name: grads[name] for name in self.params}           # state_dict order

    def __repr__(self) -> str:
        return f"GPT({self.config!r}, parameters={self.num_parameters():,}, dtype={np.dtype(self.dtype).name})"
