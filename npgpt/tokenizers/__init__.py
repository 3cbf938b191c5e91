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

1. ``base.py`` -- the base class :class:`~.base.Tokenizer` (``save``/``load``, ``len``,
   ``==``; each class records its ``type_name``), the input checks and error messages every
   tokenizer shares, :func:`tokenizer_to_dict` and :func:`tokenizer_from_dict`; it imports
   no tokenizer class. ``chat_template.py`` -- ``tok.apply_chat_template``, rendered with
   :mod:`npgpt.chat.template`;
2. ``simple.py`` -- :class:`WordTokenizer` and :class:`CharTokenizer`;
3. ``patterns.py`` -- GPT-2's pre-tokenisation regex (:data:`GPT2_PATTERN`,
   :func:`gpt2_pattern`, :func:`gpt2_split`), and the registry of patterns a tokenizer
   file may name (:data:`PATTERNS`, :func:`register_pattern`): a file never brings its
   own regex, which could make ``encode`` hang;
4. ``byte_level.py`` (:func:`bytes_to_unicode`, GPT-2's files), ``byte_pair.py`` (the
   byte-pair merge rule) and ``bpe.py`` -- :class:`BPETokenizer`;
5. ``bpe_train.py`` -- learning merges from text (:func:`~.bpe_train.train_bpe`, which
   ``BPETokenizer.train`` calls);
6. ``hf.py`` -- :class:`HFTokenizer`, which runs a ``tokenizer.json``'s pipeline, one
   module per stage: ``hf_fields.py`` (the checked accessors they share),
   ``hf_added_tokens.py`` (found by the automaton of ``longest_match.py``),
   ``hf_normalizer.py`` (Unicode normalization in linear time: ``normalize.py``),
   ``hf_pre_tokenizer.py``, ``hf_model.py`` (BPE), ``hf_post_processor.py``,
   ``hf_decoder.py``;
7. ``sentencepiece.py`` -- :class:`SentencePieceTokenizer`, with ``pieces.py`` (piece
   types, also GGUF's token types), ``sentencepiece_bpe.py`` (normalize, the merge loop)
   and ``sentencepiece_files.py`` (``tokenizer.model`` and llama2.c's ``tokenizer.bin``);
8. ``gguf.py`` -- :func:`tokenizer_from_gguf`: the tokenizer a GGUF file's metadata
   describes (byte-level BPE as an :class:`HFTokenizer`, the split named by
   ``tokenizer.ggml.pre``), with its chat template and BOS / EOS ids;
9. ``load.py`` -- :func:`load_tokenizer`: any tokenizer file, told apart by its first
   bytes; the one module that imports every tokenizer.

Only the standard library is used (``re``, ``unicodedata``, ``json``, ``base64``, ``heapq``).
"""

from .base import tokenizer_from_dict, tokenizer_to_dict
from .bpe import GPT2_SPECIAL_TOKENS, BPETokenizer
from .byte_level import bytes_to_unicode
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
