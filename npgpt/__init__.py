"""npgpt: a GPT language model and every common decoding strategy, in NumPy.

The forward pass is explicit, the parameters are keyed like the seed tutorial's PyTorch
``GPTModel``, and NumPy is the only dependency.
"""

from .config import GPTConfig
from .model import GPT, KVCache

__version__ = "0.1.0"

__all__ = ["GPTConfig", "GPT", "KVCache", "__version__"]
