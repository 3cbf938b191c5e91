"""Byte-level byte-pair encoding, exactly as GPT-2 and tiktoken do it.

Shapes and types: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode``
returns a ``list[int]``, ``decode`` also accepts a 1-D NumPy integer array; a token is a
``bytes`` string; ``ranks`` maps token bytes -> rank (lower merges first).

Read in this order:

- :func:`~.byte_level.bytes_to_unicode` -- how GPT-2's ``vocab.json``/``merges.txt`` spell
  bytes as printable characters (:mod:`.byte_level`, with the readers of those files);
- :func:`~.byte_pair.byte_pair_merge` -- the merge rule that encodes one pre-token: merge
  the adjacent pair of lowest rank until none is a token (:mod:`.byte_pair`);
- :class:`BPETokenizer` -- text -> special tokens -> pre-tokens (:mod:`.patterns`) -> UTF-8
  bytes -> merges by rank, with a cache per pre-token; built from merges, a tiktoken rank
  file, GPT-2's files, or trained (:mod:`.bpe_train`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from ..io.errors import short_repr
from ..io.files import atomic_write, open_regular
from .base import (MAX_TOKEN_ID, Tokenizer, as_id_list, check_text, check_type, checked_id,
                   dict_field, raise_bad_ids, read_json)
from .bpe_train import train_bpe
from .byte_level import bytes_to_unicode, check_gpt2_vocab, read_gpt2_merges
from .byte_pair import byte_pair_merge
from .patterns import compile_pattern, pattern_from_file

#: GPT-2's only special token and its id.
GPT2_SPECIAL_TOKENS = {"<|endoftext|>": 50256}
#: The bytes of all tokens together may not exceed this: merges of merges double in length,
#: so a few dozen lines of a hostile file could otherwise ask for terabytes.
MAX_VOCAB_BYTES = 64 * 1024 * 1024
_MAX_CACHE = 100_000     # cached pre-tokens per BPETokenizer before the cache is cleared


# ----------------------------------------------------------------------------------------
# Checks of a tokenizer dict's merges and ranks
# ----------------------------------------------------------------------------------------

def _ranks_of(tokens):
    """token bytes -> id from a dict's ``tokens``: ``[[base64 bytes, id], ...]``."""
    ranks = {}
    for k, entry in enumerate(tokens):
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str):
            raise ValueError(f"tokens[{k}] must be [base64 bytes, id], got {short_repr(entry)}")
        try:
            token = base64.b64decode(entry[0], validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(f"tokens[{k}]: {short_repr(entry[0])} is not base64") from None
        if token in ranks:
            raise ValueError(f"tokens[{k}]: token {short_repr(token)} appears twice")
        ranks[token] = checked_id(entry[1], f"tokens[{k}]: the id")
    return ranks


def _merge_pair(merge, rank):
    """``merge`` as a pair of token ids (ValueError naming merge ``rank`` otherwise)."""
    sequence = type(merge) in (list, tuple) or (
        hasattr(merge, "__len__") and not isinstance(merge, (str, bytes, dict)))
    if not sequence or len(merge) != 2:
        raise ValueError(f"merge {rank} must be a pair of ids, got {short_repr(merge)}")
    a, b = merge
    if type(a) is int and type(b) is int and 0 <= a <= MAX_TOKEN_ID and 0 <= b <= MAX_TOKEN_ID:
        return a, b                                          # the common case, fast
    return checked_id(a, f"merge {rank}: an id"), checked_id(b, f"merge {rank}: an id")


# ----------------------------------------------------------------------------------------
# BPETokenizer
# ----------------------------------------------------------------------------------------

class BPETokenizer(Tokenizer):
    """Byte-level byte-pair encoding, as GPT-2 and tiktoken do it.

    Encoding ``text``:

    1. special tokens (e.g. ``"<|endoftext|>"``) are cut out first when allowed (below);
    2. the rest is split into pre-tokens with a regex (GPT-2's by default, see
       :func:`gpt2_pattern`); BPE never merges across pre-tokens, so
       ``encode(a + b) == encode(a) + encode(b)`` whenever ``a | b`` is a pre-token boundary;
    3. each pre-token is UTF-8 encoded; if its bytes are a token, that is its id; otherwise
       start from single bytes and repeatedly merge the adjacent pair whose concatenation has
       the lowest rank (earliest merge), leftmost on ties, until no pair is a token. This is
       tiktoken's rule; with GPT-2's ranks the ids equal tiktoken's ``gpt2`` encoding.
       Results are cached per pre-token.

    Decoding concatenates the tokens' bytes and decodes UTF-8 with ``errors="replace"`` (as
    GPT-2 and tiktoken do): a cut inside a multi-byte character decodes to U+FFFD.
    Use :meth:`decode_bytes` for the raw bytes (e.g. when streaming).
    ``decode(encode(s)) == s`` for every str without lone surrogates (which are rejected).

    Build one with :meth:`train`, :meth:`from_gpt2`, :meth:`from_tiktoken`, :meth:`load` or
    the constructor (a list of merges).

    Parameters
    ----------
    merges : sequence of (int, int)
        In rank order: merge ``i`` joins the tokens with ids ``merges[i]`` into a new token.
    special_tokens : dict[str, int], optional
        Special-token text -> id, e.g. ``{"<|endoftext|>": 50256}``.
    pattern : str
        ``"gpt2"`` (default), a name registered with
        :func:`~npgpt.tokenizers.patterns.register_pattern`, or a Python ``re`` pattern
        without capturing groups. A raw regex is saved as it is, and loading the file
        again requires it to be registered first (a file alone may only name a pattern).
    byte_ids : sequence of 256 ints, optional
        ``byte_ids[b]`` is the id of the single byte ``b``; default ``b`` itself.
    merge_ids : sequence of ints, optional
        The id of each merged token; default ``256 + i``.

    Every id is an integer (not a bool or a float) in [0, 2**31 - 1], and no id is used
    twice; anything else is a ValueError naming it.

    Examples
    --------
    >>> tok = BPETokenizer.train("low lower lowest " * 20, vocab_size=260)
    >>> ids = tok.encode("lower")
    >>> ids, tok.decode(ids)
    ([257, 101, 114], 'lower')
    >>> [tok.token_bytes(i) for i in ids]
    [b'low', b'e', b'r']
    """

    type_name = "bpe"

    def __init__(self, merges, special_tokens=None, pattern="gpt2", byte_ids=None,
                 merge_ids=None):
        byte_ids = (list(range(256)) if byte_ids is None
                    else [checked_id(i, "a byte id") for i in byte_ids])
        if len(byte_ids) != 256:
            raise ValueError(f"byte_ids must have 256 entries, got {len(byte_ids)}")
        merges = [_merge_pair(m, rank) for rank, m in enumerate(merges)]
        merge_ids = (list(range(256, 256 + len(merges))) if merge_ids is None
                     else [checked_id(i, "a merge id") for i in merge_ids])
        if len(merge_ids) != len(merges):
            raise ValueError(f"merge_ids has {len(merge_ids)} entries for {len(merges)} merges")
        decoder = {}
        for b, i in enumerate(byte_ids):
            if i in decoder:
                raise ValueError(f"id {i} is used for bytes {decoder[i]!r} and {bytes([b])!r}")
            decoder[i] = bytes([b])
        encoder = {v: k for k, v in decoder.items()}
        ranks = {}
        total = 256                          # bytes of all tokens so far
        for rank, ((a, b), new) in enumerate(zip(merges, merge_ids)):
            if a not in decoder or b not in decoder:
                raise ValueError(f"merge {rank} ({a}, {b}) uses an id not defined before it")
            if new in decoder:
                raise ValueError(f"merge {rank} ({a}, {b}) reuses id {new}")
            total += len(decoder[a]) + len(decoder[b])
            if total > MAX_VOCAB_BYTES:
                raise ValueError(f"merge {rank} ({a}, {b}): the tokens would hold more than "
                                 f"{MAX_VOCAB_BYTES} bytes in all (merges of merges, each "
                                 f"doubling in length?)")
            token = decoder[a] + decoder[b]
            if token in encoder:
                raise ValueError(f"merge {rank} ({a}, {b}) makes {short_repr(token)}, already "
                                 f"token {encoder[token]}")
            decoder[new] = token
            encoder[token] = new
            ranks[token] = rank
        # When ids grow with the merge order they double as ranks (tiktoken's convention).
        if all(x < y for x, y in zip(merge_ids, merge_ids[1:])):
            ranks = encoder
        self._setup(encoder, ranks, decoder, special_tokens, pattern)
        self._merges = (merges, merge_ids)

    # -- construction helpers ------------------------------------------------------------

    def _setup(self, encoder, ranks, decoder, special_tokens, pattern):
        self._encoder = encoder          # token bytes -> id
        self._ranks = ranks              # token bytes -> merge priority (lower merges first)
        self._decoder = decoder          # id -> token bytes
        self.pattern = pattern
        self._split = compile_pattern(pattern)
        self._cache = {}
        special = dict(special_tokens or {})
        owner = {}                           # id -> the special token that has it
        for text, i in special.items():
            if not isinstance(text, str) or not text:
                raise ValueError(f"special tokens must be non-empty str, got {short_repr(text)}")
            check_text(text, "a special token")
            i = checked_id(i, f"the id of special token {short_repr(text)}")
            if i in decoder:
                raise ValueError(f"special token {short_repr(text)} has id {i}, already the id "
                                 f"of {short_repr(decoder[i])}")
            if i in owner:
                raise ValueError(f"special tokens {short_repr(owner[i])} and {short_repr(text)} "
                                 f"share the id {i}")
            owner[i], special[text] = text, i
        self.special_tokens = special
        self._special_decoder = {i: t.encode("utf-8") for t, i in special.items()}
        self._vocab_size = max(list(decoder) + list(special.values())) + 1
        self._merges = None
        self._special_regex = {}

    @classmethod
    def from_ranks(cls, ranks, special_tokens=None, pattern="gpt2"):
        """A tokenizer from tiktoken-style mergeable ranks: token bytes -> rank (= id).

        ``ranks`` must hold all 256 single bytes; a multi-byte token's rank is its merge
        priority (lower merges first) and also its id.

        Examples
        --------
        >>> ranks = {bytes([b]): b for b in range(256)}
        >>> ranks[b"ab"] = 256
        >>> BPETokenizer.from_ranks(ranks).encode("abc")
        [256, 99]
        """
        checked = {}
        for t, r in ranks.items():
            if type(t) is not bytes:
                if not isinstance(t, (bytes, bytearray, memoryview)):
                    raise ValueError(f"a token must be bytes, got {short_repr(t)}")
                t = bytes(t)
            if type(r) is not int or not 0 <= r <= MAX_TOKEN_ID:
                r = checked_id(r, f"the rank of {short_repr(t)}")
            checked[t] = r
        ranks = checked
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"the ranks lack {len(missing)} single bytes (every byte must be a "
                             f"token): {missing[:20]}")
        decoder = {}
        for token, r in ranks.items():
            if r in decoder:
                raise ValueError(f"rank {r} is given to both {short_repr(decoder[r])} and "
                                 f"{short_repr(token)}")
            decoder[r] = token
        tok = cls.__new__(cls)
        tok._setup(ranks, ranks, decoder, special_tokens, pattern)
        return tok

    @classmethod
    def from_tiktoken(cls, path, special_tokens=None, pattern="gpt2"):
        """Read a tiktoken rank file: one ``<base64 token bytes> <rank>`` per line.

        The ranks become the ids (as in tiktoken). Special tokens are not in such files;
        for GPT-2 pass ``special_tokens=GPT2_SPECIAL_TOKENS`` (``{"<|endoftext|>": 50256}``).

        Examples
        --------
        A rank file with the 256 bytes, then ``ab`` (rank 256) and ``abc`` (rank 257):

        >>> import base64
        >>> tokens = [bytes([b]) for b in range(256)] + [b"ab", b"abc"]
        >>> with open("tiny.tiktoken", "w") as f:
        ...     for rank, token in enumerate(tokens):
        ...         _ = f.write(f"{base64.b64encode(token).decode()} {rank}\\n")
        >>> tok = BPETokenizer.from_tiktoken("tiny.tiktoken", special_tokens={"<|end|>": 258})
        >>> tok.encode("abcab<|end|>", allowed_special="all")
        [257, 256, 258]

        With GPT-2's file, ``BPETokenizer.from_tiktoken("gpt2.tiktoken",
        special_tokens=GPT2_SPECIAL_TOKENS).encode("Hello world")`` is ``[15496, 995]``.

        Every line is checked: a rank is a plain decimal number, no token appears twice, no
        rank is given twice; a problem is a ValueError naming the file and the line.
        """
        ranks, lines = {}, {}
        with open_regular(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                parts = line.split()
                try:
                    if len(parts) != 2 or not parts[1].isdigit() or len(parts[1]) > 10:
                        raise ValueError      # a rank: 1 to 10 decimal digits, no sign
                    token = base64.b64decode(parts[0], validate=True)
                except (ValueError, binascii.Error):
                    raise ValueError(f"{path}, line {n}: expected '<base64> <rank>', "
                                     f"got {short_repr(line)}") from None
                if token in lines:
                    raise ValueError(f"{path}, line {n}: token {short_repr(token)} was already "
                                     f"given a rank on line {lines[token]}")
                ranks[token], lines[token] = int(parts[1]), n
        try:
            return cls.from_ranks(ranks, special_tokens, pattern)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_gpt2(cls, vocab_json, merges_txt, pattern="gpt2"):
        """Read GPT-2's ``encoder.json``/``vocab.json`` and ``vocab.bpe``/``merges.txt``.

        Tokens are spelled with :func:`bytes_to_unicode`; ``merges.txt`` lists ``"a b"`` per
        line in rank order after a ``#version`` header. The ids are exactly those of the
        vocab file. Vocabulary entries that are neither a single byte nor the result of a
        merge are special tokens (for GPT-2: ``"<|endoftext|>"`` = 50256).

        Both files are checked as strictly as weights: the vocabulary is a JSON object of
        integer ids (no floats, no bools, none negative, none used twice, no token given
        twice); each merge's two parts and its result are in it, and no merge defines an
        id twice. A problem is a ValueError naming the file (and the line of merges.txt).

        Examples
        --------
        A vocabulary of the 256 bytes, two merges and one special token:

        >>> import json
        >>> spell = bytes_to_unicode()
        >>> vocab = {spell[b]: b for b in range(256)}
        >>> vocab.update({"Ġt": 256, "Ġth": 257, "<|endoftext|>": 258})
        >>> with open("vocab.json", "w", encoding="utf-8") as f:
        ...     json.dump(vocab, f)
        >>> with open("merges.txt", "w", encoding="utf-8") as f:
        ...     _ = f.write("#version: 0.2\\nĠ t\\nĠt h\\n")
        >>> tok = BPETokenizer.from_gpt2("vocab.json", "merges.txt")
        >>> tok.special_tokens
        {'<|endoftext|>': 258}
        >>> tok.encode(" the")
        [257, 101]
        """
        vocab = check_gpt2_vocab(read_json(vocab_json), vocab_json)
        byte_encoder = bytes_to_unicode()
        try:
            byte_ids = [vocab[byte_encoder[b]] for b in range(256)]
        except KeyError as e:
            raise ValueError(f"{vocab_json} lacks the single-byte token {e.args[0]!r}") from None
        merges, merge_ids = read_gpt2_merges(merges_txt, vocab, vocab_json)
        used = set(byte_ids) | set(merge_ids)
        special = {t: i for t, i in vocab.items() if i not in used}
        try:
            return cls(merges, special_tokens=special, pattern=pattern, byte_ids=byte_ids,
                       merge_ids=merge_ids)
        except ValueError as e:
            raise ValueError(f"{vocab_json}, {merges_txt}: {e}") from None

    @classmethod
    def train(cls, text, vocab_size, pattern="gpt2", special_tokens=()):
        """Learn merges from ``text`` (minbpe's RegexTokenizer algorithm, deterministic).

        The merges and the special tokens' ids are those of
        :func:`~npgpt.tokenizers.bpe_train.train_bpe`, which explains the algorithm: start
        from the 256 byte tokens and repeatedly merge the most frequent adjacent pair inside
        pre-tokens (the smallest pair on ties) into a token with the next id, until
        ``vocab_size`` is reached or no pair is left. Special tokens get the ids after the
        merges.

        Parameters
        ----------
        text, vocab_size, pattern, special_tokens
            As for :func:`~npgpt.tokenizers.bpe_train.train_bpe`: ``vocab_size`` is at least
            ``256 + len(special_tokens)`` and the result never exceeds it (it is smaller when
            the text runs out of pairs); ``pattern`` is ``"gpt2"``, a registered name, or a
            Python ``re`` pattern -- which the saved tokenizer keeps, so that loading it
            again needs ``register_pattern(name, pattern)`` first (see :meth:`to_dict`).

        Examples
        --------
        >>> tok = BPETokenizer.train("aaab aaab", vocab_size=258)
        >>> [tok.token_bytes(i) for i in range(256, 258)]
        [b'aa', b'ab']
        """
        merges, special = train_bpe(text, vocab_size, pattern, special_tokens)
        return cls(merges, special_tokens=special, pattern=pattern)

    # -- properties ----------------------------------------------------------------------

    @property
    def vocab_size(self):
        """``max id + 1`` over regular and special tokens (the embedding table's height)."""
        return self._vocab_size

    def token_bytes(self, token_id):
        """The bytes of one token (special tokens: their UTF-8 text).

        Examples
        --------
        >>> tok = BPETokenizer.train("aaab aaab", vocab_size=258, special_tokens=["<|end|>"])
        >>> tok.token_bytes(97), tok.token_bytes(256), tok.token_bytes(257)
        (b'a', b'aa', b'<|end|>')
        """
        i = int(token_id)
        if i in self._decoder:
            return self._decoder[i]
        if i in self._special_decoder:
            return self._special_decoder[i]
        raise_bad_ids([i], lambda _: False, self._vocab_size)

    def pretokenize(self, text):
        """The pre-tokens of ``text`` (no special-token handling).

        Examples
        --------
        >>> BPETokenizer([]).pretokenize("I'm  here\\n")
        ['I', "'m", ' ', ' here', '\\n']
        """
        check_text(text)
        return self._split(text)

    # -- encode --------------------------------------------------------------------------

    def _encode_piece(self, piece):
        data = piece.encode("utf-8")
        token = self._encoder.get(data)
        if token is not None:
            ids = (token,)
        else:
            encoder = self._encoder
            ids = tuple([encoder[p] for p in byte_pair_merge(data, self._ranks)])
        cache = self._cache
        if len(cache) >= _MAX_CACHE:
            cache.clear()
        cache[piece] = ids
        return ids

    def _encode_ordinary(self, text):
        cache_get = self._cache.get
        encode_piece = self._encode_piece
        out = []
        extend = out.extend
        for piece in self._split(text):
            ids = cache_get(piece)
            if ids is None:
                ids = encode_piece(piece)
            extend(ids)
        return out

    def encode_ordinary(self, text):
        """``encode`` with every special-token string treated as ordinary text.

        Examples
        --------
        >>> tok = BPETokenizer([], special_tokens={"<|endoftext|>": 256})
        >>> tok.encode_ordinary("<|endoftext|>") == list(b"<|endoftext|>")
        True
        """
        check_text(text)
        return self._encode_ordinary(text)

    def _resolve_special(self, value, name):
        if value == "all":
            return set(self.special_tokens)
        if value is None or value == "none":
            return set()
        if isinstance(value, str):
            raise ValueError(f"{name} must be 'all', 'none' or a set of special tokens, "
                             f"got {value!r}")
        chosen = set(value)
        unknown = sorted(chosen - set(self.special_tokens))
        if unknown:
            raise ValueError(f"{name} names tokens that are not special tokens of this "
                             f"tokenizer: {unknown}")
        return chosen

    def _regex_for(self, tokens):
        key = frozenset(tokens)
        if key not in self._special_regex:
            alternatives = sorted(tokens, key=lambda t: (-len(t), t))   # longest first
            self._special_regex[key] = re.compile("|".join(map(re.escape, alternatives)))
        return self._special_regex[key]

    def encode(self, text, allowed_special="none", disallowed_special="all"):
        """Token ids of ``text`` (tiktoken's rules for special tokens).

        Parameters
        ----------
        text : str
        allowed_special : "all", "none" or set of str
            Special tokens that become their special id when their text occurs.
        disallowed_special : "all", "none" or set of str
            Special tokens whose text raises a ValueError when it occurs (``"all"`` means all
            that are not allowed), guarding against special tokens injected through user text.
            Special tokens that are neither allowed nor disallowed are encoded as ordinary text.

        Returns
        -------
        list[int]

        Examples
        --------
        >>> tok = BPETokenizer([], special_tokens={"<|endoftext|>": 256})
        >>> tok.encode("hi<|endoftext|>", allowed_special="all")
        [104, 105, 256]
        >>> tok.encode("<|endoftext|>", disallowed_special="none")[:3]
        [60, 124, 101]
        """
        check_text(text)
        allowed = self._resolve_special(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._resolve_special(disallowed_special, "disallowed_special")
        if disallowed:
            found = self._regex_for(disallowed).search(text)
            if found:
                raise ValueError(
                    f"text contains the special token {found.group()!r} at position "
                    f"{found.start()}; pass allowed_special={{{found.group()!r}}} (or 'all') to "
                    "encode it as a special token, or disallowed_special='none' to encode it "
                    "as ordinary text")
        if not allowed:
            return self._encode_ordinary(text)
        out, start = [], 0
        for m in self._regex_for(allowed).finditer(text):
            out.extend(self._encode_ordinary(text[start:m.start()]))
            out.append(self.special_tokens[m.group()])
            start = m.end()
        out.extend(self._encode_ordinary(text[start:]))
        return out

    # -- decode --------------------------------------------------------------------------

    def decode_bytes(self, ids):
        """The concatenated bytes of ``ids`` (special tokens as their UTF-8 text).

        Examples
        --------
        >>> tok = BPETokenizer([], special_tokens={"<|end|>": 256})
        >>> tok.encode("é")
        [195, 169]
        >>> tok.decode_bytes([104, 105, 195, 256])
        b'hi\\xc3<|end|>'
        """
        ids = as_id_list(ids)
        decoder = self._decoder
        try:
            return b"".join([decoder[i] for i in ids])
        except KeyError:
            special = self._special_decoder
            valid = lambda i: i in decoder or i in special      # noqa: E731
            if not all(valid(i) for i in ids):
                raise_bad_ids(ids, valid, self._vocab_size)
            return b"".join([decoder[i] if i in decoder else special[i] for i in ids])

    def decode(self, ids, errors="replace"):
        """Text of ``ids``: their bytes decoded as UTF-8 with ``errors="replace"``.

        Byte sequences that are not valid UTF-8 (a multi-byte character cut between tokens
        or ids that never occur together) decode to U+FFFD, as in GPT-2 and tiktoken; pass
        ``errors="strict"`` to get a UnicodeDecodeError instead.

        Examples
        --------
        >>> tok = BPETokenizer([])
        >>> tok.decode([104, 195, 169])
        'hé'
        >>> tok.decode([104, 195])
        'h�'
        >>> tok.decode([104, 195], errors="strict")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        UnicodeDecodeError: 'utf-8' codec can't decode byte 0xc3 in position 1: ...
        """
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- serialisation ------------------------------------------------------------------

    def _derive_merges(self):
        """(merges, merge_ids) that rebuild this tokenizer, or None if none exist.

        For a tokenizer made from ranks (a tiktoken file), each multi-byte token is split by
        running BPE on its own bytes with only the lower ranks: a well-formed rank file gives
        exactly two parts, which are the merge.
        """
        if self._merges is not None:
            return self._merges
        encoder, ranks = self._encoder, self._ranks
        tokens = sorted((t for t in encoder if len(t) > 1), key=lambda t: ranks[t])
        merges, merge_ids = [], []
        for t in tokens:
            parts = byte_pair_merge(t, ranks, max_rank=ranks[t])
            if len(parts) != 2:
                return None
            merges.append((encoder[parts[0]], encoder[parts[1]]))
            merge_ids.append(encoder[t])
        self._merges = (merges, merge_ids)
        return self._merges

    def to_dict(self):
        """A compact JSON-serialisable description; :func:`tokenizer_from_dict` inverts it.

        Keys: ``type`` ("bpe"), ``pattern``, ``special_tokens``, ``merges`` (list of id
        pairs in rank order), and -- only when not the default -- ``byte_ids`` (id of each
        byte) and ``merge_ids`` (id of each merged token). A rank file that is not
        expressible as merges is stored as ``tokens`` (``[base64 bytes, id]`` in rank order).

        ``pattern`` is stored as given to the constructor: a name (``"gpt2"``, or one
        registered with :func:`~npgpt.tokenizers.patterns.register_pattern`) or a raw
        regex. :meth:`from_dict` (and so every loader) accepts only a registered name or a
        registered regex, so a tokenizer made with an unregistered raw regex saves fine but
        loads only after ``register_pattern(name, regex)``; the error says so.

        Examples
        --------
        >>> BPETokenizer.train("aaab aaab", vocab_size=258).to_dict()
        {'type': 'bpe', 'pattern': 'gpt2', 'special_tokens': {}, 'merges': [[97, 97], [97, 98]]}
        """
        d = {"type": self.type_name, "pattern": self.pattern,
             "special_tokens": dict(self.special_tokens)}
        derived = self._derive_merges()
        if derived is None:
            order = sorted(self._encoder, key=lambda t: self._ranks[t])
            d["tokens"] = [[base64.b64encode(t).decode("ascii"), self._encoder[t]]
                           for t in order]
            return d
        merges, merge_ids = derived
        d["merges"] = [list(m) for m in merges]
        byte_ids = [self._encoder[bytes([b])] for b in range(256)]
        if byte_ids != list(range(256)):
            d["byte_ids"] = byte_ids
        if list(merge_ids) != list(range(256, 256 + len(merges))):
            d["merge_ids"] = list(merge_ids)
        return d

    @classmethod
    def from_dict(cls, d):
        """The tokenizer of ``d = tok.to_dict()``.

        Examples
        --------
        >>> tok = BPETokenizer.from_dict({"type": "bpe", "merges": [[97, 97]]})
        >>> tok.encode("aaa"), tok.vocab_size
        ([256, 97], 257)
        """
        check_type(d, cls.type_name)
        pattern = pattern_from_file(d.get("pattern", "gpt2"))
        special = dict_field(d, "special_tokens", (dict, type(None)), None) or {}
        if "tokens" in d:
            return cls.from_ranks(_ranks_of(dict_field(d, "tokens", (list,))), special, pattern)
        return cls(dict_field(d, "merges", (list,)), special_tokens=special, pattern=pattern,
                   byte_ids=dict_field(d, "byte_ids", (list, type(None)), None),
                   merge_ids=dict_field(d, "merge_ids", (list, type(None)), None))

    def save_gpt2(self, vocab_json, merges_txt):
        """Write GPT-2-style ``vocab.json`` and ``merges.txt`` (read back by :meth:`from_gpt2`).

        Examples
        --------
        >>> tok = BPETokenizer.train("the theme then", vocab_size=259)
        >>> tok.save_gpt2("vocab.json", "merges.txt")
        >>> print(open("merges.txt", encoding="utf-8").read(), end="")
        #version: 0.2
        h e
        t he
        Ġ the
        >>> BPETokenizer.from_gpt2("vocab.json", "merges.txt") == tok
        True
        """
        derived = self._derive_merges()
        if derived is None:
            raise ValueError("this tokenizer's ranks cannot be written as GPT-2 merges")
        table = bytes_to_unicode()
        spell = lambda t: "".join(table[b] for b in t)         # noqa: E731
        vocab = {spell(t): i for i, t in sorted(self._decoder.items())}
        vocab.update(self.special_tokens)
        atomic_write(vocab_json, json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
        lines = ["#version: 0.2\n"] + [f"{spell(self._decoder[a])} {spell(self._decoder[b])}\n"
                                       for a, b in derived[0]]
        atomic_write(merges_txt, "".join(lines).encode("utf-8"))

    def __repr__(self):
        return (f"BPETokenizer(vocab_size={self.vocab_size}, "
                f"special_tokens={self.special_tokens}, pattern={self.pattern!r})")

