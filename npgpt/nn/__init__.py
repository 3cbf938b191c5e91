"""Layers as pure functions: ``<layer>_forward(...) -> (out, cache)`` beside
``<layer>_backward(dout, cache)``.

Read in the order the forward pass meets them:

* ``layers.py``    embedding, LayerNorm, linear, softmax, GELU (and dropout's mask)
* ``attention.py`` causal multi-head self-attention and its masks
* ``mlp.py``       the feed-forward network
* ``block.py``     a transformer block: the two sublayers with their residual connections;
  ``block_parts`` picks its norm, attention and MLP from the config
* ``part.py``      what a layer family gives the block: its parameter names and shapes, one
  forward and one backward by name (each family's ``Part`` sits beside its math)
* ``rmsnorm.py``, ``rope.py``, ``gqa.py``, ``swiglu.py`` the Llama family's layers
* ``crossentropy.py`` the training loss
* ``erf.py``       the error function the exact GELU needs (NumPy has none)
"""

import sys

from . import layers
from .attention import attention_backward, attention_forward, causal_bias, causal_mask
from .block import block_backward, block_forward
from .crossentropy import cross_entropy_backward, cross_entropy_forward
from .erf import erf
from .layers import (dropout_mask, embedding_backward, embedding_forward, gelu_backward,
                     gelu_forward, layernorm_backward, layernorm_forward, linear_backward,
                     linear_forward, softmax_backward, softmax_forward)
from .mlp import mlp_backward, mlp_forward

# The elementary layers had a file each before they met in layers.py: the old module names
# (npgpt.nn.linear, ...) still import, as names for that module.
for _old in ("embedding", "layernorm", "linear", "gelu", "softmax"):
    sys.modules[f"{__name__}.{_old}"] = layers
    globals()[_old] = layers
del _old

__all__ = ["attention_forward", "attention_backward", "causal_mask", "causal_bias",
           "block_forward", "block_backward", "cross_entropy_forward", "cross_entropy_backward",
           "dropout_mask", "embedding_forward", "embedding_backward", "erf", "gelu_forward",
           "gelu_backward", "layernorm_forward", "layernorm_backward", "linear_forward",
           "linear_backward", "mlp_forward", "mlp_backward", "softmax_forward", "softmax_backward"]
