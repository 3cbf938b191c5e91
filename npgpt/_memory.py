"""Keep freed memory for reuse instead of handing it back to the system at once (glibc only).

NumPy makes a new array for most steps of a forward or backward pass and frees it soon
after. With glibc's default settings, arrays above a size it adjusts on the fly are given
their own pages (mmap) and freed memory at the top of the heap is returned to the system
(trim); each new array then touches fresh pages, and every first touch of a page is a page
fault. On this project's 2-core machine that made a training step of nanoGPT's baby GPT take
anywhere from 60 to 95 ms depending on the order of earlier allocations, and 55-65 ms with
the settings below, which let arrays up to 32 MB reuse the heap and keep up to 256 MB of freed
heap in the process.

``import npgpt`` applies them once, through ``mallopt``, unless the environment already
sets ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (the user's choice wins) or
``NPGPT_TUNE_MALLOC=0``. They concern the whole process: freed memory up to 256 MB stays
mapped until reused, which raises the resident size after a peak, never the peak itself.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024       # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024


def tune_malloc(environ=os.environ) -> bool:
    """Apply the settings above; True if they were applied.

    Examples
    --------
    >>> tune_malloc({"NPGPT_TUNE_MALLOC": "0"})
    False
    """
    if environ.get("NPGPT_TUNE_MALLOC") == "0" or any(
            name in environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
