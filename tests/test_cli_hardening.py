"""The command line under bad input: every failure is one line on stderr with exit code 2,
printed before anything else; a closed pipe and Ctrl-C end it quietly; misspellings get a
"did you mean"; beam search prints the asked-for number of candidates."""

import argparse
import importlib
import os
import re
import signal
import subprocess
import sys

import pytest

import npgpt
from npgpt.cli import build_parser, main

from helpers import has_module
from test_cli import model_path, run  # noqa: F401 - the tiny saved model, the in-process runner

TIMEOUT = 120
generate_module = importlib.import_module("npgpt.generation")   # npgpt.generate is the function


def assert_one_line_error(code, out, err, *needles):
    """Exit code 2, nothing on stdout, one line on stderr holding every needle."""
    assert code == 2, (code, out, err)
    assert out == "", f"printed before the error: {out!r}"
    assert "Traceback" not in err and len(err.strip("\n").splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def npgpt_process(*argv, **options):
    return subprocess.run([sys.executable, "-m", "npgpt", *argv], capture_output=True, text=True,
                          timeout=TIMEOUT, **options)


# ------------------------------------------------------------- every option checked first
PYTHON_NAMES = ("max_new_tokens", "min_new_tokens", "do_sample", "top_k", "top_p", "min_p",
                "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty",
                "presence_penalty", "frequency_penalty", "no_repeat_ngram_size", "num_beams",
                "length_penalty", "early_stopping", "num_return_sequences", "eos_token_id")


@pytest.mark.parametrize("argv, flag", [
    (["--do-sample", "--top-p", "1.5"], "--top-p"),
    (["--do-sample", "--top-p", "nan"], "--top-p"),
    (["--do-sample", "--temperature", "-1"], "--temperature"),
    (["--do-sample", "--min-p", "2"], "--min-p"),
    (["--do-sample", "--typical-p", "0"], "--typical-p"),
    (["--do-sample", "--epsilon-cutoff", "1"], "--epsilon-cutoff"),
    (["--do-sample", "--eta-cutoff", "-0.5"], "--eta-cutoff"),
    (["--repetition-penalty", "0"], "--repetition-penalty"),
    (["--presence-penalty", "inf"], "--presence-penalty"),
    (["--frequency-penalty", "nan"], "--frequency-penalty"),
    (["--num-beams", "2", "--length-penalty", "nan"], "--length-penalty"),
    (["--min-new-tokens", "5", "--max-new-tokens", "3"], "--min-new-tokens (5) exceeds --max-new-tokens (3)"),
    (["--num-beams", "2", "--num-return-sequences", "3"], "--num-return-sequences"),
    (["--eos-token-id", "999"], "--eos-token-id 999 is out of range"),
    (["--eos-token-id", "1", "80"], "--eos-token-id 80 is out of range"),
])
def test_generate_checks_every_option_before_printing(capsys, model_path, argv, flag):
    code, out, err = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:",
                         "--max-new-tokens", "3", *argv)
    assert_one_line_error(code, out, err, "npgpt generate: error:", flag)
    assert not any(re.search(rf"\b{name}\b", err) for name in PYTHON_NAMES), err


@pytest.mark.parametrize("argv, flag", [
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--min-p", "2"], "--min-p"),
    (["--typical-p", "1.5"], "--typical-p"),
])
def test_inspect_checks_every_option_before_printing(capsys, model_path, argv, flag):
    code, out, err = run(capsys, "inspect", "--model", model_path, "--prompt", "ROMEO:", *argv)
    assert_one_line_error(code, out, err, "npgpt inspect: error: " + flag)


def _int_options():
    """(command, flag) of every int option of every command but train (checked elsewhere)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        if name == "train":
            continue
        for action in parser._actions:
            if action.option_strings and action.type not in (None, float, str):
                yield name, action.option_strings[-1]


INT_OPTIONS = list(_int_options())
REQUIRED = {"generate": ["--max-new-tokens", "2"], "inspect": ["--prompt", "ROMEO:"],
            "plot": ["embeddings", "--png", "x.png"], "bench": [], "chat": [],
            "convert": ["in.safetensors", "out.gguf"]}


def test_the_int_options_are_found():
    assert ("inspect", "--top") in INT_OPTIONS and ("bench", "--repeats") in INT_OPTIONS
    assert len(INT_OPTIONS) >= 12


@pytest.mark.parametrize("command, flag", INT_OPTIONS, ids=[" ".join(o) for o in INT_OPTIONS])
@pytest.mark.parametrize("value", ["-1", "10" * 20])
def test_every_int_option_refuses_out_of_range_values_in_one_line(capsys, monkeypatch, model_path,
                                                                   command, flag, value):
    def work(*args, **kwargs):                # refused before any work (and never runs forever)
        raise AssertionError(f"{command} {flag} {value} started working")

    for module, name in ((generate_module, "stream"), (generate_module, "generate"),
                         (importlib.import_module("npgpt.bench"), "run")):
        monkeypatch.setattr(module, name, work)
    model = ["--model", model_path] if command not in ("bench", "convert") else []
    code, out, err = run(capsys, command, *REQUIRED[command], *model, flag, value)
    assert_one_line_error(code, out, err, f"npgpt {command}: error: argument {flag}:", value)


@pytest.mark.parametrize("argv, message", [
    (["inspect", "--prompt", "ROMEO:", "--top", "0"], "argument --top: must be a positive integer, got 0"),
    (["generate", "--num-beams", "0"], "argument --num-beams: must be a positive integer, got 0"),
    (["generate", "--max-new-tokens", "-1"], "must be a non-negative integer, got -1"),
    (["generate", "--seed", "-1"], "argument --seed: must be a non-negative integer"),
    (["bench", "--repeats", "0"], "argument --repeats: must be a positive integer, got 0"),
    (["generate", "--max-new-tokens", "x"], "argument --max-new-tokens: invalid int value: 'x'"),
])
def test_int_ranges_are_checked_by_the_parser(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, message, f"(see npgpt {argv[0]} --help)")


# ------------------------------------------------------------------------ pictures
@pytest.mark.parametrize("command", [["inspect", "--prompt", "ROMEO:"], ["plot", "embeddings"],
                                     ["plot", "attention", "--prompt", "ROMEO:"]])
@pytest.mark.parametrize("name, message", [
    (os.path.join("no-such-folder", "x.png"), "there is no folder"),
    ("x.foo", "the name must end in .png"),
    ("picture", "the name must end in .png"),
    ("folder.png", "is a folder"),
])
def test_png_path_is_checked_before_any_work(capsys, model_path, tmp_path, command, name, message):
    (tmp_path / "folder.png").mkdir()
    path = str(tmp_path / name)
    code, out, err = run(capsys, *command, "--model", model_path, "--png", path)
    assert_one_line_error(code, out, err, f"npgpt {command[0]}: error: --png", message)
    assert sorted(os.listdir(tmp_path)) == ["folder.png"]


@pytest.mark.skipif(not has_module("matplotlib"), reason="matplotlib is not installed")
def test_png_may_be_another_format_matplotlib_writes(capsys, model_path, tmp_path):
    svg = tmp_path / "e.svg"
    code, out, _ = run(capsys, "plot", "embeddings", "--model", model_path, "--png", str(svg))
    assert code == 0 and out == f"wrote {svg}\n" and b"<svg" in svg.read_bytes()[:2000]


# ------------------------------------------------------------------- damaged models
@pytest.mark.parametrize("content", [b"", b"hello", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
                                     os.urandom(300), b"PK\x03\x04 not really a zip"])
def test_damaged_model_file_is_one_line(capsys, tmp_path, content):
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(content)
    code, out, err = run(capsys, "generate", "--model", str(path), "--max-new-tokens", "2")
    assert_one_line_error(code, out, err, "npgpt generate: error:")


@pytest.mark.parametrize("command", [["generate"], ["inspect", "--prompt", "R"], ["plot", "embeddings", "--png", "x.png"]])
def test_missing_model_or_folder_is_one_line(capsys, tmp_path, command):
    for model in (str(tmp_path / "missing.safetensors"), str(tmp_path)):
        code, out, err = run(capsys, *command, "--model", model)
        assert_one_line_error(code, out, err, f"npgpt {command[0]}: error:")


# ------------------------------------------------------------------- out of memory
@pytest.mark.parametrize("extra, function", [([], "stream"), (["--num-beams", "2"], "generate")])
def test_out_of_memory_is_one_line(capsys, monkeypatch, model_path, extra, function):
    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.28 TiB for an array")

    monkeypatch.setattr(generate_module, function, too_big)
    code, out, err = run(capsys, "generate", "--model", model_path, "--max-new-tokens", "2", *extra)
    assert_one_line_error(code, out, err, "npgpt generate: error: out of memory", "7.28 TiB")


def test_out_of_memory_half_way_ends_the_line_first(capsys, monkeypatch, model_path):
    real_stream = generate_module.stream

    def runs_out(*args, **kwargs):
        for i, tokens in enumerate(real_stream(*args, **kwargs)):
            if i == 2:
                raise MemoryError()
            yield tokens

    monkeypatch.setattr(generate_module, "stream", runs_out)
    code, out, err = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:",
                         "--max-new-tokens", "5")
    assert code == 2 and out.startswith("ROMEO:") and out.endswith("\n")
    assert err.count("\n") == 1 and "out of memory" in err and "Traceback" not in err


def test_huge_max_new_tokens_streams_or_fails_in_one_line():
    """10**12 tokens: either generation streams (and the closed pipe ends it quietly) or the
    allocation fails as one line; never a traceback."""
    pipe = subprocess.Popen([sys.executable, "-m", "npgpt", "generate", "--max-new-tokens", str(10**12)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        head = pipe.stdout.read(20)
        pipe.stdout.close()
        _, err = pipe.communicate(timeout=TIMEOUT)
    finally:
        pipe.kill()
    err = err.decode()
    if pipe.returncode == 2:
        assert "out of memory" in err and len(err.strip().splitlines()) == 1
    else:
        assert len(head) == 20 and pipe.returncode in (0, 141) and err == ""


# ------------------------------------------------------------------ a closed pipe
@pytest.mark.parametrize("argv", [
    ["generate", "--max-new-tokens", "300"],
    ["generate", "--max-new-tokens", "3000"],
    ["generate", "--max-new-tokens", "30", "--num-beams", "3"],
    ["generate", "--max-new-tokens", "100", "--do-sample", "--num-return-sequences", "3"],
    ["inspect", "--prompt", "ROMEO:"],
])
def test_output_into_a_closed_pipe_ends_quietly(argv):
    npgpt_ = subprocess.Popen([sys.executable, "-m", "npgpt", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-c", "20"], stdin=npgpt_.stdout, stdout=subprocess.PIPE)
    npgpt_.stdout.close()                     # head alone reads it now
    try:
        shown, _ = head.communicate(timeout=TIMEOUT)
        _, err = npgpt_.communicate(timeout=TIMEOUT)
    finally:
        npgpt_.kill()
        head.kill()
    assert len(shown) == 20
    assert npgpt_.returncode in (0, 141) and err == b""


def test_a_broken_pipe_returns_141_without_a_word(capsys, model_path, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["generate", "--model", model_path, "--max-new-tokens", "3"])
    assert code == 141 and capsys.readouterr().err == ""


# ---------------------------------------------------------------------- Ctrl-C
@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_ctrl_c_while_generating_exits_130_quietly():
    pipe = subprocess.Popen([sys.executable, "-m", "npgpt", "generate", "--max-new-tokens", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert len(pipe.stdout.read(5)) == 5          # it is streaming
        pipe.send_signal(signal.SIGINT)
        _, err = pipe.communicate(timeout=TIMEOUT)
    finally:
        pipe.kill()
    assert pipe.returncode == 130 and err.decode().strip() == "interrupted"


@pytest.mark.parametrize("argv, module, function", [
    (["inspect", "--prompt", "ROMEO:"], "npgpt.viz", "strategy_report"),
    (["plot", "embeddings", "--png", "e.png"], "npgpt.viz", "plot_embeddings"),
    (["bench", "--repeats", "1"], "npgpt.bench", "run"),
    (["generate", "--max-new-tokens", "3", "--num-beams", "2"], "npgpt.generation", "generate"),
])
def test_ctrl_c_in_each_command_exits_130_quietly(capsys, monkeypatch, tmp_path, model_path, argv,
                                                  module, function):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    model = ["--model", model_path] if argv[0] != "bench" else []
    code, _, err = run(capsys, *argv, *model)
    assert code == 130 and err.strip() == "interrupted"


# ------------------------------------------------------------ misspellings
@pytest.mark.parametrize("argv, where, suggestion", [
    (["generate", "--topp", "0.9"], "generate", "did you mean --top-p?"),
    (["generate", "--max-new-tokes=3"], "generate", "did you mean --max-new-tokens?"),
    (["inspect", "--prompt", "R", "--temprature", "1"], "inspect", "did you mean --temperature?"),
    (["bench", "--repats", "2"], "bench", "did you mean --repeats?"),
    (["generate", "--early-stopping", "nevr"], "generate", "did you mean never?"),
    (["plot", "embedings", "--png", "x.png"], "plot", "did you mean embeddings?"),
])
def test_unknown_options_are_reported_for_the_sub_command(capsys, argv, where, suggestion):
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, f"npgpt {where}: error:", suggestion,
                          f"(see npgpt {where} --help)")


def test_unknown_option_without_a_close_match_has_no_suggestion(capsys):
    code, out, err = run(capsys, "generate", "--colour", "red")
    assert_one_line_error(code, out, err, "npgpt generate: error: unrecognized arguments: --colour red")
    assert "did you mean" not in err


def test_a_misspelled_command_gets_a_suggestion(capsys):
    code, out, err = run(capsys, "generat", "--prompt", "x")
    assert_one_line_error(code, out, err, "npgpt: error:", "'generat'", "did you mean generate?",
                          "(see npgpt --help)")


# --------------------------------------------------------------- beam search
def _candidates(out):
    return [float(line.split("score")[1]) for line in out.splitlines() if line.startswith("--- candidate")]


def test_beam_search_prints_num_return_sequences_best_first(capsys, model_path):
    argv = ["generate", "--model", model_path, "--prompt", "ROMEO:", "--num-beams", "4",
            "--max-new-tokens", "5"]
    code, every, _ = run(capsys, *argv)
    assert code == 0 and len(_candidates(every)) == 4 and every.startswith("beam search, 4 beams:")
    code, best, _ = run(capsys, *argv, "--num-return-sequences", "2")
    assert code == 0 and best.startswith("beam search, best 2 of 4 beams:")
    assert _candidates(best) == _candidates(every)[:2]
    assert best.splitlines()[1:] == every.splitlines()[1:5]


def test_beam_sampling_prints_the_drawn_candidates_best_first_and_a_seed_repeats_them(capsys, model_path):
    argv = ["generate", "--model", model_path, "--prompt", "ROMEO:", "--num-beams", "3", "--do-sample",
            "--top-k", "5", "--max-new-tokens", "5", "--num-return-sequences", "3"]
    code, first, err = run(capsys, *argv, "--seed", "1")
    assert code == 0 and first.startswith("beam sampling, 3 beams:"), (code, err)
    scores = _candidates(first)
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert run(capsys, *argv, "--seed", "1")[1] == first
    assert any(run(capsys, *argv, "--seed", str(seed))[1] != first for seed in (2, 3, 4))   # it draws


# ------------------------------------------------------- --version, python -m npgpt
def test_version(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and out == f"npgpt {npgpt.__version__}\n" and err == ""


def test_python_dash_m_npgpt_runs_the_command_line(capsys, tmp_path):
    process = npgpt_process("generate", "--prompt", "ROMEO:", "--max-new-tokens", "5", cwd=tmp_path)
    code, out, _ = run(capsys, "generate", "--prompt", "ROMEO:", "--max-new-tokens", "5")
    assert process.returncode == code == 0 and process.stdout == out
    version = npgpt_process("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout == f"npgpt {npgpt.__version__}\n"
    bad = npgpt_process("generate", "--top-p", "1.5", "--do-sample", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "npgpt generate: error: --top-p must be in (0, 1], got 1.5\n"


def test_a_stdout_that_cannot_show_a_character_prints_a_question_mark(tmp_path):
    process = npgpt_process("inspect", "--prompt", "ROMEO:", cwd=tmp_path,
                            env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert process.returncode == 0 and process.stderr == ""
    assert "next-token distribution" in process.stdout and "?" in process.stdout      # the bars
