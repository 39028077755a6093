"""Reading a file up to a limit without trusting its size or the limit's.

A limit of 1 TiB is a ceiling, not a buffer: ``read(limit + 1)`` asks Python for a
buffer that large before reading a byte. Reading in chunks stops at the file's end
or one byte past the limit, whichever comes first (a file growing while it is read
stays bounded too).
"""

from __future__ import annotations

from typing import BinaryIO

CHUNK = 1 << 20


def read_at_most(handle: BinaryIO, limit: int) -> bytes:
    """The file's bytes, or its first ``limit + 1`` when it is longer than ``limit``."""
    chunks = []
    left = limit + 1
    while left > 0:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
