"""Pictures: what the model predicts and what each decoding strategy does with it.

Shapes: V = vocabulary size, T = sequence length, C = d_model, L = layers, H = heads.
probs (V,) float -- one next-token distribution; logits (V,) float; ids (T,) int;
attention: L arrays (H, T, T).

Two kinds of pictures:

- **Terminal pictures** (plain strings, NumPy only; :mod:`npgpt.viz.terminal`):
  :func:`bar_chart` draws the most probable tokens with bars, marking removed tokens and the
  chosen one; :func:`strategy_table` compares strategies side by side.
  :func:`strategy_report` (:mod:`npgpt.viz.report`) is the data behind both: for one
  next-token distribution, what greedy, temperature, top-k, top-p, min-p and typical sampling
  keep, the probabilities after each rule, and the token each would choose.
- **matplotlib pictures** (the seed tutorial's heatmaps; :mod:`npgpt.viz.figures`):
  :func:`plot_heatmap` (exactly as the seed calls it: ``plot_heatmap(probs, title,
  selected_idx)``), :func:`plot_strategies` (one heatmap row per strategy),
  :func:`plot_embeddings` (token embedding, position embedding, their sum) and
  :func:`plot_attention` (one map per layer and head). matplotlib is imported only inside
  these functions; without it they raise ImportError naming the ``plot`` extra
  (``pip install "npgpt[plot]"``). They build ``matplotlib.figure.Figure`` objects directly
  (no pyplot state, no ``show()``), so they work with any backend, including Agg on servers;
  each returns its Figure and, given ``path``, saves it as an image (PNG by the file name's
  extension).

Labels name tokens in pictures. Wherever ``labels`` is accepted it may be None (token ids
are shown), a sequence of V strings (``labels[i]`` names token ``i``), a tokenizer (anything
with ``decode(ids)``; each token is decoded alone), or a callable ``id -> str``. Every
picture shows a token's text the same way (:func:`token_label`): in single quotes with
Python's escapes (``'a'``, ``' '``, ``'\\''``, ``'\\n'``), so whitespace and quotes read
alike; token ids (no labels) are shown bare.

A token's probability is called ``q`` in the pictures, so that ``p`` names nothing but a
strategy's parameter (``top_p``, ``min_p``, ``typical_p``).
"""

from ._shared import token_label
from .figures import plot_attention, plot_embeddings, plot_heatmap, plot_strategies
from .report import STRATEGIES, strategy_report
from .terminal import bar_chart, inspect_text, strategy_table

__all__ = ["STRATEGIES", "strategy_report", "bar_chart", "strategy_table", "inspect_text",
           "plot_heatmap", "plot_strategies", "plot_embeddings", "plot_attention", "token_label"]
