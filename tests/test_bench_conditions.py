"""``npgpt bench`` says under what conditions its figures were taken: the threads npgpt ran
on and why (fixed by the user, or chosen per call), NumPy's BLAS, and the machine's 1-minute
load average at the start and at the end. No timing is asserted: the benchmarks themselves are
replaced."""

import os

import pytest

import npgpt.bench
from npgpt import threads
from helpers import run_cli

ROWS = [("top-k 50", "logits (32, 50257)", 0.00182, "17,616 rows/s")]


@pytest.fixture
def quick_bench(monkeypatch):
    """npgpt bench with a stand-in for the benchmarks, loads 0.25 then 1.75."""
    monkeypatch.setattr(npgpt.bench, "run", lambda repeats, progress: list(ROWS))
    loads = iter([(0.25, 0.0, 0.0), (1.75, 0.0, 0.0)])
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    monkeypatch.delenv("NPGPT_NUM_THREADS", raising=False)
    yield monkeypatch
    threads.set_num_threads(None)


def test_bench_says_the_threads_were_fixed_and_the_load_at_start_and_end(capsys, quick_bench):
    code, out, err = run_cli(capsys, "bench", "--repeats", "1", "--threads", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert "| top-k 50 " in out
    blas = threads.blas_info()["name"]
    assert any(l.startswith("threads: 1 (fixed: --threads, NPGPT_NUM_THREADS or set_num_threads); "
                            f"NumPy's BLAS: {blas}") for l in lines), out
    assert (f"load average (1 minute): 0.25 at the start, 1.75 at the end, on {os.cpu_count()} CPUs"
            in lines)


def test_without_a_fixed_count_bench_says_it_chose_per_call(capsys, quick_bench):
    code, out, _ = run_cli(capsys, "bench")
    line = next(l for l in out.splitlines() if l.startswith("threads: "))
    assert code == 0 and "(chosen per call: one for small work or while other processes hold a core)" in line


def test_a_blas_npgpt_cannot_steer_is_named_as_keeping_its_own_default(capsys, quick_bench):
    quick_bench.setattr(threads, "blas_info", lambda: {"name": "accelerate", "library": None,
                                                       "controllable": False, "threads": None})
    code, out, _ = run_cli(capsys, "bench")
    assert code == 0 and "NumPy's BLAS: accelerate, its threads not set by npgpt (its own default)" in out


def test_a_system_without_a_load_average_says_so(capsys, quick_bench):
    def unavailable():
        raise OSError("no load average")
    quick_bench.setattr(os, "getloadavg", unavailable)
    code, out, _ = run_cli(capsys, "bench")
    assert code == 0 and "load average: unknown (os.getloadavg is not available here)" in out.splitlines()
