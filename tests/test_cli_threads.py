"""``--threads N`` on every command, and the thread count in what the commands report."""

import re

import pytest

import npgpt.bench
from npgpt import threads
from npgpt.cli import build_parser

from helpers import run_cli as run
from test_cli import TEXT, model_path  # noqa: F401 - the tiny saved model
from test_cli_features import SUMMARY
from test_cli_hardening import assert_one_line_error

COMMANDS = sorted(build_parser().commands)


def test_every_registered_command_has_threads():
    for name, parser in build_parser().commands.items():
        assert "--threads" in parser.format_help(), name


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("value, message", [("0", "must be a positive integer, got 0"),
                                            ("-2", "must be a positive integer, got -2"),
                                            ("two", "invalid int value: 'two'")])
def test_a_bad_threads_value_is_one_line_naming_the_flag(capsys, command, value, message):
    code, out, err = run(capsys, command, "--threads", value)
    assert_one_line_error(code, out, err, "--threads", message)


def test_a_bad_environment_count_is_one_line_naming_it(capsys, monkeypatch, model_path):
    monkeypatch.setattr(threads, "_environment_read", False)
    monkeypatch.setenv("NPGPT_NUM_THREADS", "many")
    code, out, err = run(capsys, "generate", "-m", model_path, "-n", "2")
    assert_one_line_error(code, out, err, "NPGPT_NUM_THREADS", "'many'")


@pytest.mark.parametrize("n, shown", [(1, "1 thread"), (2, "2 threads"), (3, "3 threads")])
def test_generate_runs_on_the_threads_asked_and_its_summary_says_so(capsys, model_path, n, shown):
    before = threads.forced()
    code, _, err = run(capsys, "generate", "-m", model_path, "-n", "5", "--threads", str(n))
    match = SUMMARY.match(err.splitlines()[-1])
    assert code == 0 and match, err
    assert f", {shown})" in err.splitlines()[-1] or f"({shown})" in err.splitlines()[-1], err
    assert threads.forced() == before                   # the command's count ends with it


def test_train_progress_and_summary_name_the_threads(capsys, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"),
                         "--layers", "1", "--heads", "2", "--d-model", "8", "--context", "8",
                         "--batch-size", "2", "--steps", "2", "--eval-interval", "1", "--eval-iters", "1",
                         "--threads", "2")
    assert code == 0, err
    assert re.search(r"after 2 steps in .* on 2 threads;", out), out
    assert re.search(r"^step +2/2 \|.*\| 2 threads \| ETA", err, re.MULTILINE), err


def test_bench_prints_its_threads_and_the_load(capsys, monkeypatch):
    monkeypatch.setattr(npgpt.bench, "run", lambda repeats, progress: [("x", "y", 0.001, "1 rows/s")])
    code, out, _ = run(capsys, "bench", "--threads", "1")
    assert code == 0 and re.search(r"^threads: 1 \(fixed: --threads, NPGPT_NUM_THREADS or set_num_threads\); "
                                   r"NumPy's BLAS: ", out, re.MULTILINE), out
    assert re.search(r"^load average (\(1 minute\): [\d.]+ at the start, [\d.]+ at the end|: unknown)", out,
                     re.MULTILINE), out


def test_using_restores_the_count_before_it():
    threads.set_num_threads(None)
    with threads.using(3):
        assert threads.forced() == 3 and threads.for_work(1e12) == 3
    assert threads.forced() is None
    threads.set_num_threads(2)
    with threads.using(1):
        assert threads.for_work(1e12) == 1
    assert threads.forced() == 2 and threads.for_work(1e12) == 2
    threads.set_num_threads(None)
