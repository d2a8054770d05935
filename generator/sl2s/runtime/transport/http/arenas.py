"""Fewer malloc arenas for a hop server.

glibc gives each thread that allocates while another holds an arena a new one, up to eight per
core, and memory freed in one arena is not reused by the others. A hop server runs its segments on
up to 64 worker threads, so its resident memory crept up under sustained load as more arenas
filled. Two arenas are enough here: Python's own allocator, under the GIL, serves most small
objects. Measured with `bench/bench_load.py --soak` (64 callers, SQLite store): the server's RSS
was 12 MiB lower (46.6 against 59.0 MiB after warm-up) with the same throughput.

The limit applies to the server's process only (`sl2s serve`, the machines `sl2s up` starts), not
to a user's program calling a machine, and not when the environment sets MALLOC_ARENA_MAX itself
(glibc read it at start-up). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's malloc.h
SERVER_ARENAS = 2


def limit_arenas(count: int = SERVER_ARENAS) -> bool:
    """Cap this process's malloc arenas at `count`; whether the cap was set."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
