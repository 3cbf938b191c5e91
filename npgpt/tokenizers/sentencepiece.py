"""SentencePiece BPE: Llama 2's, Mistral's and llama2.c's tokenizers, in pure Python.

Shapes and types: text is a ``str``; ids is a 1-D sequence of ints (T,) -- ``encode`` returns
a ``list[int]``, ``decode`` also accepts a 1-D NumPy integer array. A *piece* is a token as
SentencePiece spells it: a space is ``"▁"`` (U+2581), a byte is ``"<0xNN>"`` (llama2.c's
``tokenizer.bin`` writes real spaces instead, and they are kept: see ``from_llama2c``).

One tokenizer, :class:`SentencePieceTokenizer`, read from three files that hold the same
thing -- pieces, their scores and their types:

- a SentencePiece ``tokenizer.model`` (:meth:`~SentencePieceTokenizer.from_model_file`), the
  protobuf Llama 2, Mistral and llama2.c ship, and llama2.c's ``tokenizer.bin``
  (:meth:`~SentencePieceTokenizer.from_llama2c`), both read by hand in
  :mod:`.sentencepiece_files`;
- a GGUF file's ``tokenizer.ggml.*`` metadata when ``tokenizer.ggml.model`` is ``"llama"``
  (:meth:`~SentencePieceTokenizer.from_gguf_metadata`).

Encoding, as the ``sentencepiece`` library's BPE model (``bpe_model.cc``; the rules as pure
functions in :mod:`.sentencepiece_bpe`):

1. **normalize** (:func:`normalize`): with ``remove_extra_whitespaces``, leading and trailing
   spaces go and runs of spaces become one; a ``"▁"`` is put in front (``add_dummy_prefix``)
   and every space becomes ``"▁"``. An empty text (after that) has no tokens at all.
2. **split** into symbols: a user-defined piece where one starts (the longest), else one
   character. User-defined pieces are never merged with anything.
3. **merge** (:func:`merge_pieces`): among the adjacent pairs whose concatenation is a piece,
   merge the one whose piece has the *highest score*, the leftmost on ties; repeat until no
   pair is a piece. Only normal, user-defined and unused pieces are merge results, so text
   that spells ``<s>`` or ``<0x41>`` is ordinary text (as in the library). A merged piece of
   type *unused* is split back into the two symbols it was made of.
4. **ids**: a symbol that is no piece is unknown: its UTF-8 bytes as ``<0xNN>`` pieces
   (``byte_fallback``), else the unknown id (a run of unknown symbols is one unknown id).
5. BOS / EOS around the ids when asked (``add_bos``, ``add_eos``).

Decoding (the library's ``Decode``): control pieces (``<s>``, ``</s>``) are invisible, the
unknown piece shows as ``" ⁇ "``, ``"▁"`` becomes a space, runs of ``<0xNN>`` pieces are read
as UTF-8 one character at a time with U+FFFD for each byte that does not start a valid
character, and the first piece's leading space (the dummy prefix) is dropped while nothing
has been written yet. A tokenizer read from llama2.c's ``tokenizer.bin`` decodes as llama2.c's
``run.c`` prints: only a piece right after BOS loses its leading space, so the text of new
tokens keeps the space that separates it from the prompt.

The merge loop runs over the whole normalized text, as the library's does. When the
vocabulary allows it (no piece holds ``"▁"`` after another character, no unused piece), no
merge can cross the point before a ``"▁"`` that follows another character, so the text is cut
there and each chunk merged alone and cached -- the same ids, found faster.

Anything else in a ``.model`` -- a Unigram, word or char model, a normalization rule other
than identity (a ``precompiled_charsmap``), whitespace as a suffix -- is a
:class:`~npgpt.io.CheckpointError` naming the field; so is every malformed file (truncated,
a bad varint, a length past the end), with no more memory than the file's size.
"""

from __future__ import annotations

import numbers
import os
import re
import struct

from ..io.errors import CheckpointError, short_repr
from .base import Tokenizer, as_id_list, check_text, check_type, dict_field, raise_bad_ids
from .pieces import (BYTE, CONTROL, NORMAL, TYPE_NAMES, UNKNOWN, UNUSED, USER_DEFINED,
                     checked_vocabulary)
from .sentencepiece_bpe import SPACE, decode_utf8, merge_pieces, normalize
from .sentencepiece_files import (UNK_SURFACE, encode_varint, read_llama2c_tokenizer,
                                  read_model_proto, read_tokenizer_file)

_MAX_CACHE = 100_000                    # cached chunks per tokenizer before the cache is cleared
_MAX_CACHED_CHUNK = 256                 # longer chunks are not cached
_DECODINGS = ("sentencepiece", "llama2c")
_DICT_KEYS = ("type", "pieces", "scores", "types", "add_dummy_prefix", "remove_extra_whitespaces",
              "escape_whitespaces", "byte_fallback", "unk_surface", "bos_id", "eos_id",
              "add_bos", "add_eos", "decoding")


# ----------------------------------------------------------------------------------------
# SentencePieceTokenizer
# ----------------------------------------------------------------------------------------

def _example():
    """The pieces of the examples: the unknown piece, BOS, EOS, the 256 bytes, then a few
    merges of "▁hello" and "▁world"."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    words = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁w", "or", "ld", "▁he",
             "llo", "▁hello", "▁wor", "▁world"]
    scores = [0.0] * 259 + [-float(i) for i in range(len(words))]
    return SentencePieceTokenizer(pieces + words, scores, types + [NORMAL] * len(words))


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece BPE with byte fallback (see the module docstring for the rules).

    Parameters
    ----------
    pieces : list of str
        The vocabulary: ``pieces[i]`` is token ``i``; unique, not empty.
    scores : list of float
        One per piece; merges producing a higher score happen first.
    types : list of int
        One per piece: 1 normal, 2 unknown (exactly one), 3 control, 4 user-defined,
        5 unused, 6 byte (``"<0xNN>"``).
    add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces : bool
        The normalizer's switches (:func:`normalize`).
    byte_fallback : bool or None
        Unknown characters as their UTF-8 bytes (needs all 256 byte pieces). None: when
        the vocabulary has byte pieces.
    unk_surface : str
        How ``decode`` shows the unknown piece.
    bos_id, eos_id : int or None
        Ids of BOS and EOS (control pieces). Default: the control pieces ``<s>`` and
        ``</s>`` if there are.
    add_bos, add_eos : bool
        Whether ``encode`` puts BOS in front / EOS at the end by default (Llama 2 and
        llama2.c models are fed BOS first).
    decoding : {"sentencepiece", "llama2c"}
        The library's rule for the first space, or llama2.c's (a piece right after BOS
        loses its leading space).

    Examples
    --------
    >>> tok = _example()
    >>> tok.encode("hello world")
    [1, 274, 276]
    >>> tok.encode("hello world", add_bos=False), tok.pieces([274, 276])
    ([274, 276], ['▁hello', '▁world'])
    >>> tok.encode("hé")                  # "é" is no piece: its two UTF-8 bytes
    [1, 267, 198, 172]
    >>> tok.decode([1, 274, 276]), tok.decode([267, 198, 172, 198])
    ('hello world', 'hé�')
    """

    type_name = "sentencepiece"

    def __init__(self, pieces, scores, types, *, add_dummy_prefix=True,
                 remove_extra_whitespaces=False, escape_whitespaces=True, byte_fallback=None,
                 unk_surface=UNK_SURFACE, bos_id="<s>", eos_id="</s>", add_bos=True,
                 add_eos=False, decoding="sentencepiece"):
        self._pieces, self._scores, self._types = checked_vocabulary(pieces, scores, types)
        self._piece_to_id = {p: i for i, p in enumerate(self._pieces)}
        for name, value in (("add_dummy_prefix", add_dummy_prefix),
                            ("remove_extra_whitespaces", remove_extra_whitespaces),
                            ("escape_whitespaces", escape_whitespaces),
                            ("add_bos", add_bos), ("add_eos", add_eos)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {short_repr(value)}")
        self.add_dummy_prefix = add_dummy_prefix
        self.remove_extra_whitespaces = remove_extra_whitespaces
        self.escape_whitespaces = escape_whitespaces
        self.add_bos, self.add_eos = add_bos, add_eos
        if not isinstance(unk_surface, str):
            raise ValueError(f"unk_surface must be a str, got {short_repr(unk_surface)}")
        if decoding not in _DECODINGS:
            raise ValueError(f"decoding must be one of {_DECODINGS}, got {short_repr(decoding)}")
        self.unk_surface, self.decoding = unk_surface, decoding
        # "▁" in a piece means a space (always in the library's decoding; llama2.c's pieces
        # hold real spaces, and print a "▁" as it is)
        self._spaces_spelled = escape_whitespaces or decoding == "sentencepiece"
        self.unk_id = self._types.index(UNKNOWN)
        self.bos_id = self._control_id(bos_id, "bos_id")
        self.eos_id = self._control_id(eos_id, "eos_id")
        has_bytes = BYTE in self._types
        self.byte_fallback = has_bytes if byte_fallback is None else byte_fallback
        if not isinstance(self.byte_fallback, bool):
            raise ValueError(f"byte_fallback must be True, False or None, got "
                             f"{short_repr(byte_fallback)}")
        self._byte_ids = [self._piece_to_id.get(f"<0x{b:02X}>") for b in range(256)]
        if self.byte_fallback:
            for b, i in enumerate(self._byte_ids):
                if i is None or self._types[i] != BYTE:
                    raise ValueError(f"byte_fallback needs the 256 byte pieces <0x00>..<0xFF> of "
                                     f"type byte; <0x{b:02X}> is "
                                     f"{'missing' if i is None else 'of another type'}")
        self._setup_merges()

    # -- construction ------------------------------------------------------------------

    def _control_id(self, value, name):
        """An id given as an int, or as a piece (used when it is a control piece); None."""
        if isinstance(value, str):
            i = self._piece_to_id.get(value)
            return i if i is not None and self._types[i] == CONTROL else None
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not \
                0 <= value < len(self._pieces):
            raise ValueError(f"{name} must be None or an id in [0, {len(self._pieces)}), got "
                             f"{short_repr(value)}")
        return value

    def _setup_merges(self):
        """What the merge loop may produce, the user-defined pieces, and the fast path."""
        types = self._types
        self._mergeable = {p: s for p, s, t in zip(self._pieces, self._scores, types)
                           if t in (NORMAL, USER_DEFINED, UNUSED)}
        self._unused = frozenset(p for p, t in zip(self._pieces, types) if t == UNUSED)
        user = sorted((p for p, t in zip(self._pieces, types) if t == USER_DEFINED),
                      key=len, reverse=True)
        self._user = re.compile("|".join(map(re.escape, user))) if user else None
        # Chunks can be merged apart when no merge can cross the point before a "▁" that
        # follows another character: no mergeable piece has "▁" after another character.
        space = self._space = SPACE if self.escape_whitespaces else " "
        inner = re.compile(f"[^{space}]{space}")
        self._chunked = not self._unused and not any(
            inner.search(p) for p in self._mergeable)
        self._cache = {}

    # -- encode --------------------------------------------------------------------------

    def normalize(self, text):
        """``text`` as the merge loop sees it (:func:`normalize` with this tokenizer's
        switches).

        >>> _example().normalize("hello world")
        '▁hello▁world'
        """
        check_text(text)
        return normalize(text, self.add_dummy_prefix, self.remove_extra_whitespaces,
                         self.escape_whitespaces)

    def _chunks(self, normalized):
        """The normalized text cut before each "▁" that follows another character (when the
        vocabulary allows it, see ``_setup_merges``), else whole."""
        if not self._chunked:
            return [normalized]
        space = self._space
        return re.findall(f"{space}*[^{space}]*", normalized)[:-1] or [normalized]

    def _encode_chunk(self, chunk):
        """The ids of one chunk of normalized text: split, merge, then pieces -> ids."""
        ids = self._cache.get(chunk)
        if ids is not None:
            return ids
        symbols, frozen = [], []
        pos = 0
        while pos < len(chunk):
            m = self._user.match(chunk, pos) if self._user is not None else None
            end = m.end() if m else pos + 1
            symbols.append(chunk[pos:end])
            frozen.append(m is not None)
            pos = end
        ids = []
        unknown_before = False
        for piece in merge_pieces(symbols, self._mergeable, frozen, self._unused):
            i = self._piece_to_id.get(piece)
            if i is not None and self._types[i] != UNKNOWN:
                ids.append(i)
                unknown_before = False
            elif self.byte_fallback:
                ids.extend(self._byte_ids[b] for b in piece.encode("utf-8"))
            elif not unknown_before:                       # a run of unknowns: one id
                ids.append(self.unk_id)
                unknown_before = True
        if len(chunk) < _MAX_CACHED_CHUNK:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def encode(self, text, add_bos=None, add_eos=None):
        """Token ids of ``text`` (see the module docstring for the steps).

        Parameters
        ----------
        text : str
        add_bos, add_eos : bool or None
            Put BOS in front / EOS at the end; None: the tokenizer's ``add_bos`` /
            ``add_eos``. The ``sentencepiece`` library's ``encode`` adds neither by default:
            ``encode(text, add_bos=False)`` is its ``encode(text)``.

        Examples
        --------
        >>> tok = _example()
        >>> tok.encode("  hello"), tok.encode(""), tok.encode("", add_eos=True)
        ([1, 259, 259, 274], [1], [1, 2])
        >>> tok.encode("<s>", add_bos=False)   # text that spells a control piece is text
        [259, 63, 118, 65]
        """
        normalized = self.normalize(text)
        ids = [i for chunk in self._chunks(normalized) if chunk
               for i in self._encode_chunk(chunk)] if normalized else []
        if not self.byte_fallback and self._chunked:      # a run of unknowns across chunks
            ids = [i for k, i in enumerate(ids) if not (
                i == self.unk_id and k and ids[k - 1] == self.unk_id)]
        if self.add_bos if add_bos is None else add_bos:
            ids = [self._special("bos_id")] + ids
        if self.add_eos if add_eos is None else add_eos:
            ids = ids + [self._special("eos_id")]
        return ids

    def _special(self, name):
        i = getattr(self, name)
        if i is None:
            raise ValueError(f"this tokenizer has no {name[:3].upper()} token ({name} is None)")
        return i

    # -- decode --------------------------------------------------------------------------

    def _checked_ids(self, ids):
        ids = as_id_list(ids)
        n = len(self._pieces)
        if any(not 0 <= i < n for i in ids):
            raise_bad_ids(ids, lambda i: 0 <= i < n, n)
        return ids

    def decode(self, ids):
        """Text of ``ids``, by the library's ``Decode`` (or llama2.c's, see ``decoding``).

        Examples
        --------
        >>> tok = _example()
        >>> tok.decode([274, 276]), tok.decode([1, 274, 2, 1, 276]), tok.decode([0])
        ('hello world', 'hello world', ' ⁇ ')
        >>> tok.decode([133, 229, 198, 172])    # one U+FFFD per byte that starts no character
        '��é'
        """
        ids = self._checked_ids(ids)
        types, pieces = self._types, self._pieces
        out, run = [], []                       # run: the bytes of consecutive byte pieces
        written = False                         # has any text been written yet?
        expect_space = True                     # the library's is_bos_ws: drop a first "▁"
        dropped = False                         # ... and bos_ws_seen: it was just dropped
        previous = None
        for i in ids:
            kind = types[i]
            if kind == BYTE:
                run.append(int(pieces[i][3:5], 16))
                previous = i
                continue
            if run:
                out.append(decode_utf8(bytes(run)))
                run, written = [], True
            expect_space = expect_space and not dropped and not written
            dropped = False
            if kind == CONTROL:
                text = ""
            elif kind == UNKNOWN:
                text = self.unk_surface
            else:
                text = pieces[i]
                if self.decoding == "llama2c":
                    if previous == self.bos_id and text[0] == self._space:
                        text = text[1:]
                elif expect_space and self._strips_first_space() and text[0] == SPACE:
                    text = text[1:]
                    dropped = not self.remove_extra_whitespaces   # with it: every leading one
                if self._spaces_spelled:
                    text = text.replace(SPACE, " ")
            out.append(text)
            written = written or bool(text)
            previous = i
        if run:
            out.append(decode_utf8(bytes(run)))
        return "".join(out)

    def _strips_first_space(self):
        return self.add_dummy_prefix or self.remove_extra_whitespaces

    def token_bytes(self, token_id):
        """The bytes token ``token_id`` adds inside a text (for stop strings): ``"▁"`` is a
        space, ``<0xNN>`` its byte, a control piece nothing, the unknown piece ``" ⁇ "``.

        >>> tok = _example()
        >>> tok.token_bytes(274), tok.token_bytes(198), tok.token_bytes(1)
        (b' hello', b'\\xc3', b'')
        """
        i = self._checked_ids([token_id])[0]
        kind, piece = self._types[i], self._pieces[i]
        if kind == BYTE:
            return bytes([int(piece[3:5], 16)])
        if kind == CONTROL:
            return b""
        if kind == UNKNOWN:
            return self.unk_surface.encode("utf-8")
        return (piece.replace(SPACE, " ") if self._spaces_spelled else piece).encode("utf-8")

    # -- the vocabulary -----------------------------------------------------------------

    @property
    def vocab_size(self):
        """The number of pieces."""
        return len(self._pieces)

    def pieces(self, ids=None):
        """The pieces of ``ids`` (all of them when None).

        >>> _example().pieces([1, 259, 274])
        ['<s>', '▁', '▁hello']
        """
        if ids is None:
            return list(self._pieces)
        return [self._pieces[i] for i in self._checked_ids(ids)]

    def id_to_token(self, token_id):
        """The piece of an id, or None outside the vocabulary.

        >>> _example().id_to_token(274), _example().id_to_token(999)
        ('▁hello', None)
        """
        i = int(token_id)
        return self._pieces[i] if 0 <= i < len(self._pieces) else None

    def token_to_id(self, piece):
        """The id of a piece, or None.

        >>> _example().token_to_id("▁world"), _example().token_to_id("nope")
        (276, None)
        """
        return self._piece_to_id.get(piece)

    def score(self, token_id):
        """The score of a piece.

        >>> _example().score(274)
        -15.0
        """
        return self._scores[self._checked_ids([token_id])[0]]

    def piece_type(self, token_id):
        """The type of a piece by name: "normal", "unknown", "control", "user-defined",
        "unused" or "byte".

        >>> [_example().piece_type(i) for i in (0, 1, 3, 274)]
        ['unknown', 'control', 'byte', 'normal']
        """
        return TYPE_NAMES[self._types[self._checked_ids([token_id])[0]]]

    @property
    def special_tokens(self):
        """Control and user-defined pieces: ``{piece: id}``."""
        return {p: i for i, (p, t) in enumerate(zip(self._pieces, self._types))
                if t in (CONTROL, USER_DEFINED)}

    # -- the three files -----------------------------------------------------------------

    @classmethod
    def from_model_file(cls, path):
        """Read a SentencePiece ``tokenizer.model`` (a BPE model with the identity
        normalizer: Llama 2, Mistral, llama2.c's ``tok*.model``).

        Raises CheckpointError naming the file and the field for a malformed file and for
        what npgpt does not run: a model type other than BPE, a normalization rule
        (``precompiled_charsmap``), whitespace as a suffix.

        Examples
        --------
        >>> with open("tiny.model", "wb") as f:
        ...     _ = f.write(_example().to_model_proto())
        >>> tok = SentencePieceTokenizer.from_model_file("tiny.model")
        >>> tok == _example(), tok.encode("hello world")
        (True, [1, 274, 276])
        """
        source = os.fspath(path)
        spec = read_model_proto(read_tokenizer_file(path), source)
        return cls._from_spec(spec, source)

    @classmethod
    def _from_spec(cls, spec, source):
        if spec["model_type"] != "BPE":
            raise CheckpointError(f"{source}: trainer_spec.model_type is {spec['model_type']}; "
                                  f"npgpt reads SentencePiece BPE models only")
        if spec["precompiled_charsmap"] or spec["denormalizer_charsmap"]:
            raise CheckpointError(
                f"{source}: normalizer_spec.precompiled_charsmap is set (normalization rule "
                f"{short_repr(spec['normalizer_name'])}); npgpt reads only the identity "
                f"normalizer")
        if spec["treat_whitespace_as_suffix"]:
            raise CheckpointError(f"{source}: trainer_spec.treat_whitespace_as_suffix is set; "
                                  f"not supported")
        try:
            return cls(spec["pieces"], spec["scores"], spec["types"],
                       add_dummy_prefix=spec["add_dummy_prefix"],
                       remove_extra_whitespaces=spec["remove_extra_whitespaces"],
                       escape_whitespaces=spec["escape_whitespaces"],
                       byte_fallback=spec["byte_fallback"], unk_surface=spec["unk_surface"],
                       bos_id=spec["bos_piece"], eos_id=spec["eos_piece"])
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from None

    @classmethod
    def from_llama2c(cls, path):
        """Read llama2.c's ``tokenizer.bin`` (:func:`read_llama2c_tokenizer`).

        The file holds no types: id 0 is the unknown piece, 1 BOS and 2 EOS (as ``run.c``
        assumes), ``<0x00>``..``<0xFF>`` at ids 3..258 are the byte pieces (``run.c`` falls
        back to id ``3 + byte``), the rest are normal. The pieces keep llama2.c's real
        spaces (``escape_whitespaces=False``: a ``"▁"`` in the text is a character like any
        other, as in ``run.c``). Encoding then equals ``run.c``'s ``encode`` (a dummy prefix
        space, no whitespace removal, merges by score, leftmost on ties), and decoding its
        ``decode``: the piece after BOS loses its leading space.
        Where ``run.c`` differs: its ``safe_printf`` drops single bytes that are not
        printable (so a character from byte pieces never shows) and it prints EOS as
        ``"\\n</s>\\n"``; npgpt decodes the bytes as UTF-8 and EOS as nothing.

        Examples
        --------
        >>> with open("tokenizer.bin", "wb") as f:
        ...     _ = f.write(_example().to_llama2c())
        >>> tok = SentencePieceTokenizer.from_llama2c("tokenizer.bin")
        >>> tok.encode("hello world")
        [1, 274, 276]
        >>> tok.decode([274, 276]), tok.decode([1, 274, 276])   # the space goes after BOS only
        (' hello world', 'hello world')
        """
        source = os.fspath(path)
        pieces, scores = read_llama2c_tokenizer(read_tokenizer_file(path), source)
        if len(pieces) < 3:
            raise CheckpointError(f"{source}: {len(pieces)} tokens; llama2.c needs at least "
                                  f"<unk>, BOS and EOS (ids 0, 1, 2)")
        byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
        has_bytes = pieces[3:259] == byte_pieces
        types = [UNKNOWN, CONTROL, CONTROL] + [
            BYTE if has_bytes and 3 <= i < 259 else NORMAL for i in range(3, len(pieces))]
        try:
            return cls(pieces, scores, types, byte_fallback=has_bytes, bos_id=1, eos_id=2,
                       escape_whitespaces=False, decoding="llama2c")
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from None

    @classmethod
    def from_gguf_metadata(cls, metadata):
        """The tokenizer of a GGUF file whose ``tokenizer.ggml.model`` is ``"llama"``.

        ``metadata`` maps keys to values: ``tokenizer.ggml.tokens`` (list of str),
        ``tokenizer.ggml.scores`` (floats), ``tokenizer.ggml.token_type`` (ints: 1 normal,
        2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), and optionally
        ``tokenizer.ggml.bos_token_id`` / ``eos_token_id`` / ``unknown_token_id``,
        ``tokenizer.ggml.add_bos_token`` (default True), ``add_eos_token`` (False),
        ``add_space_prefix`` (True) and ``remove_extra_whitespaces`` (False). User-defined
        tokens are matched in the text as whole pieces, never merged.

        Examples
        --------
        >>> tok = _example()
        >>> meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tok.pieces(),
        ...         "tokenizer.ggml.scores": [tok.score(i) for i in range(tok.vocab_size)],
        ...         "tokenizer.ggml.token_type": [1] * 277,
        ...         "tokenizer.ggml.bos_token_id": 1}
        >>> meta["tokenizer.ggml.token_type"][:3] = [2, 3, 3]
        >>> meta["tokenizer.ggml.token_type"][3:259] = [6] * 256
        >>> SentencePieceTokenizer.from_gguf_metadata(meta).encode("hello world")
        [1, 274, 276]
        """
        where = "GGUF metadata"
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        model = metadata.get("tokenizer.ggml.model")
        if model != "llama":
            raise CheckpointError(f"{where}: tokenizer.ggml.model is {short_repr(model)}; "
                                  f"from_gguf_metadata reads 'llama' (SentencePiece) vocabularies")

        def value(key, default):
            return metadata.get("tokenizer.ggml." + key, default)

        def wrong(key, expected):
            return CheckpointError(f"{where}: tokenizer.ggml.{key} must be {expected}, got "
                                   f"{short_repr(value(key, None))}")

        def as_list(key, default):                # a list, a tuple or a NumPy array
            v = value(key, default)
            if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
                return list(v)
            raise wrong(key, "a list")

        def flag(key, default):                   # Python's or NumPy's bool
            v = value(key, default)
            if isinstance(v, bool) or getattr(getattr(v, "dtype", None), "kind", "") == "b":
                return bool(v)
            raise wrong(key, "true or false")

        def token_id(key, default):               # an id of the vocabulary, or None
            v = value(key, default if default < len(tokens) else None)
            if v is None or isinstance(v, numbers.Integral) and not isinstance(v, bool) \
                    and 0 <= v < len(tokens):
                return None if v is None else int(v)
            raise wrong(key, f"an id below {len(tokens)}")
        tokens = as_list("tokens", [])
        scores = as_list("scores", [0.0] * len(tokens))
        types = as_list("token_type", [NORMAL] * len(tokens))
        try:
            return cls(tokens, [float(s) if isinstance(s, numbers.Real) else s for s in scores],
                       [int(t) if isinstance(t, numbers.Integral) else t for t in types],
                       add_dummy_prefix=flag("add_space_prefix", True),
                       remove_extra_whitespaces=flag("remove_extra_whitespaces", False),
                       bos_id=token_id("bos_token_id", 1), eos_id=token_id("eos_token_id", 2),
                       add_bos=flag("add_bos_token", True), add_eos=flag("add_eos_token", False))
        except ValueError as e:
            raise CheckpointError(f"{where}: {e}") from None

    # -- serialisation ------------------------------------------------------------------

    def to_model_proto(self):
        """This vocabulary as the bytes of a SentencePiece ``.model`` (a BPE ModelProto with
        the identity normalizer), which the ``sentencepiece`` library and
        :meth:`from_model_file` read back. BOS, EOS and the decoding rule are not part of
        the format: the library finds ``<s>`` and ``</s>`` by name.

        >>> len(_example().to_model_proto())
        4682
        """
        def field(number, value):                  # an int (varint) or bytes (delimited)
            if isinstance(value, int):
                return encode_varint(number << 3) + encode_varint(value)
            return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value
        out = bytearray()
        for piece, score, kind in zip(self._pieces, self._scores, self._types):
            body = (field(1, piece.encode("utf-8")) + encode_varint(2 << 3 | 5)
                    + struct.pack("<f", score) + field(3, kind))
            out += field(1, body)
        trainer = (field(3, 2) + field(35, int(self.byte_fallback))
                   + field(44, self.unk_surface.encode("utf-8")))
        normalizer = (field(1, b"identity") + field(3, int(self.add_dummy_prefix))
                      + field(4, int(self.remove_extra_whitespaces))
                      + field(5, int(self.escape_whitespaces)))
        return bytes(out + field(2, trainer) + field(3, normalizer))

    def to_llama2c(self):
        """This vocabulary as llama2.c's ``tokenizer.bin`` (what its ``tokenizer.py`` writes):
        the longest piece's length in bytes, then per piece its score, length and UTF-8
        bytes, ``"▁"`` written as a space and BOS / EOS as ``"\\n<s>\\n"`` / ``"\\n</s>\\n"``.

        >>> data = _example().to_llama2c()
        >>> read_llama2c_tokenizer(data)[0][:3], len(data)
        (['<unk>', '<s>', '</s>'], 3812)
        """
        raw = []
        for i, piece in enumerate(self._pieces):
            text = {self.bos_id: "\n<s>\n", self.eos_id: "\n</s>\n"}.get(i, piece)
            raw.append(text.replace(SPACE, " ").encode("utf-8"))
        out = [struct.pack("<i", max(map(len, raw)))]
        out += [struct.pack("<fi", score, len(r)) + r for score, r in zip(self._scores, raw)]
        return b"".join(out)

    def to_dict(self):
        """A JSON-serialisable description; :meth:`from_dict` inverts it.

        >>> tok = _example()
        >>> d = tok.to_dict()
        >>> d["type"], len(d["pieces"]), SentencePieceTokenizer.from_dict(d) == tok
        ('sentencepiece', 277, True)
        """
        return {"type": self.type_name, "pieces": list(self._pieces),
                "scores": list(self._scores), "types": list(self._types),
                "add_dummy_prefix": self.add_dummy_prefix,
                "remove_extra_whitespaces": self.remove_extra_whitespaces,
                "escape_whitespaces": self.escape_whitespaces,
                "byte_fallback": self.byte_fallback, "unk_surface": self.unk_surface,
                "bos_id": self.bos_id, "eos_id": self.eos_id, "add_bos": self.add_bos,
                "add_eos": self.add_eos, "decoding": self.decoding}

    @classmethod
    def from_dict(cls, d):
        """The tokenizer of ``d = tok.to_dict()``.

        >>> d = {"type": "sentencepiece", "pieces": ["<unk>", "a"], "scores": [0.0, 0.0],
        ...      "types": [2, 1], "add_dummy_prefix": False, "add_bos": False}
        >>> SentencePieceTokenizer.from_dict(d).encode("aab")
        [1, 1, 0]
        """
        check_type(d, cls.type_name)
        known = set(_DICT_KEYS)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"a 'sentencepiece' tokenizer dict has no key(s) "
                             f"{short_repr(unknown)}")
        lists = [dict_field(d, key, (list,)) for key in ("pieces", "scores", "types")]
        options = {key: d[key] for key in known - {"type", "pieces", "scores", "types"}
                   if key in d}
        return cls(*lists, **options)

    def __repr__(self):
        return (f"SentencePieceTokenizer(vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
                f"eos_id={self.eos_id}, decoding={self.decoding!r})")
