"""The thread policy (npgpt/threads.py): user overrides, the busy-machine measurement, the
choice per call, and that the count changes speed only, never results."""

import os
import subprocess
import sys

import numpy as np
import pytest

import npgpt
from npgpt import _threads, threads


@pytest.fixture(autouse=True)
def _adaptive_again():
    yield
    threads.set_num_threads(None)


def test_set_num_threads_fixes_the_count_for_every_call_and_none_goes_back_to_choosing():
    npgpt.set_num_threads(1)
    assert threads.for_work(1e12) == 1 and npgpt.get_num_threads() == 1
    info = threads.blas_info()
    if info["controllable"]:
        assert info["threads"] == 1
    npgpt.set_num_threads(None)
    assert threads.forced() is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None.__class__])
def test_a_bad_thread_count_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="threads"):
        npgpt.set_num_threads(bad)


def test_the_environment_variable_forces_the_count_and_a_bad_value_names_the_variable():
    code = "import npgpt; from npgpt import threads; print(threads.for_work(1e12), threads.forced())"
    env = {**os.environ, "NPGPT_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "1"], out.stderr
    env["NPGPT_NUM_THREADS"] = "many"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "NPGPT_NUM_THREADS" in out.stderr and "'many'" in out.stderr


def test_small_work_runs_on_one_thread():
    assert threads.for_work(threads.MIN_FLOPS - 1) == 1


def _clock(monkeypatch, machine, own, now):
    monkeypatch.setattr(threads, "_machine_busy_seconds", lambda: machine[0])
    monkeypatch.setattr(threads.time, "process_time", lambda: own[0])
    monkeypatch.setattr(threads.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(threads, "_sample", None)


def test_the_busy_measure_is_the_machines_cpu_time_less_this_processs(monkeypatch):
    machine, own, now = [100.0], [10.0], [50.0]
    _clock(monkeypatch, machine, own, now)
    monkeypatch.setattr(threads, "_running_elsewhere", lambda: 3.0)
    assert threads.cores_busy_elsewhere() == 3.0             # no interval yet: the tasks running now
    machine[0], own[0], now[0] = 101.5, 10.9, 51.0            # 1.5 core-s busy, 0.9 of them ours
    assert threads.cores_busy_elsewhere() == pytest.approx(0.6)
    machine[0], now[0] = 200.0, 51.1                          # within SAMPLE_SECONDS: kept
    assert threads.cores_busy_elsewhere() == pytest.approx(0.6)


@pytest.mark.skipif(threads.CORES < 2, reason="needs two cores")
def test_large_work_uses_every_core_when_they_are_free_and_one_when_another_process_holds_one(monkeypatch):
    monkeypatch.setattr(threads, "cores_busy_elsewhere", lambda: 0.1)
    assert threads.for_work(1e12) == threads.CORES
    monkeypatch.setattr(threads, "cores_busy_elsewhere", lambda: 1.0)
    assert threads.for_work(1e12) == 1


def test_row_split_steps_follow_the_calls_count(monkeypatch):
    seen = []
    npgpt.set_num_threads(1)
    _threads.by_rows(lambda lo, hi: seen.append((lo, hi)), 8, _threads.MIN_ELEMENTS * 2)
    assert seen == [(0, 8)]


def test_the_thread_count_changes_no_result():
    model = npgpt.load("shakespeare-char")
    ids = np.array(model.tokenizer.encode("ROMEO: a long enough prompt to split the work " * 2))
    results = []
    for n in (1, max(2, threads.CORES)):
        npgpt.set_num_threads(n)
        logits = model(ids[None])
        tokens = npgpt.generate(model, ids, max_new_tokens=20).sequences
        results.append((logits, tokens))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_the_first_guess_counts_the_tasks_running_now_less_this_one(monkeypatch, tmp_path):
    reads = iter(["9.50 9.0 8.0 1/300 123\n", "9.50 9.0 8.0 4/300 123\n", "9.50 9.0 8.0 2/300 123\n"])
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            file = tmp_path / "loadavg"
            file.write_text(next(reads))
            return real_open(file, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert threads._running_elsewhere() == 1.0      # median of 0, 3, 1 others: not the load 9.5
