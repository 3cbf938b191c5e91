"""Tokenizers: text -> token ids -> text.

Shapes: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode`` returns a
``list[int]``, ``decode`` also accepts a 1-D NumPy integer array.

Four tokenizers, from the seed tutorial's toy to GPT-2's and today's Hugging Face files:

- :class:`WordTokenizer` -- the seed's word vocabulary: split on whitespace, one id per word.
- :class:`CharTokenizer` -- one id per character (what small character-level models train on).
- :class:`BPETokenizer` -- byte-level byte-pair encoding exactly as GPT-2 (and tiktoken) do it:
  text -> UTF-8 bytes -> pre-tokens (GPT-2's regex) -> merges applied by rank.
- :class:`HFTokenizer` -- a Hugging Face ``tokenizer.json`` (:func:`load_tokenizer_json`):
  byte-level BPE with a named split regex (Llama 3, Qwen2, SmolLM) or SentencePiece-style BPE
  with ``▁`` and ``<0xNN>`` byte fallback (Llama 2, TinyLlama, Mistral), added tokens, BOS.

Every tokenizer has ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
``to_dict()`` (a JSON-serialisable dict with a ``"type"`` key), ``save(path)`` / ``load(path)``
(JSON files), and :func:`tokenizer_from_dict` rebuilds any of them -- that is how tokenizers
travel inside npgpt checkpoints.

Errors are ``ValueError`` naming the bad input: unknown words or characters (all of them),
ids out of range (all of them), lone surrogates (with their position; such a string has no
UTF-8 form). A tokenizer read from a file (:func:`load_tokenizer`,
:meth:`BPETokenizer.from_gpt2`, :meth:`BPETokenizer.from_tiktoken`,
:func:`tokenizer_from_dict`) is checked as strictly as weights: ids integral, non-negative
and unique, special ids apart from ordinary ones, merges consistent with the vocabulary;
anything else is a ValueError naming the problem.

One file per idea; read them in this order:

1. ``base.py`` -- the base class (``save``/``load``, ``len``, ``==``), the input checks and
   error messages every tokenizer shares, :func:`tokenizer_from_dict` and
   :func:`load_tokenizer`;
2. ``simple.py`` -- :class:`WordTokenizer` and :class:`CharTokenizer`;
3. ``patterns.py`` -- GPT-2's pre-tokenisation regex (:data:`GPT2_PATTERN`,
   :func:`gpt2_pattern`, :func:`gpt2_split`), and the registry of patterns a tokenizer
   file may name (:data:`PATTERNS`, :func:`register_pattern`): a file never brings its
   own regex, which could make ``encode`` hang;
4. ``bpe.py`` -- :func:`bytes_to_unicode`, the byte-pair merge rule and :class:`BPETokenizer`;
5. ``bpe_train.py`` -- learning merges from text (:func:`~.bpe_train.train_bpe`, which
   ``BPETokenizer.train`` calls);
6. ``hf.py`` -- :class:`HFTokenizer`: a ``tokenizer.json``'s normalizer, pre-tokenizer, BPE
   model, added tokens, post-processor and decoder, each step a small function; with
   ``longest_match.py`` (added tokens found by an automaton) and ``normalize.py`` (Unicode
   normalization in linear time);
7. ``gguf.py`` -- :func:`tokenizer_from_gguf`: the tokenizer a GGUF file's metadata
   describes (byte-level BPE as an :class:`HFTokenizer`, the split named by
   ``tokenizer.ggml.pre``), with its chat template and BOS / EOS ids.

Only the standard library is used (``re``, ``unicodedata``, ``json``, ``base64``, ``heapq``).
"""

from .base import tokenizer_from_dict, tokenizer_to_dict
from .bpe import GPT2_SPECIAL_TOKENS, BPETokenizer, bytes_to_unicode
from .gguf import tokenizer_from_gguf
from .hf import HFTokenizer, load_tokenizer_json
from .load import load_tokenizer
from .sentencepiece import SentencePieceTokenizer
from .patterns import GPT2_PATTERN, PATTERNS, gpt2_pattern, gpt2_split, register_pattern
from .simple import CharTokenizer, WordTokenizer

__all__ = ["WordTokenizer", "CharTokenizer", "BPETokenizer", "HFTokenizer", "load_tokenizer_json",
           "SentencePieceTokenizer",
           "tokenizer_from_dict", "tokenizer_to_dict", "tokenizer_from_gguf",
           "load_tokenizer", "bytes_to_unicode", "gpt2_pattern", "gpt2_split", "GPT2_PATTERN",
           "GPT2_SPECIAL_TOKENS", "PATTERNS", "register_pattern"]
