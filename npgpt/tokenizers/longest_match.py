"""Leftmost-longest matching of many strings at once, in time linear in the text.

Shapes and types: patterns are non-empty ``str``; a match is ``(start, end, pattern)``
with ``text[start:end] == pattern``.

Added tokens (``<|im_start|>``, ``[INST]``, 30,000 of them in some files) are cut out of
the text as the ``tokenizers`` library does with its Aho-Corasick automaton in
``LeftmostLongest`` mode: the match that starts first, the longest of those starting
there; then the search goes on after it. One regex alternation of every token, longest
first, finds the same matches, but ``re`` compiles it in time that grows faster than the
number of tokens (40,000 tokens: more than a minute) and may try every alternative at
every position.

:class:`LongestMatcher` instead needs, for every position ``i`` of the text, the length of
the longest pattern that *starts* at ``i``. Read backwards, that is the longest reversed
pattern that *ends* at ``i`` -- what an Aho-Corasick automaton of the reversed patterns
gives, in one pass over the reversed text, for every position at once:

- build: a trie of the reversed patterns; each state's *fail* link is the state of its
  longest proper suffix that is also in the trie (breadth first, as Aho and Corasick);
  ``best[s]`` is the length of the longest pattern that is a suffix of state ``s``'s
  string -- its own length if a pattern ends there, else ``best[fail[s]]``;
- scan: from the end of the text to the start, follow the character's edge (or fail
  links until there is one); ``best`` of the state reached at ``i`` is the longest
  pattern starting at ``i``.

Only stretches that can hold a match are scanned: ``longest`` characters from each
position holding the first character of some pattern (found with one regex search), so
ordinary text with ``<|...|>`` tokens costs a regex search. Building is linear in the
total length of the patterns, scanning linear in the text.
"""

from __future__ import annotations

import re


class LongestMatcher:
    """Leftmost-longest, non-overlapping matches of ``patterns`` in a text.

    Parameters
    ----------
    patterns : iterable of str
        Non-empty, distinct.

    Examples
    --------
    >>> m = LongestMatcher(["ab", "abc", "b", "cd"])
    >>> m.find_iter("abcd bcd")
    [(0, 3, 'abc'), (5, 6, 'b'), (6, 8, 'cd')]
    """

    def __init__(self, patterns):
        patterns = list(patterns)
        if any(not p for p in patterns):
            raise ValueError("patterns must be non-empty strings")
        self.longest = max(map(len, patterns), default=0)
        goto, best = [{}], [0]                      # state 0: the empty string
        for p in patterns:
            s = 0
            for c in reversed(p):
                nxt = goto[s].get(c)
                if nxt is None:
                    nxt = goto[s][c] = len(goto)
                    goto.append({})
                    best.append(0)
                s = nxt
            best[s] = len(p)
        fail = [0] * len(goto)
        queue = list(goto[0].values())
        for s in queue:                                   # breadth first: fail[s] is ready
            for c, t in goto[s].items():
                f = fail[s]
                while f and c not in goto[f]:
                    f = fail[f]
                fail[t] = goto[f][c] if c in goto[f] and goto[f][c] != t else 0
                if not best[t]:
                    best[t] = best[fail[t]]
                queue.append(t)
        self._goto, self._fail, self._best = goto, fail, best
        firsts = sorted({p[0] for p in patterns})
        self._first = re.compile("[" + "".join(map(re.escape, firsts)) + "]") if firsts else None

    def _longest_at(self, text, start, end):
        """``{i: length of the longest pattern starting at i}`` for ``start <= i < end``
        (positions without one left out); patterns may run to the end of the text."""
        goto, fail, best = self._goto, self._fail, self._best
        out, s = {}, 0
        for i in range(end - 1, start - 1, -1):
            c = text[i]
            while s and c not in goto[s]:
                s = fail[s]
            s = goto[s].get(c, 0)
            if best[s]:
                out[i] = best[s]
        return out

    def find_iter(self, text):
        """The leftmost-longest matches in ``text``, in order: ``[(start, end, pattern)]``.

        Each stretch ``[i, i + longest)`` after a position ``i`` holding a pattern's first
        character is scanned (overlapping stretches as one), so the work is at most
        ``len(text)`` steps of the automaton.

        Examples
        --------
        >>> LongestMatcher(["<|a|>", "<|ab|>", "<"]).find_iter("x<|ab|><|a|<")
        [(1, 7, '<|ab|>'), (7, 8, '<'), (11, 12, '<')]
        """
        if self._first is None:
            return []
        longest, found = {}, []
        lo = hi = 0                                       # the stretch being gathered
        for m in self._first.finditer(text):
            i = m.start()
            if i > hi:
                longest.update(self._longest_at(text, lo, hi))
                lo = i
            hi = min(i + self.longest, len(text))
        longest.update(self._longest_at(text, lo, hi))
        done = 0
        for i in sorted(longest):
            if i >= done:
                done = i + longest[i]
                found.append((i, done, text[i:done]))
        return found
