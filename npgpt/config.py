"""GPTConfig: the shape and the choices of a GPT model, checked once on construction.

Shape legend used across npgpt: B batch, T time (tokens), C = d_model, H = num_heads,
D = C / H (head size), V = vocab_size, F = 4 C (feed-forward width), L = num_layers.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass

import numpy as np

GELU_KINDS = ("exact", "tanh")
RESIDUAL_KINDS = ("pre_norm", "seed")


def positive_int(value, name: str) -> int:
    """``value`` as an int if it is an integer >= 1 (not a bool), else a ValueError naming it.
    The one check behind every size, count and k in npgpt.

    Examples
    --------
    >>> positive_int(np.int64(4), "num_heads")
    4
    >>> positive_int(0, "num_heads")
    Traceback (most recent call last):
        ...
    ValueError: num_heads must be a positive integer, got 0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of a GPT model (immutable, validated).

    Parameters
    ----------
    vocab_size : int
        V, the number of token ids; ids must lie in [0, V).
    context_length : int
        The longest sequence the model attends over (rows of the position table).
    d_model : int
        C, the width of every token vector.
    num_heads : int
        H, attention heads per layer; ``d_model`` must be divisible by it.
    num_layers : int
        L, transformer blocks.
    dropout : float
        Dropout probability in [0, 1), used only in training mode (the seed applies it
        to the attention probabilities and to the feed-forward output).
    gelu : {"exact", "tanh"}
        ``"exact"``: x·Φ(x) with the error function (``torch.nn.GELU()``, the seed);
        ``"tanh"``: GPT-2's tanh approximation (``gelu_new``).
    residual : {"pre_norm", "seed"}
        ``"pre_norm"``: x = x + f(ln(x)) (GPT-2, nanoGPT). ``"seed"``: x = ln(x); x = x + f(x),
        exactly the seed tutorial's ``TransformerBlock``.
    tie_embeddings : bool
        The output projection reuses ``token_embedding.weight`` (GPT-2 does).
    output_bias : bool
        The output projection has a bias (the seed's ``nn.Linear`` does; GPT-2's lm_head does not).
    layer_norm_eps : float
        ε added to the variance in every LayerNorm.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
    >>> cfg.head_size
    32
    """

    vocab_size: int
    context_length: int
    d_model: int
    num_heads: int
    num_layers: int
    dropout: float = 0.0
    gelu: str = "exact"
    residual: str = "pre_norm"
    tie_embeddings: bool = False
    output_bias: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_heads", "num_layers"):
            positive_int(getattr(self, name), name)
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"d_model must be divisible by num_heads, got d_model={self.d_model} "
                f"and num_heads={self.num_heads}")
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real)
                or not 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.gelu not in GELU_KINDS:
            raise ValueError(f"gelu must be one of {GELU_KINDS}, got {self.gelu!r}")
        if self.residual not in RESIDUAL_KINDS:
            raise ValueError(f"residual must be one of {RESIDUAL_KINDS}, got {self.residual!r}")
        for name in ("tie_embeddings", "output_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        eps = self.layer_norm_eps
        if (isinstance(eps, bool) or not isinstance(eps, numbers.Real)
                or not (0.0 < eps < 1.0)):
            raise ValueError(f"layer_norm_eps must be a number in (0, 1), got {eps!r}")

    @property
    def head_size(self) -> int:
        """D = d_model / num_heads."""
        return self.d_model // self.num_heads

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-serialisable).

        Examples
        --------
        >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
        >>> fields = cfg.to_dict()
        >>> fields["d_model"], fields["gelu"], fields["dropout"]
        (128, 'exact', 0.0)
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "GPTConfig":
        """Build from a dict, refusing unknown field names (a ValueError listing them).

        Examples
        --------
        >>> cfg = GPTConfig.from_dict({"vocab_size": 65, "context_length": 64, "d_model": 128,
        ...                            "num_heads": 4, "num_layers": 4})
        >>> cfg.num_layers, cfg.residual
        (4, 'pre_norm')
        >>> GPTConfig.from_dict({**cfg.to_dict(), "n_embd": 768})
        Traceback (most recent call last):
            ...
        ValueError: unknown GPTConfig field(s): 'n_embd'
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s): {', '.join(map(repr, unknown))}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.name not in fields)
        if missing:
            raise ValueError(f"missing GPTConfig field(s): {', '.join(map(repr, missing))}")
        return cls(**fields)

    def to_json(self) -> str:
        """The fields as a JSON object with sorted keys (how checkpoints store a config).

        Examples
        --------
        >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
        >>> cfg.to_json()[:53]
        '{"context_length": 64, "d_model": 128, "dropout": 0.0'
        >>> GPTConfig.from_dict(json.loads(cfg.to_json())) == cfg
        True
        """
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes) -> "GPTConfig":
        """A copy with some fields changed (validated again).

        Examples
        --------
        >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
        >>> cfg.replace(num_heads=8).head_size
        16
        >>> cfg.replace(num_heads=3)
        Traceback (most recent call last):
            ...
        ValueError: d_model must be divisible by num_heads, got d_model=128 and num_heads=3
        """
        return dataclasses.replace(self, **changes)
