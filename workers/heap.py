"""glibc's ``malloc_trim``: the free pages of a process's heap go back to the system.

Standard library only, so that any of Flowwatch's programs can use it: the
workers once idle (workers/trim.py) and the bundled simulator after a paged
read (simulator/api.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable


def glibc_malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)
