"""glibc's heap in a long-running server: fewer arenas, and freed memory given back to the system.

Measured with `python bench/load_test.py --trace-memory 6` (50 clients x 8 requests): the server's RSS grew
78 MB over the run, of which Python objects still alive were 20 MB (each session's last outputs, bounded
by the app's session cap) and memory freed but kept inside glibc's arenas was +44 MB. Every worker
thread that allocates may get an arena of its own (up to 8 per core), and a freed chunk in the middle
of an arena stays resident until malloc_trim() hands its pages back. So the app limits the arenas and
runs a trimmer: a thread that calls malloc_trim(0) when the resident size has grown since its last call.
Without glibc (musl, macOS) every function here does nothing and says so.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENAS = 2  # the usual setting for threaded Python servers (MALLOC_ARENA_MAX=2)
TRIM_EVERY_S = 1.0  # how often the trimmer looks at the resident size
TRIM_GROWTH_MB = 8  # it trims when the resident size grew by this much since the last trim

_libc: ctypes.CDLL | None | bool = False


def libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        try:
            lib = ctypes.CDLL("libc.so.6")
            lib.malloc_trim, lib.mallopt  # noqa: B018 - both exist on glibc only
            _libc = lib
        except (OSError, AttributeError):
            _libc = None
    return _libc


def limit_arenas(n: int = ARENAS) -> bool:
    """At most n malloc arenas from now on (threads made later share them). False without glibc."""
    lib = libc()
    return bool(lib and lib.mallopt(M_ARENA_MAX, n))


def trim() -> bool:
    """Give the free pages of every arena back to the system. True if any memory was released."""
    lib = libc()
    return bool(lib and lib.malloc_trim(0))


def rss_bytes() -> int:
    """Resident size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def start_trimmer(every_s: float = TRIM_EVERY_S, growth_mb: float = TRIM_GROWTH_MB) -> threading.Thread | None:
    """A daemon thread that trims whenever the resident size grew by growth_mb since its last trim (reading it
    costs microseconds; a trim, a few milliseconds, runs only after growth). None without glibc."""
    if libc() is None:
        return None

    def loop():
        floor = rss_bytes()
        while True:
            time.sleep(every_s)
            if rss_bytes() - floor > growth_mb * 2 ** 20:
                trim()
                floor = rss_bytes()
    thread = threading.Thread(target=loop, name="dfdet-heap-trimmer", daemon=True)
    thread.start()
    return thread
