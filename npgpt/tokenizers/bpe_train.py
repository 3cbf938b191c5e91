"""Learning BPE merges from text (minbpe's RegexTokenizer algorithm, deterministic).

Shapes and types: a token is an int id (0..255 are the single bytes); a word is a
``list[int]`` of ids, one per pre-token of the text, with ``freq[k]`` the number of times
word ``k`` occurs; a pair is a tuple ``(id_a, id_b)`` of two adjacent ids; ``merges`` is a
``list`` of pairs in rank order, merge ``i`` making the token with id ``256 + i``.

The loop, in :func:`train_bpe`:

1. cut the text into pre-tokens and count each distinct one (``_count_words``);
2. count the adjacent pairs inside the words, weighted by the words' counts, and note which
   words hold each pair (``_count_pairs``);
3. take the most frequent pair (``_most_frequent_pair``), give it the next id, and replace
   it in every word that holds it (``_merge_everywhere``, which calls ``_merge`` on each
   word and updates the pair counts of those words only);
4. repeat 3 until the vocabulary is full or no pair is left.

:meth:`npgpt.tokenizers.BPETokenizer.train` calls :func:`train_bpe` and builds the tokenizer.
"""

from __future__ import annotations

from collections import Counter

from .base import check_text
from .patterns import compile_pattern


def train_bpe(text, vocab_size, pattern="gpt2", special_tokens=()):
    """Learn ``vocab_size - 256 - len(special_tokens)`` merges (at most) from ``text``.

    Start from the 256 byte tokens (ids 0..255) and the pre-tokens of ``text``; then
    repeatedly count adjacent pairs inside pre-tokens, merge the most frequent pair
    everywhere (left to right, non-overlapping) into a new token with the next id, until
    ``vocab_size`` is reached or no pair is left. Ties in frequency go to the smallest
    pair ``(id_a, id_b)``. A pair whose bytes are already a token is skipped.
    Special tokens get the ids after the merges.

    Parameters
    ----------
    text : str
    vocab_size : int
        At least ``256 + len(special_tokens)``; the result never exceeds it (it is smaller
        when the text runs out of pairs).
    pattern : str
        ``"gpt2"`` or a Python ``re`` pattern.
    special_tokens : sequence of str

    Returns
    -------
    merges : list[tuple[int, int]]
        In rank order: merge ``i`` joins the tokens ``merges[i]`` into the token ``256 + i``.
    special_tokens : dict[str, int]
        Each special token and its id.

    Examples
    --------
    >>> train_bpe("aaab aaab", vocab_size=259, special_tokens=["<|end|>"])
    ([(97, 97), (97, 98)], {'<|end|>': 258})
    >>> train_bpe("abab", vocab_size=300)      # the text runs out of pairs
    ([(97, 98), (256, 256)], {})
    """
    special_tokens = _check_train_args(text, vocab_size, special_tokens)
    words, freq = _count_words(text, pattern)
    stats, where = _count_pairs(words, freq)
    vocab = {i: bytes([i]) for i in range(256)}
    known = set(vocab.values())
    merges = []
    num_merges = vocab_size - 256 - len(special_tokens)
    while len(merges) < num_merges:
        pair = _most_frequent_pair(stats)
        if pair is None:
            break
        token = vocab[pair[0]] + vocab[pair[1]]
        if token in known:           # same bytes as an existing token: never merge it
            del stats[pair]
            continue
        new = 256 + len(merges)
        merges.append(pair)
        vocab[new] = token
        known.add(token)
        stats = _merge_everywhere(pair, new, words, freq, stats, where)
    first = 256 + len(merges)
    return merges, {t: first + i for i, t in enumerate(special_tokens)}


def _check_train_args(text, vocab_size, special_tokens):
    """Check the arguments of :func:`train_bpe`; return ``special_tokens`` as a list."""
    check_text(text)
    special_tokens = list(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size must be at least 256 + {len(special_tokens)} special "
                         f"tokens = {256 + len(special_tokens)}, got {vocab_size}")
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"duplicate special tokens: {special_tokens}")
    return special_tokens


def _count_words(text, pattern):
    """(words, freq): each distinct pre-token of ``text`` as byte ids, and its count."""
    counts = Counter(compile_pattern(pattern)(text))
    words = [list(w.encode("utf-8")) for w in counts]
    return words, list(counts.values())


def _count_pairs(words, freq):
    """(stats, where): pair -> weighted count, and pair -> indices of the words holding it."""
    stats = Counter()
    where = {}
    for k, w in enumerate(words):
        for pair in zip(w, w[1:]):
            stats[pair] += freq[k]
            where.setdefault(pair, set()).add(k)
    return stats, where


def _most_frequent_pair(stats):
    """The pair with the highest positive count, the smallest pair on ties; None if none."""
    best = None
    for pair, c in stats.items():
        if c <= 0:
            continue
        if best is None or c > best[1] or (c == best[1] and pair < best[0]):
            best = (pair, c)
    return None if best is None else best[0]


def _merge(ids, pair, new):
    """``ids`` with every occurrence of ``pair`` replaced by ``new``, left to right.

    >>> _merge([97, 97, 97, 98], (97, 97), 256)
    [256, 97, 98]
    """
    a, b = pair
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            merged.append(new)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def _merge_everywhere(pair, new, words, freq, stats, where):
    """Merge ``pair`` into ``new`` in every word that holds it; return the updated counts.

    Only the words that hold ``pair`` change: their old pairs are taken out of ``stats`` and
    their new pairs put in (``words`` and ``where`` are updated in place). Pairs whose count
    drops to zero are dropped from the returned counts.
    """
    for k in sorted(where.pop(pair, ())):
        w, f = words[k], freq[k]
        for p in zip(w, w[1:]):
            stats[p] -= f
        merged = _merge(w, pair, new)
        words[k] = merged
        for p in zip(merged, merged[1:]):
            stats[p] += f
            where.setdefault(p, set()).add(k)
    return Counter({p: c for p, c in stats.items() if c > 0})
