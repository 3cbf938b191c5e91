"""Terminal pictures (plain strings, NumPy only): :func:`bar_chart` draws the most probable
tokens with bars, marking removed tokens and the chosen one; :func:`strategy_table` compares
strategies side by side; :func:`inspect_text` is the two together (``npgpt inspect``).

Shapes: V = vocabulary size. probs (V,) float -- one next-token distribution.
"""

from __future__ import annotations

import numpy as np

from ..config import positive_int
from ._shared import (checked_index, checked_mask, checked_probs, checked_report, labeler,
                      top_columns)


def _prob_text(q) -> str:
    """A probability as the terminal pictures print it: three decimals, but "<0.001" for a
    positive one that would print as 0.000 (so "0.000" means exactly 0).

    >>> _prob_text(0.25), _prob_text(4e-4), _prob_text(0.0)
    ('0.250', '<0.001', '0.000')
    """
    return "<0.001" if 0 < q < 0.0005 else f"{q:.3f}"


def bar_chart(probs, labels=None, top=10, kept=None, chosen=None, width=40, before=None,
              title=None, ascii=False):
    """A terminal bar chart of the most probable tokens.

    One line per token, most probable first (ranked by ``before`` when given, so the model's
    ranking stays fixed while a strategy changes the numbers). The first column marks the
    token: ``>`` the chosen one, ``x`` a removed one (``kept`` False), blank otherwise.
    Bars are proportional to the probability (the largest shown fills ``width``); removed
    tokens are drawn with a light bar of their ``before`` probability (or their own) and
    the word "removed". A positive probability too small for half a block is drawn as a
    thin mark ``▏`` (``|`` in ASCII) and, below 0.0005, printed as ``<0.001``; a
    probability of exactly 0 draws no bar and prints as ``0.000``. Tokens are named in
    quotes (``'a'``, ``' '``, ``'\\''``, ``'\\n'``).

    Parameters
    ----------
    probs : float array (V,)
        Probabilities to draw (e.g. after a strategy). Must sum to 1.
    labels : None, sequence of V str, tokenizer or callable
    top : int >= 1
        How many tokens to list (the chosen token is always listed, after the others if it
        ranks lower).
    kept : bool array (V,), optional
        Which tokens a strategy keeps; default: ``probs > 0``.
    chosen : int, optional
        The chosen token id.
    width : int >= 1
        Characters of the longest bar.
    before : float array (V,), optional
        Probabilities before the strategy; each line then reads ``before -> after``.
    title : str, optional
        A first line.
    ascii : bool
        Draw bars with ``#`` and ``.`` instead of block characters.

    Returns
    -------
    str (no trailing newline)

    Examples
    --------
    >>> print(bar_chart(np.array([0.7496, 0.25, 4e-4]), labels=["yes", "no", "'"], chosen=0,
    ...                 width=8, ascii=True))
    > 'yes'  ########  0.750  chosen
      'no'   ###       0.250
      '\\''   |         <0.001
    """
    p = checked_probs(probs)
    V = p.shape[0]
    positive_int(top, "top")
    positive_int(width, "width")
    b = None if before is None else checked_probs(before, "before")
    if b is not None and b.shape != p.shape:
        raise ValueError(f"before has shape {b.shape} but probs has shape {p.shape}")
    keep = p > 0 if kept is None else checked_mask(kept, "kept", V)
    if chosen is not None:
        chosen = checked_index(chosen, "chosen", V)
    name = labeler(labels, V)
    rank = p if b is None else b
    ids = top_columns(rank, [] if chosen is None else [chosen], int(top))
    full, light, thin = ("#", ".", "|") if ascii else ("█", "░", "▏")
    scale = max(float(np.max(np.r_[p[ids], rank[ids]])), 1e-12)
    names = [name(i) for i in ids]
    name_w = max(len(s) for s in names)
    lines = [] if title is None else [title]
    for i, s in zip(ids, names):
        mark = ">" if i == chosen else ("x" if not keep[i] else " ")
        shown = p[i] if keep[i] else rank[i]
        n = int(round(width * shown / scale))
        bar = (full if keep[i] else light) * n if n > 0 else (thin if shown > 0 else "")
        if b is None:
            nums = _prob_text(p[i]) if keep[i] else f"{_prob_text(p[i])}  removed"
        else:
            nums = f"{_prob_text(b[i])} -> " + (_prob_text(p[i]) if keep[i] else "removed")
        tail = "  chosen" if i == chosen else ""
        lines.append(f"{mark} {s:<{name_w}}  {bar:<{width}}  {nums}{tail}".rstrip())
    return "\n".join(lines)


def strategy_table(report, labels=None, top=10):
    """A table comparing strategies: one column per strategy, one line per token.

    The first column is the model's probability (softmax of the logits); each strategy
    column shows its probability after the rule, ``-`` where the rule removed the token and
    a ``*`` after the token it chose. The header names each strategy, and below it its
    parameter (the row's label ``"top-p (top_p=0.9)"`` split at its parenthesis). The last
    lines say how many tokens each strategy keeps and which it chose. Probabilities print
    as in :func:`bar_chart` (``<0.001``: kept but tiny).

    Parameters
    ----------
    report : list of dict from :func:`strategy_report`
    labels : None, sequence of V str, tokenizer or callable
    top : int >= 1
        Tokens listed (most probable first), plus every chosen token.

    Returns
    -------
    str (no trailing newline)

    Examples
    --------
    >>> from npgpt.viz import strategy_report
    >>> rows = strategy_report(np.log([0.5, 0.3, 0.2]), seed=0, strategies=("greedy", "top-k"), top_k=2)
    >>> print(strategy_table(rows, labels=["a", "b", "c"]))
    token   model  greedy   top-k
                              k=2
    'a'     0.500  1.000*   0.625
    'b'     0.300       -  0.375*
    'c'     0.200       -       -
    kept                1       2
    chosen            'a'     'b'
    """
    rows = checked_report(report)
    before = checked_probs(rows[0]["probs_before"], "probs_before")
    V = before.shape[0]
    positive_int(top, "top")
    name = labeler(labels, V)
    chosen = [checked_index(r["chosen"], "chosen", V) for r in rows]
    ids = top_columns(before, chosen, int(top))
    names, params = zip(*[_split_label(r["label"]) for r in rows])
    header = [["token", "model", *names]] + ([["", "", *params]] if any(params) else [])
    body = []
    for i in ids:
        line = [name(i), _prob_text(before[i])]
        for r, c in zip(rows, chosen):
            after = np.asarray(r["probs_after"])
            cell = _prob_text(after[i]) if r["kept"][i] else "-"
            line.append(cell + ("*" if i == c else ""))
        body.append(line)
    body.append(["kept", ""] + [str(int(np.sum(r["kept"]))) for r in rows])
    body.append(["chosen", ""] + [name(c) for c in chosen])
    table = header + body
    widths = [max(len(line[j]) for line in table) for j in range(len(header[0]))]
    out = []
    for line in table:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _split_label(label: str) -> tuple:
    """A row label's strategy and parameter: "top-p (top_p=0.9)" -> ("top-p", "top_p=0.9")."""
    head, paren, rest = label.partition(" (")
    return (head, rest[:-1]) if paren and rest.endswith(")") else (label, "")


def inspect_text(report, labels=None, top=10, width=30):
    """The terminal picture of ``npgpt inspect``: the model's distribution as a bar chart,
    then :func:`strategy_table` (probabilities after each strategy, its choice).

    Parameters
    ----------
    report : list of dict from :func:`strategy_report`
    labels : None, sequence of V str, tokenizer or callable
    top : int >= 1, tokens listed
    width : int >= 1, characters of the longest bar

    Returns
    -------
    str (no trailing newline)

    Examples
    --------
    >>> from npgpt.viz import strategy_report
    >>> rows = strategy_report(np.log([0.5, 0.3, 0.2]), seed=0, strategies=("greedy",))
    >>> print(inspect_text(rows, labels=["a", "b", "c"], width=10))
    next-token distribution (top 3 of 3):
      'a'  ██████████  0.500
      'b'  ██████      0.300
      'c'  ████        0.200
    <BLANKLINE>
    token   model  greedy
    'a'     0.500  1.000*
    'b'     0.300       -
    'c'     0.200       -
    kept                1
    chosen            'a'
    """
    rows = checked_report(report)
    before = checked_probs(rows[0]["probs_before"], "probs_before")
    positive_int(top, "top")
    shown = min(int(top), before.shape[0])
    chart = bar_chart(before, labels=labels, top=shown, width=width,
                      title=f"next-token distribution (top {shown} of {before.shape[0]}):")
    return chart + "\n\n" + strategy_table(rows, labels=labels, top=top)
