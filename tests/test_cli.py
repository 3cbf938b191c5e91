"""The command line: every command's help, errors as one line with exit code 2, and real runs
on a tiny saved model."""

import subprocess
import sys

import pytest

import npgpt
from npgpt.cli import default_corpus

from helpers import has_module, run_cli as run

TEXT = "ROMEO: But soft, what light through yonder window breaks?\n" * 30


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    tok = npgpt.CharTokenizer.from_text(TEXT)
    cfg = npgpt.GPTConfig(vocab_size=tok.vocab_size, context_length=16, d_model=16, num_heads=2,
                          num_layers=1)
    model = npgpt.GPT(cfg, seed=0)
    model.tokenizer = tok
    path = str(tmp_path_factory.mktemp("m") / "m.safetensors")
    model.save(path)
    return path



@pytest.mark.parametrize("command", ["generate", "inspect", "plot", "train", "bench"])
def test_every_command_answers_help_with_examples(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "examples:" in out and f"npgpt {command}" in out


@pytest.mark.parametrize("argv, message", [
    (["generate", "--bogus"], "unrecognized arguments: --bogus"),
    (["generate", "--max-new-tokens", "x"], "invalid int value: 'x'"),
    (["generate", "--model", "no-such-model"], "no bundled model of that name"),
    (["train", "--data", "/no/such/file.txt"], "data file '/no/such/file.txt' does not exist"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_generate_streams_greedy_text(capsys, model_path):
    code, out, _ = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:", "--max-new-tokens", "12")
    assert code == 0
    model = npgpt.load(model_path)
    expected = npgpt.generate(model, model.tokenizer.encode("ROMEO:"), max_new_tokens=12).sequences[0]
    assert out == model.tokenizer.decode(expected.tolist()) + "\n"


def test_generate_errors(capsys, model_path):
    code, _, err = run(capsys, "generate", "--model", model_path, "--top-p", "0.9")
    assert code == 2 and "--top-p only changes sampling; add --do-sample" in err
    code, _, err = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO: Z")
    assert code == 2 and "cannot encode the prompt" in err and "'Z'" in err
    code, _, err = run(capsys, "generate", "--model", model_path, "--do-sample", "--top-p", "1.5")
    assert code == 2 and "--top-p" in err and "1.5" in err


def test_generate_samples_and_beams(capsys, model_path):
    code, out, _ = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:", "--do-sample",
                       "--temperature", "0.8", "--top-p", "0.9", "--seed", "1", "--num-return-sequences", "3",
                       "--max-new-tokens", "10")
    assert code == 0 and out.count("--- sample") == 3
    code, out, _ = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:", "--num-beams", "3",
                       "--max-new-tokens", "5")
    assert code == 0 and out.count("--- candidate") == 3
    scores = [float(line.split("score")[1]) for line in out.splitlines() if line.startswith("--- candidate")]
    assert scores == sorted(scores, reverse=True)


def test_inspect_shows_each_strategy(capsys, model_path, tmp_path):
    png = tmp_path / "s.png"
    argv = ["inspect", "--model", model_path, "--prompt", "ROMEO: But"]
    if has_module("matplotlib"):
        argv += ["--png", str(png)]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    for name in ("greedy", "temperature", "top-k", "top-p", "min-p", "typical", "kept", "chosen"):
        assert name in out
    if has_module("matplotlib"):
        assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not has_module("matplotlib"), reason="matplotlib is not installed")
@pytest.mark.parametrize("what", ["embeddings", "attention"])
def test_plot_writes_pngs(capsys, model_path, tmp_path, what):
    png = tmp_path / f"{what}.png"
    code, out, _ = run(capsys, "plot", what, "--model", model_path, "--prompt", "ROMEO: But", "--png", str(png))
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_train_tiny_run_writes_a_loadable_model(capsys, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(out_dir), "--layers", "1",
                         "--heads", "2", "--d-model", "8", "--context", "8", "--batch-size", "2",
                         "--steps", "4", "--eval-interval", "2", "--eval-iters", "1")
    assert code == 0, err
    assert "best validation loss" in out and "val loss" in err
    model = npgpt.load(str(out_dir / "model.safetensors"))
    assert model.tokenizer.decode(model.tokenizer.encode("ROMEO")) == "ROMEO"
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(out_dir), "--steps", "6",
                         "--resume", "--eval-interval", "2", "--eval-iters", "1")
    assert code == 0 and "resuming from" in err and "after 6 steps" in out


def test_train_refuses_empty_data(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run(capsys, "train", "--data", str(empty))
    assert code == 2 and "is empty" in err


def test_default_corpus_is_python_s_own_text():
    name, text = default_corpus()
    assert name == "pydoc_data.topics" and len(text) > 100_000


def test_bench_prints_a_table(capsys):
    code, out, err = run(capsys, "bench", "--repeats", "1")
    assert code == 0 and "tokens/s" in out and "running:" in err


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "npgpt.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "generate" in out.stdout
