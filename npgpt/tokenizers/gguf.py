"""The tokenizer of a GGUF file, built from its metadata.

Shapes and types: ``metadata`` maps a GGUF key to a Python value -- str, int, float, bool,
a list of str, or a list / 1-D NumPy array of numbers (``tokenizer.ggml.token_type``).

A GGUF file (llama.cpp's) has no ``tokenizer.json``: the tokenizer is spelled out in
metadata keys, and ``tokenizer.ggml.model`` says which kind it is:

- ``"gpt2"`` -- byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM, ...): ``tokenizer.ggml.tokens``
  (byte-level spelling, ``"Ġ"`` for a space), ``tokenizer.ggml.merges`` (``"a b"``) and
  ``tokenizer.ggml.pre``, the *name* of the split regex. :func:`tokenizer_from_gguf` writes
  the equivalent ``tokenizer.json`` (:func:`gguf_to_tokenizer_json`) and reads it with
  :class:`~.hf.HFTokenizer`, so the BPE is the same code;
- ``"llama"`` -- SentencePiece (Llama 2, TinyLlama, Mistral): handed to
  ``npgpt.tokenizers.sentencepiece.SentencePieceTokenizer.from_gguf_metadata``.

The pieces of a ``"gpt2"`` vocabulary, as llama.cpp (``llama-vocab.cpp``) and transformers
(``integrations/gguf``) read them:

- ``tokenizer.ggml.token_type``: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
  6 byte. Control tokens (``<|im_start|>``) are special added tokens, user-defined ones
  (``<think>``) plain added tokens: both are cut out of the text whole before the split.
  A control token with a character outside the byte alphabet is a converter's mislabel
  and is skipped, as transformers does; so is a user-defined one not in the vocabulary;
- a vocabulary entry with a character outside the byte alphabet is respelled byte by byte
  (transformers' rule), so that merges and added tokens find it;
- ``bos_token_id`` / ``eos_token_id`` (-> ``tok.bos_token_id`` / ``tok.eos_token_id``),
  ``add_bos_token`` / ``add_eos_token`` (-> BOS / EOS around ``encode``'s ids, default as
  llama.cpp: BOS for the Llama 3 family only), ``tokenizer.chat_template``
  (-> ``tok.chat_template``, kept by ``tok.save`` and in model files).

``tokenizer.ggml.pre`` -> the split (:data:`PRE_TOKENIZERS`, names as in ``llama-vocab.cpp``;
an absent key is ``"default"``, as there, an unknown name a ValueError):

==================  ====================================================================
``default``         llama.cpp's fallback: punctuation runs, GPT-2's regex, number runs,
                    then three ASCII digits at a time
``gpt-2``           GPT-2's regex (also ``phi-2``, ``roberta-bpe``, ``mpt``, ``olmo``, ...)
``llama-bpe``       Llama 3's regex, and a word found whole in the vocabulary is one
                    token (``ignore_merges``; also ``llama3``, ``llama-v3``, ``falcon3``)
``qwen2``           Qwen2's regex (also ``stablelm2``, ``megrez``, ``deepseek-r1-qwen``)
``smollm``          each digit alone, then GPT-2's regex (also ``starcoder``, ``refact``,
                    ``command-r``, ``codeshell``, ``exaone``, ``minerva-7b``)
==================  ====================================================================

Where transformers differs (its GGUF reader knows fewer names): for ``default`` and
``smollm`` it uses GPT-2's regex alone, and it never sets ``ignore_merges``; npgpt follows
llama.cpp, which defines these names, and SmolLM's and Llama 3's own ``tokenizer.json``.
Neither adds Qwen2's NFC normalizer, nor does npgpt.
"""

from __future__ import annotations

import copy
import importlib

from ..io.errors import short_repr
from .byte_level import bytes_to_unicode
from .hf import HFTokenizer
from .patterns import GPT2_PATTERN, LLAMA3_PATTERN, LLAMACPP_PUNCTUATION, QWEN2_PATTERN, \
    THREE_DIGITS
from .pieces import CONTROL, NORMAL, USER_DEFINED


def _split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
            "invert": False}


def _byte_level(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": use_regex}


def _sequence(*steps):
    return {"type": "Sequence", "pretokenizers": list(steps)}


_DIGITS, _NUMBERS = ({"type": "Digits", "individual_digits": flag} for flag in (True, False))

# (llama.cpp's names of a family, its pre-tokenizer, ignore_merges, add_bos by default)
_FAMILIES = [
    (["default"], _sequence(_split(LLAMACPP_PUNCTUATION), _split(GPT2_PATTERN), _NUMBERS,
                            _split(THREE_DIGITS), _byte_level(False)), False, False),
    (["gpt-2", "phi-2", "roberta-bpe", "gigachat", "jina-es", "jina-de", "jina-v1-en",
      "jina-v2-es", "jina-v2-de", "jina-v2-code", "mpt", "olmo", "jais"],
     _byte_level(True), False, False),
    (["llama-bpe", "llama3", "llama-v3", "falcon3"],
     _sequence(_split(LLAMA3_PATTERN), _byte_level(False)), True, True),
    (["dbrx", "smaug-bpe"], _sequence(_split(LLAMA3_PATTERN), _byte_level(False)), False,
     False),
    (["qwen2", "stablelm2", "megrez", "deepseek-r1-qwen"],
     _sequence(_split(QWEN2_PATTERN), _byte_level(False)), False, False),
    (["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"],
     _sequence(_DIGITS, _byte_level(True)), False, False)]

#: ``tokenizer.ggml.pre`` -> (the ``tokenizer.json`` pre-tokenizer, ignore_merges, add_bos
#: when the file does not say), for the names of each family in llama.cpp.
PRE_TOKENIZERS = {name: (pre, ignore, bos) for names, pre, ignore, bos in _FAMILIES
                  for name in names}


def _value(metadata, key, kinds, default=None):
    """``metadata[key]`` checked to be one of ``kinds``; ``default`` when absent."""
    if key not in metadata:
        return default
    value = metadata[key]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ValueError(f"GGUF metadata {key} must be {' or '.join(k.__name__ for k in kinds)}, "
                         f"got {short_repr(value)}")
    return value


def _strings(metadata, key, required=True):
    value = metadata.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"GGUF metadata {key} must be a list of str, got {short_repr(value)}")
    return list(value)


def _ints(metadata, key, length):
    """A numeric array (list or NumPy) of ``length`` ints, or None when absent."""
    value = metadata.get(key)
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != length or not all(
            type(v) is int for v in value):
        raise ValueError(f"GGUF metadata {key} must be {length} integers (one per token), got "
                         f"{short_repr(value)}")
    return list(value)


def _token_id(metadata, key, n_tokens):
    value = metadata.get(key)
    if value is None:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if type(value) is not int or not 0 <= value < n_tokens:
        raise ValueError(f"GGUF metadata {key} must be a token id in [0, {n_tokens}), got "
                         f"{short_repr(value)}")
    return value


def gguf_to_tokenizer_json(metadata):
    """The ``tokenizer.json`` (a dict) equivalent to a ``"gpt2"`` GGUF vocabulary.

    Parameters
    ----------
    metadata : dict
        GGUF key -> value (see the module docstring); only ``tokenizer.*`` keys are read.

    Returns
    -------
    dict
        A ``tokenizer.json`` for :class:`~.hf.HFTokenizer` (and the ``tokenizers``
        library, once the ``Split`` regexes it names are read in the ``regex`` syntax).

    Examples
    --------
    >>> meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
    ...         "tokenizer.ggml.tokens": ["a", "b", "ab", "<|end|>"],
    ...         "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.token_type": [1, 1, 1, 3]}
    >>> spec = gguf_to_tokenizer_json(meta)
    >>> spec["model"]["vocab"], spec["added_tokens"][0]["content"]
    ({'a': 0, 'b': 1, 'ab': 2, '<|end|>': 3}, '<|end|>')
    """
    model = _value(metadata, "tokenizer.ggml.model", (str,))
    if model != "gpt2":
        raise ValueError(f"tokenizer.ggml.model {short_repr(model)} is not a byte-level BPE "
                         f"('gpt2')")
    pre = _value(metadata, "tokenizer.ggml.pre", (str,), "default")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"tokenizer.ggml.pre {short_repr(pre)} is not a pre-tokenizer npgpt "
                         f"knows; known: {', '.join(sorted(PRE_TOKENIZERS))}")
    pre_tokenizer, ignore_merges, bos_default = copy.deepcopy(PRE_TOKENIZERS[pre])
    tokens = _strings(metadata, "tokenizer.ggml.tokens")
    merges = _strings(metadata, "tokenizer.ggml.merges", required=False) or []
    types = _ints(metadata, "tokenizer.ggml.token_type", len(tokens)) or [NORMAL] * len(tokens)

    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    respelled = [t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))
                 for t in tokens]
    vocab = {t: i for i, t in enumerate(respelled)}
    added, seen = [], set()
    for token, kind in zip(tokens, types):
        if token in seen:
            continue
        if kind == CONTROL and set(token) <= alphabet or kind == USER_DEFINED and token in vocab:
            seen.add(token)
            added.append({"id": vocab[token], "content": token, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": kind == CONTROL})

    n = len(tokens)
    around = []
    for side, key, default in (("bos", "add_bos_token", bos_default), ("eos", "add_eos_token",
                                                                         False)):
        if _value(metadata, f"tokenizer.ggml.{key}", (bool,), default):
            token_id = _token_id(metadata, f"tokenizer.ggml.{side}_token_id", n)
            if token_id is None:
                raise ValueError(f"tokenizer.ggml.{key} is true but tokenizer.ggml.{side}_token_id "
                                 f"is missing")
            around.append((side, respelled[token_id]))
    post = None
    if around:
        single = [{"SpecialToken": {"id": t, "type_id": 0}} for side, t in around if side == "bos"]
        single.append({"Sequence": {"id": "A", "type_id": 0}})
        single += [{"SpecialToken": {"id": t, "type_id": 0}} for side, t in around if side == "eos"]
        post = {"type": "TemplateProcessing", "single": single, "pair": single,
                "special_tokens": {t: {"id": t, "ids": [vocab[t]], "tokens": [t]}
                                   for _, t in around}}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": pre_tokenizer, "post_processor": post,
            "decoder": _byte_level(True),
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                      "vocab": vocab, "merges": merges}}


def tokenizer_from_gguf(metadata):
    """The tokenizer a GGUF file's metadata describes.

    Parameters
    ----------
    metadata : dict
        GGUF key -> value: str, int, float, bool, list of str, or a list / 1-D NumPy array
        of numbers.

    Returns
    -------
    tokenizer
        ``"gpt2"``: an :class:`~.hf.HFTokenizer` (see the module docstring);
        ``"llama"``: a ``SentencePieceTokenizer``. Both carry ``chat_template`` (None when
        the file has none), ``bos_token_id`` and ``eos_token_id``.

    Examples
    --------
    >>> chars = list(bytes_to_unicode().values())
    >>> meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm",
    ...         "tokenizer.ggml.tokens": ["<|im_start|>"] + chars + ["Ġt", "Ġth"],
    ...         "tokenizer.ggml.merges": ["Ġ t", "Ġt h"],
    ...         "tokenizer.ggml.token_type": [3] + [1] * 258,
    ...         "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 0,
    ...         "tokenizer.chat_template": "{{ messages }}"}
    >>> tok = tokenizer_from_gguf(meta)
    >>> ids = tok.encode("<|im_start|> th12")
    >>> ids                                  # "12": one digit at a time ("smollm")
    [0, 258, 50, 51]
    >>> tok.decode(ids, skip_special_tokens=False), tok.chat_template, tok.bos_token_id
    ('<|im_start|> th12', '{{ messages }}', 0)
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of GGUF keys, got {type(metadata).__name__}")
    model = _value(metadata, "tokenizer.ggml.model", (str,))
    if model == "gpt2":
        tok = HFTokenizer(gguf_to_tokenizer_json(metadata))
    elif model == "llama":
        try:
            module = importlib.import_module("npgpt.tokenizers.sentencepiece")
        except ImportError:
            raise ValueError("tokenizer.ggml.model 'llama' (SentencePiece) needs "
                             "npgpt.tokenizers.sentencepiece, which this npgpt lacks") from None
        tok = module.SentencePieceTokenizer.from_gguf_metadata(metadata)
    else:
        raise ValueError(f"tokenizer.ggml.model {short_repr(model)} is not supported; npgpt "
                         f"reads 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)")
    n = len(_strings(metadata, "tokenizer.ggml.tokens"))
    extras = {"bos_token_id": _token_id(metadata, "tokenizer.ggml.bos_token_id", n),
              "eos_token_id": _token_id(metadata, "tokenizer.ggml.eos_token_id", n),
              "chat_template": _value(metadata, "tokenizer.chat_template", (str,))}
    for name, value in extras.items():                  # (unless the tokenizer set them)
        if value is not None and getattr(tok, name, None) is None:
            setattr(tok, name, value)
    return tok
