"""SentencePiece's BPE as pure functions (``normalizer.cc``, ``bpe_model.cc``): the text as
the merge loop sees it, the merge loop, and UTF-8 decoding one character at a time.

Types: text is a ``str``; a piece or symbol is a ``str`` (a space spelled ``"▁"``);
``scores`` maps a piece to its score. :class:`~.sentencepiece.SentencePieceTokenizer` runs
them.
"""

from __future__ import annotations

import heapq
import re

SPACE = "\u2581"                        # "▁", what SentencePiece writes for a space


def normalize(text, add_dummy_prefix=True, remove_extra_whitespaces=False,
              escape_whitespaces=True):
    """SentencePiece's identity normalizer (``normalizer.cc``): spaces only.

    With ``remove_extra_whitespaces``, leading spaces go, a run of spaces becomes one and
    trailing spaces (``"▁"`` after escaping) go. Then ``"▁"`` in front if
    ``add_dummy_prefix``, and every space -> ``"▁"`` if ``escape_whitespaces``. A text that
    is empty (after removing spaces) stays empty. Only U+0020 counts as a space.

    Examples
    --------
    >>> normalize("Hello  world "), normalize("  Hello  world ", remove_extra_whitespaces=True)
    ('▁Hello▁▁world▁', '▁Hello▁world')
    >>> normalize(""), normalize("   ", remove_extra_whitespaces=True)
    ('', '')
    """
    if remove_extra_whitespaces:
        text = re.sub(" {2,}", " ", text.lstrip(" "))
    if not text:
        return ""
    if add_dummy_prefix:
        text = " " + text
    if escape_whitespaces:
        text = text.replace(" ", SPACE)
    if remove_extra_whitespaces:
        text = text.rstrip(SPACE if escape_whitespaces else " ")
    return text


def merge_pieces(symbols, scores, frozen=(), unused=frozenset()):
    """SentencePiece's BPE merge loop on one normalized text (``bpe_model.cc``).

    Repeatedly merge the adjacent pair of symbols whose concatenation is a piece of the
    highest score (the leftmost pair on ties) until no pair is a piece. A heap holds the
    candidate pairs ``(-score, left, right, length)``; an entry is stale when one of its
    symbols was merged away or grew since (the lengths no longer add up).

    Parameters
    ----------
    symbols : list of str
        The characters (or user-defined pieces) of the text, in order.
    scores : dict[str, float]
        The pieces that merges may produce (normal, user-defined, unused) and their scores.
    frozen : sequence of bool
        Symbols never merged (the user-defined pieces matched in the text).
    unused : set of str
        Pieces of type *unused*: a merge into one is undone at the end, back into the two
        symbols it was made of (the last pair that proposed it, as the library's
        ``rev_merge`` records them).

    Returns
    -------
    list of str, the pieces.

    Examples
    --------
    >>> merge_pieces(list("abab"), {"ab": -1.0, "ba": -0.5, "bab": -0.1})
    ['a', 'bab']
    >>> merge_pieces(list("aaa"), {"aa": 0.0})            # a tie: the leftmost pair first
    ['aa', 'a']
    """
    symbols = list(symbols)
    n = len(symbols)
    frozen = list(frozen) or [False] * n
    nxt = list(range(1, n)) + [-1]               # nxt[i]: the symbol after i, -1 at the end
    prv = list(range(-1, n - 1))                 # prv[i]: the symbol before i
    heap, halves = [], {}

    def propose(left, right):
        if left < 0 or right < 0 or frozen[left] or frozen[right]:
            return
        piece = symbols[left] + symbols[right]
        score = scores.get(piece)
        if score is not None:
            heapq.heappush(heap, (-score, left, right, len(piece)))
            if piece in unused:
                halves[piece] = (symbols[left], symbols[right])

    for i in range(1, n):
        propose(i - 1, i)
    while heap:
        _, left, right, length = heapq.heappop(heap)
        a, b = symbols[left], symbols[right]
        if not a or not b or len(a) + len(b) != length:
            continue                                      # stale: a symbol changed since
        symbols[left], symbols[right] = a + b, ""         # merge [left] + [right] -> [left]
        nxt[left] = nxt[right]
        if nxt[left] >= 0:
            prv[nxt[left]] = left
        propose(prv[left], left)
        propose(left, nxt[left])
    out = []

    def unmerge(piece):
        if piece in halves:
            unmerge(halves[piece][0])
            unmerge(halves[piece][1])
        else:
            out.append(piece)
    for s in symbols:
        if s:
            unmerge(s) if unused else out.append(s)
    return out


def decode_utf8(data):
    """``data`` as text, one character at a time: a byte that does not start a valid UTF-8
    character becomes U+FFFD on its own (the library's rule; Python's ``errors="replace"``
    replaces a broken sequence as a whole).

    >>> decode_utf8(b"\\xc3\\xa9\\xe2\\x82"), b"\\xe2\\x82".decode("utf-8", "replace")
    ('é��', '�')
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, pos = [], 0
    while pos < len(data):
        lead = data[pos]
        size = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        try:
            out.append(data[pos:pos + size].decode("utf-8"))
            pos += size
        except UnicodeDecodeError:
            out.append("\ufffd")
            pos += 1
    return "".join(out)
