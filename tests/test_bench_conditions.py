"""``npgpt bench`` says under what conditions its figures were taken: the threads NumPy's
BLAS uses (and where that number comes from) and the machine's 1-minute load average, at the
start and at the end. No timing is asserted: the benchmarks themselves are replaced."""

import os

import pytest

import npgpt.bench
from helpers import run_cli

ROWS = [("top-k 50", "logits (32, 50257)", 0.00182, "17,616 rows/s")]
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


@pytest.fixture
def quick_bench(monkeypatch):
    """npgpt bench with a stand-in for the benchmarks, loads 0.25 then 1.75, no thread variable."""
    monkeypatch.setattr(npgpt.bench, "run", lambda repeats, progress: list(ROWS))
    loads = iter([(0.25, 0.0, 0.0), (1.75, 0.0, 0.0)])
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    for name in BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variables, line", [
    ({"OPENBLAS_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, "uses 3 (OPENBLAS_NUM_THREADS=3)"),
    ({"OMP_NUM_THREADS": "1"}, "uses 1 (OMP_NUM_THREADS=1)"),
    ({"OPENBLAS_NUM_THREADS": "0", "GOTO_NUM_THREADS": "4"}, "uses 4 (GOTO_NUM_THREADS=4)"),
])
def test_bench_names_the_blas_threads_and_where_the_number_comes_from(capsys, quick_bench, variables, line):
    for name, value in variables.items():
        quick_bench.setenv(name, value)
    code, out, err = run_cli(capsys, "bench", "--repeats", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert "| top-k 50 " in out
    assert f"threads: NumPy's BLAS {line}" in lines
    assert (f"load average (1 minute): 0.25 at the start, 1.75 at the end, on {os.cpu_count()} CPUs"
            in lines)


def test_without_a_variable_the_threads_are_the_cpus_this_process_may_use(capsys, quick_bench):
    code, out, _ = run_cli(capsys, "bench")
    expected = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    line = next(l for l in out.splitlines() if l.startswith("threads: "))
    assert code == 0 and line.startswith(f"threads: NumPy's BLAS uses {expected} (")
    assert ("os.sched_getaffinity" if hasattr(os, "sched_getaffinity") else "os.cpu_count()") in line


def test_a_system_without_a_load_average_says_so(capsys, quick_bench):
    def unavailable():
        raise OSError("no load average")
    quick_bench.setattr(os, "getloadavg", unavailable)
    code, out, _ = run_cli(capsys, "bench")
    assert code == 0 and "load average: unknown (os.getloadavg is not available here)" in out.splitlines()
