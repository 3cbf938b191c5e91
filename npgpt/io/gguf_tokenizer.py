"""A tokenizer as GGUF's ``tokenizer.ggml.*`` metadata and back: the glue between
:mod:`npgpt.io.gguf` (the model) and :mod:`npgpt.tokenizers` (which reads the vocabulary,
:func:`npgpt.tokenizers.gguf.tokenizer_from_gguf`). Writing covers the byte-level BPE
vocabularies llama.cpp calls ``gpt2``: GPT-2's ``BPETokenizer``, an ASCII ``CharTokenizer``
and a byte-level ``tokenizer.json`` (``HFTokenizer``).
"""

from __future__ import annotations

import warnings

import numpy as np

from .build import fitting_tokenizer
from .errors import CheckpointError
from .gguf_file import ARRAY, STRING

#: The tokenizers :func:`tokenizer_metadata` writes; another kind is written from the
#: ``tokenizer.*`` metadata a GGUF model was loaded with (``model.gguf_tokenizer``).
WRITABLE_TOKENIZERS = ("CharTokenizer", "BPETokenizer", "HFTokenizer")


def attach_tokenizer(model, metadata, source):
    """``npgpt.tokenizers.gguf.tokenizer_from_gguf(metadata)`` when that module exists;
    without it the model loads without a tokenizer, with a warning saying so. A file without
    ``tokenizer.ggml.*`` keys leaves ``model.tokenizer`` as it is.

    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=4, context_length=8, d_model=8,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
    ...         "tokenizer.ggml.merges": ["a b"]}
    >>> attach_tokenizer(model, meta, "tiny.gguf")
    >>> model.tokenizer.decode(model.tokenizer.encode("abba"))
    'abba'
    """
    if not any(key.startswith("tokenizer.ggml.") for key in metadata):
        return
    try:
        from ..tokenizers.gguf import tokenizer_from_gguf
    except ImportError:
        warnings.warn(f"{source}: npgpt.tokenizers.gguf is not available, so the file's "
                      f"tokenizer is not read; model.tokenizer stays None", stacklevel=4)
        return
    try:
        tokenizer = tokenizer_from_gguf(metadata)
    except Exception as exc:        # the vocabulary is untrusted input: any failure is a bad file
        raise CheckpointError(f"{source}: the tokenizer in the metadata is invalid: "
                              f"{type(exc).__name__}: {str(exc)[:400]}") from None
    model.tokenizer = fitting_tokenizer(tokenizer, model.config, source)



def _byte_level_token(data: bytes) -> str:
    from ..tokenizers.bpe import bytes_to_unicode
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


_PRE_NAMES = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2"}


def tokenizer_metadata(tokenizer, vocab_size) -> dict:
    """``tokenizer.ggml.*`` keys (each (value type, value)) for ``tokenizer``, or a
    ValueError naming a tokenizer GGUF cannot carry.

    - BPETokenizer (byte-level): model ``gpt2``, every token's bytes in GPT-2's byte-to-
      character mapping, the merges in rank order, special tokens as control tokens, and
      ``pre`` naming its split pattern (``gpt-2``, ``llama-bpe``, ``qwen2``); ``<|endoftext|>``,
      when it has one, as both the BOS and the EOS token.
    - CharTokenizer whose characters are all ASCII: model ``gpt2`` with no merges, each
      character a one-byte token — llama.cpp's byte-level BPE then gives one token per
      character, as npgpt does. It has no end-of-text token. Other characters, and
      WordTokenizer, are refused.

    - HFTokenizer (a ``tokenizer.json``) of byte-level BPE: its vocabulary, merges and added
      tokens (special: control, others: user-defined); ``pre`` from its split regex
      (Llama 3's, Qwen2's, else GPT-2's). SentencePiece-style (``▁``) BPE is refused.

    ``add_bos_token`` is true, with ``bos_token_id``, when the tokenizer puts a control token
    before every text (a ``tokenizer.json`` post-processor, as Llama 3's), else false;
    ``<|endoftext|>``, when the vocabulary has it, is the EOS token.

    >>> import npgpt
    >>> keys = tokenizer_metadata(npgpt.CharTokenizer.from_text("ab"), vocab_size=3)
    >>> keys["tokenizer.ggml.model"], keys["tokenizer.ggml.tokens"]
    ((8, 'gpt2'), (9, (8, ['a', 'b', '[PAD2]'])))
    """
    kind = type(tokenizer).__name__
    tokens, types, merges, pre = None, None, [], "gpt-2"
    if kind == "CharTokenizer":
        if any(ord(c) > 127 for c in tokenizer.chars):
            raise ValueError("GGUF cannot carry a CharTokenizer with non-ASCII characters "
                             "(llama.cpp would split them into bytes); save without it")
        tokens = [_byte_level_token(c.encode("ascii")) for c in tokenizer.chars]
        types = [1] * len(tokens)
    elif kind == "BPETokenizer":
        derived = tokenizer._derive_merges()
        if derived is None:
            raise ValueError("GGUF needs merges, and this BPETokenizer has none that rebuild it")
        size = tokenizer.vocab_size
        tokens, types = [f"[PAD{i}]" for i in range(size)], [5] * size     # 5: unused
        for i in range(size):
            if i in tokenizer._decoder:
                tokens[i], types[i] = _byte_level_token(tokenizer._decoder[i]), 1
        for text, i in tokenizer.special_tokens.items():
            tokens[i], types[i] = text, 3                                   # 3: control
        merges = [f"{_byte_level_token(tokenizer._decoder[a])} "
                  f"{_byte_level_token(tokenizer._decoder[b])}" for a, b in derived[0]]
        pre = _PRE_NAMES.get(tokenizer.pattern, "default")
    elif kind == "HFTokenizer":
        tokens, types, merges, pre = _hf_vocabulary(tokenizer.to_dict()["tokenizer_json"])
    else:
        raise ValueError(f"GGUF cannot carry a {kind}; set model.tokenizer = None to save the "
                         f"weights alone")
    if len(tokens) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tokens)} tokens, more than vocab_size "
                         f"{vocab_size}")
    tokens += [f"[PAD{i}]" for i in range(len(tokens), vocab_size)]
    types += [5] * (vocab_size - len(types))
    out = {"tokenizer.ggml.model": (STRING, "gpt2"), "tokenizer.ggml.pre": (STRING, pre),
           "tokenizer.ggml.tokens": (ARRAY, (STRING, tokens)),
           "tokenizer.ggml.token_type": (ARRAY, (5, np.array(types, np.int32))),
           "tokenizer.ggml.merges": (ARRAY, (STRING, merges))}
    bos = _added_bos(tokenizer, types) if kind == "HFTokenizer" else None
    out["tokenizer.ggml.add_bos_token"] = (7, bos is not None)
    if bos is not None:
        out["tokenizer.ggml.bos_token_id"] = (4, bos)
    special = getattr(tokenizer, "special_tokens", None)
    end = special.get("<|endoftext|>") if isinstance(special, dict) else (
        tokens.index("<|endoftext|>") if "<|endoftext|>" in tokens else None)
    if end is not None:                                        # GPT-2's one special token
        out.setdefault("tokenizer.ggml.bos_token_id", (4, end))
        out["tokenizer.ggml.eos_token_id"] = (4, end)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        out["tokenizer.chat_template"] = (STRING, template)
    return out


def _hf_vocabulary(spec):
    """(tokens, token types, merges, pre) of a byte-level BPE ``tokenizer.json`` dict."""
    from ..tokenizers.patterns import LLAMA3_PATTERN, QWEN2_PATTERN
    model = spec.get("model") or {}
    text = str(spec.get("pre_tokenizer")) + str(spec.get("decoder"))
    if model.get("type") != "BPE" or "ByteLevel" not in text:
        raise ValueError("GGUF's gpt2 vocabulary needs a byte-level BPE tokenizer.json; this "
                         "HFTokenizer is not one (SentencePiece-style BPE is not written)")
    vocab = dict(model["vocab"])
    types = {i: 1 for i in vocab.values()}
    for added in spec.get("added_tokens") or []:
        vocab[added["content"]] = added["id"]
        types[added["id"]] = 3 if added.get("special") else 4
    size = max(vocab.values()) + 1
    tokens, kinds = [f"[PAD{i}]" for i in range(size)], [5] * size
    for token, i in vocab.items():
        tokens[i], kinds[i] = token, types[i]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    regexes = set(_split_regexes(spec.get("pre_tokenizer")))
    pre = ("llama-bpe" if LLAMA3_PATTERN in regexes else "qwen2" if QWEN2_PATTERN in regexes
           else "gpt-2")
    return tokens, kinds, merges, pre


def _added_bos(tokenizer, types):
    """The control token ``tokenizer`` puts before every text (encoding "" gives it), or None."""
    try:
        probe = tokenizer.encode("")
    except Exception:             # a tokenizer that refuses empty text adds nothing to it
        return None
    return probe[0] if len(probe) and types[probe[0]] == 3 else None


def _split_regexes(step):
    """Every ``Split`` regex in a pre_tokenizer (inside ``Sequence``s too)."""
    if isinstance(step, dict):
        if step.get("type") == "Split" and isinstance(step.get("pattern"), dict):
            yield step["pattern"].get("Regex")
        for inner in step.get("pretokenizers") or []:
            yield from _split_regexes(inner)


