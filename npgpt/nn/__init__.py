"""Layers as pure functions: ``<layer>_forward(...) -> (out, cache)``.

One file per layer, read top to bottom: embedding, layernorm, linear, gelu (with a
hand-written erf), softmax, attention, mlp, block.
"""

from .attention import attention_forward, causal_bias
from .block import block_forward
from .embedding import embedding_forward
from .gelu import erf, gelu_forward
from .layernorm import layernorm_forward
from .linear import linear_forward
from .mlp import mlp_forward
from .softmax import softmax_forward

__all__ = ["attention_forward", "causal_bias", "block_forward", "embedding_forward", "erf",
           "gelu_forward", "layernorm_forward", "linear_forward", "mlp_forward",
           "softmax_forward"]
