"""A ``tokenizer.json``'s model: one word -> ids, by BPE (``"BPE"``, the only model read).

Types: a word is a ``str`` (its characters spelled as the file spells tokens); ids are a
``list[int]``. ``merges`` maps a pair of ids to ``(rank, new id)``.

Supported: ``vocab``, ``merges`` as ``"a b"`` strings or ``[a, b]`` pairs,
``byte_fallback``, ``unk_token``, ``fuse_unk``, ``ignore_merges``; BPE dropout and subword
prefixes / suffixes are refused.
"""

from __future__ import annotations

import heapq

from ..io.errors import CheckpointError, short_repr
from .hf_fields import spec_field, spec_kind

_MAX_CACHE = 100_000         # cached words per tokenizer before the cache is cleared
_MAX_CACHED_WORD = 256       # longer words are not cached (as in ``tokenizers``)

_MODELS = {"BPE": ("vocab", "merges", "dropout", "unk_token", "continuing_subword_prefix",
                   "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges")}


def _merge_all(ids, merges):
    """Merge ``ids`` (one word's symbols) as the library's ``Word::merge_all`` does.

    ``merges`` maps a pair of ids to ``(rank, new id)``. A heap holds candidate merges
    ``(rank, position, new id)``; the smallest pops first (lowest rank, leftmost on ties). An
    entry is stale if its left symbol was merged away, has no right neighbour any more, or
    the pair there now makes another token; otherwise the two symbols become ``new id``
    and the pairs it forms with its neighbours are pushed.

    Examples
    --------
    >>> _merge_all([0, 0, 1], {(0, 0): (0, 2), (0, 1): (1, 3), (2, 1): (2, 4)})
    [4]
    """
    n = len(ids)
    if n < 2:
        return list(ids)
    symbols = list(ids)
    nxt = list(range(1, n)) + [-1]               # next[i]: the symbol after i, -1 at the end
    prv = list(range(-1, n - 1))                 # prev[i]: the symbol before i
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        m = merges.get((ids[i], ids[i + 1]))
        if m is not None:
            heap.append((m[0], i, m[1]))
    heapq.heapify(heap)
    while heap:
        _, pos, new = heapq.heappop(heap)
        right = nxt[pos]
        if not alive[pos] or right == -1:
            continue
        m = merges.get((symbols[pos], symbols[right]))
        if m is None or m[1] != new:
            continue                             # stale: the pair changed
        symbols[pos], alive[right] = new, False  # merge [pos] + [right] -> [pos]
        after = nxt[pos] = nxt[right]
        if after != -1:
            prv[after] = pos
        before = prv[pos]
        if before >= 0:
            m = merges.get((symbols[before], new))
            if m is not None:
                heapq.heappush(heap, (m[0], before, m[1]))
        if after != -1:
            m = merges.get((new, symbols[after]))
            if m is not None:
                heapq.heappush(heap, (m[0], pos, m[1]))
    return [s for s, a in zip(symbols, alive) if a]


class BPEModel:
    """The ``"BPE"`` model of a ``tokenizer.json``: a word (str) -> ids.

    1. with ``ignore_merges``, a word that is itself in the vocabulary is that one token;
    2. each character is its vocabulary id; an unknown one becomes its UTF-8 bytes as
       ``<0xNN>`` tokens (``byte_fallback``, when all of them exist), else the unk token
       (consecutive ones fused into one with ``fuse_unk``), else nothing -- as in the
       library, which drops it silently;
    3. :func:`_merge_all` with ``merges`` (pair -> (rank, new id)), rank = line number.

    >>> bpe = BPEModel({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<0x63>": 3},
    ...                 "merges": ["a b"], "byte_fallback": True})
    >>> bpe.tokenize("abc"), bpe.tokens[2]
    ([2, 3], 'ab')
    """

    def __init__(self, spec, where="model"):
        if isinstance(spec, dict) and "type" not in spec and "merges" in spec:
            spec = {**spec, "type": "BPE"}               # the library infers it, as here
        spec_kind(spec, where, _MODELS)
        vocab = spec_field(spec, "vocab", (dict,), where, required=True)
        owner = {}
        for token, i in vocab.items():
            if type(i) is not int or not 0 <= i < 2 ** 31:
                raise CheckpointError(f"{where}.vocab: the id of {short_repr(token)} must be an "
                                      f"integer in [0, 2**31), got {short_repr(i)}")
            if i in owner:
                raise CheckpointError(f"{where}.vocab: tokens {short_repr(owner[i])} and "
                                      f"{short_repr(token)} share the id {i}")
            owner[i] = token
        self.vocab, self.tokens = vocab, owner          # str -> id, id -> str
        self.merges = self._read_merges(spec_field(spec, "merges", (list,), where, []), where)
        dropout = spec_field(spec, "dropout", (int, float, type(None)), where)
        if dropout not in (None, 0, 0.0):
            raise CheckpointError(f"{where}.dropout is {dropout!r}: BPE dropout draws random "
                                  f"merges, npgpt encodes deterministically (set it to null)")
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if spec_field(spec, key, (str, type(None)), where):
                raise CheckpointError(f"{where}.{key} is {short_repr(spec[key])}: not supported "
                                      f"(only null or '')")
        self.unk_token = spec_field(spec, "unk_token", (str, type(None)), where)
        if self.unk_token is not None and self.unk_token not in vocab:
            raise CheckpointError(f"{where}.unk_token {short_repr(self.unk_token)} is not in "
                                  f"the vocabulary")
        self.unk_id = None if self.unk_token is None else vocab[self.unk_token]
        self.fuse_unk = spec_field(spec, "fuse_unk", (bool,), where, False)
        self.byte_fallback = spec_field(spec, "byte_fallback", (bool,), where, False)
        self.ignore_merges = spec_field(spec, "ignore_merges", (bool,), where, False)
        self._cache = {}

    def _read_merges(self, merges, where):
        """pair of ids -> (rank, id of the merged token); a later duplicate wins, as in the
        library (a dict built in order)."""
        out, vocab = {}, self.vocab
        strings = bool(merges) and isinstance(merges[0], str)
        rank = 0
        for k, merge in enumerate(merges):
            if strings and isinstance(merge, str):
                if merge.startswith("#version"):
                    continue                     # a merges.txt header, skipped as the library does
                pair = merge.split(" ")
            elif not strings and isinstance(merge, list) and all(isinstance(p, str) for p in merge):
                pair = merge
            else:
                like = "a string 'a b'" if strings else "a pair of strings"
                raise CheckpointError(f"{where}.merges[{k}] must be {like}, like the first "
                                      f"merge; got {short_repr(merge)}")
            if len(pair) != 2:
                raise CheckpointError(f"{where}.merges[{k}] must be two tokens, got "
                                      f"{short_repr(merge)}")
            a, b = pair
            for t in (a, b, a + b):
                if t not in vocab:
                    raise CheckpointError(f"{where}.merges[{k}] {short_repr(merge)}: "
                                          f"{short_repr(t)} is not in the vocabulary")
            out[vocab[a], vocab[b]] = (rank, vocab[a + b])
            rank += 1
        return out

    def tokenize(self, word):
        """The ids of one word.

        Examples
        --------
        >>> bpe = BPEModel({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})
        >>> bpe.tokenize("abba")
        [2, 1, 0]
        """
        if not word:
            return []
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        ids = self._cache.get(word)
        if ids is None:
            ids = _merge_all(self._symbols(word), self.merges)
            if len(word) < _MAX_CACHED_WORD:
                if len(self._cache) >= _MAX_CACHE:
                    self._cache.clear()
                self._cache[word] = ids
        return list(ids)

    def _symbols(self, word):
        """The ids of the characters of ``word`` before any merge (step 2 above)."""
        vocab, ids, unk = self.vocab, [], None        # unk: a pending unk id, not yet added
        for c in word:
            i = vocab.get(c)
            if i is not None:
                if unk is not None:
                    ids.append(unk)
                    unk = None
                ids.append(i)
                continue
            if self.byte_fallback:
                byte_ids = [vocab.get(f"<0x{b:02X}>") for b in c.encode("utf-8")]
                if None not in byte_ids:
                    ids.extend(byte_ids)             # (a pending unk stays pending, as in
                    continue                         # the library)
            if self.unk_id is not None:
                if unk is not None and not self.fuse_unk:
                    ids.append(unk)
                unk = self.unk_id
        if unk is not None:
            ids.append(unk)
        return ids
