"""The GPT model: its forward pass as a pure function of the parameters, then the ``GPT``
class that holds the parameters, checks inputs and keeps the KV cache.

Read :func:`gpt_forward` first: token ids in, next-token logits out, one layer after another
(each layer is a pure function in :mod:`npgpt.nn`). :func:`gpt_backward` beside it sends the
loss's gradient back through the same layers. The machinery lives beside this module:
parameter shapes and initialisation in :mod:`npgpt.params`, the bookkeeping of cached and
left-padded decoding in :mod:`npgpt.kv_cache` (:class:`KVCache`); both are imported here too,
so ``from npgpt.model import KVCache, parameter_shapes`` keeps working.

Shapes: ids (B, T) int; x (B, T, C); logits (B, T, V) (``GPT`` also takes (T,) ids and then
returns (T, V) logits). Legend: B batch, T tokens, C = d_model, H heads, D = C / H, V vocabulary.

Parameter names are exactly those of the seed tutorial's PyTorch ``GPTModel.state_dict()``
(``token_embedding.weight``, ``position_encoding.weight``, ``blocks.N.ln1.weight``,
``blocks.N.attn.in_proj_weight``, ``blocks.N.ffn.0.weight``, ``ln_final.weight``,
``output_layer.weight``, ...), so weights move between the two without renaming. Each is
spelled once, beside the layer that uses it (:mod:`npgpt.nn.part`).

The Llama-family block (``GPTConfig(norm="rmsnorm", positions="rope", mlp="swiglu")``) has no
position table and names its parts ``blocks.N.norm1.weight``, ``blocks.N.attn.q_proj.weight``
(``k_proj``, ``v_proj``, ``o_proj``; ``.bias`` of q, k, v with ``attention_bias``),
``blocks.N.norm2.weight``, ``blocks.N.mlp.gate.weight`` (``up``, ``down``) and
``norm_final.weight`` (:mod:`npgpt.io.llama` maps them to Hugging Face's names).
"""

from __future__ import annotations

import numpy as np

from .config import GPTConfig, positive_int
from .kv_cache import (KVCache, positions_and_mask,  # noqa: F401
                       positions_of_real_tokens)
from .nn.attention import causal_bias, causal_mask  # noqa: F401
from .nn.block import block_backward, block_forward, block_parts
from .nn.crossentropy import cross_entropy_backward, cross_entropy_forward
from .nn.layers import (OUTPUT_BIAS, OUTPUT_WEIGHT, POSITION_TABLE, TOKEN_TABLE, embedding_backward_fast,
                        embedding_forward, linear_backward, linear_forward, scatter_add_rows)
from .nn.rope import rope_frequencies, rope_inv_freq, rope_tables  # noqa: F401
from .params import (FLOAT_DTYPES, block_parameter_shapes, column_major,  # noqa: F401
                     in_matmul_layout, init_parameters, output_layer, parameter_shapes,
                     stack_groups)


def gpt_forward(params, ids, config, positions=None, mask=None, kv_cache=None,
                last_only=False, rng=None, saved=None):
    """logits = ln_final(blocks(token_embedding[ids] + position_encoding[positions])) @ W_outᵀ + b_out.

    With rotary positions (``config.positions == "rope"``) there is no table to add: x =
    token_embedding[ids], and the positions turn the queries and keys in every block (their
    cos/sin tables, :func:`rope_tables`, are made once for all blocks, in :func:`embed_rotary`).

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
    parts, T = block_parts(config), ids.shape[-1]                    # (norm, attention, mlp)
    positions = np.arange(T) if positions is None else positions     # 0, 1, ..., T-1
    x, embedded, rope = EMBEDDINGS[config.positions](params, ids, config, positions)  # (B, T, C)
    mask = causal_mask(T, x.dtype) if mask is None else mask         # (T, T): token t sees 0..t
    blocks = []
    for i in range(config.num_layers):
        kv = None if kv_cache is None else kv_cache.layer(i)
        x, block = block_forward(x, params, f"blocks.{i}.", config, mask, kv, rng, rope, parts)
        blocks.append(block)                                          # (B, T, C)
    if last_only:
        x = x[:, -1]                                                  # (B, T, C) -> (B, C)
    x, final = parts[0].forward(x, params, parts[0].names[2], config)  # the final norm
    logits, output = linear_forward(x, *output_layer(params, config))   # (.., C) -> (.., V)
    if saved is not None:
        saved.update(embedding=embedded, blocks=blocks, final_norm=final, output=output)
    return logits


def embed_learned(params, ids, config, positions):
    """x = token_embedding[ids] + position_encoding[positions] (B, T, C), what the backward
    needs, and no rotary tables (GPT: the positions are added here, once).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    >>> x, _, rope = embed_learned(model.params, np.array([[1, 2, 3]]), model.config, np.arange(3))
    >>> x.shape, rope
    ((1, 3, 16), None)
    """
    x, cache = embedding_forward(ids, params[TOKEN_TABLE], params[POSITION_TABLE], positions)
    return x, cache, None                                             # (B, T) -> (B, T, C)


def embed_rotary(params, ids, config, positions):
    """x = token_embedding[ids] (B, T, C), the ids (for the backward's scatter-add), and the
    rotary tables (cos, sin) of the positions, made once for every block (the Llama family:
    nothing is added, the blocks turn q and k).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
    ...                       positions="rope"))
    >>> x, _, (cos, sin) = embed_rotary(model.params, np.array([[1, 2, 3]]), model.config, np.arange(3))
    >>> x.shape, cos.shape                                            # (B, T, C), (T, D/2)
    ((1, 3, 16), (3, 4))
    """
    x = params[TOKEN_TABLE][ids]                                      # (B, T) -> (B, T, C)
    return x, ids, rope_tables(positions, rope_inv_freq(config), x.dtype)   # 2 x (T or (B, T), D/2)


EMBEDDINGS = {"learned": embed_learned, "rope": embed_rotary}        # GPTConfig.positions


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
    norm = block_parts(config)[0]
    grads = {}
    dx, d_out_weight, grads[OUTPUT_BIAS] = linear_backward(dlogits, saved["output"])  # (B, T, V) -> (B, T, C)
    dx, final_grads = norm.backward(dx, saved["final_norm"])
    grads.update({f"{norm.names[2]}.{name}": g for name, g in final_grads.items()})
    for i in reversed(range(config.num_layers)):
        dx, block_grads = block_backward(dx, saved["blocks"][i])                  # (B, T, C)
        grads.update({f"blocks.{i}.{name}": g for name, g in block_grads.items()})
    if config.positions == "rope":                # x = token_table[ids]: scatter-add the rows
        ids = saved["embedding"]
        dtoken = d_out_weight if config.tie_embeddings else np.zeros_like(d_out_weight)
        scatter_add_rows(dtoken, ids.ravel(), dx.reshape(-1, dx.shape[-1]))   # np.add.at, sorted
        grads[TOKEN_TABLE] = dtoken
    else:                                         # tied: the table is used twice, gradients add
        grads[TOKEN_TABLE], grads[POSITION_TABLE] = embedding_backward_fast(
            dx, saved["embedding"], dtoken=d_out_weight if config.tie_embeddings else None)
    if not config.tie_embeddings:
        grads[OUTPUT_WEIGHT] = d_out_weight
    if not config.output_bias:
        del grads[OUTPUT_BIAS]
    return grads


# ----------------------------------------------------------------------------- input checks
def as_ids(ids, vocab_size: int) -> np.ndarray:
    """Validate token ids: integers in [0, vocab_size), non-empty, (T,) or (B, T); int64.

    >>> as_ids([1, 2], 4).dtype.name
    'int64'
    >>> as_ids([1, 7], 4)
    Traceback (most recent call last):
    ...
    ValueError: token ids out of range [0, 4): 7
    """
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


def as_mask(attention_mask, shape) -> np.ndarray:
    """Validate an attention mask of 0/1 (or bool) with the given shape; return it as bool.

    >>> as_mask([0, 1, 1], (3,)).tolist()
    [False, True, True]
    """
    mask = np.asarray(attention_mask)
    if mask.shape != shape:
        raise ValueError(f"attention_mask must have the shape of ids {shape}, got {mask.shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1 (or booleans)")
        mask = mask.astype(bool)
    return mask


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
        return self.params[TOKEN_TABLE].dtype

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
        if self.config.tie_embeddings and OUTPUT_WEIGHT in given:
            out_w = np.asarray(given.pop(OUTPUT_WEIGHT))
            emb = given.get(TOKEN_TABLE)
            if emb is None or np.shape(out_w) != np.shape(emb) or not np.array_equal(out_w, emb):
                problems.append(f"{OUTPUT_WEIGHT} differs from {TOKEN_TABLE} but "
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
        self.params = stack_groups(new, self.config)

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
        other.params = stack_groups({k: v.astype(dtype) for k, v in self.params.items()}, self.config)
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
        ids = as_ids(ids, cfg.vocab_size)
        squeeze = ids.ndim == 1
        if squeeze:
            ids = ids[None, :]                                        # (T,) -> (1, T)
        real = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            real = as_mask(mask[None, :] if squeeze else mask, ids.shape)
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
        """``npgpt.generate(self, ids, **kwargs)``: see :func:`npgpt.generation.generate`.

        >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
        >>> model.generate([1, 2], max_new_tokens=3).sequences.shape
        (1, 5)
        """
        from .generation import generate
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
        arr = as_ids(ids, cfg.vocab_size)
        tgt = as_ids(targets, cfg.vocab_size)
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
