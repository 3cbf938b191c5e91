"""GPTConfig: the shape and the choices of a GPT model, checked once on construction.

Shape legend used across npgpt: B batch, T time (tokens), C = d_model, H = num_heads,
D = C / H (head size, or ``head_dim``), Hkv = num_kv_heads, V = vocab_size, F = 4 C (or
``ffn_dim``, the feed-forward width), L = num_layers.

The defaults are GPT (GPT-2, the seed). Three switches make the Llama-family block:
``norm="rmsnorm"``, ``positions="rope"`` (rotary positions, grouped-query attention with
``num_kv_heads``) and ``mlp="swiglu"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass

import numpy as np

GELU_KINDS = ("exact", "tanh")
RESIDUAL_KINDS = ("pre_norm", "seed")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("learned", "rope")
MLP_KINDS = ("gelu", "swiglu")
ROPE_LAYOUTS = ("half", "interleaved")
ROPE_TYPES = ("default", "linear", "llama3")


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
        ε of every normalisation: added to the variance in a LayerNorm, to the mean square in
        an RMSNorm (Hugging Face's ``rms_norm_eps``; one field, as a model has one kind).
    norm : {"layernorm", "rmsnorm"}
        LayerNorm (weight and bias: ``ln1``, ``ln2``, ``ln_final``) or RMSNorm (weight only:
        ``norm1``, ``norm2``, ``norm_final``), x / sqrt(mean(x²) + ε) · g.
    positions : {"learned", "rope"}
        ``"learned"``: a position table ``position_encoding.weight`` added to the token
        vectors, and GPT's attention (``attn.in_proj_weight``, with biases). ``"rope"``: no
        table; queries and keys are rotated by their position (:mod:`npgpt.nn.rope`) in
        grouped-query attention (``attn.q_proj``, ``k_proj``, ``v_proj``, ``o_proj``,
        :mod:`npgpt.nn.gqa`), as in Llama, Qwen2 and Mistral.
    mlp : {"gelu", "swiglu"}
        ``"gelu"``: ffn.2(gelu(ffn.0(x))) with biases. ``"swiglu"``: down(silu(gate(x)) · up(x))
        without biases (``mlp.gate``, ``mlp.up``, ``mlp.down``).
    num_kv_heads : int or None
        Hkv, key/value heads of rotary attention; must divide ``num_heads``. None: num_heads.
    head_dim : int or None
        D, the size of a head in rotary attention (even). None: d_model // num_heads.
    attention_bias : bool
        Rotary attention's q, k and v projections have biases (Qwen2); o_proj never has one.
        GPT's attention (learned positions) always has its biases, so it must stay False there.
    ffn_dim : int or None
        F, the feed-forward width (Hugging Face's ``intermediate_size``). None: 4 · d_model.
    rope_theta : float
        The base of the rotary frequencies, θ_i = rope_theta^(-2i/D).
    rope_scaling : dict or None
        ``{"rope_type": "linear" | "llama3" | "default", ...}`` as in a Hugging Face config
        (see :func:`npgpt.nn.rope.rope_frequencies`).
    rope_layout : {"half", "interleaved"}
        Which channels rotate together: (i, i + D/2) as transformers, or (2i, 2i + 1).

    Learned positions need the GPT settings of the three rotary-only fields (num_kv_heads,
    head_dim None or their defaults, attention_bias False); dropout (training mode) exists
    only in GPT's attention and GELU MLP, so ``dropout > 0`` needs learned positions and
    ``mlp="gelu"``.

    Examples
    --------
    >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
    >>> cfg.head_size, cfg.kv_heads, cfg.ffn_size
    (32, 4, 512)
    >>> llama = cfg.replace(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2,
    ...                     ffn_dim=344, output_bias=False)
    >>> llama.kv_heads, llama.ffn_size
    (2, 344)
    >>> cfg.replace(num_kv_heads=3, positions="rope")
    Traceback (most recent call last):
        ...
    ValueError: num_kv_heads must divide num_heads, got num_kv_heads=3 and num_heads=4
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
    norm: str = "layernorm"
    positions: str = "learned"
    mlp: str = "gelu"
    num_kv_heads: int | None = None
    head_dim: int | None = None
    attention_bias: bool = False
    ffn_dim: int | None = None
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rope_layout: str = "half"

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
        self._check_llama_fields()

    def _check_llama_fields(self) -> None:
        """The switches of the Llama-family block (see the class doc), each a ValueError."""
        for name, kinds in (("norm", NORM_KINDS), ("positions", POSITION_KINDS),
                            ("mlp", MLP_KINDS), ("rope_layout", ROPE_LAYOUTS)):
            if getattr(self, name) not in kinds:
                raise ValueError(f"{name} must be one of {kinds}, got {getattr(self, name)!r}")
        for name in ("num_kv_heads", "head_dim", "ffn_dim"):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name)
        if not isinstance(self.attention_bias, bool):
            raise ValueError(f"attention_bias must be True or False, got {self.attention_bias!r}")
        if self.num_heads % self.kv_heads:
            raise ValueError(f"num_kv_heads must divide num_heads, got num_kv_heads="
                             f"{self.num_kv_heads} and num_heads={self.num_heads}")
        theta = self.rope_theta
        if (isinstance(theta, bool) or not isinstance(theta, numbers.Real)
                or not (0 < theta < 1e300) or not math.isfinite(theta)):
            raise ValueError(f"rope_theta must be a positive finite number, got {theta!r}")
        scaling = self.rope_scaling
        if scaling is not None:
            if not isinstance(scaling, dict):
                raise ValueError(f"rope_scaling must be a dict or None, got {scaling!r}")
            if scaling.get("rope_type") not in ROPE_TYPES:
                raise ValueError(f"rope_scaling's rope_type must be one of {ROPE_TYPES}, got "
                                 f"{scaling.get('rope_type')!r}")
            object.__setattr__(self, "rope_scaling", dict(scaling))   # a copy: the config is frozen
        if self.positions == "rope":
            if self.head_size % 2:
                raise ValueError(f"head_dim must be even for rotary positions, got {self.head_size}")
            self._check_rope_angles()
        else:
            for name, default in (("num_kv_heads", self.num_heads),
                                  ("head_dim", self.d_model // self.num_heads)):
                if getattr(self, name) not in (None, default):
                    raise ValueError(f"{name}={getattr(self, name)!r} needs positions='rope' (GPT's "
                                     f"attention has {name}={default})")
            if self.attention_bias:
                raise ValueError("attention_bias=True needs positions='rope' (GPT's attention "
                                 "always has its biases)")
        if self.dropout > 0 and (self.positions == "rope" or self.mlp == "swiglu"):
            raise ValueError(f"dropout={self.dropout!r} needs positions='learned' and mlp='gelu' "
                             f"(rotary attention and SwiGLU have no dropout)")

    def _check_rope_angles(self) -> None:
        """The rotary frequencies this config makes (:func:`npgpt.nn.rope.rope_frequencies`,
        which also checks rope_scaling's numbers) must be finite and positive, and the
        angles of float32 tables, position · inv_freq, finite up to position
        context_length - 1: else every logit is NaN (``rope_theta=1e-300`` rounds to 0 in
        float32, and 1 / 0^x is infinite) or a pair never turns (a frequency of 0).

        Examples
        --------
        >>> GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
        ...           positions="rope", rope_theta=1e-300)
        Traceback (most recent call last):
            ...
        ValueError: rope_theta=1e-300 (rope_scaling=None, head_dim=4) gives rotary frequencies that are not finite and positive: inv_freq = [1.0, inf]
        """
        from .io.errors import short_repr                # the values may come from a file
        from .nn.rope import rope_frequencies
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            inv_freq = rope_frequencies(self.head_size, float(self.rope_theta), self.rope_scaling)
            what = (f"rope_theta={self.rope_theta!r} (rope_scaling="
                    f"{short_repr(self.rope_scaling, 200)}, head_dim={self.head_size})")
            if not (np.isfinite(inv_freq).all() and (inv_freq > 0).all()):
                shown = [float(f) for f in inv_freq[:6]] + (["..."] if len(inv_freq) > 6 else [])
                raise ValueError(f"{what} gives rotary frequencies that are not finite and "
                                 f"positive: inv_freq = [{', '.join(map(str, shown))}]")
            last = self.context_length - 1
            top = np.float32(last) * np.float32(inv_freq.max())     # rope_tables' float32 product
        if not np.isfinite(top):
            raise ValueError(f"{what} with context_length={self.context_length} gives rotary "
                             f"angles that overflow float32: position {last} x inv_freq "
                             f"{float(inv_freq.max()):.3g}")

    @property
    def head_size(self) -> int:
        """D = head_dim, or d_model / num_heads when it is None."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        """Hkv = num_kv_heads, or num_heads when it is None."""
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def ffn_size(self) -> int:
        """F = ffn_dim, or 4 · d_model when it is None."""
        return self.ffn_dim if self.ffn_dim is not None else 4 * self.d_model

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
        >>> cfg.to_json()[:57]
        '{"attention_bias": false, "context_length": 64, "d_model"'
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
