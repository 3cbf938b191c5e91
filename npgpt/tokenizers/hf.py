"""Hugging Face ``tokenizer.json`` files (the ``tokenizers`` library's format), in pure Python.

Shapes and types: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode``
returns a ``list[int]``, ``decode`` also accepts a 1-D NumPy integer array. A *token string*
is a token as the file spells it: byte-level files (GPT-2, Llama 3, Qwen2, SmolLM) spell
bytes with :func:`~.byte_level.bytes_to_unicode` (a space is ``"Ġ"``); SentencePiece-style
files (Llama 2, TinyLlama, Mistral) write a space as ``"▁"`` and unknown bytes as
``"<0xNN>"``.

A ``tokenizer.json`` describes a pipeline; :class:`HFTokenizer` runs it in the order of the
``tokenizers`` library (``Tokenizer.encode``), each stage read and run by a module of its
own:

1. **added tokens** (:mod:`.hf_added_tokens`) (``<|begin_of_text|>``, ``<s>``, ...) are cut
   out of the raw text, the longest first where two start at the same place (those with
   ``"normalized": false``), with an automaton (:class:`~.longest_match.LongestMatcher`),
   linear in the text however many tokens there are;
2. **normalizer** (:mod:`.hf_normalizer`) on each remaining piece (``"▁"`` for spaces, NFC,
   ...); then the added tokens with ``"normalized": true`` are cut out of the normalized
   pieces. A normalizer may make at most ``64 * len(piece) + 4096`` characters (a ValueError
   naming the step otherwise), and Unicode normalization is linear
   (:func:`~.normalize.normalize`);
3. **pre-tokenizer** (:mod:`.hf_pre_tokenizer`): each piece -> words (a registered regex,
   digits, ByteLevel's byte spelling, Metaspace's ``"▁"``); BPE never merges across two
   words;
4. **model** (:class:`~.hf_model.BPEModel`): each word -> ids -- its characters (unknown
   ones as ``<0xNN>`` byte tokens or the unk token), then merges by rank, exactly as the
   library's ``Word::merge_all``;
5. **post-processor** (:mod:`.hf_post_processor`): with ``add_special_tokens=True`` the
   template's tokens around the ids (the BOS of Llama and friends).

Decoding maps ids to token strings, drops special tokens when asked, and runs the
**decoder** (:mod:`.hf_decoder`: ByteLevel's bytes, ``"▁"`` -> space, ``<0xNN>`` -> bytes,
strip the first space).

Supported -- all that the Llama 2/3, TinyLlama, Mistral, Qwen2 and SmolLM files use:

- model ``BPE`` (``vocab``, ``merges`` as ``"a b"`` strings or ``[a, b]`` pairs,
  ``byte_fallback``, ``unk_token``, ``fuse_unk``, ``ignore_merges``);
- normalizers ``Sequence``, ``Prepend``, ``Replace`` (a plain string), ``NFC``, ``NFD``,
  ``NFKC``, ``NFKD``;
- pre-tokenizers ``Sequence``, ``Split`` (a registered regex or a plain string, any
  behavior), ``ByteLevel``, ``Digits``, ``Metaspace``;
- post-processors ``TemplateProcessing`` (single sequences), ``ByteLevel``,
  ``RobertaProcessing``, ``BertProcessing``, ``Sequence``;
- decoders ``Sequence``, ``ByteLevel``, ``Replace``, ``ByteFallback``, ``Fuse``, ``Strip``,
  ``Metaspace``;
- added tokens with ``lstrip``, ``rstrip``, ``single_word``, ``normalized``, ``special``.

Anything else -- WordPiece, Unigram, other normalizers or pre-tokenizers, BPE dropout,
truncation, padding -- is a :class:`~npgpt.io.CheckpointError` (a ValueError) naming the
field and its value (the checked accessors of :mod:`.hf_fields`). A ``Split`` regex is never
compiled from the file: it must equal a pattern of :data:`~.patterns.PATTERNS` (GPT-2's,
Llama 3's and Qwen2's are there; see :func:`~.patterns.register_pattern`).

Where npgpt differs from ``tokenizers``: ``decode`` refuses negative ids (the library's
binding raises OverflowError) -- ids without a token are left out, as in the library; a
file whose added-token ids the library would renumber (it warns) is refused, and so is one
with a lone surrogate in any string (the library refuses it too);
Unicode classes and normalization follow Python's ``unicodedata``, so characters assigned
in a newer Unicode version than Python's may split or normalize differently.
"""

from __future__ import annotations

import json
import os

from ..io.errors import CheckpointError, short_repr
from ..io.files import open_regular
from .base import Tokenizer, as_id_list, check_text, check_type, raise_bad_ids, read_json
from .byte_level import bytes_to_unicode
from .hf_added_tokens import added_matcher, find_added, read_added_tokens
from .hf_decoder import read_decoder, run_decoder
from .hf_fields import spec_field
from .hf_model import BPEModel
from .hf_normalizer import read_normalizer, run_normalizer
from .hf_post_processor import read_post_processor
from .hf_pre_tokenizer import read_pre_tokenizer

_TOP_LEVEL = ("version", "truncation", "padding", "added_tokens", "normalizer",
              "pre_tokenizer", "post_processor", "decoder", "model")


def _surrogate_message(value, where="tokenizer.json"):
    """The message for a file holding a string with a lone surrogate (U+D800..U+DFFF, no
    UTF-8 form; the library refuses such a file), naming the first such entry or key."""
    if isinstance(value, dict):
        for k, v in value.items():
            if _has_surrogate(k):
                return f"{where}: the key {short_repr(k)} holds a lone surrogate"
            found = _surrogate_message(v, k if where == "tokenizer.json" else f"{where}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _surrogate_message(v, f"{where}[{i}]")
            if found:
                return found
    elif isinstance(value, str) and _has_surrogate(value):
        return f"{where}: {short_repr(value)} holds a lone surrogate"
    return None


def _has_surrogate(text):
    return any("\ud800" <= c <= "\udfff" for c in text) if not text.isascii() else False


def _example():
    """The small byte-level tokenizer of the examples: GPT-2's 256 byte characters, three
    merges that build ``"Ġthe"``, ``<|end|>`` as a special token and a BOS template."""
    chars = [bytes_to_unicode()[b] for b in range(256)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({"Ġt": 256, "Ġth": 257, "Ġthe": 258, "<|begin|>": 259})
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": 259, "content": "<|begin|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True},
            {"id": 260, "content": "<|end|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|begin|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<|begin|>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<|begin|>": {"id": "<|begin|>", "ids": [259],
                                                            "tokens": ["<|begin|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "vocab": vocab,
                  "merges": [["Ġ", "t"], ["Ġt", "h"], ["Ġth", "e"]]},
    }


class HFTokenizer(Tokenizer):
    """A tokenizer read from a Hugging Face ``tokenizer.json`` (see the module docstring).

    Encoding and decoding follow the ``tokenizers`` library step by step, and its defaults:
    ``encode(text)`` adds the post-processor's special tokens (``add_special_tokens=True``,
    as ``Tokenizer.encode``), ``decode(ids)`` leaves special tokens out
    (``skip_special_tokens=True``, as ``Tokenizer.decode``). Added tokens are recognised in
    any text passed to ``encode`` -- so user text that spells ``<|end|>`` gets the special
    id, as in the library.

    Round trips: a byte-level file without normalizer gives
    ``decode(encode(s), skip_special_tokens=False) == s``. A SentencePiece-style file
    (``"▁"`` for spaces, byte fallback, a decoder that strips the first space) gives
    ``decode(encode(s)) == s.replace("▁", " ")`` when ``s`` holds no added token; after an
    added token, the legacy normalizer (``Prepend("▁")``) puts a ``"▁"`` in front of the
    next piece, which decodes as a space that was not in the text.

    Parameters
    ----------
    spec : dict
        The parsed ``tokenizer.json``; use :func:`load_tokenizer_json` to read a file.

    Examples
    --------
    >>> tok = HFTokenizer(_example())
    >>> ids = tok.encode(" the theme<|end|>")
    >>> ids
    [259, 258, 258, 109, 101, 260]
    >>> tok.decode(ids), tok.decode(ids, skip_special_tokens=False)
    (' the theme', '<|begin|> the theme<|end|>')
    >>> tok.vocab_size, tok.special_tokens
    (261, {'<|begin|>': 259, '<|end|>': 260})
    """

    type_name = "hf"

    def __init__(self, spec):
        try:
            self._setup(spec)
        except RecursionError:
            raise CheckpointError("tokenizer.json: nested too deeply") from None
        self._json = json.dumps(spec, ensure_ascii=False)
        try:
            self._json.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError(_surrogate_message(spec) or "tokenizer.json holds a lone "
                                  "surrogate") from None

    def _setup(self, spec):
        if not isinstance(spec, dict):
            raise CheckpointError(f"a tokenizer.json holds an object, got {short_repr(spec)}")
        unknown = sorted(set(spec) - set(_TOP_LEVEL))
        if unknown:
            raise CheckpointError(f"tokenizer.json: unknown field(s) {short_repr(unknown)}")
        if spec.get("version", "1.0") != "1.0":
            raise CheckpointError(f"tokenizer.json: version {short_repr(spec['version'])} is "
                                  f"not supported (only '1.0')")
        for key in ("truncation", "padding"):
            if spec.get(key) is not None:
                raise CheckpointError(f"tokenizer.json: {key} is set ({short_repr(spec[key])}); "
                                      f"npgpt neither truncates nor pads (set it to null)")
        self._model = BPEModel(spec_field(spec, "model", (dict,), "tokenizer.json", required=True))
        self._normalizer = read_normalizer(spec.get("normalizer"))
        self._pre_tokenizer = read_pre_tokenizer(spec.get("pre_tokenizer"))
        self._decoder = read_decoder(spec.get("decoder"))
        added = read_added_tokens(spec_field(spec, "added_tokens", (list,), "tokenizer.json", []),
                              self._model)
        self._raw = added_matcher([t for t in added if not t["normalized"]], lambda t: t["content"])
        self._normalized = added_matcher([t for t in added if t["normalized"]],
                                    self._normalized_content)
        self._id_to_token = dict(self._model.tokens)
        self._id_to_token.update({t["id"]: t["content"] for t in added})
        self._token_to_id = dict(self._model.vocab)
        self._token_to_id.update({t["content"]: t["id"] for t in added})
        self._special = {t["content"] for t in added if t["special"]}
        self.special_tokens = {t["content"]: t["id"] for t in added if t["special"]}
        self._before, self._after = read_post_processor(spec.get("post_processor"),
                                                    self._id_to_token.__contains__)
        self._vocab_size = max(self._id_to_token, default=-1) + 1

    def _normalized_content(self, token):
        try:
            return run_normalizer(self._normalizer, token["content"])
        except ValueError as e:
            raise CheckpointError(f"added token {short_repr(token['content'])}: {e}") from None

    # -- encode --------------------------------------------------------------------------

    def _segments(self, text):
        """Steps 1-2: ``[(piece, token or None, at_start)]`` -- the added tokens, and the
        normalized text between them."""
        out = []
        for start, end, token in find_added(text, self._raw):
            if token is not None:
                if end > start:             # (a token whose span a stripping one took: none)
                    out.append((text[start:end], token, start == 0))
                continue
            piece = run_normalizer(self._normalizer, text[start:end])
            for s, e, t in find_added(piece, self._normalized):
                if e > s:
                    out.append((piece[s:e], t, start == 0 and s == 0))
        return out

    def pretokenize(self, text):
        """The words BPE sees: ``text`` after added tokens, normalizer and pre-tokenizer
        (an added token stands as its content).

        Examples
        --------
        >>> HFTokenizer(_example()).pretokenize("Hi there<|end|>!")
        ['Hi', 'Ġthere', '<|end|>', '!']
        """
        check_text(text)
        words = []
        for piece, token, at_start in self._segments(text):
            words.extend([piece] if token is not None else self._words(piece, at_start))
        return words

    def _words(self, piece, at_start):
        pieces = [(piece, at_start)]
        for step in self._pre_tokenizer:
            pieces = step(pieces)
        return [w for w, _ in pieces if w]

    def encode(self, text, add_special_tokens=True):
        """Token ids of ``text``, as ``tokenizers``' ``Tokenizer.encode(text).ids``.

        Parameters
        ----------
        text : str
        add_special_tokens : bool
            Add the post-processor's tokens (e.g. the BOS ``<s>`` or ``<|begin_of_text|>``)
            -- the library's default, True.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.encode(" the"), tok.encode(" the", add_special_tokens=False)
        ([259, 258], [258])
        """
        check_text(text)
        model, ids = self._model, []
        for piece, token, at_start in self._segments(text):
            if token is not None:
                ids.append(token["id"])
            else:
                for word in self._words(piece, at_start):
                    ids.extend(model.tokenize(word))
        return self._before + ids + self._after if add_special_tokens else ids

    # -- decode --------------------------------------------------------------------------

    def _tokens(self, ids, skip_special_tokens):
        """The token strings of ``ids``; an id without a token (a model's padding rows past
        the tokenizer's vocabulary) is left out, as the library does; a negative id is a
        ValueError."""
        ids = as_id_list(ids)
        if any(i < 0 for i in ids):
            raise_bad_ids(ids, lambda i: i >= 0, self._vocab_size)
        table = self._id_to_token
        tokens = [table[i] for i in ids if i in table]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._special]
        return tokens

    def decode(self, ids, skip_special_tokens=True):
        """Text of ``ids``: their token strings through the file's decoder.

        Parameters
        ----------
        ids : sequence of int, or 1-D integer array
        skip_special_tokens : bool
            Leave special tokens out -- the library's default, True.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.decode([259, 72, 105, 258]), tok.decode([259, 72], skip_special_tokens=False)
        ('Hi the', '<|begin|>H')
        >>> tok.decode([195])                     # half of a UTF-8 character
        '�'
        >>> tok.decode([72, 10_000, 105])          # an id without a token is left out
        'Hi'
        """
        return run_decoder(self._decoder, self._tokens(ids, skip_special_tokens))

    def token_bytes(self, token_id):
        """The bytes token ``token_id`` adds inside a text (for stop strings).

        The decoder on this one token, as if it stood inside a longer text: a byte-level
        token gives its raw bytes (even half a character), ``"▁"`` gives a space, ``<0xNN>``
        its byte; a decoder's ``Strip`` (the first space of a SentencePiece text) is not
        applied. An id without a token adds nothing (``b""``), as in ``decode``.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.token_bytes(258), tok.token_bytes(195), tok.token_bytes(260)
        (b' the', b'\\xc3', b'<|end|>')
        """
        return run_decoder(self._decoder, self._tokens([token_id], False), inside=True)

    def token_to_id(self, token):
        """The id of a token string (an added token's content, or a vocabulary entry), or
        None.

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> tok.token_to_id("<|end|>"), tok.token_to_id("Ġthe"), tok.token_to_id("nope")
        (260, 258, None)
        """
        return self._token_to_id.get(token)

    def id_to_token(self, token_id):
        """The token string of an id (as the file spells it), or None if it has none.

        Examples
        --------
        >>> HFTokenizer(_example()).id_to_token(258), HFTokenizer(_example()).id_to_token(999)
        ('Ġthe', None)
        """
        tokens = self._tokens([token_id], False)
        return tokens[0] if tokens else None

    @property
    def vocab_size(self):
        """``max id + 1`` over the vocabulary and the added tokens (the embedding table's
        height)."""
        return self._vocab_size

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self):
        """``{"type": "hf", "tokenizer_json": <the tokenizer.json>}`` (a fresh copy).

        Examples
        --------
        >>> tok = HFTokenizer(_example())
        >>> d = tok.to_dict()
        >>> d["type"], HFTokenizer.from_dict(d) == tok
        ('hf', True)
        """
        return {"type": self.type_name, "tokenizer_json": json.loads(self._json)}

    @classmethod
    def from_dict(cls, d):
        """The tokenizer of ``d = tok.to_dict()``.

        Examples
        --------
        >>> d = {"type": "hf", "tokenizer_json": _example()}
        >>> HFTokenizer.from_dict(d).encode("the", add_special_tokens=False)
        [116, 104, 101]
        """
        check_type(d, cls.type_name)
        if set(d) != {"type", "tokenizer_json"}:
            raise ValueError(f"an 'hf' tokenizer dict has the keys 'type' and 'tokenizer_json', "
                             f"got {short_repr(sorted(d))}")
        return cls(d["tokenizer_json"])

    def __repr__(self):
        return (f"HFTokenizer(vocab_size={self.vocab_size}, "
                f"special_tokens={len(self.special_tokens)})")


def read_folder_extras(tok, folder):
    """Set ``tok.chat_template``, ``tok.bos_token_id`` and ``tok.eos_token_id`` from a Hugging
    Face folder: the template of ``chat_template.jinja``, else the ``chat_template`` string
    of ``tokenizer_config.json``, whose ``bos_token`` / ``eos_token`` (a token string or
    ``{"content": ...}``) give the ids. Absent files or keys change nothing; a malformed
    one is a :class:`~npgpt.io.CheckpointError` naming the file and the key.

    Examples
    --------
    >>> import json, os
    >>> os.makedirs("folder", exist_ok=True)
    >>> with open("folder/tokenizer_config.json", "w") as f:
    ...     json.dump({"chat_template": "{{ messages }}", "eos_token": "<|end|>"}, f)
    >>> tok = read_folder_extras(HFTokenizer(_example()), "folder")
    >>> tok.chat_template, tok.eos_token_id, tok.bos_token_id
    ('{{ messages }}', 260, None)
    """
    config = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(config):
        try:
            d = read_json(config)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        if not isinstance(d, dict):
            raise CheckpointError(f"{config} holds no object")
        template = d.get("chat_template")
        if isinstance(template, str):
            tok.chat_template = template
        for key in ("bos_token", "eos_token"):
            token = d.get(key)
            if isinstance(token, dict):
                token = token.get("content")
            if token is not None:
                if not isinstance(token, str) or tok.token_to_id(token) is None:
                    raise CheckpointError(f"{config}: {key} {short_repr(token)} is not a token "
                                          f"of tokenizer.json")
                setattr(tok, f"{key}_id", tok.token_to_id(token))
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.exists(jinja):
        with open_regular(jinja) as f:
            raw = f.read()
        try:
            tok.chat_template = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{jinja} is not UTF-8 text") from None
    return tok


def load_tokenizer_json(path_or_dict):
    """Read a Hugging Face ``tokenizer.json`` (a path, or the parsed dict).

    The file is checked as strictly as weights: anything npgpt does not support or that
    the ``tokenizers`` library would read differently is a
    :class:`~npgpt.io.CheckpointError` (a ValueError) naming the file, the field and its
    value.

    Examples
    --------
    >>> import json
    >>> with open("tokenizer.json", "w", encoding="utf-8") as f:
    ...     json.dump(_example(), f)
    >>> tok = load_tokenizer_json("tokenizer.json")
    >>> tok.encode("the theme")
    [259, 116, 104, 101, 258, 109, 101]

    A ``Split`` regex must be a registered pattern:

    >>> spec = _example()
    >>> spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a|a)*b"},
    ...                          "behavior": "Isolated", "invert": False}
    >>> load_tokenizer_json(spec)              # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: pre_tokenizer.pattern.Regex: the regex '(a|a)*b' is not ...
    """
    if isinstance(path_or_dict, dict):
        return HFTokenizer(path_or_dict)
    if not isinstance(path_or_dict, (str, bytes, os.PathLike)):
        raise TypeError(f"load_tokenizer_json takes a path or a dict, got "
                        f"{type(path_or_dict).__name__}")
    try:
        spec = read_json(path_or_dict)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    try:
        return HFTokenizer(spec)
    except CheckpointError as e:
        raise CheckpointError(f"{path_or_dict}: {e}") from None
