"""What transports call when someone is watching: the handler, timed now and then, logged.

``Observed`` stands in for a ``Handler`` (same ``handle``, ``state`` and
``stats``), so the transports need not know it exists. Most queries pass
straight through: one integer increment and a compare. Every
``SAMPLE_EVERY``-th query is timed into ``Stats.durations`` (the
``dnspol_dns_request_duration_seconds`` histogram, documented as sampled), and
queries picked for the query log at its sampling rate are timed and handed to
``QueryLog.offer``; queries picked for dnstap at its own rate are handed, with
their answer and wall-clock times, to ``Tap.offer`` (``dnspol.dnstap``). Neither
ever blocks. Without metrics, query log and dnstap the server does not use
``Observed`` at all.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable

from dnspol.dnstap import Tap
from dnspol.handler import Handler, Listener
from dnspol.metrics import DURATION_SUM, SAMPLE_EVERY, duration_bucket
from dnspol.querylog import NO_LABEL, QueryLog

NEVER = math.inf


class Observed:
    """A ``Handler`` as the transports see it, with sampling around ``handle``.

    ``handle`` is a closure stored on the instance rather than a method: the
    transports look it up once per query, and a plain function in the instance
    dict skips building a bound method and the ``self.`` lookups (~60 ns a query).
    """

    def __init__(
        self,
        handler: Handler,
        durations: bool = True,
        query_log: QueryLog | None = None,
        sample_every: int = SAMPLE_EVERY,
        rng: random.Random | None = None,
        dnstap: Tap | None = None,
    ) -> None:
        self.handler = handler
        self.state = handler.state
        self.stats = handler.stats
        self.rate_limit = handler.rate_limit
        self.query_log = query_log
        self.dnstap = dnstap
        self.sample_every = sample_every
        self._handle = handler.handle
        self._rng = rng or random.Random()
        self._next_timed = sample_every if durations else NEVER
        self._next_logged = self._gap(query_log.sample) if query_log is not None else NEVER
        self._next_tapped = self._gap(dnstap.sample) if dnstap is not None else NEVER
        # the number of the next query observed
        self._due = [min(self._next_timed, self._next_logged, self._next_tapped)]
        self.handle = self._make_handle()

    def _make_handle(self) -> Callable[..., bytes | None]:
        inner = self._handle
        count = itertools.count(1)  # queries seen; next() on it is one C call
        due = self._due
        observe = self._observe

        def handle(
            wire: bytes, peer: tuple, listener: Listener, report: list | None = None
        ) -> bytes | None:
            n = next(count)
            if n < due[0]:
                return inner(wire, peer, listener, report)
            return observe(n, wire, peer, listener, report)

        return handle

    def _observe(self, n: int, wire, peer, listener: Listener, report) -> bytes | None:
        logged = n >= self._next_logged
        tapped = n >= self._next_tapped
        labels = report if report is not None else []  # the answer's label: all need it
        began_ns = time.time_ns() if tapped else 0
        began = time.perf_counter()
        out = self._handle(wire, peer, listener, labels)
        seconds = time.perf_counter() - began
        if n >= self._next_timed:
            durations = self.stats.durations
            label = labels[-1] if labels else None
            key = (listener.tag, label, duration_bucket(seconds))
            durations[key] = durations.get(key, 0) + 1
            key = (listener.tag, label, DURATION_SUM)
            durations[key] = durations.get(key, 0.0) + seconds
            self._next_timed = n + self.sample_every
        if logged:
            assert self.query_log is not None and labels is not None
            label = labels[-1] if labels else NO_LABEL
            self.query_log.offer(time.time(), peer, wire, label, listener.transport, seconds)
            self._next_logged = n + self._gap(self.query_log.sample)
        if tapped:
            assert self.dnstap is not None and labels is not None
            label = labels[-1] if labels else NO_LABEL
            self.dnstap.offer(began_ns, time.time_ns(), peer, listener, wire, out, label)
            self._next_tapped = n + self._gap(self.dnstap.sample)
        self._due[0] = min(self._next_timed, self._next_logged, self._next_tapped)
        return out

    def _gap(self, rate: float) -> int:
        """Queries until the next one picked at ``rate``: geometric, so every query has the
        same chance."""
        if rate >= 1:
            return 1
        return 1 + int(math.log(1.0 - self._rng.random()) / math.log(1.0 - rate))
