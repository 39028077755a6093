"""The optional query log: one JSON line per sampled query, written off the answering path.

Answering threads only append a small tuple to a bounded queue (``offer``);
a writer thread decodes what the record needs from the query's bytes (name,
type, EDNS Client Subnet), formats the line and writes it. When the output is
slower than the queries (a full disk, a stalled pipe), records beyond the
queue's bound are dropped and counted (``dropped``, exported as
``dnspol_query_log_dropped_total``), so the log can never hold up an answer.

One record::

    {"time": "2025-01-01T12:00:00.000123+00:00", "client": "192.0.2.1", "ecs": null,
     "qname": "www.example.com.", "qtype": "A", "proto": "udp", "rcode": "NOERROR",
     "zone": "example.com.", "rule": "internal-clients", "action": "answer",
     "scope": "internal", "duration_ms": 0.042}

``rule`` is null when no rule matched; a query that got no answer has ``rcode``
null and ``dropped`` set to the reason (``policy``, ``malformed``). Several
worker processes may share one file: every batch is one ``write`` on a file
opened for appending, so lines never interleave. On standard output, which may
be a pipe, a batch goes out in writes of whole lines of at most ``PIPE_BUF``
bytes each: a pipe keeps those whole, and splits longer ones where it fills.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import sys
import threading
from datetime import UTC, datetime

from dnslib import QTYPE

from dnspol.names import to_text
from dnspol.stats import AnswerLabel
from dnspol.wire import decode, read_qname

log = logging.getLogger("dnspol.querylog")

QUEUE_LIMIT = 10_000
# what the queue may hold whatever its length: TCP queries of 64 KiB each would make a
# full queue hundreds of megabytes
QUEUE_BYTES = 16 * 2**20
PIPE_BUF = select.PIPE_BUF  # a pipe keeps a write of up to this many bytes whole (POSIX: 512+)
WRITE_INTERVAL = 0.1  # seconds the writer sleeps when the queue is empty
NO_LABEL = object()  # the handler reported nothing: dropped before it could say why


class QueryLog:
    """A JSON-lines query log written by its own thread; ``offer`` never blocks."""

    def __init__(self, target: str, sample: float = 1.0, labels: list[AnswerLabel] | None = None):
        if not 0 < sample <= 1:
            raise ValueError(f"query log sample rate must be in (0, 1], not {sample}")
        self.target = target  # a path, or "-" for standard output
        self.sample = sample
        self.labels = labels if labels is not None else []  # Stats.labels: key -> AnswerLabel
        self.queue: collections.deque = collections.deque()
        self.limit = QUEUE_LIMIT
        # bytes of the queued queries: each counter has one writer (the answering thread
        # adds, the writer thread takes away), so neither loses an update
        self.bytes_in = 0
        self.bytes_out = 0
        self.written = 0
        self.dropped = 0
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the answering side --------------------------------------------------
    def offer(self, when: float, client: tuple, wire: bytes, label, proto: str, seconds: float):
        """Queue one record; drop (and count) it when the writer is behind."""
        if len(self.queue) >= self.limit or (
            self.bytes_in - self.bytes_out + len(wire) > QUEUE_BYTES
        ):
            self.dropped += 1
            return
        self.bytes_in += len(wire)
        self.queue.append((when, client, wire, label, proto, seconds))

    # -- the writer ----------------------------------------------------------
    def start(self) -> None:
        """Open the output (errors surface here, at start) and start the writer."""
        if self.target == "-":
            self._fd = sys.stdout.fileno()
        else:
            self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._thread = threading.Thread(target=self._run, name="query-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Write what is queued (for at most ``timeout``) and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._fd is not None and self.target != "-" and not self._thread_alive():
            os.close(self._fd)
            self._fd = None

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            batch = self._take()
            if batch:
                self._write(batch)
            elif stopping:
                return
            else:
                self._stop.wait(WRITE_INTERVAL)

    def _take(self, most: int = 1000) -> list[str]:
        lines = []
        popleft = self.queue.popleft
        for _ in range(most):
            try:
                record = popleft()
            except IndexError:
                break
            self.bytes_out += len(record[2])
            try:
                lines.append(self.format(*record))
            except Exception:  # noqa: BLE001 - one odd record must not end the log
                log.exception("query log record failed")
        return lines

    def _write(self, lines: list[str]) -> None:
        assert self._fd is not None
        try:
            for chunk in self._chunks(lines):
                while chunk:
                    written = os.write(self._fd, chunk)
                    chunk = chunk[written:]
            self.written += len(lines)
        except OSError as exc:
            self.dropped += len(lines)
            log.error("query log: cannot write to %s: %s", self.target, exc)
            self._stop.wait(1.0)  # do not spin on a broken output

    def _chunks(self, lines: list[str]) -> list[bytes]:
        """The batch as one write to our own file (opened for appending, so it lands
        whole); to standard output, which may be a pipe that workers share, in writes
        of whole lines of at most PIPE_BUF bytes, the most a pipe keeps whole."""
        data = [(line + "\n").encode() for line in lines]
        if self.target != "-":
            return [b"".join(data)]
        return pack_lines(data, PIPE_BUF)

    def format(self, when: float, client: tuple, wire: bytes, label, proto: str, seconds: float):
        """One JSON line; the query's name, type and ECS are read from its bytes here."""
        record: dict = {
            "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds"),
            "client": client[0] if client else None,
        }
        record.update(_question(wire))
        record["proto"] = proto
        if isinstance(label, int) and 0 <= label < len(self.labels):
            answer = self.labels[label]
            record["rcode"] = None if answer.dropped else answer.rcode
            record["zone"] = answer.zone or None
            record["rule"] = answer.rule or None
            record["action"] = answer.action
            record["scope"] = answer.scope or None  # None: no scope's data answered
            if answer.dropped:
                record["dropped"] = answer.dropped
        else:
            record["rcode"] = None
            record["dropped"] = "policy" if label is None else "malformed"
        record["duration_ms"] = round(seconds * 1000, 3)
        return json.dumps(record, separators=(", ", ": "))


def pack_lines(lines: list[bytes], limit: int) -> list[bytes]:
    """Consecutive lines joined into chunks of at most ``limit`` bytes; a longer line
    is a chunk of its own."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) > limit:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append(b"".join(current))
    return chunks


def _question(wire: bytes) -> dict:
    """qname, qtype and ECS, as far as the bytes allow (a malformed query gives less)."""
    try:
        query = decode(wire)
    except Exception:  # noqa: BLE001 - FormErr, BadVersion, or worse: read what we can
        return _question_fallback(wire)
    ecs = query.edns.ecs if query.edns is not None else None
    return {
        "ecs": str(ecs.network) if ecs is not None else None,
        "qname": to_text(query.qname),
        "qtype": QTYPE.get(query.qtype, str(query.qtype)),
    }


def _question_fallback(wire: bytes) -> dict:
    out: dict = {"ecs": None, "qname": None, "qtype": None}
    try:
        name, end = read_qname(wire, 12)
        out["qname"] = to_text(name)
        if end + 2 <= len(wire):
            qtype = int.from_bytes(wire[end : end + 2], "big")
            out["qtype"] = QTYPE.get(qtype, str(qtype))
    except Exception:  # noqa: BLE001 - nothing readable
        pass
    return out
