"""Running the health checks: probes, hysteresis, and the one writer of the board.

One ``Checker`` per loaded configuration runs every check of its ``HealthBoard``
(``dnspol.checks``) on one asyncio loop in one thread of the process that holds the
configuration — the single server process, or a generation's process, whose forked
workers share the board — so each target is probed once for the whole server, never
once per worker, and never on a query's path. A thousand checks are a thousand small
coroutines on plain non-blocking sockets (``loop.sock_connect``), not a thousand threads.

Verdicts follow hysteresis: an up check goes down after ``fall`` failed probes in a row,
a down check comes up after ``rise`` good ones; the first probe (``prime``, run before
the configuration serves) sets the starting verdict directly. A forced state (``dnspol
ctl set-health``, the test kit's ``srv.set_health``) overrides the verdict until cleared;
probes go on and are reported beside it.

Each transition is one log line. What ``dnspol ctl status`` and the metrics show (state,
last error, durations, transitions) is read from ``report()`` and ``totals_into()`` in
this process, or — with workers — from the files this checker writes for the supervisor.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import heapq
import json
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnspol.checks import Check, HealthBoard
from dnspol.metrics import CHECK_DURATION_BUCKETS

log = logging.getLogger("dnspol.checks")

MAX_RESPONSE = 65536  # bytes of an HTTP answer read, at most (status line, headers, body)
PRIME_GRACE = 0.5  # seconds beyond the longest timeout the first round may take
PRIME_LIMIT = 5.0  # seconds a start or reload waits for first probes, at most (then: up)
FILE_INTERVAL = 1.0  # the state and metrics files are written this often (a new probe result)
FORCED_POLL = 0.1  # how often the forced-states file is looked at (with workers)


@dataclass
class CheckState:
    """What the runner knows of one check (mutated only on the checker's loop)."""

    check: Check
    up: bool = True  # the verdict of the probes, after hysteresis
    streak: int = 0  # consecutive probe results against ``up``
    forced: bool | None = None  # set-health: overrides ``up`` while not None
    probes: int = 0
    last_ok: bool | None = None
    last_error: str = ""
    last_time: float = 0.0
    last_duration: float = 0.0
    since: float = field(default_factory=time.time)  # of the current effective state
    transitions: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    durations: list[float] = field(default_factory=list)  # histogram counts (metrics)

    @property
    def effective(self) -> bool:
        return self.up if self.forced is None else self.forced

    def as_dict(self) -> dict[str, Any]:
        check = self.check
        return {
            "name": check.name,
            "kind": check.kind,
            "target": check.target,
            "state": "up" if self.effective else "down",
            "probed": "up" if self.up else "down",
            "forced": None if self.forced is None else ("up" if self.forced else "down"),
            "since": self.since,
            "last_probe": self.last_time or None,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
            "last_duration": round(self.last_duration, 6),
            "transitions": dict(self.transitions),
        }


class Checker:
    """Runs a board's checks; ``prime()`` once, then ``start()``; ``stop()`` at the end."""

    def __init__(
        self,
        board: HealthBoard,
        forced: Mapping[str, bool] | None = None,
        state_file: str | os.PathLike[str] | None = None,
        forced_file: str | os.PathLike[str] | None = None,
        metrics_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.board = board
        self.states = {check.name: CheckState(check) for check in board.checks}
        self.state_file = Path(state_file) if state_file else None
        self.forced_file = Path(forced_file) if forced_file else None
        self.metrics_file = Path(metrics_file) if metrics_file else None
        self._forced_stamp: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._dirty = True  # something to write to the files
        self._changed = False  # a verdict changed: write within FORCED_POLL, not FILE_INTERVAL
        self._lock = threading.Lock()  # report() and force() from other threads
        for name, up in (forced or {}).items():
            if name in self.states:
                self.states[name].forced = up

    # --- lifecycle ------------------------------------------------------------------------

    def prime(self) -> None:
        """One probe of every check, all at once, before the configuration serves: the
        starting verdicts (no hysteresis yet). Bounded by the longest timeout and by
        ``PRIME_LIMIT``: a check whose first probe has not ended by then starts up."""
        if not self.states:
            return
        self._read_forced_file()
        asyncio.run(self._first_round())
        self._write_files()

    async def _first_round(self) -> None:
        longest = max(state.check.timeout for state in self.states.values())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(longest + PRIME_GRACE, PRIME_LIMIT)):
                await asyncio.gather(
                    *(self._probe_once(s, first=True) for s in self.states.values())
                )
        for state in self.states.values():
            self._publish(state)
            if not state.up:
                log.warning("check %s (%s) starts down: %s", state.check.name,
                            state.check.describe(), state.last_error)  # fmt: skip

    def start(self) -> Checker:
        """The checker thread (a daemon: it never holds the server up)."""
        if self.states:
            self._thread = threading.Thread(target=self._run, name="checks", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        engine = None
        try:
            tcp = [state for state in self.states.values() if state.check.kind == "tcp"]
            if tcp:
                engine = _TcpEngine(self, tcp, loop)
            for state in self.states.values():
                if state.check.kind != "tcp":
                    loop.create_task(self._keep_probing(state))
            loop.create_task(self._housekeeping())
            loop.run_forever()
        finally:
            if engine is not None:
                engine.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # --- probing --------------------------------------------------------------------------

    async def _keep_probing(self, state: CheckState) -> None:
        check = state.check
        loop = asyncio.get_running_loop()
        due = loop.time() + _offset(check)
        while not self._stopping.is_set():
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += check.interval
            if due <= loop.time():  # late by a whole interval: no catch-up burst
                due = loop.time() + check.interval
            await self._probe_once(state)
            self._publish(state)

    async def _probe_once(self, state: CheckState, first: bool = False) -> None:
        check = state.check
        began = time.perf_counter()
        error = ""
        try:
            async with asyncio.timeout(check.timeout):
                error = await PROBES[check.kind](check)
        except TimeoutError:
            error = f"no answer in {check.timeout:g} s"
        except ssl.SSLError as exc:
            detail = getattr(exc, "verify_message", "") or exc.reason or str(exc)
            error = f"TLS: {detail}"
        except OSError as exc:
            error = _os_error(exc)
        except Exception as exc:  # noqa: BLE001 - a probe's failure is a verdict, not a crash
            error = f"{type(exc).__name__}: {exc}"
        took = time.perf_counter() - began
        with self._lock:
            self._record(state, not error, error, took, first)

    def tcp_result(self, state: CheckState, error: str, took: float) -> None:
        """A TCP probe's outcome (``_TcpEngine``), recorded and published."""
        with self._lock:
            self._record(state, not error, error, took, False)
        self._publish(state)

    def _record(self, state: CheckState, ok: bool, error: str, took: float, first: bool) -> None:
        state.probes += 1
        state.last_ok = ok
        state.last_error = error
        state.last_time = time.time()
        state.last_duration = took
        _observe(state.durations, took)
        self._dirty = True
        if first:
            state.up, state.streak = ok, 0
            return
        if ok == state.up:
            state.streak = 0
            return
        state.streak += 1
        if state.streak >= (state.check.rise if ok else state.check.fall):
            state.up, state.streak = ok, 0
            state.transitions["up" if ok else "down"] += 1
            check = state.check
            if ok:
                log.warning("check %s (%s) is up after %d good probes", check.name,
                            check.describe(), check.rise)  # fmt: skip
            else:
                log.warning("check %s (%s) is down after %d failed probes: %s", check.name,
                            check.describe(), check.fall, error)  # fmt: skip

    def _publish(self, state: CheckState) -> None:
        """The effective verdict onto the board (every worker sees it at once)."""
        if self.board.set(state.check.slot, state.effective):
            state.since = time.time()
            self._dirty = self._changed = True

    # --- forcing ---------------------------------------------------------------------------

    def force(self, name: str, up: bool | None) -> dict[str, Any]:
        """Force a check up or down (None: follow the probes again). KeyError: unknown."""
        state = self.states[name]
        with self._lock:
            state.forced = up
            self._publish(state)
            self._dirty = True
        what = "follows its probes again" if up is None else f"forced {'up' if up else 'down'}"
        log.warning("check %s %s; now %s", name, what, "up" if state.effective else "down")
        return state.as_dict()

    def _read_forced_file(self) -> None:
        """With workers, ``dnspol ctl set-health`` reaches this process through a small
        JSON file in the supervisor's work directory: name → "up" | "down"."""
        path = self.forced_file
        if path is None:
            return
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp == self._forced_stamp:
            return
        self._forced_stamp = stamp
        try:
            wanted = json.loads(path.read_text()) if stamp is not None else {}
        except (OSError, ValueError):
            return
        changed = False
        for name, state in self.states.items():
            value = wanted.get(name)
            forced = None if value not in ("up", "down") else value == "up"
            if forced != state.forced:
                self.force(name, forced)
                changed = True
        if changed and self._thread is not None:
            self._write_files()  # at once: ``dnspol ctl set-health`` waits to see it

    async def _housekeeping(self) -> None:
        last_write = 0.0
        while not self._stopping.is_set():
            await asyncio.sleep(FORCED_POLL)
            self._read_forced_file()
            now = time.monotonic()
            if self._changed or (self._dirty and now - last_write >= FILE_INTERVAL):
                last_write = now
                self._changed = False
                await asyncio.get_running_loop().run_in_executor(None, self._write_files)

    # --- reporting -------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        with self._lock:
            return [state.as_dict() for state in self.states.values()]

    def totals_into(self, out: Any) -> None:
        """The check series into a ``dnspol.metrics.Totals``."""
        with self._lock:
            for state in self.states.values():
                check = state.check
                out.set("dnspol_health_check_up", (check.name, check.target), int(state.effective))
                for to, count in state.transitions.items():
                    out.set("dnspol_health_check_transitions_total", (check.name, to), count)
                if state.durations:
                    series = out.values.setdefault("dnspol_health_check_duration_seconds", {})
                    series[(check.name,)] = list(state.durations)

    def _write_files(self) -> None:
        self._dirty = False
        if self.state_file is not None:
            _write_json(self.state_file, {"checks": self.report()})
        if self.metrics_file is not None:
            from dnspol.metrics import Totals

            totals = Totals()
            self.totals_into(totals)
            _write_json(
                self.metrics_file,
                {"pid": os.getpid(), "time": time.time(), "totals": totals.to_json()},
            )


def _observe(counts: list[float], seconds: float) -> None:
    """One probe's duration into histogram counts laid out as ``metrics.Totals`` has them:
    one count per bucket (the last for +Inf), then the sum."""
    buckets = CHECK_DURATION_BUCKETS
    if not counts:
        counts.extend([0] * (len(buckets) + 2))
    counts[bisect.bisect_left(buckets, seconds)] += 1
    counts[-1] += seconds


def _write_json(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, separators=(",", ":")))
    os.replace(tmp, path)


def read_state_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text()).get("checks", [])
    except (OSError, ValueError):
        return []


def _offset(check: Check) -> float:
    """When in its interval a check first runs: spread by slot, so a thousand checks do not
    fire at once."""
    return ((check.slot * 0.6180339887) % 1.0) * check.interval


class _TcpEngine:
    """Every TCP check of a checker, as one batch on the loop rather than a coroutine
    each: a heap of due probes looked at every ``TCP_TICK``, non-blocking connects
    registered in an epoll of its own (whose descriptor the loop watches), ``SO_ERROR`` once
    writable, and a reset instead of a FIN exchange. Per probe that is a few system calls
    and no asyncio objects; ``await loop.sock_connect`` cost five times as much
    (tests/test_checker.py measures a thousand checks a second)."""

    def __init__(self, checker: Checker, states: list[CheckState], loop: asyncio.AbstractEventLoop):
        self.checker = checker
        self.loop = loop
        self.epoll = select.epoll()
        now = loop.time()
        self.due = [(now + _offset(s.check), s.check.slot, s) for s in states]
        heapq.heapify(self.due)
        self.flying: dict[int, tuple[socket.socket, CheckState, float]] = {}
        self.deadlines: list[tuple[float, int, socket.socket]] = []
        loop.add_reader(self.epoll.fileno(), self.connected)
        loop.call_soon(self.tick)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.epoll.fileno())
        for sock, _, _ in self.flying.values():
            sock.close()
        self.epoll.close()

    def tick(self) -> None:
        if self.checker._stopping.is_set():
            return
        now = self.loop.time()
        due = self.due
        while due and due[0][0] <= now:
            when, slot, state = due[0]
            # after a stall, the next probe is an interval from now: no burst of catch-ups
            # (three quick failures would cross a fall of 3 on one short outage)
            after = when + state.check.interval
            heapq.heapreplace(
                due, (after if after > now else now + state.check.interval, slot, state)
            )
            self.start(state)
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _, fd, sock = heapq.heappop(deadlines)
            flying = self.flying.get(fd)
            if flying is not None and flying[0] is sock:
                del self.flying[fd]
                self.epoll.unregister(fd)
                _, state, began = flying
                self.finish(sock, state, began, f"no answer in {state.check.timeout:g} s")
        wake = due[0][0] if due else now + 1.0
        if deadlines:
            wake = min(wake, deadlines[0][0])
        self.loop.call_at(max(wake, now + TCP_TICK), self.tick)

    def start(self, state: CheckState) -> None:
        check = state.check
        began = time.perf_counter()
        try:
            sock = _socket(check, socket.SOCK_STREAM)
        except OSError as exc:
            self.checker.tcp_result(state, _os_error(exc), 0.0)
            return
        code = sock.connect_ex((check.host, check.port))
        if code != errno.EINPROGRESS:
            self.finish(sock, state, began, os.strerror(code) if code else "")
            return
        fd = sock.fileno()
        self.flying[fd] = (sock, state, began)
        self.epoll.register(fd, select.EPOLLOUT)
        heapq.heappush(self.deadlines, (self.loop.time() + check.timeout, fd, sock))

    def connected(self) -> None:
        for fd, _ in self.epoll.poll(0):
            flying = self.flying.pop(fd, None)
            if flying is None:
                continue
            self.epoll.unregister(fd)
            sock, state, began = flying
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.finish(sock, state, began, os.strerror(code) if code else "")

    def finish(self, sock: socket.socket, state: CheckState, began: float, error: str) -> None:
        took = time.perf_counter() - began
        if not error:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)  # no TIME_WAIT
        sock.close()
        self.checker.tcp_result(state, error, took)


TCP_TICK = 0.005  # seconds: TCP probes due within this are started together
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST


def _os_error(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


# --- probes: each returns "" when the target is healthy, else why not ----------------------


def _socket(check: Check, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in check.host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setblocking(False)
    if check.source is not None:
        sock.bind((check.source, 0))
    return sock


async def _connected(check: Check) -> socket.socket:
    sock = _socket(check, socket.SOCK_STREAM)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (check.host, check.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def probe_tcp(check: Check) -> str:
    """The first round's TCP probe (``prime``); later rounds are ``_TcpProbes``."""
    sock = await _connected(check)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    sock.close()
    return ""


async def probe_http(check: Check) -> str:
    loop = asyncio.get_running_loop()
    host = check.host_header or (f"[{check.host}]" if ":" in check.host else check.host)
    request = (
        f"GET {check.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: dnspol-check\r\n"
        "Connection: close\r\nAccept: */*\r\n\r\n"
    ).encode()
    if check.kind == "https":
        return await _https(check, request)
    sock = await _connected(check)
    try:
        await loop.sock_sendall(sock, request)
        data = b""
        while len(data) < MAX_RESPONSE:
            chunk = await loop.sock_recv(sock, MAX_RESPONSE - len(data))
            if not chunk:
                break
            data += chunk
            if check.body is None and b"\r\n" in data:
                break  # the status line is all that is needed
    finally:
        sock.close()
    return http_verdict(check, data)


async def _https(check: Check, request: bytes) -> str:
    context = ssl.create_default_context()
    if not check.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    sock = await _connected(check)
    server_name = check.host_header or check.host
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=server_name.split(":")[0]
    )
    try:
        writer.write(request)
        await writer.drain()
        data = await reader.read(MAX_RESPONSE)
        while data and len(data) < MAX_RESPONSE and check.body is not None:
            more = await reader.read(MAX_RESPONSE - len(data))
            if not more:
                break
            data += more
    finally:
        writer.close()
    return http_verdict(check, data)


def http_verdict(check: Check, data: bytes) -> str:
    line, _, rest = data.partition(b"\r\n")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return "not an HTTP answer" if data else "connection closed without an answer"
    status = int(parts[1])
    if status != check.status:
        return f"HTTP status {status}, expected {check.status}"
    if check.body is not None:
        body = rest.partition(b"\r\n\r\n")[2]
        if check.body.encode() not in body:
            return f"body does not contain {check.body!r}"
    return ""


async def probe_dns(check: Check) -> str:
    from dnslib import QTYPE, RCODE, DNSRecord

    loop = asyncio.get_running_loop()
    query = DNSRecord.question(check.qname, check.qtype)
    sock = _socket(check, socket.SOCK_DGRAM)
    try:
        await loop.sock_connect(sock, (check.host, check.port))
        await loop.sock_sendall(sock, query.pack())
        while True:
            data = await loop.sock_recv(sock, 65535)
            try:
                reply = DNSRecord.parse(data)
            except Exception:  # noqa: BLE001 - a garbled datagram is not an answer
                continue
            if reply.header.id == query.header.id:
                break
    finally:
        sock.close()
    rcode = RCODE[reply.header.rcode]
    if rcode != check.rcode:
        return f"rcode {rcode}, expected {check.rcode}"
    if check.answer is not None:
        wanted = QTYPE.reverse.get(check.qtype)
        texts = [str(rr.rdata) for rr in reply.rr if wanted is None or rr.rtype == wanted]
        if not any(check.answer.lower() in text.lower() for text in texts):
            return f"no {check.qtype} answer holds {check.answer!r} ({', '.join(texts) or 'none'})"
    return ""


PROBES = {"tcp": probe_tcp, "http": probe_http, "https": probe_http, "dns": probe_dns}
