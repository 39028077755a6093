"""The switch-over between generations: the one place that says who may answer.

With several workers, a reload starts a new generation of worker processes beside
the old one. Both hold the same sockets, so without a rule both would answer for
a while and a client could see new, old, new. The ``Baton`` is that rule: a page
of memory shared by the supervisor and every process it forks, holding

* the generation whose workers may read the sockets (``0``: none), and
* per worker slot, the last generation that has stopped answering there.

A switch is: the supervisor hands the baton to nobody; each old worker stops
reading (its UDP loops end after the packet in hand, its TCP listeners and
connections close) and marks its slot stopped; when every slot is marked, the
supervisor hands the baton to the new generation, whose workers have been
waiting, loaded and listening, for exactly that. Datagrams and connections that
arrive in between wait in the kernel's socket queues. So an answer from the new
configuration never leaves before the old workers' last one.

Generation numbers are kept modulo 255 (one byte, read on every packet); at most
three generations are alive at once, so they never collide.
"""

from __future__ import annotations

import mmap
import time

NOBODY = 0
POLL_SECONDS = 0.001  # how often a waiting worker or the supervisor looks again


def tag(generation: int) -> int:
    """A generation's one-byte tag: 1..255, never ``NOBODY``."""
    return 1 + (generation - 1) % 255


class Baton:
    """Shared memory (an anonymous shared map): created by the supervisor before any
    fork, so every generation and worker sees the same page."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.page = mmap.mmap(-1, 1 + slots)  # MAP_SHARED | MAP_ANONYMOUS

    # -- the supervisor's side ------------------------------------------------
    def hand_to(self, generation: int | None) -> None:
        self.page[0] = NOBODY if generation is None else tag(generation)

    def stopped_everywhere(self, generation: int) -> bool:
        mark = tag(generation)
        return all(self.page[1 + slot] == mark for slot in range(self.slots))

    def wait_stopped(self, generation: int, timeout: float) -> bool:
        """True once every slot's worker of ``generation`` has stopped answering."""
        deadline = time.monotonic() + timeout
        while not self.stopped_everywhere(generation):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    # -- a worker's side ------------------------------------------------------
    def turn(self, generation: int, slot: int) -> Turn:
        return Turn(self, tag(generation), slot)


class Turn:
    """One worker's view of the baton: may it answer, and saying it has stopped."""

    def __init__(self, baton: Baton, mark: int, slot: int) -> None:
        self.page = baton.page  # read directly by the UDP loop, once per packet
        self.mark = mark
        self.slot = slot

    def mine(self) -> bool:
        return self.page[0] == self.mark

    def mark_stopped(self) -> None:
        self.page[1 + self.slot] = self.mark


class Always:
    """A turn that is always this process's: a server with no supervisor."""

    page = bytearray(1)
    mark = 0
    slot = 0

    def mine(self) -> bool:
        return True

    def mark_stopped(self) -> None:
        pass
