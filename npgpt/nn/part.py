"""A layer family as a transformer block uses it: its parameter names, their shapes, and one
forward and one backward that take the block's parameters by name.

Each family's file defines its :class:`Part` beside its math (``LAYERNORM`` in ``layers.py``,
``RMSNORM`` in ``rmsnorm.py``, ``ATTENTION`` in ``attention.py``, ``GQA`` in ``gqa.py``,
``MLP`` in ``mlp.py``, ``SWIGLU`` in ``swiglu.py``), so each parameter name is spelled once,
there; :func:`npgpt.nn.block.block_parts` picks a block's three from the config.
"""

from __future__ import annotations

from typing import Callable, NamedTuple


class Part(NamedTuple):
    """One layer family of a block.

    Attributes
    ----------
    kind : str, the ``GPTConfig`` value that picks it (``config.norm``, ``.positions``, ``.mlp``).
    names : dict role -> parameter name inside a block (``"out_weight": "ffn.2.weight"``); a
        norm's names are its three places instead, ``(first, second, final)``.
    shapes : config -> {name: shape}, the parameters one block holds (a norm's: per suffix).
    forward : (x, params, prefix, config, ...) -> (y, cache); the parameters are
        ``params[prefix + name]``.
    backward : (dy, cache) -> (dx, {name: gradient}).
    column_major : the roles whose matrices GPT stores column-major (``npgpt.params.column_major``).
    stacked : groups of roles whose matrices GPT keeps side by side in one, each a view of its
        columns (``npgpt.params.stack_groups``), read in one product when decoding.

    Examples
    --------
    >>> from npgpt.nn.mlp import MLP
    >>> MLP.kind, MLP.names["out_weight"], MLP.column_major
    ('gelu', 'ffn.2.weight', ('fc_weight',))
    """

    kind: str
    names: object
    shapes: Callable
    forward: Callable
    backward: Callable
    column_major: tuple = ()
    stacked: tuple = ()
