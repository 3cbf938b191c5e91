"""How big a model is and what training it needs (parameters, memory), counted from the
parameter shapes without allocating anything; the architectures ``npgpt train --arch`` offers,
and the Llama-style config matched to a GPT's size.

Shapes: V vocabulary, T context, C = d_model, H heads, L layers, F the SwiGLU width.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import GPTConfig
from ..params import block_parameter_shapes, parameter_shapes


def training_memory(config: GPTConfig, batch_size: int, dtype=np.float32) -> int:
    """About how many bytes training needs: the parameters, their gradients and AdamW's two
    moments (4 numbers a parameter), and the activations a step keeps for its backward pass
    (B·T·(L·(16 C + 2 H T) + 3 V) numbers: each block's vectors, its attention scores and
    probabilities, the logits). A rough figure, computed without allocating anything, to
    refuse sizes that cannot fit.

    Examples
    --------
    The command line's default model (4 layers, d_model 128, context 64, batch 12) on a
    vocabulary of 65: about 45 MB.

    >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
    >>> round(training_memory(cfg, batch_size=12) / 1e6)
    45
    """
    V, T, C = config.vocab_size, config.context_length, config.d_model
    H, L = config.num_heads, config.num_layers
    params = num_parameters(config)
    activations = batch_size * T * (L * (16 * C + 2 * H * T) + 3 * V)
    return (4 * params + activations) * np.dtype(dtype).itemsize


def num_parameters(config: GPTConfig) -> int:
    """How many numbers the parameters of ``config`` hold, counted from their shapes
    (:func:`npgpt.model.parameter_shapes`) without making an array or a table of every layer:
    the blocks are alike, so L times one block's sizes, plus what lies around the blocks
    (token and position tables, the final norm, the output layer and its bias). Absurd sizes
    cost nothing to count.

    Examples
    --------
    >>> num_parameters(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    3770
    """
    def size(shapes):
        return sum(math.prod(shape) for shape in shapes.values())
    block = size(block_parameter_shapes(config, 0))
    around = size(parameter_shapes(config.replace(num_layers=1))) - block
    return around + config.num_layers * block


ARCHITECTURES = ("gpt", "llama")


def matched_ffn_dim(config: GPTConfig, num_kv_heads: int | None = None, multiple: int = 8) -> int:
    """The SwiGLU width F that gives the Llama-style model of ``config``'s sizes (see
    :func:`model_config`) about as many parameters as the GPT ``config``.

    Per block, GPT has 12 C² + 13 C parameters: attention 4 C² + 4 C, the GELU MLP
    (C -> 4C -> C) 8 C² + 5 C, two LayerNorms 4 C; the model adds a position table T·C.
    The Llama-style block has attention C·H·D + 2 C·Hkv·D + H·D·C (4 C² without grouped
    queries, fewer with), two RMSNorm gains 2 C, and the SwiGLU MLP 3 C·F (gate, up, down,
    no biases), so each unit of F adds 3 C·L parameters. F is the multiple of ``multiple``
    nearest to the width that makes the totals equal: about 8C/3 per block, a little more
    because the position table and the biases must be made up too.

    Examples
    --------
    >>> gpt = GPTConfig(vocab_size=65, context_length=128, d_model=128, num_heads=4, num_layers=4)
    >>> matched_ffn_dim(gpt), matched_ffn_dim(gpt, num_kv_heads=1)
    (352, 416)
    """
    base = model_config("llama", config, num_kv_heads=num_kv_heads, ffn_dim=multiple)
    per_unit = 3 * config.d_model * config.num_layers           # parameters per unit of F
    width = multiple + (num_parameters(config) - num_parameters(base)) / per_unit
    return max(multiple, multiple * round(width / multiple))


def model_config(arch: str, config: GPTConfig, num_kv_heads: int | None = None,
                 ffn_dim: int | None = None) -> GPTConfig:
    """The config of architecture ``arch`` with the sizes (vocabulary, context, d_model, heads,
    layers, tied embeddings) of the GPT ``config``.

    ``"gpt"``: ``config`` itself. ``"llama"``: RMSNorm, rotary positions, SwiGLU, no output
    bias, ``num_kv_heads`` key/value heads (None: as many as query heads) and the SwiGLU width
    ``ffn_dim`` (None: :func:`matched_ffn_dim`, the same parameter count as the GPT).

    Raises
    ------
    ValueError
        ``arch`` is not one of :data:`ARCHITECTURES`, ``num_kv_heads`` is given for GPT, or
        the GPT settings have no Llama counterpart (dropout, the tanh GELU, the seed's block).

    Examples
    --------
    >>> gpt = GPTConfig(vocab_size=65, context_length=128, d_model=128, num_heads=4, num_layers=4)
    >>> llama = model_config("llama", gpt)
    >>> llama.norm, llama.positions, llama.mlp, llama.ffn_dim, llama.output_bias
    ('rmsnorm', 'rope', 'swiglu', 352, False)
    >>> num_parameters(gpt), num_parameters(llama)
    (826433, 820608)
    >>> model_config("bert", gpt)
    Traceback (most recent call last):
    ...
    ValueError: arch must be one of ('gpt', 'llama'), got 'bert'
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if arch == "gpt":
        if num_kv_heads is not None:
            raise ValueError(f"num_kv_heads={num_kv_heads!r} needs arch='llama' (GPT's attention "
                             f"has one key/value head per query head)")
        return config
    for name, gpt_only in (("dropout", config.dropout > 0), ("gelu", config.gelu != "exact"),
                           ("residual", config.residual != "pre_norm")):
        if gpt_only:
            raise ValueError(f"{name}={getattr(config, name)!r} has no counterpart in the "
                             f"Llama-style block (arch='llama')")
    if ffn_dim is None:
        ffn_dim = matched_ffn_dim(config, num_kv_heads)
    return config.replace(norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False,
                          num_kv_heads=num_kv_heads, ffn_dim=ffn_dim)


def architecture(config: GPTConfig) -> str:
    """``"llama"`` for a config with rotary positions, else ``"gpt"``.

    >>> architecture(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    'gpt'
    """
    return "llama" if config.positions == "rope" else "gpt"
