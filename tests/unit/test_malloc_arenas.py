"""glibc malloc arenas are capped in Bazar's processes (web/server.py, `cap_malloc_arenas`).

Each case runs in a fresh interpreter: the cap only counts for arenas made after it, and
glibc reads MALLOC_ARENA_MAX once, at start. The arenas are counted from glibc's own
report (`malloc_info`), after eight threads have each allocated while all alive at once.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"),
                                reason="malloc arenas are glibc's")

COUNT_ARENAS = r"""
import ctypes, sys, tempfile, threading
from bazar.web.server import cap_malloc_arenas

capped = cap_malloc_arenas() if sys.argv[1] == "cap" else None
together, done = threading.Barrier(8), threading.Barrier(9)

def allocate():
    together.wait()
    held = [bytearray(4096) for _ in range(64)]  # over pymalloc's 512 bytes: from malloc
    done.wait()

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
done.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as report:
    out = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(out))
    libc.fclose(ctypes.c_void_p(out))
    arenas = open(report.name).read().count("<heap nr=")
for thread in threads:
    thread.join()
print(capped, arenas)
"""


def _arenas(mode: str, **env) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", COUNT_ARENAS, mode], env=environ, check=True,
                         capture_output=True, text=True, timeout=60).stdout.split()
    return out[0], int(out[1])


def test_threads_share_at_most_two_arenas_once_capped():
    assert _arenas("cap") == ("True", 2)


def test_without_the_cap_each_thread_takes_an_arena_of_its_own():
    """What the cap is for, and proof that the count above can see more than two."""
    capped, arenas = _arenas("none")
    assert arenas > 2


def test_an_operators_malloc_arena_max_is_left_alone():
    assert _arenas("cap", MALLOC_ARENA_MAX="4") == ("False", 4)
