"""npgpt: a GPT language model and every common decoding strategy, in NumPy.

The forward pass is explicit (``npgpt.nn``: one pure function per layer, each backward beside
its forward), the parameters are keyed like the seed tutorial's PyTorch ``GPTModel``, and
NumPy is the only dependency.

    import npgpt
    model = npgpt.load("shakespeare-char")
    out = npgpt.generate(model, model.tokenizer.encode("ROMEO:"), max_new_tokens=100,
                         do_sample=True, temperature=0.8, top_p=0.9, seed=0)
    print(model.tokenizer.decode(out.sequences[0]))
"""

from ._memory import tune_malloc
from .chat import Chat
from .config import GPTConfig
from .generation import GenerateOutput, GenerationConfig, generate, stream
from .io import CheckpointError, load, save_gguf
from .model import GPT, KVCache, gpt_forward
from .threads import get_num_threads, set_num_threads
from .tokenizers import (BPETokenizer, CharTokenizer, SentencePieceTokenizer, WordTokenizer,
                         tokenizer_from_dict)

from ._version import __version__

tune_malloc()          # arrays reuse freed memory instead of new pages (see npgpt/_memory.py)

__all__ = ["GPTConfig", "GPT", "KVCache", "gpt_forward", "generate", "stream", "GenerationConfig",
           "GenerateOutput", "load", "save_gguf", "CheckpointError", "WordTokenizer", "CharTokenizer",
           "BPETokenizer", "SentencePieceTokenizer", "tokenizer_from_dict", "Chat", "set_num_threads",
           "get_num_threads", "__version__"]
