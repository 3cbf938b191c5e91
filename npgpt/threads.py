"""How many threads npgpt's work runs on, chosen per call: by the size of the work and by
whether the cores are free right now.

Matrix products run in NumPy's BLAS (OpenBLAS in NumPy's wheels), elementwise steps on long
prompts in npgpt's own row-split threads (``npgpt._threads``). Both split the work evenly
between the threads and wait for the last part. On a quiet machine two threads finish a large
product in about half the time. On a busy one -- a browser, a build, another job holding a
core -- the part on the busy core runs at a fraction of its speed, and OpenBLAS's waiting
threads spin, burning the time slices the work needed: measured here, a decoding step of a
135M-parameter model took 4x longer with two threads than with one while two other processes
kept the cores busy. And a small product never pays for the hand-over between threads.

So before each large piece of work (a forward pass, a training step) npgpt asks
:func:`for_work` how many threads to use:

- one, when the work is small (fewer than ``MIN_FLOPS`` multiply-adds in the call: a
  decoding step of a small model);
- one, when the other processes on this machine keep a core busy: measured from the CPU time
  the whole machine spent (``/proc/stat``) less this process's own, over the last half second
  or more (at the first call, which has no interval yet, the processes running at that
  moment stand in: ``/proc/loadavg``'s count of runnable tasks, less this one -- not the
  1-minute load average, which still counts work that ended up to a minute ago);
- otherwise every core this process may run on (``os.sched_getaffinity``).

A user can force a count: :func:`set_num_threads` (``npgpt.set_num_threads``), the
``NPGPT_NUM_THREADS`` environment variable, or ``--threads N`` on every command.

The BLAS thread count is set at run time through OpenBLAS's own entry point
(``openblas_set_num_threads``, named with a prefix and suffix in NumPy's bundled copy), found
in this process's loaded libraries. Where NumPy's BLAS is not OpenBLAS (MKL, Apple's
Accelerate) or the entry point is missing, npgpt cannot change its threads: the BLAS keeps its
own default (today's behaviour), and :func:`blas_info` says so; npgpt's own row-split threads
still follow the policy.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import time

__all__ = ["set_num_threads", "get_num_threads", "for_work", "blas_info", "cores_busy_elsewhere", "using"]

#: multiply-adds of a call (tokens x parameters) below which a second thread does not pay
MIN_FLOPS = 1 << 24
#: how long a measurement of the other processes' CPU use stands
SAMPLE_SECONDS = 0.5
#: cores the other processes may use before npgpt goes down to one thread
BUSY_THRESHOLD = 0.5

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")


def _cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


CORES = _cores()


class _Blas:
    """NumPy's OpenBLAS, found in the loaded libraries: its set/get_num_threads, or None."""

    def __init__(self):
        self.path, self.set, self.get, self.name = None, None, None, _blas_name()
        for path in _loaded_libraries():
            if "openblas" not in os.path.basename(path).lower():
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for setter in _SETTERS:
                getter = setter.replace("set_num", "get_num")
                if hasattr(lib, setter) and hasattr(lib, getter):
                    self.path, self.set, self.get = path, getattr(lib, setter), getattr(lib, getter)
                    self.set.argtypes, self.set.restype = [ctypes.c_int], None
                    self.get.argtypes, self.get.restype = [], ctypes.c_int
                    return


def _blas_name():
    try:
        import numpy as np
        config = np.show_config(mode="dicts")
        return config["Build Dependencies"]["blas"]["name"]
    except Exception:            # an old NumPy without mode="dicts", or another layout
        return "unknown"


def _loaded_libraries():
    """Paths of the shared libraries loaded in this process (Linux: /proc/self/maps)."""
    import numpy  # noqa: F401  (NumPy's BLAS is loaded with it)
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            text = maps.read()
    except OSError:
        return []
    return sorted(set(re.findall(r"(/\S+\.(?:so|dylib)(?:\.[\w.]+)?)\s*$", text, re.MULTILINE)))


_blas = None
_forced = None              # set_num_threads / NPGPT_NUM_THREADS: a fixed count, or None
_current = None             # the count last set in the BLAS
_sample = None              # (time, machine busy seconds, own seconds) of the last measurement
_busy = 0.0                 # cores the other processes kept busy, as last measured


def _library():
    global _blas
    if _blas is None:
        _blas = _Blas()
    return _blas


def blas_info() -> dict:
    """What npgpt knows of NumPy's BLAS: ``name``, the ``library`` path whose threads it sets
    (None when it cannot: then the BLAS keeps its own default), and its ``threads`` now.

    >>> sorted(blas_info())
    ['controllable', 'library', 'name', 'threads']
    """
    lib = _library()
    threads = lib.get() if lib.get is not None else None
    return {"name": lib.name, "library": lib.path, "controllable": lib.set is not None,
            "threads": threads}


def _check_count(n, name):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a whole number of threads >= 1, got {n!r}")
    return n


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for every call from now on; ``None`` goes back to choosing per call.

    Parameters
    ----------
    n : int >= 1, or None

    >>> set_num_threads(1); get_num_threads()
    1
    >>> set_num_threads(None)
    """
    global _forced, _environment_read
    _environment_read = True                 # an explicit call outranks the environment
    _forced = None if n is None else _check_count(n, "the number of threads")
    if _forced is not None:
        _apply(_forced)


@contextlib.contextmanager
def using(n: int | None):
    """Run a block on ``n`` threads (None: chosen per call), then restore the count before it
    (a forced count, ``NPGPT_NUM_THREADS``, or choosing per call). ``--threads N`` runs the
    command inside ``using(N)``.

    >>> with using(1):
    ...     get_num_threads()
    1
    """
    global _forced, _environment_read
    saved = (_forced, _environment_read)
    set_num_threads(n)
    try:
        yield
    finally:
        _forced, _environment_read = saved
        if _forced is not None:
            _apply(_forced)


@contextlib.contextmanager
def blas_threads(n: int):
    """The BLAS on ``n`` threads inside the block, the call's count (:func:`get_num_threads`)
    unchanged: for work npgpt has already split between its own threads, each of whose matrix
    products should then keep to its core.

    >>> with using(2), blas_threads(1):
    ...     get_num_threads()
    2
    """
    lib = _library()
    if lib.set is not None:
        lib.set(n)
    try:
        yield
    finally:
        if lib.set is not None and _current is not None:
            lib.set(min(_current, 1 << 16))


def _from_environment():
    text = os.environ.get("NPGPT_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        return _check_count(int(text), "NPGPT_NUM_THREADS")
    except ValueError:
        raise ValueError(f"NPGPT_NUM_THREADS must be a whole number of threads >= 1, got {text!r}") from None


def get_num_threads() -> int:
    """The threads the last call used (or would use now, before any call).

    >>> with using(2):
    ...     get_num_threads()
    2
    """
    return _current if _current is not None else (_forced or CORES)


def forced() -> int | None:
    """The count a user fixed (set_num_threads or NPGPT_NUM_THREADS), or None.

    >>> with using(3):
    ...     forced()
    3
    """
    _read_environment()
    return _forced


def cores_busy_elsewhere() -> float:
    """Cores kept busy by other processes, measured over the last ``SAMPLE_SECONDS`` or more.

    Linux: the machine's busy CPU time (``/proc/stat``) less this process's own
    (``time.process_time()``, every thread of it) over the interval. The first call has no
    interval yet and counts the other tasks running at that moment (:func:`_running_elsewhere`).
    Elsewhere: the 1-minute load average, or 0 when the platform has none.

    >>> cores_busy_elsewhere() >= 0.0
    True
    """
    global _sample, _busy
    now = time.monotonic()
    if _sample is not None and now - _sample[0] < SAMPLE_SECONDS:
        return _busy
    machine = _machine_busy_seconds()
    own = time.process_time()
    if machine is None:
        _busy = _load_average()
    elif _sample is None:
        _busy = _running_elsewhere()
    else:
        elapsed = now - _sample[0]
        _busy = max(0.0, (machine - _sample[1]) - (own - _sample[2])) / elapsed
    _sample = (now, machine, own)
    return _busy


def _machine_busy_seconds():
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()[1:]
        ticks = [int(f) for f in fields]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)          # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _running_elsewhere(reads=3):
    """Tasks running or ready to run on the machine now, less this reading thread: the median
    of ``reads`` looks at ``/proc/loadavg``'s "running/total" field a millisecond apart (the
    load average if it cannot be read)."""
    counts = []
    for i in range(reads):
        try:
            with open("/proc/loadavg", encoding="ascii") as loadavg:
                counts.append(int(loadavg.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return _load_average()
        if i + 1 < reads:
            time.sleep(0.001)
    return float(max(0, sorted(counts)[len(counts) // 2]))


def _load_average():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def for_work(flops: float) -> int:
    """Choose the threads for a call of ``flops`` multiply-adds (about tokens x parameters),
    set them in the BLAS, and return the count (see the module doc).

    >>> for_work(10) == 1 or forced() is not None
    True
    """
    _read_environment()
    if _forced is not None:
        n = _forced
    elif CORES < 2 or flops < MIN_FLOPS:
        n = 1
    else:
        n = 1 if cores_busy_elsewhere() > BUSY_THRESHOLD else CORES
    _apply(n)
    return n


def _apply(n):
    global _current
    if n != _current:
        lib = _library()
        if lib.set is not None:
            lib.set(min(n, 1 << 16))         # OpenBLAS caps it at its own maximum (64 in NumPy's)
        _current = n


_environment_read = False


def _read_environment():
    """NPGPT_NUM_THREADS, read at the first call (a bad value is a ValueError naming it)."""
    global _environment_read, _forced
    if not _environment_read:
        _environment_read = True
        if _forced is None:
            _forced = _from_environment()
