"""Give the heap back to the operating system after oversized messages have passed through.

A message of many megabytes (which the ingestor only dead-letters) leaves its buffers
free but held by the C allocator's per-thread arenas: 57 messages of 10 MB once left
an idle ingestor at 1.4 GiB.  ``release()`` asks glibc to return free memory
(``malloc_trim``); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

BIG = 1024 * 1024  # a payload from this size on leaves enough behind to be worth a trim


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release() -> bool:
    """Return free heap memory to the OS; False where the C library cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
