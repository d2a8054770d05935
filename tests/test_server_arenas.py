"""A hop server caps its malloc arenas (sl2s.runtime.transport.http.arenas): threads that
allocate at once share two arenas instead of one each, unless MALLOC_ARENA_MAX says otherwise.
Counted from glibc's own report (`malloc_stats`, one "Arena N:" per arena) in a fresh process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

THREADS = """
import ctypes, sys, threading
from sl2s.runtime.transport.http.arenas import limit_arenas
capped = limit_arenas() if sys.argv[1] == "cap" else False
barrier = threading.Barrier(8)
kept = []
def work():
    barrier.wait()  # all eight allocate at once
    kept.append([bytearray(200_000) for _ in range(20)])
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(capped, flush=True)
ctypes.CDLL(None).malloc_stats()  # glibc writes one "Arena N:" block per arena to stderr
"""


def arenas(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", THREADS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"},
            **env,
        },
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), len(re.findall(r"^Arena \d+:", done.stderr, re.M))


@pytest.fixture(scope="module", autouse=True)
def glibc():
    import ctypes

    assert hasattr(
        ctypes.CDLL(None), "mallopt"
    ), "these tests need glibc (Debian's, as CI)"


def test_threads_allocating_at_once_get_arenas_of_their_own_without_the_cap():
    capped, count = arenas("plain")
    assert capped == "False" and count > 2


def test_the_server_cap_keeps_them_to_two():
    capped, count = arenas("cap")
    assert capped == "True" and count <= 2


def test_malloc_arena_max_in_the_environment_wins():
    capped, count = arenas("cap", MALLOC_ARENA_MAX="4")
    assert capped == "False" and 2 < count <= 4
