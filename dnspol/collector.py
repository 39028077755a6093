"""Keeping CPython's cyclic garbage collector out of loading.

Loading a configuration makes millions of objects that all stay alive (zones, answer
tables); every collection would walk them all again for nothing (it took half the time
of loading a big zone). Reference counting still frees what is dropped; cycles wait
until loading ends. One home for the pause: the zone loader, the answer compiler and
the snapshot loader around both use it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block (nested blocks: the outermost resumes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
