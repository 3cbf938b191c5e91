"""Pictures: what the model predicts and what each decoding strategy does with it.

Shapes: V = vocabulary size, T = sequence length, C = d_model, L = layers, H = heads.
probs (V,) float -- one next-token distribution; logits (V,) float; ids (T,) int;
attention: L arrays (H, T, T).

Two kinds of pictures:

- **Terminal pictures** (plain strings, NumPy only): :func:`bar_chart` draws the most
  probable tokens with bars, marking removed tokens and the chosen one;
  :func:`strategy_table` compares strategies side by side. :func:`strategy_report` is the
  data behind both: for one next-token distribution, what greedy, temperature, top-k, top-p,
  min-p and typical sampling keep, the probabilities after each rule, and the token each
  would choose.
- **matplotlib pictures** (the seed tutorial's heatmaps): :func:`plot_heatmap` (exactly as
  the seed calls it: ``plot_heatmap(probs, title, selected_idx)``), :func:`plot_strategies`
  (one heatmap row per strategy), :func:`plot_embeddings` (token embedding, position
  embedding, their sum) and :func:`plot_attention` (one map per layer and head).
  matplotlib is imported only inside these functions; without it they raise ImportError
  naming the ``plot`` extra (``pip install "npgpt[plot]"``). They build
  ``matplotlib.figure.Figure`` objects directly (no pyplot state, no ``show()``), so they work
  with any backend, including Agg on servers; each returns its Figure and, given ``path``,
  saves it as an image (PNG by the file name's extension).

Labels name tokens in pictures. Wherever ``labels`` is accepted it may be None (token ids
are shown), a sequence of V strings (``labels[i]`` names token ``i``), a tokenizer (anything
with ``decode(ids)``; each token is decoded alone), or a callable ``id -> str``. Every
picture shows a token's text the same way: in single quotes with Python's escapes
(``'a'``, ``' '``, ``'\\''``, ``'\\n'``), so whitespace and quotes read alike; token
ids (no labels) are shown bare.

A token's probability is called ``q`` in the pictures, so that ``p`` names nothing but a
strategy's parameter (``top_p``, ``min_p``, ``typical_p``).
"""

from __future__ import annotations

import numbers
import operator
import os

import numpy as np

from . import sampling
from .config import positive_int

__all__ = ["STRATEGIES", "strategy_report", "bar_chart", "strategy_table", "inspect_text",
           "plot_heatmap", "plot_strategies", "plot_embeddings", "plot_attention", "token_label"]

#: The strategies :func:`strategy_report` knows, in the order it reports them.
STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "min-p", "typical")

_PLOT_EXTRA_MESSAGE = ('npgpt.viz plotting needs matplotlib, which is not installed; '
                       'install the plot extra: pip install "npgpt[plot]"')
_MAX_LABEL = 14          # characters of a token label shown in tables and tick labels
_ALL_COLUMNS_UP_TO = 32  # heatmaps show every token up to this vocabulary size
_TOP_COLUMNS = 40        # ... and otherwise this many of the most probable tokens
_ANNOTATE_UP_TO = 20     # cells are annotated in a larger font up to this many columns
_REMOVED_GREY = "#d9d9d9"  # heatmap cells of tokens a rule removed (probability 0)


# ------------------------------------------------------------------------------ helpers
def _matplotlib():
    """The Figure class and a Rectangle patch class, or ImportError naming the extra."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ImportError(_PLOT_EXTRA_MESSAGE) from None
    return Figure, Rectangle


def _index(value, name, size):
    """An int in [0, size), else ValueError naming the value."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer token id, got {value!r}")
    try:
        value = operator.index(value)          # ints, NumPy ints, 0-d integer tensors
    except TypeError:
        raise ValueError(f"{name} must be an integer token id, got {value!r}") from None
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in [0, {size}) for a vocabulary of size {size}, got {value}")
    return value


def _vector(x, name):
    """A 1-D float64 array from (V,) or (1, V) input (e.g. the seed's ``logits[:, -1, :]``)."""
    if hasattr(x, "detach"):                      # a torch tensor, as in the seed
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]                                              # (1, V) -> (V,)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (V,) or (1, V) with V >= 1, got shape {np.shape(x)}")
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _probs(x, name="probs"):
    """Validated probabilities (V,): finite, >= 0, summing to 1 within 1e-3."""
    p = _vector(x, name)
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contain NaN or inf")
    if (p < 0).any():
        raise ValueError(f"{name} must be >= 0, got minimum {p.min():g}")
    if abs(p.sum() - 1.0) > 1e-3:
        raise ValueError(f"{name} must sum to 1, got sum {p.sum():.6g}")
    return p


def _mask(x, name, V):
    m = np.asarray(x)
    if m.shape != (V,):
        raise ValueError(f"{name} must have shape ({V},), got shape {m.shape}")
    return m.astype(bool)


def _quoted(text, limit=_MAX_LABEL):
    """A token's text as every picture shows it: always in single quotes, with Python's
    escapes for a quote, a backslash, a newline or tab and other invisible characters, so a
    space, an apostrophe and a newline read alike; cut to ``limit`` characters with "…".

    >>> print(*[_quoted(t) for t in ["a", " ", "'", '"', "\\n", "\\\\", "To be or not to be"]])
    'a' ' ' '\\'' '"' '\\n' '\\\\' 'To be or no…'
    """
    pieces = [repr(ch + '"')[1:-2] for ch in text]     # the '"' makes repr pick single quotes
    body = "".join(pieces)
    if len(body) + 2 > limit:
        body, room = "", limit - 3
        for piece in pieces:
            if len(body) + len(piece) > room:
                break
            body += piece
        body += "…"
    return f"'{body}'"


def _labeler(labels, V):
    """A function id -> display string for ``labels`` (see the module docstring)."""
    if labels is None:
        return lambda i: str(i)
    if hasattr(labels, "decode") and not isinstance(labels, (str, bytes)):
        def decode(i, tok=labels):
            try:
                return _quoted(tok.decode([i]))
            except (ValueError, KeyError, IndexError, UnicodeDecodeError):
                return f"<{i}>"
        return decode
    if callable(labels):
        return lambda i: _quoted(str(labels(i)))
    if isinstance(labels, str):
        raise ValueError("labels must be a sequence of strings (one per token), not one str")
    labels = list(labels)
    if len(labels) != V:
        raise ValueError(f"labels has {len(labels)} entries but the vocabulary has {V} tokens")
    return lambda i: _quoted(str(labels[i]))


def token_label(labels, token_id, vocab_size):
    """The display string of one token (how every picture in this module names it).

    >>> print(token_label(["hello", "world"], 1, 2), token_label(["'", " "], 0, 2))
    'world' '\\''
    >>> token_label(None, 7, 10)                     # no labels: the token id
    '7'
    """
    return _labeler(labels, vocab_size)(_index(token_id, "token_id", vocab_size))


def _save(fig, path):
    """Save ``fig`` to the file ``path`` (its format from the extension), atomically: a file
    already there is replaced whole, never left half-written; a folder there is refused
    (IsADirectoryError) and nothing else beside it is touched."""
    if path is not None:
        from .io.files import atomic_write

        path = os.fspath(path)
        extension = os.path.splitext(path)[1].lstrip(".").lower()
        if not extension:                         # matplotlib's rule: the default format, added
            extension = fig.canvas.get_default_filetype()
            path = f"{path}.{extension}"
        atomic_write(path, lambda f: fig.savefig(f, format=extension, dpi=110))
    return fig


# ---------------------------------------------------------------------- strategy report
def _draw_seed(seed, rng) -> int:
    """The one seed every row of a report draws with: from ``rng``, else ``seed``, else fresh."""
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return int(rng.integers(2**63))
    if seed is None:
        return int(np.random.default_rng().integers(2**63))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _strategy_settings(temperature, top_k, top_p, min_p, typical_p) -> dict:
    """Strategy name -> (keyword arguments of :func:`npgpt.sampling.distribution`, row label).

    A parameter that is None leaves its strategy out (its label is then never used). Labels
    name a parameter as generate() does (``top_p=0.9``), never a bare "p": the pictures
    call a probability ``q``.
    """
    def label(text, value):
        return "" if value is None else text.format(value)

    return {
        "greedy": ({"temperature": 0.0}, "greedy"),
        "temperature": ({"temperature": temperature}, label("temperature (T={:g})", temperature)),
        "top-k": ({"top_k": top_k}, f"top-k (k={top_k})"),
        "top-p": ({"top_p": top_p}, label("top-p (top_p={:g})", top_p)),
        "min-p": ({"min_p": min_p}, label("min-p (min_p={:g})", min_p)),
        "typical": ({"typical_p": typical_p}, label("typical (typical_p={:g})", typical_p)),
    }


def strategy_report(logits, seed=None, rng=None, *, temperature=0.8, top_k=5, top_p=0.9,
                    min_p=0.1, typical_p=0.9, strategies=STRATEGIES):
    """For one next-token distribution: what each strategy keeps, its probabilities, its pick.

    Each strategy is applied on its own to the raw logits (temperature 1 except in the
    "temperature" row), so the rows compare the rules themselves:

    ===========  ===============================================================
    greedy       keep argmax(logits) (temperature 0)
    temperature  p ∝ exp(logits / t): nothing removed, the shape changes
    top-k        keep logits >= the k-th largest (ties kept)
    top-p        keep the smallest most-probable set with mass >= p
    min-p        keep p_i >= min_p · max_j p_j
    typical      keep tokens whose surprisal -log p_i is closest to the entropy, mass >= p
    ===========  ===============================================================

    The choice is drawn by :func:`npgpt.sampling.sample` from ``probs_after``. Every row
    draws with the *same* random number (one Generator seeded identically per row), so
    differences between rows come from the rules alone, and a row's choice does not depend
    on which other rows are present. Greedy uses no randomness.

    Parameters
    ----------
    logits : float array (V,) (or (1, V))
        Next-token logits.
    seed : int, optional
        Seed for the draw; ignored if ``rng`` is given. None: fresh entropy.
    rng : numpy.random.Generator, optional
        The draw's seed is taken from it (one integer).
    temperature, top_k, top_p, min_p, typical_p : the strategies' parameters
        ``None`` leaves that strategy out (``temperature=None`` drops the temperature row).
    strategies : sequence of str
        Which of :data:`STRATEGIES` to report, in this order.

    Returns
    -------
    list of dict, one per strategy, with keys
        ``name`` (e.g. "top-k"), ``label`` (e.g. "top-k (k=5)"), ``params`` (dict),
        ``probs_before`` float64 (V,) (softmax of the logits), ``probs_after`` float64 (V,)
        (zeros where removed), ``kept`` bool (V,), ``chosen`` int.

    Examples
    --------
    >>> rows = strategy_report(np.log([0.5, 0.3, 0.2]), seed=0, top_k=2)
    >>> [r["name"] for r in rows]
    ['greedy', 'temperature', 'top-k', 'top-p', 'min-p', 'typical']
    >>> rows[2]["kept"].tolist(), rows[0]["chosen"]
    ([True, True, False], 0)
    """
    x = _vector(logits, "logits")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or isinstance(strategies, str):
        raise ValueError(f"strategies must be names from {STRATEGIES}, got {strategies!r}")
    draw_seed = _draw_seed(seed, rng)
    settings = _strategy_settings(temperature, top_k, top_p, min_p, typical_p)
    before = sampling.softmax(x)
    rows = []
    for name in strategies:
        params, label = settings[name]
        if any(v is None for v in params.values()):
            continue
        after = sampling.distribution(x, **params)                              # (V,)
        chosen = int(sampling.sample(x, np.random.default_rng(draw_seed), **params))
        rows.append({"name": name, "label": label, "params": dict(params),
                     "probs_before": before, "probs_after": after, "kept": after > 0,
                     "chosen": chosen})
    return rows


def _check_report(report):
    if isinstance(report, dict) or not hasattr(report, "__len__") or len(report) == 0:
        raise ValueError("report must be a non-empty list of dicts from strategy_report()")
    for row in report:
        if not isinstance(row, dict) or not {"label", "probs_before", "probs_after", "kept",
                                             "chosen"} <= set(row):
            raise ValueError("report rows must be dicts from strategy_report() with keys "
                             "label, probs_before, probs_after, kept, chosen")
    return [row for row in report]


def _prob_text(q) -> str:
    """A probability as the terminal pictures print it: three decimals, but "<0.001" for a
    positive one that would print as 0.000 (so "0.000" means exactly 0).

    >>> _prob_text(0.25), _prob_text(4e-4), _prob_text(0.0)
    ('0.250', '<0.001', '0.000')
    """
    return "<0.001" if 0 < q < 0.0005 else f"{q:.3f}"


def _columns(before, chosen_ids, top):
    """Token ids to show: the ``top`` most probable (descending), plus any chosen ones."""
    order = np.argsort(-before, kind="stable")
    shown = list(order[:top])
    shown += [c for c in dict.fromkeys(chosen_ids) if c not in shown]
    return [int(i) for i in shown]


# ---------------------------------------------------------------------- terminal pictures
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
    p = _probs(probs)
    V = p.shape[0]
    positive_int(top, "top")
    positive_int(width, "width")
    b = None if before is None else _probs(before, "before")
    if b is not None and b.shape != p.shape:
        raise ValueError(f"before has shape {b.shape} but probs has shape {p.shape}")
    keep = p > 0 if kept is None else _mask(kept, "kept", V)
    if chosen is not None:
        chosen = _index(chosen, "chosen", V)
    name = _labeler(labels, V)
    rank = p if b is None else b
    ids = _columns(rank, [] if chosen is None else [chosen], int(top))
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
    rows = _check_report(report)
    before = _probs(rows[0]["probs_before"], "probs_before")
    V = before.shape[0]
    positive_int(top, "top")
    name = _labeler(labels, V)
    chosen = [_index(r["chosen"], "chosen", V) for r in rows]
    ids = _columns(before, chosen, int(top))
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
    rows = _check_report(report)
    before = _probs(rows[0]["probs_before"], "probs_before")
    positive_int(top, "top")
    shown = min(int(top), before.shape[0])
    chart = bar_chart(before, labels=labels, top=shown, width=width,
                      title=f"next-token distribution (top {shown} of {before.shape[0]}):")
    return chart + "\n\n" + strategy_table(rows, labels=labels, top=top)


# -------------------------------------------------------------------- matplotlib pictures
def _tick_labels(ax, columns, name, chosen=None, axis="x", fontsize=None):
    texts = [name(i) for i in columns]
    n = len(columns)
    if fontsize is None:
        fontsize = 10 if n <= 12 else (9 if n <= 45 else 7)
    longest = max(len(t) for t in texts)
    if axis == "x":
        ax.set_xticks(range(n))
        if longest <= 4:
            ax.set_xticklabels(texts, fontsize=fontsize)
        elif n > 20:
            ax.set_xticklabels(texts, rotation=90, fontsize=fontsize)
        elif longest > 5:
            ax.set_xticklabels(texts, rotation=45, ha="right", rotation_mode="anchor",
                               fontsize=fontsize)
        else:
            ax.set_xticklabels(texts, fontsize=fontsize)
        ticks = ax.get_xticklabels()
    else:
        ax.set_yticks(range(n))
        ax.set_yticklabels(texts, fontsize=fontsize)
        ticks = ax.get_yticklabels()
    if chosen is not None and chosen in columns:
        tick = ticks[columns.index(chosen)]
        tick.set_color("red")
        tick.set_fontweight("bold")


def _mark(ax, col, Rectangle, row=0):
    """A red box around the cell (row, col) of an imshow grid."""
    ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red",
                           linewidth=3, zorder=3, clip_on=False))


def _annotate(ax, values, norm, row=0):
    """Each cell's probability in two decimals, white on dark cells; a cell under 0.005
    (it would read 0.00) stays blank, its colour says "almost 0"."""
    fontsize = 8 if len(values) <= _ANNOTATE_UP_TO else 6.5
    for j, v in enumerate(values):
        if np.isnan(v) or v < 0.005:
            continue
        color = "white" if norm(v) > 0.6 else "black"
        ax.text(j, row, f"{v:.2f}", ha="center", va="center", fontsize=fontsize, color=color)


def _darkest(vmax, probs):
    """The probability drawn in the darkest colour: ``vmax`` (a positive number) or the largest."""
    if vmax is None:
        vmax = float(probs.max())
    elif isinstance(vmax, (bool, np.bool_)) or not isinstance(vmax, numbers.Real) or not vmax > 0:
        raise ValueError(f"vmax must be a positive number, got {vmax!r}")
    return max(float(vmax), 1e-12)


def _probability_row(ax, values, norm, columns, chosen, Rectangle):
    """Draw ``values`` (n,) as a 1 x n heatmap row coloured by ``norm`` (NaN: removed,
    grey), each cell annotated with its probability, ``chosen`` boxed in red; returns the
    image (for a colorbar)."""
    import matplotlib
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad=_REMOVED_GREY)
    im = ax.imshow(np.ma.masked_invalid(values[None, :]), cmap=cmap, norm=norm,
                   aspect="auto", interpolation="nearest")
    if len(columns) <= _TOP_COLUMNS:
        _annotate(ax, values, norm)
    if chosen is not None and chosen in columns:
        _mark(ax, columns.index(chosen), Rectangle)
    return im


def _left_out(before, columns, name) -> str:
    """What a picture of ``columns`` leaves out of the vocabulary, in words ('' if nothing):
    how many tokens, their largest and total probability, and their names if they fit.

    >>> print(_left_out(np.array([0.5, 0.3, 0.15, 0.05]), [0, 1], lambda i: "abcd"[i]))
    showing 2 of 4 tokens; left out: the 2 least probable (each q <= 0.15, 0.2 together): c d
    """
    V = before.shape[0]
    rest = np.setdiff1d(np.arange(V), columns)
    if rest.size == 0:
        return ""
    rest = rest[np.argsort(-before[rest], kind="stable")]                 # most probable first
    names = " ".join(name(int(i)) for i in rest)
    most = before[rest[0]]
    text = (f"showing {len(columns)} of {V} tokens; left out: the {rest.size} least probable "
            + (f"(each q <= {most:.2g}, {before[rest].sum():.2g} together)" if most > 0 else
               "(all q = 0)"))
    return text + (f": {names}" if len(names) <= 100 else "")


def _wrapped(paragraphs, fig) -> str:
    """Non-empty ``paragraphs`` as lines that fit the width of ``fig`` (about 12 characters
    of a 10-point label per inch)."""
    import textwrap
    width = max(40, int(12 * fig.get_figwidth()))
    return "\n".join(textwrap.fill(text, width) for text in paragraphs if text)


def _legend(ax, removed: bool, chosen: bool):
    """The key of a probability row, right of ``ax``: kept (blue, darker = more probable),
    removed (grey) and the chosen token's red box."""
    import matplotlib
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=matplotlib.colormaps["Blues"](0.6), label="kept: colour = q")]
    if removed:
        handles.append(Patch(facecolor=_REMOVED_GREY, label="removed by the rule (q = 0)"))
    if chosen:
        handles.append(Patch(fill=False, edgecolor="red", linewidth=2, label="chosen"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              frameon=False, handlelength=1.2, borderaxespad=0.0)


def _columns_for(V, before, chosen_ids, top):
    """Heatmap columns: all tokens in id order for small V, else the most probable."""
    if top is None:
        top = V if V <= _ALL_COLUMNS_UP_TO else _TOP_COLUMNS
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise ValueError(f"top must be a positive integer or None, got {top!r}")
    if top >= V:
        return list(range(V))
    return _columns(before, chosen_ids, int(top))


def plot_heatmap(probs, title, selected_idx, labels=None, ax=None, top=None, path=None,
                 vmax=None, selected_as="chosen"):
    """The seed's picture: next-token probabilities as a 1 x V heatmap, the choice boxed.

    Called exactly as in the seed tutorial::

        plot_heatmap(probs, title="Greedy Decoding - Softmax Probabilities", selected_idx=greedy_idx)

    Every token is a cell coloured by its probability q (tokens in id order; for V > 32 only
    the 40 most probable, most probable first, and the x label says how many tokens are left
    out and which); probability 0, i.e. removed by a sampling rule, is grey, and a legend
    then tells kept from removed tokens. The selected token gets a red box and a red tick
    label, and the title says which token it is (``selected_as``: "chosen" by default).
    Cells are annotated with their probability (blank under 0.005). The colour scale is
    linear from 0 to ``vmax``, shown by the colorbar.

    Parameters
    ----------
    probs : float array (V,) or (1, V)
        Probabilities (a torch tensor works too).
    title : str
    selected_idx : int in [0, V)
        The chosen token id.
    labels : None, sequence of V str, tokenizer or callable
    ax : matplotlib Axes, optional
        Draw into it (no colorbar is added then); default: a new Figure.
    top : int, optional
        Show only the ``top`` most probable tokens (plus the selected one).
    path : str, optional
        Save the figure there.
    vmax : float, optional
        Probability drawn in the darkest colour (default: the largest in ``probs``); give
        several heatmaps the same ``vmax`` to compare them.
    selected_as : str
        What the boxed token is, as the title says it: "chosen" (sampled or picked) by
        default; e.g. "most probable" when the box marks the argmax.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        probs not a distribution, selected_idx out of range, labels of the wrong length.
    ImportError
        matplotlib is not installed (``pip install "npgpt[plot]"``).

    Examples
    --------
    >>> fig = plot_heatmap(np.array([0.1, 0.6, 0.3]), "Greedy", 1, labels=["a", "b", "c"],
    ...                    path="greedy.png")
    >>> len(fig.axes), fig.axes[0].get_title()          # the heatmap and its colorbar
    (2, "Greedy\\nchosen: 'b' (q = 0.600)")
    """
    p = _probs(probs)
    V = p.shape[0]
    selected_idx = _index(selected_idx, "selected_idx", V)
    if not isinstance(selected_as, str):
        raise ValueError(f"selected_as must be a str, got {selected_as!r}")
    name = _labeler(labels, V)
    columns = _columns_for(V, p, [selected_idx], top)
    Figure, Rectangle = _matplotlib()
    from matplotlib.colors import Normalize
    own = ax is None
    if own:
        fig = Figure(figsize=(min(max(6.0, 0.5 * len(columns) + 2.5), 20.0), 2.6),
                     layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    norm = Normalize(0.0, _darkest(vmax, p))
    row = np.where(p[columns] > 0, p[columns], np.nan)                 # (n,) probability 0: removed
    im = _probability_row(ax, row, norm, columns, selected_idx, Rectangle)
    _tick_labels(ax, columns, name, chosen=selected_idx)
    ax.set_yticks([])
    ax.set_title(f"{title}\n{selected_as}: {name(selected_idx)} (q = {p[selected_idx]:.3f})",
                 fontsize=11)
    ax.set_xlabel(_wrapped(["token", _left_out(p, columns, name)], fig))
    if np.isnan(row).any():
        _legend(ax, removed=True, chosen=True)
    if own:
        fig.colorbar(im, ax=ax, label="probability q", fraction=0.05, pad=0.02)
    return _save(fig, path)


def plot_strategies(report, labels=None, path=None, top=None):
    """One heatmap row per strategy: the model's distribution, then each rule's, choice boxed.

    The first row is the model's distribution (softmax of the logits); each further row is a
    strategy's distribution after its rule, removed tokens grey, its chosen token in a red
    box, every cell annotated with its probability (blank under 0.005). All rows share one
    colour scale from 0 to 1, so greedy's 1.0 is darker than any spread-out row and the
    sharpening and renormalisation of each rule are visible; the scale is a square root
    (``PowerNorm(0.5)``), so probabilities of a few percent still show. When the vocabulary
    is larger than the columns shown, the x label says how many tokens are left out and
    which. This is the ``npgpt inspect --png FILE`` picture.

    Parameters
    ----------
    report : list of dict from :func:`strategy_report`
    labels : None, sequence of V str, tokenizer or callable
    path : str, optional
        Save the figure there.
    top : int, optional
        Show only the ``top`` most probable tokens (plus every chosen token); by default all
        tokens for V <= 32, else the 40 most probable.

    Returns
    -------
    matplotlib.figure.Figure with ``1 + len(report)`` heatmap axes and one colorbar axes.

    Examples
    --------
    >>> report = strategy_report(np.log([0.5, 0.3, 0.2]), seed=0)
    >>> fig = plot_strategies(report, labels=["a", "b", "c"])
    >>> len(fig.axes)                                   # the model, 6 strategies, a colorbar
    8
    >>> fig.axes[1].get_yticklabels()[0].get_text()     # each row: the rule, then its choice
    "greedy\\n→ 'a'"
    >>> [float(v) for v in fig.axes[-1].get_ylim()]     # the colorbar: probability 0 to 1
    [0.0, 1.0]
    """
    rows = _check_report(report)
    before = _probs(rows[0]["probs_before"], "probs_before")
    V = before.shape[0]
    name = _labeler(labels, V)
    chosen = [_index(r["chosen"], "chosen", V) for r in rows]
    afters = [_probs(r["probs_after"], f"probs_after of {r['label']}") for r in rows]
    columns = _columns_for(V, before, chosen, top)
    Figure, Rectangle = _matplotlib()
    from matplotlib.colors import PowerNorm
    n_rows = 1 + len(rows)
    n_cols = len(columns)
    fig = Figure(figsize=(min(max(7.0, 0.42 * n_cols + 3.5), 22.0), 0.75 * n_rows + 1.9),
                 layout="constrained")
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False)[:, 0]
    norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)        # one scale, 0 to 1, for every row
    data = [("model (T=1)", before, np.ones(V, bool), None)] + [
        (r["label"], a, np.asarray(r["kept"], bool), c) for r, a, c in zip(rows, afters, chosen)]
    im = None
    for ax, (label, values, kept, pick) in zip(axes, data):
        shown = np.where(kept[columns], values[columns], np.nan)          # (n,) removed: NaN
        im = _probability_row(ax, shown, norm, columns, pick, Rectangle)
        ax.set_yticks([0])
        suffix = "" if pick is None else f"\n→ {name(pick)}"
        ax.set_yticklabels([label + suffix], fontsize=9)
        ax.tick_params(axis="x", length=0)
    _tick_labels(axes[-1], columns, name)
    key = ("token (numbers and colour: probability q; grey: removed by the rule, q = 0; "
           "red box: the token the rule chose)")
    axes[-1].set_xlabel(_wrapped([key, _left_out(before, columns, name)], fig))
    fig.suptitle("Next-token probabilities before and after each decoding strategy", fontsize=12)
    bar = fig.colorbar(im, ax=list(axes), label="probability q (square-root scale)",
                       fraction=0.03, pad=0.01, aspect=40)
    bar.set_ticks([0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    return _save(fig, path)


def _ids_1d(model, ids):
    arr = np.asarray(ids)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]                                                       # (1, T) -> (T,)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"ids must have shape (T,) or (1, T) with T >= 1, got shape {np.shape(ids)}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    V, ctx = model.config.vocab_size, model.config.context_length
    bad = arr[(arr < 0) | (arr >= V)]
    if bad.size:
        raise ValueError(f"ids out of range [0, {V}): {int(bad[0])}")
    if arr.size > ctx:
        raise ValueError(f"ids has {arr.size} tokens but context_length is {ctx}")
    return arr.astype(np.int64)


def _position_labels(labels, ids, V):
    """Tick labels for positions: None -> ids; a sequence of T strings; else vocab labels."""
    if labels is not None and not callable(labels) and not hasattr(labels, "decode"):
        labels = list(labels)
        if len(labels) == len(ids) and len(ids) != V:
            return [_quoted(str(s)) for s in labels]
        if len(labels) != V:
            raise ValueError(f"labels has {len(labels)} entries; give one per position "
                             f"({len(ids)}) or one per vocabulary token ({V})")
    name = _labeler(labels, V)
    return [name(int(i)) for i in ids]


def plot_embeddings(model, ids, path=None, labels=None):
    """The seed's three panels: token embedding, position embedding, their sum.

    ``token = W_te[ids]`` (T, C), ``position = W_pe[:T]`` (T, C) and ``token + position``,
    the input of the first transformer block, each as a heatmap (rows = positions,
    columns = embedding dimensions), ``coolwarm`` colours centred on 0, with a colorbar.
    A rotary-positions model (``config.positions == "rope"``) adds nothing to the token
    vectors: two panels, the token embedding and the cosines of the angles by which each
    position turns the pairs of query and key channels (T, D/2).

    Parameters
    ----------
    model : npgpt.GPT
    ids : int array (T,) or (1, T), T <= context_length
    path : str, optional
        Save the figure there.
    labels : optional
        Row labels: a sequence of T strings, or vocabulary labels (see the module
        docstring; a sequence of length V is read as vocabulary labels). Default: token ids.

    Returns
    -------
    matplotlib.figure.Figure with 3 heatmap axes and 3 colorbar axes.

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=6, num_heads=2, num_layers=1), seed=0)
    >>> fig = plot_embeddings(model, np.arange(5))
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['Token Embedding  (5 × 6)', 'Positional Encoding  (5 × 6)', 'Token + Positional Encoding  (5 × 6)']
    """
    ids = _ids_1d(model, ids)
    T = ids.shape[0]
    token = np.asarray(model.params["token_embedding.weight"])[ids]        # (T, C)
    if model.config.positions == "rope":          # no table: the angles that turn q and k
        from .nn.rope import rope_inv_freq
        from .nn.rope import rope_tables
        cos, _ = rope_tables(np.arange(T), rope_inv_freq(model.config), np.float64)   # (T, D/2)
        panels = [("Token Embedding (the block input)", token, "embedding dimension"),
                  ("Rotary positions: cos(position · θ_i), turning q and k", cos,
                   "pair i of each head's channels (frequency θ_i falls with i)")]
    else:
        position = np.asarray(model.params["position_encoding.weight"])[:T]   # (T, C)
        panels = [(title, values, "embedding dimension") for title, values in (
            ("Token Embedding", token), ("Positional Encoding", position),
            ("Token + Positional Encoding", token + position))]
    rows = [f"{t}: {s}" for t, s in enumerate(_position_labels(labels, ids, model.config.vocab_size))]
    Figure, _ = _matplotlib()
    fig = Figure(figsize=(6 * len(panels), 5), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (title, values, xlabel) in zip(axes, panels):
        lim = max(float(np.abs(values).max()), 1e-12)
        im = ax.imshow(values, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto",
                       interpolation="nearest")
        ax.set_title(f"{title}  ({values.shape[0]} × {values.shape[1]})")
        ax.set_xlabel(xlabel)
        if T <= 40:
            ax.set_yticks(range(T))
            ax.set_yticklabels(rows, fontsize=7 if T > 20 else 8)
        ax.set_ylabel("position: token id" if labels is None else "position: token")
        fig.colorbar(im, ax=ax)
    return _save(fig, path)


def plot_attention(model, ids, labels=None, path=None):
    """Attention maps, one per layer (rows) and head (columns).

    Cell (query i, key j) of a map is how much position i attends to position j
    (softmax over j <= i; the causal mask leaves the upper triangle at 0).

    Parameters
    ----------
    model : npgpt.GPT
    ids : int array (T,) or (1, T), T <= context_length
    labels : optional
        Tick labels: a sequence of T strings (the tokens at each position), or vocabulary
        labels (see the module docstring; a sequence of length V is read as vocabulary
        labels). Default: token ids.
    path : str, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure with ``L * H`` map axes and one colorbar axes.

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=6, num_heads=2, num_layers=2), seed=0)
    >>> fig = plot_attention(model, np.array([3, 1, 4, 1]), labels=["t", "h", "e", "n"])
    >>> len(fig.axes), [ax.get_title() for ax in fig.axes[:2]]    # 2 x 2 maps and a colorbar
    (5, ['layer 0, head 0', 'layer 0, head 1'])
    """
    ids = _ids_1d(model, ids)
    T = ids.shape[0]
    ticks = _position_labels(labels, ids, model.config.vocab_size)
    _, attention = model.forward(ids, return_attention=True)   # L arrays (H, T, T)
    L, H = len(attention), attention[0].shape[0]
    Figure, _ = _matplotlib()
    import matplotlib
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")  # future: grey
    future = np.triu(np.ones((T, T), dtype=bool), k=1)        # (T, T) key j > query i
    side = 2.2 if T <= 12 else 2.8
    fig = Figure(figsize=(side * H + 1.2, side * L + 0.8), layout="constrained")
    axes = fig.subplots(L, H, squeeze=False)
    im = None
    show_ticks = T <= 24
    fontsize = 8 if T <= 12 else 6
    for layer in range(L):
        for head in range(H):
            ax = axes[layer, head]
            weights = np.ma.masked_where(future, np.asarray(attention[layer][head], np.float64))
            im = ax.imshow(weights, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            if show_ticks:
                ax.set_xticks(range(T))
                ax.set_yticks(range(T))
                ax.set_xticklabels(ticks if layer == L - 1 else [], rotation=90, fontsize=fontsize)
                ax.set_yticklabels(ticks if head == 0 else [], fontsize=fontsize)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            if head == 0:
                ax.set_ylabel("query")
            if layer == L - 1:
                ax.set_xlabel("key")
    fig.suptitle(f"Attention probabilities ({L} layers × {H} heads; grey: future positions, "
                 "masked)", fontsize=12)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="attention weight", fraction=0.03, pad=0.01)
    return _save(fig, path)
