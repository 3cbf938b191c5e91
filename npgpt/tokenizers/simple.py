"""The two simple tokenizers: one id per word, one id per character.

Shapes: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode`` returns a
``list[int]``, ``decode`` also accepts a 1-D NumPy integer array.

- :class:`WordTokenizer` -- the seed tutorial's word vocabulary: split on whitespace, one id
  per word.
- :class:`CharTokenizer` -- one id per character (what small character-level models train on).

Both raise a ``ValueError`` that lists every unknown word or character, and every id out of
range.
"""

from __future__ import annotations

from ..io.errors import short_repr
from .base import (as_id_list, check_text, check_type, dict_field, list_unknown, raise_bad_ids,
                   Tokenizer)

# ----------------------------------------------------------------------------------------
# WordTokenizer: the seed's vocabulary
# ----------------------------------------------------------------------------------------

class WordTokenizer(Tokenizer):
    """The seed tutorial's tokenizer: one id per whitespace-separated word.

    ``encode(text)`` is ``[vocabulary.index(w) for w in text.split()]`` and ``decode(ids)`` is
    ``" ".join(vocabulary[i] for i in ids)``. Unlike the seed, which silently dropped unknown
    words, an unknown word raises a ValueError listing every unknown word -- or maps to
    ``unk_token`` when one is given. ``decode(encode(s)) == " ".join(s.split())``.

    Parameters
    ----------
    vocabulary : sequence of str
        The words; word ``vocabulary[i]`` has id ``i``. Words must be unique, non-empty and
        contain no whitespace (``text.split()`` could never produce them).
    unk_token : str, optional
        A word of ``vocabulary`` that unknown words are mapped to.

    Examples
    --------
    >>> tok = WordTokenizer(["hello", "world", "this", "is", "a", "test"])
    >>> tok.encode("hello world this is")
    [0, 1, 2, 3]
    >>> tok.decode([0, 1])
    'hello world'
    >>> tok.encode("hello there")
    Traceback (most recent call last):
    ...
    ValueError: 1 unknown word: 'there'
    """

    type_name = "word"

    def __init__(self, vocabulary, unk_token=None):
        if isinstance(vocabulary, str):
            raise TypeError("vocabulary must be a sequence of words, not one str "
                            "(use vocabulary.split())")
        words = list(vocabulary)
        for w in words:
            if not isinstance(w, str):
                raise TypeError(f"vocabulary entries must be str, got {short_repr(w)}")
            check_text(w, "a vocabulary word")
            if not w or w.split() != [w]:
                raise ValueError(f"vocabulary words must be non-empty and contain no "
                                 f"whitespace, got {short_repr(w)}")
        index = {}
        for i, w in enumerate(words):
            if w in index:
                raise ValueError(f"duplicate vocabulary entry {short_repr(w)} at positions "
                                 f"{index[w]} and {i}")
            index[w] = i
        if not words:
            raise ValueError("vocabulary is empty")
        if unk_token is not None and (not isinstance(unk_token, str) or unk_token not in index):
            raise ValueError(f"unk_token {short_repr(unk_token)} is not in the vocabulary; add "
                             "it to the vocabulary first")
        self.vocabulary = tuple(words)
        self.unk_token = unk_token
        self._index = index

    @property
    def vocab_size(self):
        """Number of words (ids are 0 .. vocab_size - 1)."""
        return len(self.vocabulary)

    def encode(self, text):
        """Split ``text`` on whitespace and map each word to its id.

        Examples
        --------
        >>> tok = WordTokenizer(["<unk>", "the", "cat"], unk_token="<unk>")
        >>> tok.encode("the  cat\\nthe dog")
        [1, 2, 1, 0]
        """
        check_text(text)
        words = text.split()
        index = self._index
        if self.unk_token is not None:
            unk = index[self.unk_token]
            return [index.get(w, unk) for w in words]
        unknown = [w for w in words if w not in index]
        if unknown:
            raise ValueError(list_unknown(unknown, "word" if len(set(unknown)) == 1 else "words"))
        return [index[w] for w in words]

    def decode(self, ids):
        """Join the words of ``ids`` with single spaces.

        Examples
        --------
        >>> tok = WordTokenizer(["the", "cat", "sat"])
        >>> tok.decode([0, 1, 2])
        'the cat sat'
        >>> tok.decode([1, 3, 7])
        Traceback (most recent call last):
        ...
        ValueError: token ids out of range for a vocabulary of size 3: 3, 7
        """
        ids = as_id_list(ids)
        n = len(self.vocabulary)
        if any(i < 0 or i >= n for i in ids):
            raise_bad_ids(ids, lambda i: 0 <= i < n, n)
        return " ".join(self.vocabulary[i] for i in ids)

    def to_dict(self):
        """A JSON-serialisable description; :meth:`from_dict` inverts it.

        Examples
        --------
        >>> WordTokenizer(["the", "cat"]).to_dict()
        {'type': 'word', 'vocabulary': ['the', 'cat'], 'unk_token': None}
        """
        return {"type": self.type_name, "vocabulary": list(self.vocabulary),
                "unk_token": self.unk_token}

    @classmethod
    def from_dict(cls, d):
        """The tokenizer of ``d = tok.to_dict()``.

        Examples
        --------
        >>> WordTokenizer.from_dict({"type": "word", "vocabulary": ["the", "cat"]})
        WordTokenizer(vocab_size=2, unk_token=None)
        """
        check_type(d, cls.type_name)
        vocabulary = dict_field(d, "vocabulary", (list,))
        for w in vocabulary:
            if not isinstance(w, str):
                raise ValueError(f"vocabulary entries must be str, got {short_repr(w)}")
        return cls(vocabulary, unk_token=dict_field(d, "unk_token", (str, type(None)), None))

    def __repr__(self):
        return f"WordTokenizer(vocab_size={self.vocab_size}, unk_token={self.unk_token!r})"


# ----------------------------------------------------------------------------------------
# CharTokenizer
# ----------------------------------------------------------------------------------------

class CharTokenizer(Tokenizer):
    """One id per character: id ``i`` is ``chars[i]``.

    ``CharTokenizer.from_text(text)`` uses the sorted unique characters of ``text`` (the
    convention of character-level training scripts such as nanoGPT's shakespeare_char).
    ``decode(ids)`` is ``"".join(chars[i] for i in ids)``, so ``decode(encode(s)) == s``.

    Parameters
    ----------
    chars : str or sequence of str
        The characters, each a single code point, without duplicates.

    Examples
    --------
    >>> tok = CharTokenizer.from_text("hello world")
    >>> tok.chars
    ' dehlorw'
    >>> tok.encode("hold")
    [3, 5, 4, 1]
    >>> tok.decode([3, 5, 4, 1])
    'hold'
    >>> tok.vocab_size
    8
    """

    type_name = "char"

    def __init__(self, chars):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"each entry of chars must be a single character, got "
                                 f"{short_repr(c)}")
        check_text("".join(chars), "chars")
        index = {}
        for i, c in enumerate(chars):
            if c in index:
                raise ValueError(f"duplicate character {c!r} at positions {index[c]} and {i}")
            index[c] = i
        if not chars:
            raise ValueError("chars is empty")
        self.chars = "".join(chars)
        self._index = index

    @classmethod
    def from_text(cls, text):
        """The tokenizer of the sorted unique characters of ``text``.

        Examples
        --------
        >>> CharTokenizer.from_text("banana").chars
        'abn'
        """
        check_text(text)
        if not text:
            raise ValueError("text is empty: no characters to build a vocabulary from")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        """Number of characters (ids are 0 .. vocab_size - 1)."""
        return len(self.chars)

    def encode(self, text):
        """Map each character of ``text`` to its id; unknown characters raise, all listed.

        Examples
        --------
        >>> tok = CharTokenizer("abn")
        >>> tok.encode("banana")
        [1, 0, 2, 0, 2, 0]
        >>> tok.encode("bandana!")
        Traceback (most recent call last):
        ...
        ValueError: 2 unknown characters: 'd', '!'
        """
        check_text(text)
        index = self._index
        try:
            return [index[c] for c in text]
        except KeyError:
            unknown = [c for c in text if c not in index]
            raise ValueError(list_unknown(unknown, "character" if len(set(unknown)) == 1
                                           else "characters")) from None

    def decode(self, ids):
        """Concatenate the characters of ``ids``.

        Examples
        --------
        >>> CharTokenizer("abn").decode([1, 0, 2, 0, 2, 0])
        'banana'
        """
        ids = as_id_list(ids)
        n = len(self.chars)
        if any(i < 0 or i >= n for i in ids):
            raise_bad_ids(ids, lambda i: 0 <= i < n, n)
        chars = self.chars
        return "".join([chars[i] for i in ids])

    def to_dict(self):
        """A JSON-serialisable description; :meth:`from_dict` inverts it.

        Examples
        --------
        >>> CharTokenizer.from_text("banana").to_dict()
        {'type': 'char', 'chars': 'abn'}
        """
        return {"type": self.type_name, "chars": self.chars}

    @classmethod
    def from_dict(cls, d):
        """The tokenizer of ``d = tok.to_dict()``.

        Examples
        --------
        >>> CharTokenizer.from_dict({"type": "char", "chars": "abn"}).encode("nab")
        [2, 0, 1]
        """
        check_type(d, cls.type_name)
        return cls(dict_field(d, "chars", (str, list)))

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"

