"""The byte-pair merge rule: one pre-token's bytes -> tokens, as tiktoken does it.

Types: a piece and a token are ``bytes``; ``ranks`` maps token bytes -> rank (lower merges
first).

- :func:`byte_pair_merge` -- merge the adjacent pair of lowest rank until none is a token
  (the plain quadratic scan), which hands long pieces to
- :func:`byte_pair_merge_heap` -- the same rule with a heap, O(n log n).

:class:`~.bpe.BPETokenizer` encodes each pre-token with them.
"""

from __future__ import annotations

import heapq


def byte_pair_merge(piece, ranks, max_rank=None):
    """Split ``piece`` (bytes) into tokens by merging adjacent parts in rank order.

    Start from single bytes; repeatedly merge the adjacent pair whose concatenation has the
    lowest rank in ``ranks`` (bytes -> rank; the leftmost pair on ties, which can only be two
    copies of the same bytes), until no adjacent pair is a token. This is tiktoken's rule.
    With ``max_rank`` only ranks < max_rank are used.

    Short pieces use the plain quadratic scan; long ones a heap (O(n log n)), same result.

    Examples
    --------
    >>> byte_pair_merge(b"aaab", {b"aa": 0, b"ab": 1, b"aab": 2})
    [b'aa', b'ab']
    """
    n = len(piece)
    if n > 48:
        return byte_pair_merge_heap(piece, ranks, max_rank)
    parts = [piece[i:i + 1] for i in range(n)]
    get = ranks.get
    while len(parts) > 1:
        best, where = max_rank, -1
        for i in range(len(parts) - 1):
            r = get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, where = r, i
        if where < 0:
            break
        parts[where:where + 2] = [parts[where] + parts[where + 1]]
    return parts


def byte_pair_merge_heap(piece, ranks, max_rank=None):
    """The faster form of :func:`byte_pair_merge` for long pieces: the same merges, O(n log n).

    The quadratic scan looks at every adjacent pair again after each merge; here the
    candidate pairs wait in a heap and only the two pairs next to a merge are looked up anew.
    Parts are spans ``piece[s:end[s]]``; a heap entry ``(rank, s, e)`` says "the part at s
    and the part after it together span s..e and have this rank". An entry is stale unless s
    is still a part start whose next part ends exactly at e (the rank depends only on the
    bytes piece[s:e], so a live entry is always current). Popping the smallest (rank, s) is
    "lowest rank, leftmost on ties".

    Examples
    --------
    >>> byte_pair_merge_heap(b"aaab", {b"aa": 0, b"ab": 1, b"aab": 2})
    [b'aa', b'ab']
    """
    n = len(piece)
    get = ranks.get
    end = list(range(1, n + 1))          # end[s]: end of the part starting at s; -1 if merged away
    prev = list(range(-1, n - 1))        # prev[s]: start of the part before the one at s
    heap = []
    for s in range(n - 1):
        r = get(piece[s:s + 2])
        if r is not None and (max_rank is None or r < max_rank):
            heap.append((r, s, s + 2))
    heapq.heapify(heap)
    while heap:
        r, s, e = heapq.heappop(heap)
        m = end[s]
        if m == -1 or m >= e or end[m] != e:
            continue                     # stale
        end[s], end[m] = e, -1           # merge [s, m) + [m, e) -> [s, e)
        if e < n:
            prev[e] = s
            r2 = get(piece[s:end[e]])
            if r2 is not None and (max_rank is None or r2 < max_rank):
                heapq.heappush(heap, (r2, s, end[e]))
        p = prev[s]
        if p >= 0:
            r2 = get(piece[p:e])
            if r2 is not None and (max_rank is None or r2 < max_rank):
                heapq.heappush(heap, (r2, p, e))
    parts, s = [], 0
    while s < n:
        parts.append(piece[s:end[s]])
        s = end[s]
    return parts
