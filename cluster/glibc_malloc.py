"""What a process asks of glibc's malloc: few arenas (the gateway), its free memory given back.

Both are calls into the C library through :mod:`ctypes`; where the C
library is not glibc (musl, macOS) they do nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["fewer_malloc_arenas", "return_free_memory"]

# glibc's mallopt parameter for the most malloc arenas.
_M_ARENA_MAX = -8


@functools.cache
def _glibc() -> Any:
    """glibc's functions (``None`` where the C library is not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 (a library without it is not glibc)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def fewer_malloc_arenas(most: int = 2) -> None:
    """Let glibc's malloc use at most ``most`` arenas in this process (nothing elsewhere).

    The gateway runs its coordinator calls on up to 64 threads, and glibc
    gives each thread an arena of its own, up to 8 per core: each keeps
    what it once held (about 1 MiB each, some 16 MiB under a burst of
    arrivals) although those threads only run short calls under the GIL.
    Arenas made before this call stay; ``serve`` calls it before the server
    starts its threads.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, most)


def return_free_memory() -> None:
    """Give the kernel back the pages glibc's malloc holds free (``malloc_trim(0)``).

    glibc returns only the free memory at the top of its heap by itself; a
    burst of arrivals leaves free pages between the objects the waiting
    callers keep, which stay in the process' RSS until this call. It walks malloc's free
    lists: 1-4 ms, measured in a gateway holding 10,000 waiting callers.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
