"""npgpt.viz: terminal charts, the strategy report, and the matplotlib figures."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import npgpt
from npgpt import sampling, viz
from npgpt.tokenizers import WordTokenizer

from helpers import skip_without, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ["hello", "world", "this", "is", "a", "test", "model", "GPT", "language", "AI"]
needs_mpl = skip_without("matplotlib")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def word_logits():
    """Fixed logits over the ten words: distinct values, 'world' (1) the largest."""
    return np.log(np.array([0.09, 0.30, 0.07, 0.02, 0.06, 0.11, 0.17, 0.12, 0.04, 0.02]))


# --------------------------------------------------------------------- strategy_report
def test_strategy_report_rows_follow_sampling_transforms():
    x = word_logits()
    rows = viz.strategy_report(x, seed=0, temperature=0.8, top_k=3, top_p=0.6, min_p=0.5,
                               typical_p=0.9)
    assert [r["name"] for r in rows] == list(viz.STRATEGIES)
    by = {r["name"]: r for r in rows}
    expected = {
        "greedy": sampling.temperature(x, 0.0),
        "temperature": sampling.temperature(x, 0.8),
        "top-k": sampling.top_k(x, 3),
        "top-p": sampling.top_p(x, 0.6),
        "min-p": sampling.min_p(x, 0.5),
        "typical": sampling.typical(x, 0.9),
    }
    for name, processed in expected.items():
        np.testing.assert_array_equal(by[name]["kept"], np.isfinite(processed), err_msg=name)
        np.testing.assert_allclose(by[name]["probs_after"], sampling.softmax(processed),
                                   atol=1e-12, err_msg=name)
        np.testing.assert_allclose(by[name]["probs_before"], sampling.softmax(x), atol=1e-12)
    assert by["greedy"]["chosen"] == 1
    assert by["top-k"]["kept"].sum() == 3
    assert by["top-k"]["label"] == "top-k (k=3)"
    assert by["top-p"]["label"] == "top-p (top_p=0.6)"          # a parameter, never a bare "p"
    assert by["min-p"]["label"] == "min-p (min_p=0.5)"
    assert by["typical"]["label"] == "typical (typical_p=0.9)"


def test_strategy_report_same_seed_same_choices_and_rows_independent():
    x = np.random.default_rng(3).normal(size=50)
    a = viz.strategy_report(x, seed=7)
    b = viz.strategy_report(x, seed=7)
    assert [r["chosen"] for r in a] == [r["chosen"] for r in b]
    alone = viz.strategy_report(x, seed=7, strategies=("top-p",))
    assert alone[0]["chosen"] == a[3]["chosen"]             # a row's pick ignores the others
    # every sampled row uses the same uniform: it is sampling.sample with that seed
    expected = int(sampling.sample(x, np.random.default_rng(7), top_k=5))
    assert a[2]["chosen"] == expected


def test_strategy_report_none_parameter_drops_the_row():
    rows = viz.strategy_report(word_logits(), seed=0, top_k=None, min_p=None)
    assert [r["name"] for r in rows] == ["greedy", "temperature", "top-p", "typical"]


@given(arrays(np.float64, st.integers(1, 30), elements=st.floats(-20, 20)), st.integers(0, 2**32))
def test_strategy_report_chosen_token_is_always_kept_and_rows_sum_to_one(x, seed):
    for row in viz.strategy_report(x, seed=seed):
        assert row["kept"][row["chosen"]], row["name"]
        assert abs(row["probs_after"].sum() - 1.0) < 1e-9
        assert np.all(row["probs_after"][~row["kept"]] == 0.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(strategies=("greedy", "beam")), "strategies"),
    (dict(strategies="greedy"), "strategies"),
    (dict(seed=-1), "seed"),
    (dict(rng=42), "rng"),
    (dict(top_p=1.5), "top_p must be in"),
    (dict(top_k=-1), "top_k"),
])
def test_strategy_report_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.strategy_report(word_logits(), **({"seed": 0} | kwargs))


def test_strategy_report_rejects_batched_logits():
    with pytest.raises(ValueError, match=r"shape \(V,\)"):
        viz.strategy_report(np.zeros((2, 5)), seed=0)


# --------------------------------------------------------------------------- bar_chart
def test_bar_chart_marks_chosen_kept_and_removed():
    x = word_logits()
    before = sampling.softmax(x)
    after = sampling.softmax(sampling.top_k(x, 3))
    text = viz.bar_chart(after, labels=WORDS, chosen=6, before=before, top=5, width=20)
    lines = text.splitlines()
    assert len(lines) == 5
    words = [line.split()[1] if line[0] in ">x" else line.split()[0] for line in lines]
    assert words == ["'world'", "'model'", "'GPT'", "'test'", "'hello'"]   # ranked by before
    chosen = [line for line in lines if line.startswith(">")]
    assert len(chosen) == 1 and "'model'" in chosen[0] and chosen[0].endswith("chosen")
    for line in lines:
        removed = line.startswith("x")
        assert removed == ("removed" in line), line
        assert removed == (line.split()[1] in ("'test'", "'hello'")), line
    assert f"{before[1]:.3f} -> {after[1]:.3f}" in lines[0]


def test_bar_chart_bars_are_proportional_and_ascii_option():
    text = viz.bar_chart(np.array([0.5, 0.25, 0.25]), labels=["a", "b", "c"], width=8, ascii=True)
    bars = [line.split()[1] for line in text.splitlines()]
    assert bars == ["########", "####", "####"]
    assert all(ord(ch) < 128 for ch in text)


def test_bar_chart_lists_a_chosen_token_outside_the_top():
    probs = sampling.softmax(word_logits())
    text = viz.bar_chart(probs, labels=WORDS, top=2, chosen=3)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("> 'is'")


def test_bar_chart_shows_whitespace_tokens_visibly():
    text = viz.bar_chart(np.array([0.6, 0.4]), labels=[" ", "\n"], width=4)
    assert "' '" in text and "'\\n'" in text


@pytest.mark.parametrize("kwargs, message", [
    (dict(probs=np.array([0.5, 0.6])), "sum to 1"),
    (dict(probs=np.array([1.5, -0.5])), ">= 0"),
    (dict(probs=np.array([np.nan, 1.0])), "NaN"),
    (dict(chosen=10), r"chosen must be in \[0, 10\).*got 10"),
    (dict(chosen=1.0), "chosen must be an integer"),
    (dict(kept=np.ones(3, bool)), r"kept must have shape \(10,\)"),
    (dict(top=0), "top must be a positive integer"),
    (dict(width=0), "width must be a positive integer"),
    (dict(labels=["a", "b"]), "labels has 2 entries but the vocabulary has 10"),
    (dict(labels="abcdefghij"), "not one str"),
    (dict(before=np.ones(4) / 4), "before has shape"),
])
def test_bar_chart_rejects_bad_inputs(kwargs, message):
    args = dict(probs=sampling.softmax(word_logits()))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        viz.bar_chart(**args)


def test_labels_may_be_a_tokenizer_or_callable():
    tok = WordTokenizer(WORDS)
    probs = sampling.softmax(word_logits())
    assert viz.bar_chart(probs, labels=tok, top=1).split()[0] == "'world'"
    assert viz.bar_chart(probs, labels=lambda i: f"w{i}", top=1).split()[0] == "'w1'"
    assert viz.token_label(tok, 7, 10) == "'GPT'"
    assert viz.bar_chart(probs, top=1).split()[0] == "1"                  # no labels: the id, bare


# ---------------------------------------------------------------------- strategy_table
def test_strategy_table_columns_marks_and_counts():
    rows = viz.strategy_report(word_logits(), seed=0, strategies=("greedy", "top-k", "min-p"),
                               top_k=2, min_p=0.5)
    text = viz.strategy_table(rows, labels=WORDS, top=4)
    lines = text.splitlines()
    assert lines[0].split() == ["token", "model", "greedy", "top-k", "min-p"]
    assert lines[1].split() == ["k=2", "min_p=0.5"]              # each strategy's parameter below it
    world = lines[2].split()
    assert world[0] == "'world'" and world[2] == "1.000*"                # greedy's pick
    this = [line for line in lines if line.startswith("'GPT'")][0].split()
    assert this[2] == "-" and this[3] == "-"                             # removed by greedy, top-k
    kept = lines[-2].split()
    assert kept == ["kept", "1", "2", str(int(rows[2]["kept"].sum()))]
    chosen = lines[-1].split()
    assert chosen[0] == "chosen" and chosen[1] == "'world'"
    assert sum(cell.endswith("*") for line in lines[2:-2] for cell in line.split()) == 3


def test_strategy_table_rejects_a_non_report():
    with pytest.raises(ValueError, match="strategy_report"):
        viz.strategy_table([{"label": "x"}])
    with pytest.raises(ValueError, match="strategy_report"):
        viz.strategy_table([])


# ------------------------------------------------------------------- matplotlib figures
def _red_boxes(ax):
    from matplotlib.patches import Rectangle
    return [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]


def _is_png(path, min_bytes=2000):
    with open(path, "rb") as f:
        data = f.read()
    return data[:8] == PNG_MAGIC and len(data) >= min_bytes


@needs_mpl
def test_plot_heatmap_seed_call_marks_the_selected_token(tmp_path):
    probs = sampling.softmax(word_logits())
    path = tmp_path / "greedy.png"
    fig = viz.plot_heatmap(probs, title="Greedy Decoding - Softmax Probabilities",
                           selected_idx=6, labels=WORDS, path=str(path))
    assert len(fig.axes) == 2                                       # heatmap + colorbar
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    assert image.shape == (1, 10)
    np.testing.assert_allclose(np.asarray(image)[0], probs, atol=1e-12)
    boxes = _red_boxes(ax)
    assert len(boxes) == 1 and boxes[0].get_x() == pytest.approx(5.5)
    ticks = ax.get_xticklabels()
    assert ticks[6].get_text() == "'model'" and ticks[6].get_color() == "red"
    assert "chosen: 'model'" in ax.get_title()
    assert _is_png(path)


@needs_mpl
def test_plot_heatmap_accepts_1_by_v_and_draws_into_a_given_axes():
    from matplotlib.figure import Figure
    fig = Figure()
    axes = fig.subplots(2, 1)
    probs = sampling.softmax(word_logits())[None, :]                # (1, V) like logits[:, -1, :]
    out = viz.plot_heatmap(probs, "T", 1, ax=axes[1])
    assert out is fig and len(fig.axes) == 2 and len(axes[1].images) == 1 and not axes[0].images


@needs_mpl
def test_plot_heatmap_shows_removed_tokens_as_masked_and_big_vocab_top_columns():
    probs = sampling.softmax(sampling.top_k(word_logits(), 3))
    fig = viz.plot_heatmap(probs, "top-k", 1)
    image = fig.axes[0].images[0].get_array()
    assert int(np.ma.count_masked(image)) == 7
    big = sampling.softmax(np.random.default_rng(0).normal(size=500))
    fig = viz.plot_heatmap(big, "big", 499)
    assert fig.axes[0].images[0].get_array().shape == (1, 41)        # 40 most probable + chosen


@needs_mpl
@pytest.mark.parametrize("idx, message", [(10, r"selected_idx must be in \[0, 10\).*got 10"),
                                          (-1, "got -1"), (2.5, "integer token id")])
def test_plot_heatmap_rejects_bad_selected_idx(idx, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_heatmap(sampling.softmax(word_logits()), "t", idx)


@needs_mpl
def test_plot_heatmap_rejects_bad_probs_and_vmax():
    with pytest.raises(ValueError, match="sum to 1"):
        viz.plot_heatmap(np.ones(4), "t", 0)
    with pytest.raises(ValueError, match=r"shape \(V,\) or \(1, V\)"):
        viz.plot_heatmap(np.ones((2, 2)) / 4, "t", 0)
    with pytest.raises(ValueError, match="vmax must be a positive number"):
        viz.plot_heatmap(np.ones(4) / 4, "t", 0, vmax=0)


@needs_mpl
def test_plot_strategies_one_row_per_strategy_plus_model_row(tmp_path):
    rows = viz.strategy_report(word_logits(), seed=0)
    fig = viz.plot_strategies(rows, labels=WORDS, path=str(tmp_path / "s.png"))
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 1 + len(rows) and len(fig.axes) == len(heatmaps) + 1
    for ax, row in zip(heatmaps[1:], rows):
        boxes = _red_boxes(ax)
        assert len(boxes) == 1 and boxes[0].get_x() == pytest.approx(row["chosen"] - 0.5)
        image = ax.images[0].get_array()
        assert int(np.ma.count_masked(image)) == int((~row["kept"]).sum())
        assert ax.get_yticklabels()[0].get_text().startswith(row["label"])
    assert not _red_boxes(heatmaps[0])
    assert _is_png(tmp_path / "s.png")


@needs_mpl
def test_plot_embeddings_three_panels_hold_the_embeddings(tmp_path):
    model = npgpt.GPT(tiny_config(), seed=0, init="torch")
    ids = np.array([[3, 1, 4, 1, 5]])
    fig = viz.plot_embeddings(model, ids, path=str(tmp_path / "e.png"))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3 and len(fig.axes) == 6                   # + 3 colorbars
    tok = model.params["token_embedding.weight"][ids[0]]
    pos = model.params["position_encoding.weight"][:5]
    for ax, want, title in zip(panels, (tok, pos, tok + pos),
                               ("Token Embedding", "Positional Encoding", "Token + Positional")):
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), want, atol=1e-6)
        assert ax.get_title().startswith(title)
        assert ax.images[0].get_cmap().name == "coolwarm"
    assert _is_png(tmp_path / "e.png")


@needs_mpl
def test_plot_embeddings_of_a_rotary_model_shows_the_tokens_and_the_rotation_angles(tmp_path):
    cfg = tiny_config(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1)
    model = npgpt.GPT(cfg, seed=0, init="torch")
    ids = np.array([3, 1, 4, 1, 5])
    fig = viz.plot_embeddings(model, ids, path=str(tmp_path / "r.png"))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 and len(fig.axes) == 4                   # + 2 colorbars
    np.testing.assert_allclose(np.asarray(panels[0].images[0].get_array()),
                               model.params["token_embedding.weight"][ids], atol=1e-6)
    D = cfg.head_size
    angles = np.arange(5)[:, None] * 10000.0 ** (-np.arange(0, D, 2) / D)    # (T, D/2)
    np.testing.assert_allclose(np.asarray(panels[1].images[0].get_array()), np.cos(angles), atol=1e-6)
    assert panels[1].get_title().startswith("Rotary positions")
    assert _is_png(tmp_path / "r.png")


@needs_mpl
def test_plot_embeddings_rejects_bad_ids():
    model = npgpt.GPT(tiny_config(), seed=0)
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_embeddings(model, [1, 17])
    with pytest.raises(ValueError, match="context_length is 12"):
        viz.plot_embeddings(model, np.zeros(13, dtype=int))
    with pytest.raises(ValueError, match="integers"):
        viz.plot_embeddings(model, np.array([0.5]))


@needs_mpl
def test_plot_attention_grid_is_layers_by_heads_with_the_model_attention(tmp_path):
    model = npgpt.GPT(tiny_config(num_layers=2, num_heads=4), seed=0)
    ids = [1, 2, 3, 4, 5, 6]
    fig = viz.plot_attention(model, ids, labels=[f"t{i}" for i in ids], path=str(tmp_path / "a.png"))
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 2 * 4 and len(fig.axes) == 2 * 4 + 1
    _, attention = model.forward(np.array(ids), return_attention=True)
    image = maps[4 + 2].images[0].get_array()                        # layer 1, head 2
    assert maps[6].get_title() == "layer 1, head 2"
    future = np.triu(np.ones((6, 6), bool), k=1)
    np.testing.assert_array_equal(np.ma.getmaskarray(image), future)
    np.testing.assert_allclose(image.filled(0.0), attention[1][2], atol=1e-6)
    assert [t.get_text() for t in maps[4].get_yticklabels()] == [f"'t{i}'" for i in ids]
    assert _is_png(tmp_path / "a.png")


@needs_mpl
def test_plot_attention_rejects_labels_of_the_wrong_length():
    model = npgpt.GPT(tiny_config(), seed=0)
    with pytest.raises(ValueError, match="one per position"):
        viz.plot_attention(model, [1, 2, 3], labels=["a", "b"])


# --------------------------------------------------------------- without matplotlib
def test_missing_matplotlib_raises_an_error_naming_the_plot_extra(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)
    probs = sampling.softmax(word_logits())
    with pytest.raises(ImportError, match=r'pip install "npgpt\[plot\]"'):
        viz.plot_heatmap(probs, "t", 0)
    with pytest.raises(ImportError, match="npgpt\\[plot\\]"):
        viz.plot_strategies(viz.strategy_report(word_logits(), seed=0))
    model = npgpt.GPT(tiny_config(), seed=0)
    with pytest.raises(ImportError, match="matplotlib"):
        viz.plot_embeddings(model, [1, 2])
    with pytest.raises(ImportError, match="matplotlib"):
        viz.plot_attention(model, [1, 2])
    # the terminal pictures need no matplotlib
    assert viz.bar_chart(probs, labels=WORDS, top=1).split()[0] == "'world'"


def test_viz_imports_without_matplotlib_in_a_fresh_interpreter():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib' or name.startswith('matplotlib.'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from npgpt import viz\n"
        "assert 'matplotlib' not in sys.modules\n"
        "print(viz.bar_chart(np.array([0.75, 0.25]), chosen=0, width=4).splitlines()[0])\n"
        "try:\n"
        "    viz.plot_heatmap(np.array([0.75, 0.25]), 't', 0)\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("> 0") and lines[0].endswith("chosen")
    assert lines[1].startswith("ImportError:") and 'pip install "npgpt[plot]"' in lines[1]


def test_viz_does_not_import_matplotlib_at_import_time():
    code = "import sys, npgpt.viz; print('matplotlib' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_inspect_text_has_the_model_chart_then_the_table():
    rows = viz.strategy_report(word_logits(), seed=0)
    text = viz.inspect_text(rows, labels=WORDS, top=4)
    chart, table = text.split("\n\n")
    assert chart.splitlines()[0] == "next-token distribution (top 4 of 10):"
    assert chart.splitlines()[1].split()[0] == "'world'" and len(chart.splitlines()) == 5
    assert table == viz.strategy_table(rows, labels=WORDS, top=4)
    with pytest.raises(ValueError, match="top must be a positive integer"):
        viz.inspect_text(rows, top=0)


@skip_without("torch")
@pytest.mark.torch
@needs_mpl
def test_plot_heatmap_accepts_the_seeds_torch_probabilities():
    import torch
    logits = torch.tensor(word_logits())[None, :]                    # (1, V) = logits[:, -1, :]
    probs = torch.nn.functional.softmax(logits, dim=-1)
    greedy_idx = torch.argmax(probs).item()
    fig = viz.plot_heatmap(probs, title="Greedy Decoding - Softmax Probabilities",
                           selected_idx=greedy_idx)
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array())[0],
                               probs.numpy()[0], atol=1e-12)


# ------------------------------------------- what a learner reads: marks, names, scales
def test_bar_chart_draws_no_block_for_zero_and_a_thin_mark_for_a_negligible_probability():
    probs = np.array([0.9995, 0.0004, 0.0001, 0.0])
    lines = viz.bar_chart(probs, labels=["a", "b", "c", "d"], kept=np.ones(4, bool),
                          width=20).splitlines()
    tiny, zero = lines[1], lines[3]
    assert "▏" in tiny and "█" not in tiny and tiny.endswith("<0.001")     # not "0.000"
    assert not set("▏█░") & set(zero) and zero.endswith("0.000")           # exactly 0: no bar
    ascii_lines = viz.bar_chart(probs, labels=["a", "b", "c", "d"], kept=np.ones(4, bool),
                                width=20, ascii=True).splitlines()
    assert "|" in ascii_lines[1] and "#" not in ascii_lines[1]
    assert not set("|#.") & set(ascii_lines[3].split("'d'")[1].replace("0.000", ""))


def test_strategy_table_prints_a_kept_negligible_probability_as_below_0_001():
    x = np.log(np.array([0.9990, 0.0006, 0.0004]))
    rows = viz.strategy_report(x, seed=0, strategies=("temperature",), temperature=1.0)
    lines = viz.strategy_table(rows, labels=["a", "b", "c"]).splitlines()
    cells = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert cells["'b'"][0] == "0.001" and cells["'c'"] == ["<0.001", "<0.001"]


def test_every_token_is_quoted_the_same_way_apostrophe_space_and_newline_included():
    labels = ["'", " ", "\n", "a", '"', "\\"]
    text = viz.bar_chart(np.full(6, 1 / 6), labels=labels, width=4)
    shown = [line[2:6].strip() for line in text.splitlines()]  # after the mark column
    assert sorted(shown) == sorted(["'\\''", "' '", "'\\n'", "'a'", "'\"'", "'\\\\'"])


@given(st.text(max_size=12))
def test_token_label_is_the_python_literal_of_the_token_text_in_single_quotes(text):
    import ast
    shown = viz.token_label([text], 0, 1)
    assert shown[0] == "'" and shown[-1] == "'"
    if not shown.endswith("…'"):
        assert ast.literal_eval(shown) == text
    assert len(shown) <= 14


def _drawn_colour(ax, column):
    image = ax.images[0]
    return np.asarray(image.to_rgba(image.get_array()))[0, column, :3]


@needs_mpl
def test_plot_strategies_one_scale_from_0_to_1_tells_greedy_s_1_from_top_k_s_0_28():
    x = np.log(np.array([0.22, 0.2, 0.2, 0.18, 0.1, 0.05, 0.05]))    # top-k keeps ~0.28 at most
    rows = viz.strategy_report(x, seed=0, strategies=("greedy", "top-k"), top_k=4)
    assert 0.25 < rows[1]["probs_after"].max() < 0.3
    fig = viz.plot_strategies(rows)
    model, greedy, top_k, bar = fig.axes
    for ax in (model, greedy, top_k):
        assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0.0, 1.0)
    assert [float(v) for v in bar.get_ylim()] == [0.0, 1.0]
    difference = np.abs(_drawn_colour(greedy, 0) - _drawn_colour(top_k, 0)).max()
    assert difference > 0.2, difference                     # 1.0 and 0.28 look different
    assert "probability q" in bar.get_ylabel()


@needs_mpl
def test_plot_strategies_says_how_many_and_which_tokens_it_leaves_out():
    x = np.random.default_rng(0).normal(size=65)
    labels = [chr(ord("!") + i) for i in range(65)]
    rows = viz.strategy_report(x, seed=0)
    fig = viz.plot_strategies(rows, labels=labels)
    heatmaps = [ax for ax in fig.axes if ax.images]
    shown = [t.get_text() for t in heatmaps[-1].get_xticklabels()]
    assert len(shown) == 40
    note = heatmaps[-1].get_xlabel()
    assert "showing 40 of 65 tokens" in note and "the 25 least probable" in note
    order = np.argsort(-sampling.softmax(x), kind="stable")
    left = [viz.token_label(labels, int(i), 65) for i in order[40:]]
    assert " ".join(left) in note.replace("\n", " ")
    assert set(left).isdisjoint(shown)
    small = viz.plot_strategies(viz.strategy_report(word_logits(), seed=0), labels=WORDS)
    assert "left out" not in [ax for ax in small.axes if ax.images][-1].get_xlabel()


@needs_mpl
def test_plot_heatmap_legend_tells_kept_from_removed_and_q_is_the_probability():
    probs = sampling.softmax(sampling.top_p(word_logits(), 0.6))
    fig = viz.plot_heatmap(probs, "Nucleus Sampling (nucleus threshold top_p = 0.6)", 1,
                           labels=WORDS)
    ax, bar = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("kept") for t in legend) and any("removed" in t for t in legend)
    assert "chosen: 'world' (q = " in ax.get_title() and "p =" not in ax.get_title().split("\n")[1]
    assert bar.get_ylabel() == "probability q"
    full = viz.plot_heatmap(sampling.softmax(word_logits()), "T = 1", 1, labels=WORDS)
    assert full.axes[0].get_legend() is None                   # nothing removed: no key needed


@needs_mpl
def test_plot_heatmap_names_what_its_box_marks_and_what_it_leaves_out():
    probs = sampling.softmax(word_logits())
    fig = viz.plot_heatmap(probs, "T = 1", 1, labels=WORDS, selected_as="most probable")
    assert fig.axes[0].get_title() == "T = 1\nmost probable: 'world' (q = 0.300)"
    big = sampling.softmax(np.random.default_rng(0).normal(size=100))
    note = viz.plot_heatmap(big, "big", 0).axes[0].get_xlabel()
    assert "showing 41 of 100 tokens" in note and "the 59 least probable" in note
    with pytest.raises(ValueError, match="selected_as must be a str"):
        viz.plot_heatmap(probs, "t", 1, selected_as=None)
