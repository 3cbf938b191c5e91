"""matplotlib pictures (the seed tutorial's heatmaps): :func:`plot_heatmap` (exactly as the
seed calls it: ``plot_heatmap(probs, title, selected_idx)``), :func:`plot_strategies` (one
heatmap row per strategy), :func:`plot_embeddings` (token embedding, position embedding, their
sum) and :func:`plot_attention` (one map per layer and head).

matplotlib is imported only inside these functions; without it they raise ImportError naming
the ``plot`` extra (``pip install "npgpt[plot]"``). They build ``matplotlib.figure.Figure``
objects directly (no pyplot state, no ``show()``), so they work with any backend, including
Agg on servers; each returns its Figure and, given ``path``, saves it as an image (PNG by the
file name's extension).

Shapes: V = vocabulary size, T = sequence length, C = d_model, L = layers, H = heads.
probs (V,) float; ids (T,) int; attention: L arrays (H, T, T).
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from ..nn.layers import POSITION_TABLE, TOKEN_TABLE
from ._shared import (checked_index, checked_probs, checked_report, labeler, quoted,
                      top_columns)

_PLOT_EXTRA_MESSAGE = ('npgpt.viz plotting needs matplotlib, which is not installed; '
                       'install the plot extra: pip install "npgpt[plot]"')
_ALL_COLUMNS_UP_TO = 32  # heatmaps show every token up to this vocabulary size
_TOP_COLUMNS = 40        # ... and otherwise this many of the most probable tokens
_ANNOTATE_UP_TO = 20     # cells are annotated in a larger font up to this many columns
_REMOVED_GREY = "#d9d9d9"  # heatmap cells of tokens a rule removed (probability 0)


# ---------------------------------------------------------------- matplotlib and saving
def _matplotlib():
    """The Figure class and a Rectangle patch class, or ImportError naming the extra."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ImportError(_PLOT_EXTRA_MESSAGE) from None
    return Figure, Rectangle


def _save(fig, path):
    """Save ``fig`` to the file ``path`` (its format from the extension), atomically: a file
    already there is replaced whole, never left half-written; a folder there is refused
    (IsADirectoryError) and nothing else beside it is touched."""
    if path is not None:
        from ..io.files import atomic_write

        path = os.fspath(path)
        extension = os.path.splitext(path)[1].lstrip(".").lower()
        if not extension:                         # matplotlib's rule: the default format, added
            extension = fig.canvas.get_default_filetype()
            path = f"{path}.{extension}"
        atomic_write(path, lambda f: fig.savefig(f, format=extension, dpi=110))
    return fig


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
    return top_columns(before, chosen_ids, int(top))


def _heatmap_axes(ax, n_columns, Figure):
    """``ax`` and its figure, or a new figure sized for a row of ``n_columns`` cells and its axes."""
    if ax is None:
        fig = Figure(figsize=(min(max(6.0, 0.5 * n_columns + 2.5), 20.0), 2.6),
                     layout="constrained")
        return fig, fig.add_subplot(1, 1, 1)
    return ax.figure, ax


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
    p = checked_probs(probs)
    V = p.shape[0]
    selected_idx = checked_index(selected_idx, "selected_idx", V)
    if not isinstance(selected_as, str):
        raise ValueError(f"selected_as must be a str, got {selected_as!r}")
    name = labeler(labels, V)
    columns = _columns_for(V, p, [selected_idx], top)
    Figure, Rectangle = _matplotlib()
    from matplotlib.colors import Normalize
    own = ax is None
    fig, ax = _heatmap_axes(ax, len(columns), Figure)
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
    >>> from npgpt.viz import strategy_report
    >>> report = strategy_report(np.log([0.5, 0.3, 0.2]), seed=0)
    >>> fig = plot_strategies(report, labels=["a", "b", "c"])
    >>> len(fig.axes)                                   # the model, 6 strategies, a colorbar
    8
    >>> fig.axes[1].get_yticklabels()[0].get_text()     # each row: the rule, then its choice
    "greedy\\n→ 'a'"
    >>> [float(v) for v in fig.axes[-1].get_ylim()]     # the colorbar: probability 0 to 1
    [0.0, 1.0]
    """
    rows = checked_report(report)
    before = checked_probs(rows[0]["probs_before"], "probs_before")
    V = before.shape[0]
    name = labeler(labels, V)
    chosen = [checked_index(r["chosen"], "chosen", V) for r in rows]
    afters = [checked_probs(r["probs_after"], f"probs_after of {r['label']}") for r in rows]
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
            return [quoted(str(s)) for s in labels]
        if len(labels) != V:
            raise ValueError(f"labels has {len(labels)} entries; give one per position "
                             f"({len(ids)}) or one per vocabulary token ({V})")
    name = labeler(labels, V)
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
        Row labels: a sequence of T strings, or vocabulary labels (see :mod:`npgpt.viz`;
        a sequence of length V is read as vocabulary labels). Default: token ids.

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
    token = np.asarray(model.params[TOKEN_TABLE])[ids]        # (T, C)
    if model.config.positions == "rope":          # no table: the angles that turn q and k
        from ..nn.rope import rope_inv_freq
        from ..nn.rope import rope_tables
        cos, _ = rope_tables(np.arange(T), rope_inv_freq(model.config), np.float64)   # (T, D/2)
        panels = [("Token Embedding (the block input)", token, "embedding dimension"),
                  ("Rotary positions: cos(position · θ_i), turning q and k", cos,
                   "pair i of each head's channels (frequency θ_i falls with i)")]
    else:
        position = np.asarray(model.params[POSITION_TABLE])[:T]   # (T, C)
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
        labels (see :mod:`npgpt.viz`; a sequence of length V is read as vocabulary
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
