"""The KV cache: keys and values of every layer for the tokens seen so far, and the
bookkeeping of cached and left-padded decoding — the slots of new tokens, their positions
(counting real tokens only) and the attention mask over every cached slot.

The attention layers see one thing of it: a layer's ``kv.append(k, v)``. Everything else
(:meth:`KVCache.add_tokens`, growing, reordering beams, sliding, rolling back) is called by
``GPT.forward`` and by generation.

Shapes: L layers, B batch rows, Hkv key/value heads, S slots allocated, D head size; T new tokens.

Examples
--------
>>> import npgpt
>>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
>>> cache = model.new_cache()
>>> _ = model([[1, 2, 3]], cache=cache)
>>> cache.length
3
"""

from __future__ import annotations

import numpy as np

from .config import GPTConfig
from .nn.attention import causal_bias


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
    >>> from npgpt import GPT
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
        >>> from npgpt import GPT
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
        >>> from npgpt import GPT
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
        >>> from npgpt import GPT
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
        >>> from npgpt import GPT
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
        >>> from npgpt import GPT
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
