"""Give the heap back to the operating system after oversized messages have passed through.

A message of many megabytes (which the ingestor only dead-letters) leaves its buffers
free but held by the C allocator's per-thread arenas: 57 messages of 10 MB once left
an idle ingestor at 1.4 GiB.  ``release()`` asks glibc to return free memory
(``malloc_trim``); elsewhere it does nothing.  ``pin_mmap_threshold()`` goes further:
every allocation from ``BIG`` on is mapped on its own and unmapped when freed, so a
10 MB payload never lands on the heap at all (glibc raises its threshold after the
first such free, up to 32 MB, unless it is pinned).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

BIG = 1024 * 1024  # a payload from this size on leaves enough behind to be worth a trim


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def pin_mmap_threshold(size: int = BIG) -> bool:
    """Map every allocation of ``size`` bytes or more on its own; False where unsupported."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, size))


def release() -> bool:
    """Return free heap memory to the OS; False where the C library cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
