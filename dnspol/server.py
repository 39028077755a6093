"""The running server: sockets, threads, signals, reload and shutdown.

``Server.run`` loads the first snapshot (a bad configuration ends the start
with every problem listed), binds every listen address for UDP and TCP, and
then keeps three promises: SIGHUP or a changed file reloads (build, check,
swap; a bad file keeps the old configuration), SIGTERM stops reading and
accepting, lets in-flight TCP answers go out (bounded wait) and exits 0, and no
error in one query ever stops the others. A supervisor's worker is handed its
sockets and its snapshot; reloading is then the supervisor's job
(``dnspol.supervisor``), and the worker ignores SIGHUP.

Around the handler sit the observers the options ask for: metrics
(``dnspol.metrics``), the operations port (``dnspol.health``), the query log
(``dnspol.querylog``) and dnstap (``dnspol.dnstap``), wired in through
``dnspol.observe``; beside it, the control socket ``dnspol ctl`` talks to
(``dnspol.control``). Running alone, the server logs each reload as one line
(``dnspol.logs``) and tells systemd (``dnspol.sdnotify``); a supervisor's worker
leaves both to the supervisor.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dnspol import (
    __version__,
    control,
    dnstap,
    handover,
    health,
    logs,
    metrics,
    notify,
    sdnotify,
    signals,
)
from dnspol.checker import Checker
from dnspol.errors import ConfigError
from dnspol.handler import Clock, Handler, Listener
from dnspol.names import Name, to_text
from dnspol.observe import Observed
from dnspol.querylog import QueryLog
from dnspol.state import ServerState, Snapshot
from dnspol.transport import tcp, udp

log = logging.getLogger("dnspol")

DRAIN_SECONDS = 5.0
# on SIGTERM, event-loop time to accept connections already queued in the kernel and read
# queries already sent, before the listeners close (closing resets queued connections)
SETTLE_SECONDS = 0.05
WATCH_INTERVAL = 1.0
# Before the first configuration is read (``dnspol serve`` imports this module first):
# a file changed later may have been read before or after the change (see FileWatch).
STARTED_NS = time.time_ns()
TURN_POLL_SECONDS = 0.005  # a supervised worker notices a newer generation this soon
RESIGN_RETRY_SECONDS = 60.0  # a re-signing load that failed is tried again this often


@dataclass
class ReloadStats:
    ok: int = 0
    failed: int = 0
    last_ok: float = 0.0
    last_problems: list[str] = field(default_factory=list)


@dataclass
class ServerOptions:
    listen: list[tuple[str, int]]
    ready_file: str | None = None
    print_ready: bool = True
    watch: bool = True
    seed: int | None = None
    test_control: bool = False  # CHAOS TXT clock/reload control (``--fake-time``)
    metrics_listen: tuple[str, int] | None = None  # /metrics, /health, /ready
    metrics_file: str | None = None  # a worker: write metric totals here for the supervisor
    query_log: str | None = None  # a path, or "-" for stdout
    query_log_sample: float = 1.0
    dnstap: dnstap.DnstapConfig | None = None  # the configuration's, as the server started
    # a supervisor's worker: one (UDP, TCP) pair per listen address, bound and shared
    # with the supervisor; then the supervisor reloads, not this process
    sockets: list[tuple[socket.socket, socket.socket]] | None = None
    workers: int = 1  # processes sharing the load: each takes 1/workers of every TCP and rate limit
    # when this process may answer (a supervised worker: its generation's turn)
    turn: handover.Turn | handover.Always = field(default_factory=handover.Always)
    control: str | None = None  # the control socket's path (``dnspol.control``); None: off
    control_default: bool = False  # the path was not chosen: if it is taken, run without
    restart_fixed: frozenset[str] = frozenset()  # restart-only settings the command line set


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:5353``, ``[::1]:5353``, ``::1`` or ``127.0.0.1`` (port 53)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"
    socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return host, int(port)


def format_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ListenError(OSError):
    """A listen address that cannot be had, said with the address and the likely fix."""

    def __str__(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else super().__str__()


LISTEN_FIXES = {
    errno.EADDRINUSE: "the address is already in use: another DNS server (named, "
    "systemd-resolved on 127.0.0.53, another dnspol) listens there; stop it or choose "
    "another --listen address",
    errno.EACCES: "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE "
    "(AmbientCapabilities=CAP_NET_BIND_SERVICE in a systemd unit, or setcap "
    "cap_net_bind_service=+ep on the Python binary), or listen on a port above 1023",
    errno.EADDRNOTAVAIL: "no such address on this machine: check --listen",
}


def open_pair(
    host: str, port: int, tcp_reuse_port: bool = False
) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP on the same port; port 0 picks a free one for both. With
    ``tcp_reuse_port`` more TCP listeners may join the port (one per worker).
    Raises ``ListenError`` naming the address and the likely fix."""
    try:
        return _open_pair(host, port, tcp_reuse_port)
    except OSError as exc:
        why = LISTEN_FIXES.get(exc.errno, exc.strerror or str(exc))
        raise ListenError(
            exc.errno, f"cannot listen on {format_listen(host, port)}: {why}"
        ) from exc


def _open_pair(host: str, port: int, tcp_reuse_port: bool) -> tuple[socket.socket, socket.socket]:
    for _ in range(20):
        usock = udp.open_socket(host, port)
        try:
            return usock, tcp.open_socket(host, usock.getsockname()[1], tcp_reuse_port)
        except OSError as exc:
            usock.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free port for UDP and TCP on {host}")


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Readers see the whole file or none (ready files are polled for)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class Server:
    def __init__(
        self, load: Callable[[], Snapshot], options: ServerOptions, clock: Clock | None = None
    ) -> None:
        self.load = load
        self.options = options
        self.state = ServerState()
        self.clock = clock or Clock()
        self.handler = Handler(self.state, self.clock, options.seed)
        self.handler.rate_share = 1 / options.workers
        if options.test_control:
            self.handler.control = self.control
        self.reloads = ReloadStats()
        self.last_reload: control.ReloadRecord | None = None  # for ``dnspol ctl``
        self.running_settings: dict[str, str] = {}  # the start-only ones, as started
        self.conns = tcp.Connections(self.state, options.workers)
        self.bound: list[tuple[str, int]] = []
        self.ready = False  # listening with a good configuration (``/ready``)
        self.query_log: QueryLog | None = None
        self.dnstap: dnstap.Tap | None = None
        self.exporter: metrics.Exporter | None = None
        self.ops: health.OpsServer | None = None
        self._stop: asyncio.Event | None = None
        self._reload_wanted: asyncio.Event | None = None
        self._reloading = asyncio.Lock()
        # systemd is told by the process that decides: not by a supervisor's worker
        self.notify = sdnotify.Notifier.from_environment(None if self.supervised else os.environ)
        # health checks: run here when this process is the server (a supervised worker
        # reads the board its generation's checker writes); forced states outlive reloads
        self.checker: Checker | None = None
        self.forced: dict[str, bool] = {}

    # -- configuration -------------------------------------------------------
    def reload(self, cause: str = "SIGHUP") -> bool:
        """Build and check a new snapshot; swap it in only when it is good. Logged as
        one line with its cause, outcome and duration; systemd is told it reloads."""
        began = time.monotonic()
        logs.reload_started(log, cause)
        self.notify.reloading(f"reloading ({cause}); {self._status()}")
        try:
            snapshot = self.load()
        except ConfigError as exc:
            self.reloads.failed += 1
            self.reloads.last_problems = exc.problems
            self.last_reload = control.ReloadRecord(time.time(), cause, False, exc.problems)
            took = time.monotonic() - began
            logs.reload_finished(log, cause, took, problems=exc.problems)
            first = exc.problems[0] if exc.problems else "rejected"
            self._notify_reloaded(f"reload failed ({cause}): {first}; {self._status()}")
            return False
        checker, old_checker = self._start_checker(snapshot), self.checker
        self.state.swap(snapshot)
        self.checker = checker
        if old_checker is not None:
            old_checker.stop()
        _settle_memory()
        self.reloads.ok += 1
        self.reloads.last_ok = time.time()
        self.last_reload = control.ReloadRecord(
            self.reloads.last_ok, cause, True, needs_restart=self._needs_restart(snapshot)
        )
        generation = logs.next_generation()
        took = time.monotonic() - began
        logs.reload_finished(log, cause, took, generation=generation, serving=describe(snapshot))
        for line in self.last_reload.needs_restart:
            log.warning("%s", line)
        self._notify_reloaded(self._status())
        return True

    def _notify_reloaded(self, status: str) -> None:
        """READY=1 ends systemd's reload, unless another reload is already asked for."""
        wanted = self._reload_wanted
        if wanted is not None and wanted.is_set():
            self.notify.status(status)
        else:
            self.notify.ready(status)

    def _status(self) -> str:
        """systemd's STATUS= line: what serves, where."""
        snap = self.state.snapshot
        zones = len(snap.zones) if snap is not None else 0
        addresses = ", ".join(format_listen(h, p) for h, p in self.bound)
        generation = logs.origin().generation or 1
        return f"serving generation {generation}: {zones} zone(s) on {addresses or 'nothing yet'}"

    def _needs_restart(self, snapshot: Snapshot) -> list[str]:
        """The settings ``snapshot`` asks for that only a restart would apply."""
        wanted = control.restart_settings(snapshot)
        return control.needs_restart(self.running_settings, wanted, self.options.restart_fixed)

    def control(self, qname: Name) -> str | None:
        """Test-only commands sent as CHAOS TXT queries (documented in docs/testing.md).

        ``clock.dnspol`` reads the clock, ``<epoch>.set.clock.dnspol`` sets it,
        ``<seconds>.advance.clock.dnspol`` moves it on, ``reload.dnspol`` reloads
        and says whether it worked. Enabled only with ``--fake-time``. A time the
        clock cannot show (``nan``, ``inf``, outside 1970-9999) is answered with
        ``error: <why>`` and leaves the clock as it was.
        """
        if qname == (b"reload", b"dnspol"):
            if self.supervised:  # one worker alone must not load a configuration of its own
                return "failed: with workers, reload with SIGHUP or 'dnspol ctl reload'"
            ok = self.reload(cause="CHAOS query")
            return "ok" if ok else "failed: " + "; ".join(self.reloads.last_problems[:3])
        if qname[-2:] != (b"clock", b"dnspol"):
            return None
        if len(qname) == 4 and qname[1] in (b"set", b"advance"):
            try:
                value = float(qname[0])
            except ValueError:
                return None
            try:
                self.clock.set(value if qname[1] == b"set" else self.clock.now() + value)
            except ValueError as exc:
                return f"error: {exc}"
        elif len(qname) != 2:
            return None
        return datetime.fromtimestamp(self.clock.now(), UTC).isoformat()

    # -- lifecycle -----------------------------------------------------------
    def run(self, first: Snapshot | None = None) -> int:
        """Serve until SIGTERM; ``first`` is an already loaded snapshot to start from."""
        tcp.raise_open_files_limit()
        try:
            self._start_observers()
        except (OSError, ValueError) as exc:
            log.error("cannot start the metrics port, the query log or dnstap: %s", exc)
            self._stop_observers()
            return 1
        try:
            snapshot = first if first is not None else self.load()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            self._stop_observers()
            return 1
        del first
        self.checker = self._start_checker(snapshot)
        self.state.swap(snapshot)
        self.running_settings = control.restart_settings(snapshot)
        del snapshot
        _settle_memory()
        self.reloads.last_ok = time.time()
        try:
            return asyncio.run(self._serve())
        except OSError as exc:
            log.error("%s", exc if isinstance(exc, ListenError) else f"cannot listen: {exc}")
            return 1
        finally:
            self._stop_observers()
            if self.checker is not None:
                self.checker.stop()

    def _start_checker(self, snapshot: Snapshot) -> Checker | None:
        """The checks of ``snapshot``, probed once (its starting verdicts) and then kept
        running; None without checks, or in a supervised worker."""
        board = getattr(snapshot.policy, "health", None)
        if board is None or self.supervised:
            return None
        checker = Checker(board, forced=self.forced)
        checker.prime()
        return checker.start()

    def set_health(self, name: str, up: bool | None) -> dict:
        """Force a check up or down, or (None) let its probes decide again."""
        if self.checker is None or name not in self.checker.states:
            known = ", ".join(self.checker.states) if self.checker is not None else "none"
            raise KeyError(f"no check {name!r} (checks: {known})")
        if up is None:
            self.forced.pop(name, None)
        else:
            self.forced[name] = up
        return self.checker.force(name, up)

    def readiness(self) -> tuple[bool, str]:
        """What ``/ready`` says: a good configuration loaded and every listener bound."""
        if self.state.snapshot is None:
            return False, "no configuration loaded"
        if not self.ready:
            return False, "shutting down" if self._stop and self._stop.is_set() else "not listening"
        return True, ""

    def _start_observers(self) -> None:
        """The query log, metric folding and the operations port, as the options ask."""
        opts = self.options
        if opts.query_log:
            labels = self.handler.stats.labels
            self.query_log = QueryLog(opts.query_log, opts.query_log_sample, labels)
            self.query_log.start()
        if opts.dnstap is not None:
            labels = self.handler.stats.labels
            self.dnstap = dnstap.Tap(opts.dnstap, labels, per_process=opts.workers > 1)
            self.dnstap.start()
        if opts.metrics_listen or opts.metrics_file:
            self.exporter = metrics.Exporter(self, self.query_log, opts.metrics_file)
            self.exporter.start()
        if opts.metrics_listen:
            assert self.exporter is not None
            registry = metrics.registry(self.exporter.totals)
            self.ops = health.OpsServer(opts.metrics_listen, registry, self.readiness).start()

    def _observed(self) -> Handler | Observed:
        """What the transports call: the handler, or the handler watched by the observers."""
        if self.exporter is None and self.query_log is None and self.dnstap is None:
            return self.handler
        return Observed(
            self.handler,
            durations=self.exporter is not None,
            query_log=self.query_log,
            dnstap=self.dnstap,
        )

    def _stop_observers(self) -> None:
        if self.exporter is not None:
            self.exporter.stop()
        if self.query_log is not None:
            self.query_log.stop()
        if self.dnstap is not None:
            self.dnstap.stop()
        if self.ops is not None:
            self.ops.stop()

    async def _serve(self) -> int:
        self._stop = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        try:
            control_server = self._start_control()
        except control.ControlError as exc:
            log.error("%s", exc)
            return 1
        try:
            sockets = self._bind_all()
        except OSError:
            if control_server is not None:
                control_server.stop()
            raise
        self._install_signals()
        self._announce()  # a supervised worker: loaded and listening, waiting for its turn
        if not await self._wait_turn():
            return 0  # stopped before it ever answered
        stop_reading = threading.Event()
        readers, servers = await self._start_listeners(sockets, stop_reading)
        self.notify.ready(self._status())  # answering: the listeners run
        tasks = [asyncio.create_task(self.conns.sweep_forever())]
        if self.options.watch and not self.supervised:
            tasks.append(asyncio.create_task(self._watch_files()))
        if self.supervised:
            tasks.append(asyncio.create_task(self._watch_turn()))
        else:
            tasks.append(asyncio.create_task(self._reload_on_request()))
            notifies = notify.run_forever(self.state, self.handler.stats.notifies)  # RFC 1996
            tasks.append(asyncio.create_task(notifies))
            tasks.append(asyncio.create_task(self._sign_again_when_due()))
        await self._stop.wait()
        self.ready = False
        self.notify.stopping()
        if control_server is not None:  # off the loop: a reload it waits for runs there
            await asyncio.get_running_loop().run_in_executor(None, control_server.stop)
        if self.options.turn.mine():
            await self._finish(servers, readers, stop_reading)
        else:
            await self._hand_over(servers, readers, stop_reading)
        for task in tasks:
            task.cancel()
        for usock, _ in sockets:
            usock.close()
        return 0

    async def _start_listeners(
        self, sockets: list[tuple[socket.socket, socket.socket]], stop_reading: threading.Event
    ) -> tuple[list[threading.Thread], list[asyncio.AbstractServer]]:
        """A UDP reader thread and a TCP server per listen address."""
        handler = self._observed()
        readers, servers = [], []
        for (host, port), (usock, tsock) in zip(self.bound, sockets, strict=True):
            udp_listener = Listener(host, port, "udp")
            readers.append(udp.start(usock, handler, udp_listener, stop_reading, self.options.turn))
            tcp_listener = Listener(host, port, "tcp")
            servers.append(await tcp.start(tsock, handler, tcp_listener, self.conns))
        return readers, servers

    async def _wait_turn(self) -> bool:
        """Until this worker's generation holds the baton (at once without a supervisor);
        False when told to stop first."""
        assert self._stop is not None
        turn = self.options.turn
        while not turn.mine():
            if self._stop.is_set():
                return False
            await asyncio.sleep(handover.POLL_SECONDS)
        return True

    async def _watch_turn(self) -> None:
        """A newer generation is taking over: stop answering now (see ``_hand_over``)."""
        assert self._stop is not None
        turn = self.options.turn
        while turn.mine():
            await asyncio.sleep(TURN_POLL_SECONDS)
        self._stop.set()

    async def _finish(self, servers, readers, stop_reading: threading.Event) -> None:
        """SIGTERM: stop reading and accepting, let in-flight TCP answers go out."""
        # with workers, the supervisor says it once for all of them
        level = logging.DEBUG if self.supervised else logging.INFO
        log.log(level, "shutting down: no new connections, finishing TCP answers")
        await asyncio.sleep(SETTLE_SECONDS)
        for server in servers:
            server.close()
        stop_reading.set()  # each UDP loop ends after the packet in hand, if any
        await asyncio.sleep(SETTLE_SECONDS)
        await _joined(readers, DRAIN_SECONDS)
        await self._drain()

    async def _hand_over(self, servers, readers, stop_reading: threading.Event) -> None:
        """The baton left this generation: answer nothing more, then say so.

        The UDP loops stop after the packet in hand; TCP stops accepting (the
        listeners stay open in the newer workers, so queued connections wait for
        them) and every connection is closed after the answers already written
        (a client asks again on a new connection, RFC 7766 §6.2.3). Only then is
        the slot marked stopped, and the new generation starts answering.
        """
        stop_reading.set()
        for server in servers:
            server.close()
        self.conns.close_all()
        await _joined(readers, DRAIN_SECONDS)
        if any(t.is_alive() for t in readers):
            log.error("a UDP reader did not stop; the supervisor will end this worker")
            return
        self.options.turn.mark_stopped()
        await self._drain()

    def _start_control(self) -> control.ControlServer | None:
        """The control socket (``dnspol ctl``), unless off or a supervisor's worker."""
        path = self.options.control
        if path is None or self.supervised:
            return None
        backend = control.ServerBackend(self, asyncio.get_running_loop())
        try:
            sock = control.bind(path)
        except control.ControlError as exc:
            if not self.options.control_default:
                raise
            log.warning("%s; running without a control channel", exc)
            return None
        return control.ControlServer(sock, path, backend).start()

    @property
    def supervised(self) -> bool:
        return self.options.sockets is not None

    def _bind_all(self) -> list[tuple[socket.socket, socket.socket]]:
        if self.options.sockets is not None:  # bound by the supervisor
            for (host, _), (usock, _) in zip(
                self.options.listen, self.options.sockets, strict=True
            ):
                self.bound.append((host, usock.getsockname()[1]))
            return self.options.sockets
        pairs = []
        for host, port in self.options.listen:
            usock, tsock = open_pair(host, port)
            self.bound.append((host, usock.getsockname()[1]))
            pairs.append((usock, tsock))
        return pairs

    def _install_signals(self) -> None:
        """The loop's handlers, then what arrived before them (``dnspol.signals``)."""
        loop = asyncio.get_running_loop()
        assert self._stop is not None and self._reload_wanted is not None
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        if self.supervised:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            return
        loop.add_signal_handler(signal.SIGHUP, self._reload_wanted.set)
        stop, reload = signals.take()
        if stop:
            self._stop.set()
        if reload:
            self._reload_wanted.set()

    async def _reload_on_request(self) -> None:
        assert self._reload_wanted is not None
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload_off_loop()

    async def reload_off_loop(self, cause: str = "SIGHUP") -> bool:
        """``reload()`` in a thread, so the loop keeps answering TCP and a SIGTERM
        stops the server at once instead of after the loading (the thread is a
        daemon: a stop abandons the load)."""
        loop = asyncio.get_running_loop()
        async with self._reloading:  # the watcher and SIGHUP: one reload at a time
            done: asyncio.Future[bool] = loop.create_future()

            def work() -> None:
                ok = self.reload(cause)
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(ok))

            threading.Thread(target=work, name="reload", daemon=True).start()
            return await done

    async def _watch_files(self) -> None:
        """Reload when any file the configuration was read from changes."""
        watch = FileWatch(self.state.snapshot.files if self.state.snapshot else (), STARTED_NS)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            snap = self.state.snapshot
            if watch.changed(snap.files if snap else ()):
                await self.reload_off_loop(cause="a changed file")

    async def _sign_again_when_due(self) -> None:
        """A signed zone's signatures reach their refresh point: load (and so sign) again,
        in the background, and switch at once, as a reload does (``dnspol.dnssec``)."""
        retry_at = 0.0
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            snap = self.state.snapshot
            due = snap.resign_at if snap is not None else None
            if due is None or time.time() < max(due, retry_at):
                continue
            log.info("signatures reach their refresh point; signing again")
            if not await self.reload_off_loop(cause="signatures due for refresh"):
                retry_at = time.time() + RESIGN_RETRY_SECONDS

    async def _drain(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.conns.open and time.monotonic() < deadline:
            busy = [c for c in self.conns.open if c.buffer]
            if not busy:
                break
            await asyncio.sleep(0.05)
        self.conns.close_all()
        await asyncio.sleep(0)

    def _announce(self) -> None:
        snap = self.state.snapshot
        addresses = ", ".join(format_listen(h, p) for h, p in self.bound)
        # with workers, the supervisor says it once for all of them
        level = logging.DEBUG if self.supervised else logging.INFO
        log.log(level, "dnspol %s serving %s on udp+tcp %s", __version__, describe(snap), addresses)
        self.ready = True
        host, port = self.bound[0]
        if self.options.ready_file:
            write_atomically(self.options.ready_file, f"{host} {port}\n")
        if self.options.print_ready:
            print(f"READY {host} {port}", flush=True)


async def _joined(threads: list[threading.Thread], timeout: float) -> None:
    """Wait, without blocking the event loop, for ``threads`` to end (bounded)."""
    deadline = time.monotonic() + timeout
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _settle_memory() -> None:
    """After a swap: collect the old snapshot's cycles, then freeze what is left.

    A full collection walks every object; over a zone of a million records that
    pauses answering for about a second each time the collector runs. Frozen
    objects are skipped by the collector (reference counting still frees them).
    """
    gc.collect()
    gc.freeze()
    return_freed_memory()


def return_freed_memory() -> None:
    """glibc keeps freed heap memory for reuse; after a reload that is a whole old
    snapshot (hundreds of MB for a big zone). ``malloc_trim`` hands it back."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


DESCRIBE_ZONES = 20  # a start line with 100,000 zones would be unreadable


def describe(snap: Snapshot | None) -> str:
    """Zones and serials for the start and reload log lines (the first 20 of them)."""
    if snap is None:
        return "nothing"
    shown = itertools.islice(snap.zones, DESCRIBE_ZONES)
    return describe_zones([(to_text(z.origin), z.serial) for z in shown], len(snap.zones))


def describe_zones(shown: list[tuple[str, int]], count: int) -> str:
    """``2 zone(s): example.com. (serial 7), example.org. (serial 1)``, from the first
    ``DESCRIBE_ZONES`` (name, serial) pairs of ``count`` zones."""
    zones = ", ".join(f"{name} (serial {serial})" for name, serial in shown[:DESCRIBE_ZONES])
    more = count - DESCRIBE_ZONES
    return f"{count} zone(s): {zones}" + (f" and {more} more" if more > 0 else "")


FileStamp = tuple[int, int, int, int, int] | None  # None: the path leads to no file


def file_stamp(path: str) -> FileStamp:
    """What tells one version of a file from the next.

    The file the path leads to now, by device and inode (``os.stat`` follows symlinks:
    kubelet updates a ConfigMap volume by pointing ``..data`` at a new directory, so the
    path stays and the file behind it is new, possibly with the old size and mtime),
    plus its mtime, ctime and size (an edit in place keeps the inode; setting the mtime
    back still moves the ctime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class FileWatch:
    """The watched files as last looked at; ``changed`` says whether one differs now.

    Both watchers (the one-process server's and the supervisor's) look every
    ``WATCH_INTERVAL`` and keep the stamps from the look that started a reload, not
    from after it: a file written while the reload read the files differs from them,
    so the next look reloads again instead of missing the change. The first look has
    no such stamps from before the first load; a file whose ctime is after
    ``read_since_ns`` (when that load began) counts as changed there, once.
    """

    def __init__(self, files: Iterable[str], read_since_ns: int) -> None:
        self.seen = {path: _unless_newer(file_stamp(path), read_since_ns) for path in files}

    def changed(self, files: Iterable[str]) -> bool:
        now = {path: file_stamp(path) for path in files}
        # a path not seen before was just added to the list by a reload that read it
        changed = any(path in self.seen and self.seen[path] != now[path] for path in now)
        self.seen = now
        return changed


def _unless_newer(stamp: FileStamp, read_since_ns: int) -> FileStamp:
    """``stamp``, or None (unlike any file's) when the file changed after ``read_since_ns``."""
    changed_ns = stamp[3] if stamp is not None else 0
    return None if changed_ns >= read_since_ns else stamp
