"""examples/seed_walkthrough.py runs end to end and writes every figure it promises."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from helpers import skip_without

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "seed_walkthrough.py")
FIGURES = ["01_greedy.png", "02_temperature.png", "02b_temperature_compare.png", "03_top_k.png",
           "04_top_p.png", "05_embeddings.png", "06_strategies.png", "07_attention.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(args, cwd, code=None):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONIOENCODING="utf-8",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, SCRIPT] + args if code is None else [sys.executable, "-c", code] + args
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=300)


def png_size(path):
    """(width, height, bytes) of a PNG file, read from its IHDR chunk."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height, len(data)


@skip_without("matplotlib")
def test_walkthrough_writes_every_figure_and_prints_the_seed_results(tmp_path):
    out_dir = tmp_path / "figures"
    result = run(["--out", str(out_dir)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out_dir)) == sorted(FIGURES)
    for name in FIGURES:
        width, height, size = png_size(out_dir / name)
        assert width >= 400 and height >= 200, (name, width, height)
        assert size >= 15_000, (name, size)            # a drawn figure, not an empty canvas
    text = result.stdout
    for expected in ("1. Greedy decoding", "2. Temperature scaling (T = 0.8)",
                     "3. Top-k sampling (k = 5)", "4. Nucleus (top-p) sampling (nucleus threshold top_p = 0.9)",
                     "token_embeds (20, 128), pos_embeds (20, 128), combined (20, 128)",
                     "Input sentence: hello world this is", "Predicted next word: ",
                     "Generated sentence: hello world this is ", "8. Beam search (3 beams)",
                     "chosen"):
        assert expected in text, expected
    beam_lines = [line for line in text.splitlines() if line[:3] in ("1. ", "2. ", "3. ")
                  and "(score" in line]
    assert len(beam_lines) == 3


@skip_without("matplotlib")
def test_walkthrough_is_reproducible_with_the_same_seed(tmp_path):
    first = run(["--out", str(tmp_path / "a"), "--seed", "3"], cwd=tmp_path)
    second = run(["--out", str(tmp_path / "b"), "--seed", "3"], cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    strip = lambda s: "\n".join(l for l in s.splitlines() if not l.startswith("figures written"))
    assert strip(first.stdout) == strip(second.stdout)


def test_walkthrough_runs_without_matplotlib_printing_only(tmp_path):
    code = (
        "import runpy, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib' or name.startswith('matplotlib.'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = [{SCRIPT!r}] + sys.argv[1:]\n"
        f"runpy.run_path({SCRIPT!r}, run_name='__main__')\n"
    )
    result = run(["--out", str(tmp_path / "figures")], cwd=tmp_path, code=code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'pip install "npgpt[plot]"' in result.stdout
    assert "Predicted next word: " in result.stdout
    assert not (tmp_path / "figures").exists()


@skip_without("matplotlib")
def test_walkthrough_figures_say_what_they_draw(tmp_path, monkeypatch):
    """02b boxes the most probable word and says so in the title and in every panel; the top-p
    figure has a key for kept and removed words and keeps "p" for the nucleus threshold."""
    import runpy

    from matplotlib.figure import Figure

    saved = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: saved.__setitem__(
        os.path.basename(str(path)), fig))
    import npgpt.viz.figures                      # npgpt's figures are saved atomically, by path
    monkeypatch.setattr(npgpt.viz.figures, "_save", lambda fig, path: saved.__setitem__(
        os.path.basename(str(path)), fig) or fig)
    monkeypatch.setattr(sys, "argv", [SCRIPT, "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(SCRIPT, run_name="__main__")
    assert done.value.code == 0
    compare = saved["02b_temperature_compare.png"]
    panels = [ax for ax in compare.axes if ax.images]
    assert len(panels) == 3
    for ax in panels:
        title = ax.get_title().split("\n")[1]
        assert title.startswith("most probable: ") and "chosen" not in title
        boxed = [p.get_x() + 0.5 for p in ax.patches if not p.get_fill()]
        probs = np.asarray(ax.images[0].get_array())[0]
        assert boxed == [int(np.argmax(probs))]              # the box is on the most probable
    assert "box: the most probable" in compare.get_suptitle()
    top_p = saved["04_top_p.png"].axes[0]
    assert "nucleus threshold top_p = 0.9" in top_p.get_title()
    assert "(q = " in top_p.get_title() and "(p = " not in top_p.get_title()
    legend = [t.get_text() for t in top_p.get_legend().get_texts()]
    assert any("kept" in t for t in legend) and any("removed" in t for t in legend)
