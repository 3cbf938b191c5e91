"""What every tokenizer shares: input checks, error messages, JSON files, rebuilding from a dict.

Shapes: text is a ``str``; ids is a 1-D sequence of ints (T,) -- a ``list[int]`` or a 1-D
NumPy integer array (NumPy itself is not imported: an array is recognised by its ``ndim``).

- :class:`Tokenizer` -- the base class: ``save(path)`` / ``load(path)`` as JSON,
  ``len(tok) == tok.vocab_size``, equality through ``to_dict()``.
- :func:`tokenizer_from_dict` -- rebuild any tokenizer from its ``to_dict()`` (the
  ``"type"`` key picks the class, from :data:`TOKENIZER_TYPES`); that is how tokenizers
  travel inside npgpt checkpoints; :func:`read_tokenizer_json` reads one from the file
  ``tok.save`` wrote (:func:`~.load.load_tokenizer` reads every tokenizer file).
  :func:`tokenizer_to_dict` adds the attributes every tokenizer may
  carry (:data:`EXTRAS`: ``chat_template``, ``bos_token_id``, ``eos_token_id``).
- helpers that turn bad input into a ``ValueError`` naming it: lone surrogates (with their
  position), ids out of range (all of them), unknown words or characters (all of them).

A tokenizer read from a file or a dict is checked as strictly as weights: every malformed
input is a ``ValueError`` naming the problem (never a TypeError, KeyError or
UnicodeDecodeError), every value it quotes is cut short, and only regular files are read
(a FIFO or a device is refused, never waited on).
"""

from __future__ import annotations

import json
import numbers

from ..io.errors import reject_repeated_keys, short_repr
from ..io.files import atomic_write, open_regular

#: The largest token id a tokenizer may use (ids index an embedding table).
MAX_TOKEN_ID = 2 ** 31 - 1
_REQUIRED = object()


def check_text(text, what="text"):
    """Return ``text.encode("utf-8")``; ValueError for non-str input or a lone surrogate.

    >>> check_text("né")
    b'n\\xc3\\xa9'
    >>> check_text("a\\ud800")                 # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: text contains a lone surrogate U+D800 at position 1; such a string ...
    """
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} contains a lone surrogate U+{ord(text[e.start]):04X} at position {e.start}; "
            "such a string has no UTF-8 form (decode bytes with errors='replace' or "
            "'surrogateescape' handling before tokenizing)") from None


def as_id_list(ids):
    """A 1-D sequence / array of integer ids -> list of Python ints (ValueError otherwise).

    >>> as_id_list(np.array([3, 1])), as_id_list((2, np.int64(5)))
    ([3, 1], [2, 5])
    >>> as_id_list([1.0])
    Traceback (most recent call last):
        ...
    ValueError: ids must be integers, got 1.0
    """
    if hasattr(ids, "ndim"):                       # NumPy array (or array-like with ndim)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got an array of shape {tuple(ids.shape)}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise ValueError(f"ids must be integers, got {i!r}")
    return [i.__index__() for i in out]


def raise_bad_ids(ids, is_valid, vocab_size):
    """ValueError listing every id of ``ids`` for which ``is_valid(id)`` is false.

    >>> raise_bad_ids([1, 7, 9, 7], lambda i: i < 5, vocab_size=5)
    Traceback (most recent call last):
        ...
    ValueError: token ids out of range for a vocabulary of size 5: 7, 9
    """
    bad = sorted({i for i in ids if not is_valid(i)})
    shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
    raise ValueError(f"token ids out of range for a vocabulary of size {vocab_size}: {shown}")


def list_unknown(items, what):
    """The message for unknown ``items`` (words, characters): how many, then each once, each
    cut to 40 characters and at most 50 of them, so the message stays short whatever the text.

    >>> list_unknown(["x" * 10_000, "y"], "words")
    "2 unknown words: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (10,000 characters), 'y'"
    """
    unique = list(dict.fromkeys(items))
    shown = ", ".join(_short(u) for u in unique[:50]) + (", ..." if len(unique) > 50 else "")
    return f"{len(unique)} unknown {what}: {shown}"


def _short(text, limit=40):
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


def check_type(d, expected):
    """ValueError unless ``d`` is a dict whose ``"type"`` is ``expected`` (for ``from_dict``).

    >>> check_type({"type": "char", "chars": "ab"}, "char")
    >>> check_type({"type": "word"}, "char")
    Traceback (most recent call last):
        ...
    ValueError: expected a tokenizer dict of type 'char', got 'word'
    """
    if not isinstance(d, dict) or d.get("type") != expected:
        got = short_repr(d.get("type")) if isinstance(d, dict) else repr(type(d).__name__)
        raise ValueError(f"expected a tokenizer dict of type {expected!r}, got {got}")


def checked_id(value, what):
    """``value`` as a token id: an integer (not a bool, not a float) in [0, MAX_TOKEN_ID].

    >>> checked_id(np.int32(7), "an id")
    7
    >>> checked_id(True, "the id of 'a'")
    Traceback (most recent call last):
        ...
    ValueError: the id of 'a' must be an integer id in [0, 2147483647], got True
    """
    if type(value) is int and 0 <= value <= MAX_TOKEN_ID:        # the common case, fast
        return value
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or not 0 <= value <= MAX_TOKEN_ID):
        raise ValueError(f"{what} must be an integer id in [0, {MAX_TOKEN_ID}], "
                         f"got {short_repr(value)}")
    return int(value)


def dict_field(d, key, kinds, default=_REQUIRED):
    """``d[key]`` if it is one of ``kinds`` (types), else a ValueError naming the key; a
    missing key gives ``default``, or a ValueError when there is none.

    >>> d = {"type": "word", "vocabulary": ["a"], "unk_token": 3}
    >>> dict_field(d, "vocabulary", (list,)), dict_field(d, "lowercase", (bool,), False)
    (['a'], False)
    >>> dict_field(d, "unk_token", (str, type(None)))
    Traceback (most recent call last):
        ...
    ValueError: the tokenizer's 'unk_token' must be str or null, got 3
    """
    if key not in d:
        if default is _REQUIRED:
            raise ValueError(f"a {d.get('type')!r} tokenizer dict needs a {key!r} key")
        return default
    value = d[key]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ValueError(f"the tokenizer's {key!r} must be {names}, got {short_repr(value)}")
    return value


#: ``type_name`` -> class, for every tokenizer class (filled as each class is defined;
#: importing :mod:`npgpt.tokenizers` defines the five).
TOKENIZER_TYPES = {}


class Tokenizer:
    """Shared behaviour: ``save``/``load`` as JSON, ``len(tok) == tok.vocab_size``.

    Subclasses set ``type_name`` (the ``"type"`` of their ``to_dict()``) and define
    ``vocab_size``, ``encode``, ``decode``, ``to_dict`` and ``from_dict``.

    A subclass that sets its own ``type_name`` is recorded in :data:`TOKENIZER_TYPES`, so that
    :func:`tokenizer_from_dict` rebuilds it from its dict without this module importing it.

    Every tokenizer also has the attributes of :data:`EXTRAS` -- ``chat_template`` (the
    Jinja source of a model's chat format), ``bos_token_id`` and ``eos_token_id`` -- None
    unless the file it came from says (a GGUF file, a Hugging Face folder); they travel
    with it through :func:`tokenizer_to_dict` and :func:`tokenizer_from_dict`.

    >>> from npgpt.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.from_text("abc")
    >>> isinstance(tok, Tokenizer), len(tok), TOKENIZER_TYPES["char"] is CharTokenizer
    (True, 3, True)
    """

    type_name = None
    chat_template = None      # an instruct model's chat template (Jinja source), when it has one
    bos_token_id = None
    eos_token_id = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("type_name") is not None:
            TOKENIZER_TYPES[cls.type_name] = cls

    def __len__(self):
        return self.vocab_size

    def apply_chat_template(self, conversation, add_generation_prompt=False, tokenize=True, **kwargs):
        """``conversation`` (a list of ``{"role", "content"}`` dicts) rendered with the model's
        chat template: token ids, or the text with ``tokenize=False`` (transformers' method of
        the same name; see :func:`~.chat_template.apply_chat_template`).

        >>> from npgpt.tokenizers import CharTokenizer
        >>> tok = CharTokenizer.from_text("<>:abersu")
        >>> tok.chat_template = "{% for m in messages %}<{{ m.role }}>:{{ m.content }}{% endfor %}"
        >>> tok.apply_chat_template([{"role": "user", "content": "ab"}], tokenize=False)
        '<user>:ab'
        >>> tok.decode(tok.apply_chat_template([{"role": "user", "content": "ab"}]))
        '<user>:ab'
        """
        from .chat_template import apply_chat_template
        return apply_chat_template(self, conversation, add_generation_prompt=add_generation_prompt,
                                   tokenize=tokenize, **kwargs)

    def save(self, path):
        """Write ``self.to_dict()`` as JSON to ``path`` (UTF-8), atomically.

        >>> from npgpt.tokenizers import CharTokenizer
        >>> CharTokenizer.from_text("abc").save("chars.json")
        >>> open("chars.json", encoding="utf-8").read()
        '{"type": "char", "chars": "abc"}'
        """
        text = json.dumps(tokenizer_to_dict(self), ensure_ascii=False)
        atomic_write(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by ``save`` (the ``"type"`` key must match this class).

        >>> from npgpt.tokenizers import CharTokenizer, WordTokenizer
        >>> CharTokenizer.from_text("abc").save("chars.json")
        >>> CharTokenizer.load("chars.json").encode("cab")
        [2, 0, 1]
        >>> WordTokenizer.load("chars.json")
        Traceback (most recent call last):
            ...
        ValueError: chars.json holds a CharTokenizer, not a WordTokenizer
        """
        tok = read_tokenizer_json(path)
        if not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {type(tok).__name__}, not a {cls.__name__}")
        return tok

    def __eq__(self, other):
        return type(self) is type(other) and tokenizer_to_dict(self) == tokenizer_to_dict(other)

    __hash__ = None


#: Attributes every tokenizer has (None by default) and that travel in its dict:
#: name -> the types it may hold.
EXTRAS = {"chat_template": (str,), "bos_token_id": (int,), "eos_token_id": (int,)}


def tokenizer_to_dict(tok):
    """``tok.to_dict()``, with the :data:`EXTRAS` that are set (``chat_template``,
    ``bos_token_id``, ``eos_token_id``); :func:`tokenizer_from_dict` inverts it.

    Examples
    --------
    >>> from npgpt.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.from_text("ab")
    >>> tok.chat_template = "{{ messages[0]['content'] }}"
    >>> tokenizer_to_dict(tok)
    {'type': 'char', 'chars': 'ab', 'chat_template': "{{ messages[0]['content'] }}"}
    >>> tokenizer_from_dict(tokenizer_to_dict(tok)).chat_template
    "{{ messages[0]['content'] }}"
    """
    d = dict(tok.to_dict())
    for name in EXTRAS:
        if getattr(tok, name, None) is not None:
            d[name] = getattr(tok, name)
    return d


def _pop_extras(d):
    """(``d`` without the :data:`EXTRAS`, their checked values)."""
    extras = {}
    for name, kinds in EXTRAS.items():
        value = d.get(name)
        if value is not None:
            if kinds == (int,):
                value = checked_id(value, f"the tokenizer's {name!r}")
            elif not isinstance(value, kinds):
                raise ValueError(f"the tokenizer's {name!r} must be a str or null, got "
                                 f"{short_repr(value)}")
        extras[name] = value
    return {k: v for k, v in d.items() if k not in EXTRAS}, extras


def tokenizer_from_dict(d):
    """Rebuild a tokenizer from ``tok.to_dict()`` (any of the five types).

    Examples
    --------
    >>> from npgpt.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.from_text("abc")
    >>> tok.to_dict()
    {'type': 'char', 'chars': 'abc'}
    >>> tokenizer_from_dict(tok.to_dict()) == tok
    True
    >>> tokenizer_from_dict({"type": "wordpiece"})
    Traceback (most recent call last):
    ...
    ValueError: unknown tokenizer type 'wordpiece'; expected one of ['bpe', 'char', 'hf', 'sentencepiece', 'word']
    """
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"a tokenizer dict needs a 'type' key, got {short_repr(d)}")
    types = TOKENIZER_TYPES
    if not isinstance(d["type"], str) or d["type"] not in types:
        raise ValueError(f"unknown tokenizer type {short_repr(d['type'])}; expected one of "
                         f"{sorted(types)}")
    d, extras = _pop_extras(d)
    tok = types[d["type"]].from_dict(d)
    for name, value in extras.items():
        if value is not None:
            setattr(tok, name, value)
    return tok


def read_tokenizer_json(path):
    """The tokenizer in the JSON file ``path`` (written by ``tok.save``); a ValueError naming
    the file otherwise.

    >>> from npgpt.tokenizers import WordTokenizer
    >>> WordTokenizer(["hi", "there"]).save("words.json")
    >>> read_tokenizer_json("words.json").encode("there hi")
    [1, 0]
    """
    d = read_json(path)
    try:
        return tokenizer_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read_json(path):
    """The JSON value in the regular file ``path``, or a ValueError naming the file.

    >>> with open("x.json", "w") as f:
    ...     _ = f.write('{"a": 1, "a": 2}')
    >>> read_json("x.json")                       # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: x.json: not valid UTF-8 JSON: ...
    """
    with open_regular(path) as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=reject_repeated_keys)
    except (ValueError, RecursionError) as e:       # UnicodeDecodeError is a ValueError
        raise ValueError(f"{path}: not valid UTF-8 JSON: {e}") from None
