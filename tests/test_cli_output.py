"""What the command line shows a learner reads true: inspect's chart quotes every token alike and
draws no block for a negligible probability; its --png picture shows 1.0 and says what it leaves
out; beam sampling is called beam sampling; --stop '' and --seed without sampling are refused in
one line naming the flag."""

import io
import re
import sys

import pytest

from npgpt.cli import main

from helpers import skip_without
from test_cli import run
from test_cli_hardening import assert_one_line_error

BUNDLED = "shakespeare-char"
TOKEN = r"'(?:[^'\\]|\\.)*'"            # a token as the pictures print it: single quotes, escapes


class Terminal(io.StringIO):
    def isatty(self):
        return True


def chart_lines(out):
    """The bar chart's lines of ``npgpt inspect``'s output (after its title, up to the table)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next-token distribution")) + 1
    return lines[start:lines.index("", start)]


# ----------------------------------------------------------------------------- inspect
def test_inspect_quotes_every_token_the_same_way_the_apostrophe_too(capsys):
    code, out, _ = run(capsys, "inspect", "-m", BUNDLED, "-p", "ROMEO: But", "--top", "6")
    assert code == 0
    chart = chart_lines(out)
    assert len(chart) == 6
    for line in chart:
        assert re.match(rf"^[ >x] {TOKEN} ", line), line
    names = [re.match(rf"^[ >x] ({TOKEN})", line).group(1) for line in chart]
    assert "' '" in names and "'\\''" in names                # the space and the apostrophe, alike
    table = out.split("\n\n")[1].splitlines()
    tokens = [line.split("  ")[0].strip() for line in table[2:-2]]
    assert tokens and all(re.fullmatch(TOKEN, t) for t in tokens), tokens


def test_inspect_draws_no_block_for_a_probability_that_prints_below_0_001(capsys):
    code, out, _ = run(capsys, "inspect", "-m", BUNDLED, "-p", "ROMEO: I'", "--top", "10")
    assert code == 0
    chart = chart_lines(out)
    tiny = [line for line in chart if line.endswith("<0.001")]
    assert tiny, chart                                        # this prompt has such tokens
    for line in chart:
        assert not line.endswith("0.000"), line               # a kept token is never "0.000"
    for line in tiny:
        assert "█" not in line and "▏" in line, line


@skip_without("matplotlib")
def test_inspect_png_shows_probability_1_and_says_which_tokens_it_leaves_out(capsys, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: saved.append(fig))
    code, _, _ = run(capsys, "inspect", "-m", BUNDLED, "-p", "JULIET:\n", "--png", str(tmp_path / "s.png"))
    assert code == 0 and len(saved) == 1
    fig = saved[0]
    heatmaps = [ax for ax in fig.axes if ax.images]
    bar = [ax for ax in fig.axes if not ax.images][0]
    assert [float(v) for v in bar.get_ylim()] == [0.0, 1.0]          # greedy's 1.0 is on the scale
    greedy = heatmaps[1]
    assert greedy.images[0].norm(1.0) == 1.0
    top_k = heatmaps[3]
    assert top_k.get_yticklabels()[0].get_text().startswith("top-k")
    assert top_k.images[0].norm(float(top_k.images[0].get_array().max())) < 0.6
    note = heatmaps[-1].get_xlabel()
    assert "showing 40 of 65 tokens" in note and "the 25 least probable" in note


# ---------------------------------------------------------------------------- generate
def test_beam_sampling_is_labelled_beam_sampling(capsys, monkeypatch):
    argv = ["generate", "-m", BUNDLED, "-p", "To be", "-n", "6", "--num-beams", "4",
            "--num-return-sequences", "2"]
    code, out, _ = run(capsys, *argv, "--do-sample", "--seed", "1")
    assert code == 0 and out.startswith("beam sampling, best 2 of 4 beams:"), out
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.startswith("beam search, best 2 of 4 beams:"), out
    terminal, stdout = Terminal(), io.StringIO()               # the progress line on a terminal
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(argv + ["--do-sample", "--seed", "1"]) == 0
    monkeypatch.undo()
    assert "beam sampling, 4 beams: token" in terminal.getvalue()
    assert "beam search" not in terminal.getvalue() + stdout.getvalue()


@pytest.mark.parametrize("stops", [[""], ["zzz", ""]])
def test_an_empty_stop_string_is_one_line_naming_stop_and_the_empty_value(capsys, stops):
    argv = [a for stop in stops for a in ("--stop", stop)]
    code, out, err = run(capsys, "generate", "-m", BUNDLED, "-n", "3", *argv)
    assert_one_line_error(code, out, err, "npgpt generate: error: --stop "
                                          "must be a non-empty string, got ''")
    assert "(" not in err.split("--stop")[1].split("(see")[0]       # no Python tuple


@pytest.mark.parametrize("extra", [[], ["--num-beams", "2"], ["--draft", "shakespeare-char-draft"]])
def test_seed_without_sampling_is_refused_like_temperature(capsys, extra):
    code, out, err = run(capsys, "generate", "-m", BUNDLED, "-n", "3", "--seed", "3", *extra)
    assert_one_line_error(code, out, err, "npgpt generate: error: --seed only changes sampling; "
                                          "add --do-sample (greedy and beam search ignore it)")
    _, _, temperature = run(capsys, "generate", "-m", BUNDLED, "-n", "3", "--temperature", "0.5", *extra)
    assert err.replace("--seed", "--temperature") == temperature
    code, _, _ = run(capsys, "generate", "-m", BUNDLED, "-n", "3", "--seed", "3", "--do-sample", *extra)
    assert code == 0
