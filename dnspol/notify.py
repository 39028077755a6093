"""NOTIFY (RFC 1996): telling a zone's secondaries that its serial changed.

``Notifier`` owns the whole of it: which (zone, secondary) pairs are owed a NOTIFY
(``follow``: a zone whose serial, as the scope that secondary's key maps to sees it,
differs from the last one notified — every zone when the server starts, as BIND does),
sending them over UDP, matching the answers, and retrying unanswered ones with backoff
(``RETRY_AFTER``) until acknowledged or given up. It never blocks: ``tick`` sends what is
due and reads what has come, and the caller calls it every fraction of a second.

The IXFR journal is recorded here too, just before: a secondary told of a new serial
asks for it at once, and should find the difference.

One process sends them: the single server process (``run_forever`` on its event loop),
or with several workers the generation process that loaded the configuration (from its
supervision loop), never the workers. A generation learns what the previous one notified
from a small file in the supervisor's work directory (``record``), so a reload notifies
only the zones whose serial changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dnspol.journal import Journal
from dnspol.names import Name, to_text

log = logging.getLogger("dnspol.notify")

RETRY_AFTER = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each retry; then it is given up
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class NotifyTarget:
    """One secondary of a zone (``zones: NAME: notify:``), and the key to sign with."""

    host: str
    port: int = 53
    key: str | None = None  # a name of ``keys:`` (lowercase, trailing dot)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class _Pending:
    origin: Name
    target: NotifyTarget
    serial: int
    ident: int
    wire: bytes
    attempts: int = 0
    due: float = 0.0
    sent_at: float = 0.0


@dataclass
class Notifier:
    """The NOTIFYs owed and in flight. ``record``: where notified serials are kept."""

    record: Path | None = None
    clock: Callable[[], float] = time.monotonic
    counts: dict = field(default_factory=dict)  # (zone, result) -> NOTIFYs: sent, acked, failed
    _snapshot: object | None = None
    _notified: dict = field(default_factory=dict)  # "zone target" -> serial
    _pending: dict = field(default_factory=dict)  # ident -> _Pending
    _sockets: dict = field(default_factory=dict)  # family -> socket

    def __post_init__(self) -> None:
        if self.record is not None:
            with contextlib.suppress(OSError, ValueError):
                self._notified = json.loads(self.record.read_text())

    def behind(self, snapshot) -> bool:  # noqa: ANN001
        return snapshot is not None and snapshot is not self._snapshot

    def follow(self, snapshot) -> None:  # noqa: ANN001 - dnspol.state.Snapshot
        """Owe a NOTIFY to every secondary whose zone's serial is not the one it was last
        notified of (a pending NOTIFY of an older serial is replaced), once the IXFR
        journal (``server.journal``) holds the new versions the secondaries will ask for."""
        if not self.behind(snapshot):
            return
        self._snapshot = snapshot
        setup = snapshot.transfer
        if setup.journal:
            Journal(setup.journal).record_all(snapshot)
        for origin, targets in setup.notify.items():
            zone = snapshot.zones.get(origin)
            if zone is None:
                continue
            for target in targets:
                scoped = _scoped_zone(snapshot, zone, target)
                if self._notified.get(_key(origin, target)) == scoped.serial:
                    continue
                self._forget(origin, target)
                self._queue(snapshot, scoped, target)

    def tick(self) -> None:
        """Read the answers that came, send what is due, give up what waited too long."""
        self._read_answers()
        now = self.clock()
        for ident, pending in list(self._pending.items()):
            if pending.due > now:
                continue
            if pending.attempts > len(RETRY_AFTER):
                del self._pending[ident]
                self._done(pending, "failed")
                continue
            self._send(pending, now)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    # -- inside ------------------------------------------------------------------
    def _queue(self, snapshot, zone, target: NotifyTarget) -> None:  # noqa: ANN001
        ident = random.randrange(65536)
        while ident in self._pending:
            ident = random.randrange(65536)
        wire = _message(zone, ident, snapshot.transfer.keys.get(target.key) if target.key else None)
        self._pending[ident] = _Pending(zone.origin, target, zone.serial, ident, wire)

    def _forget(self, origin: Name, target: NotifyTarget) -> None:
        for ident, pending in list(self._pending.items()):
            if pending.origin == origin and pending.target == target:
                del self._pending[ident]

    def _count(self, pending: _Pending, result: str) -> None:
        key = (to_text(pending.origin), result)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _send(self, pending: _Pending, now: float) -> None:
        family = socket.AF_INET6 if ":" in pending.target.host else socket.AF_INET
        try:
            self._socket(family).sendto(pending.wire, (pending.target.host, pending.target.port))
        except OSError as error:
            log.warning("NOTIFY %s to %s: %s", to_text(pending.origin), pending.target, error)
        pending.sent_at = now
        self._count(pending, "sent")
        wait = RETRY_AFTER[min(pending.attempts, len(RETRY_AFTER) - 1)]
        pending.attempts += 1
        pending.due = now + wait

    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is None:
            sock = self._sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        return sock

    def _read_answers(self) -> None:
        for sock in self._sockets.values():
            while True:
                try:
                    data, peer = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # e.g. ICMP port unreachable: the retry will tell
                    continue
                self._answered(data, peer)

    def _answered(self, data: bytes, peer: tuple) -> None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.opcode
        import dns.rcode

        try:
            reply = dns.message.from_wire(data, keyring=False)
        except dns.exception.DNSException:
            return
        pending = self._pending.get(reply.id)
        if (
            pending is None
            or not reply.flags & dns.flags.QR
            or reply.opcode() != dns.opcode.NOTIFY
            or peer[1] != pending.target.port
        ):
            return
        del self._pending[reply.id]
        if reply.rcode() == dns.rcode.NOERROR:
            self._done(pending, "acked")
        else:
            self._done(pending, f"answered {dns.rcode.to_text(reply.rcode())}")

    def _done(self, pending: _Pending, result: str) -> None:
        zone = to_text(pending.origin)
        tries = pending.attempts
        log.info(
            "NOTIFY %s serial %d to %s: %s after %d attempt(s)",
            zone,
            pending.serial,
            pending.target,
            result,
            tries,
        )
        self._count(pending, "acked" if result == "acked" else "failed")
        if result == "acked":
            self._notified[_key(pending.origin, pending.target)] = pending.serial
            self._save()

    def _save(self) -> None:
        if self.record is None:
            return
        temporary = self.record.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            temporary.write_text(json.dumps(self._notified))
            os.replace(temporary, self.record)


def _key(origin: Name, target: NotifyTarget) -> str:
    return f"{to_text(origin)} {target} {target.key or ''}"


def _scoped_zone(snapshot, zone, target: NotifyTarget):  # noqa: ANN001, ANN202
    """The zone as the secondary receives it: its key's scope where the zone has it."""
    key = snapshot.transfer.keys.get(target.key) if target.key else None
    if key is None or key.scope is None:
        return zone
    return snapshot.variants.get((zone.origin, key.scope), zone)


def _message(zone, ident: int, key) -> bytes:  # noqa: ANN001 - Zone, TsigKey | None
    """NOTIFY for ``zone`` (RFC 1996 §3.7): AA, the question ``zone SOA``, our SOA in the
    answer section; signed when the target has a key."""
    import dns.flags
    import dns.message
    import dns.opcode
    import dns.rrset

    name = to_text(zone.origin)
    message = dns.message.make_query(name, "SOA")
    message.id = ident
    message.flags = dns.flags.AA
    message.set_opcode(dns.opcode.NOTIFY)
    soa = zone.soa
    message.answer.append(dns.rrset.from_text(name, soa.ttl, "IN", "SOA", str(soa.rdatas[0])))
    if key is not None:
        message.use_tsig(key.dns_key)
    return message.to_wire()


async def run_forever(state, counts: dict | None = None) -> None:  # noqa: ANN001
    """The single server process's NOTIFYs: follow the current snapshot (off the event
    loop: recording the journal of a large zone takes seconds), tick. ``counts``: where
    sent, acked and failed NOTIFYs are counted by (zone, result)."""
    notifier = Notifier(counts={} if counts is None else counts)
    loop = asyncio.get_running_loop()
    try:
        while True:
            snapshot = state.snapshot
            if notifier.behind(snapshot):
                await loop.run_in_executor(None, notifier.follow, snapshot)
            notifier.tick()
            await asyncio.sleep(TICK_SECONDS)
    finally:
        notifier.close()
