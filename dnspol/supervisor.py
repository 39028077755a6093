"""Several worker processes on one set of ports, so every core answers.

Python runs one thread of Python code at a time, so dnspol scales across cores
with processes. The supervisor loads the configuration, opens one UDP and one
TCP socket per worker and listen address (SO_REUSEPORT: the kernel spreads
queries between them), and forks each worker with its sockets and the loaded
snapshot, so every worker shares one copy of the configuration (copy-on-write;
the collector is frozen first so it does not write to every object).

Reload (SIGHUP, or a changed file unless ``--no-watch``) is the supervisor's
job, done the same way: it loads and checks the new configuration (a bad one is
logged with ``file:line`` and changes nothing), forks a new generation of
workers from it, and once they listen tells the old ones to finish. The
supervisor keeps every socket open, so a worker that stops reading leaves the
unread queries in its socket for its successor: a reload loses none, and the
server holds one copy of the configuration before and after (two while the
new one is being loaded). A worker that dies is forked again from the current
snapshot, and finds the queries sent meanwhile waiting in its socket.

With a metrics port, the supervisor serves it: every worker writes its metric
totals to a file in the supervisor's work directory each second, ``/metrics``
adds them up (``dnspol.metrics.WorkerFiles``) with the supervisor's reload
counts, and ``/ready`` holds until every current worker is listening.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dnspol import health, metrics
from dnspol.errors import ConfigError
from dnspol.server import (
    WATCH_INTERVAL,
    ReloadStats,
    describe,
    files_fingerprint,
    format_listen,
    return_freed_memory,
)
from dnspol.state import Snapshot
from dnspol.transport import tcp, udp

log = logging.getLogger("dnspol.supervisor")

START_TIMEOUT = 30.0
LEAVE_TIMEOUT = 30.0  # an old worker still running this long after SIGTERM is killed
TICK = 0.2

SocketPair = tuple[socket.socket, socket.socket]  # (UDP, TCP) on one address


@dataclass(frozen=True)
class WorkerStart:
    """What a forked worker is handed: its sockets (one pair per listen address, in
    the order of ``listen``), where to say it listens, and the snapshot to serve."""

    listen: list[tuple[str, int]]
    sockets: list[SocketPair]
    ready_file: str
    metrics_file: str | None
    snapshot: Snapshot


WorkerMain = Callable[[WorkerStart], int]


def open_slots(listen: list[tuple[str, int]], count: int) -> tuple[list[tuple[str, int]], list]:
    """One socket pair per worker and address, all on the same ports (port 0 becomes
    one free port for all). Returns the concrete addresses and the pairs by worker."""
    first, resolved = [], []
    for host, port in listen:
        pair = _open_pair(host, port)
        first.append(pair)
        resolved.append((host, pair[0].getsockname()[1]))
    slots = [first]
    for _ in range(count - 1):
        slots.append([_open_pair(host, port) for host, port in resolved])
    return resolved, slots


def _open_pair(host: str, port: int) -> SocketPair:
    for _ in range(20):
        usock = udp.open_socket(host, port, reuse_port=True)
        try:
            return usock, tcp.open_socket(host, usock.getsockname()[1], reuse_port=True)
        except OSError:
            usock.close()
            if port != 0:
                raise
    raise OSError(f"no free port for UDP and TCP on {host}")


class Worker:
    """A forked worker process, with the few ``subprocess.Popen`` methods used here."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def fork_worker(main: WorkerMain, start: WorkerStart, inherited: list) -> Worker:
    """Run ``main(start)`` in a child process; never returns in the child.

    ``inherited``: the supervisor's sockets the child has no use for; it closes them.
    The child ends with ``os._exit`` while ``start`` still holds the snapshot: freeing
    a shared snapshot object by object would copy every page of it first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Worker(pid)
    code = 1
    try:
        for sock in inherited:
            sock.close()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        _die_with_parent()
        code = main(start)
    except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor
        log.exception("worker failed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@dataclass
class Member:
    """One running worker: its process, the slot (sockets) it serves, its files."""

    proc: Worker
    slot: int
    ready: Path
    key: str  # names its metrics file


@dataclass(eq=False)
class Leaving:
    """An old generation finishing its answers, and the snapshot its pages share."""

    members: list[Member]
    snapshot: Snapshot
    deadline: float


class Supervisor:
    def __init__(
        self,
        worker_main: WorkerMain,
        load: Callable[[], Snapshot],
        snapshot: Snapshot,
        listen: list[tuple[str, int]],
        count: int,
        watch: bool = True,
        metrics_listen: tuple[str, int] | None = None,
    ) -> None:
        self.worker_main = worker_main
        self.load = load
        self.snapshot = snapshot
        self.listen = listen
        self.count = count
        self.watch = watch
        self.metrics_listen = metrics_listen
        self.reloads = ReloadStats(last_ok=time.time())
        self.members: list[Member] = []
        self.leaving: list[Leaving] = []
        self.stopping = False
        self.reload_wanted = False
        self.workdir = Path(tempfile.mkdtemp(prefix="dnspol-workers-"))
        self.files = metrics.WorkerFiles(self.workdir)
        self.resolved: list[tuple[str, int]] = []
        self.slots: list[list[SocketPair]] = []
        self.ops: health.OpsServer | None = None
        self._serial = itertools.count()

    # -- lifecycle -----------------------------------------------------------
    def run(self, ready_file: str | None) -> int:
        try:
            self.resolved, self.slots = open_slots(self.listen, self.count)
        except OSError as exc:
            log.error("cannot listen: %s", exc)
            self._clean_up()
            return 1
        if self.metrics_listen is not None:
            try:
                self.ops = health.OpsServer(
                    self.metrics_listen, metrics.registry(self.totals), self.readiness
                )
            except OSError as exc:
                log.error("cannot start the metrics port: %s", exc)
                self._clean_up()
                return 1
        self.members = self._start_generation(self.snapshot)
        if self.ops is not None:
            self.ops.start()  # after the first forks: a child gets no copy of its thread
        if not _wait_ready(self.members):
            _stop_all(self.members)
            log.error("workers did not start")
            self._clean_up()
            return 1
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        addresses = ", ".join(format_listen(*a) for a in self.resolved)
        log.info("%d workers serving on %s", self.count, addresses)
        _announce(self.resolved[0], ready_file)
        return self._loop()

    def _loop(self) -> int:
        seen = files_fingerprint(self.snapshot.files)
        next_look = time.monotonic() + WATCH_INTERVAL
        while True:
            time.sleep(TICK)
            if self.stopping:
                return self._stop()
            self._see_off_leaving()
            self._restart_dead()
            changed = False
            if self.watch and time.monotonic() >= next_look:
                next_look = time.monotonic() + WATCH_INTERVAL
                changed = files_fingerprint(self.snapshot.files) != seen
                if changed:
                    log.info("a configuration file changed; reloading")
            if self.reload_wanted or changed:
                self.reload_wanted = False
                self.reload()
                seen = files_fingerprint(self.snapshot.files)

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self.reload_wanted = True
            return
        self.stopping = True
        for member in self.members:  # at once, even while a reload is loading
            member.proc.terminate()

    def _stop(self) -> int:
        for member in self.members:
            member.proc.terminate()
        codes = [member.proc.wait() for member in self.members]
        for leaving in self.leaving:
            _stop_all(leaving.members)
        self._clean_up()
        return max(codes, default=0)

    def _clean_up(self) -> None:
        if self.ops is not None:
            self.ops.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- reload --------------------------------------------------------------
    def reload(self) -> bool:
        """Load and check; start a new generation on the new snapshot; retire the old."""
        log.info("reloading")
        try:
            snapshot = self.load()
        except ConfigError as exc:
            return self._reload_failed(exc.problems)
        if self.stopping:
            return False
        generation = self._start_generation(snapshot)
        if not _wait_ready(generation):
            _stop_all(generation)
            for member in generation:
                self.files.retire(member.key)
            return self._reload_failed(["the workers on the new configuration did not start"])
        old, self.members = self.members, generation
        self.leaving.append(Leaving(old, self.snapshot, time.monotonic() + LEAVE_TIMEOUT))
        self.snapshot = snapshot
        for member in old:
            member.proc.terminate()  # each stops reading; its socket keeps what it left
        self.reloads.ok += 1
        self.reloads.last_ok = time.time()
        log.info("loaded %s", describe(snapshot))
        return True

    def _reload_failed(self, problems: list[str]) -> bool:
        self.reloads.failed += 1
        self.reloads.last_problems = problems
        for problem in problems:
            log.error("reload failed: %s", problem)
        log.error("still serving the previous configuration")
        return False

    def _see_off_leaving(self) -> None:
        """Collect old workers that have finished; then free the snapshot they shared."""
        still = [leaving for leaving in self.leaving if not self._finished(leaving)]
        if len(still) == len(self.leaving):
            return
        self.leaving = still  # the last reference to each finished generation's snapshot
        return_freed_memory()

    def _finished(self, leaving: Leaving) -> bool:
        overdue = time.monotonic() > leaving.deadline
        for member in leaving.members:
            if overdue and member.proc.poll() is None:
                log.error("worker %d did not finish in time; killing it", member.proc.pid)
                member.proc.send_signal(signal.SIGKILL)
                member.proc.wait()
        if any(member.proc.poll() is None for member in leaving.members):
            return False
        for member in leaving.members:
            self.files.retire(member.key)
        return True

    # -- workers -------------------------------------------------------------
    def _start_generation(self, snapshot: Snapshot) -> list[Member]:
        gc.collect()
        gc.freeze()  # the loaded configuration: the collector would write to every object
        return [self._start(slot, snapshot) for slot in range(self.count)]

    def _start(self, slot: int, snapshot: Snapshot) -> Member:
        key = f"{slot}.{next(self._serial)}"
        ready = self.workdir / f"worker-{key}.ready"
        metrics_file = str(self.files.path(key)) if self.metrics_listen is not None else None
        start = WorkerStart(
            list(self.resolved), self.slots[slot], str(ready), metrics_file, snapshot
        )
        others = [s for i, pairs in enumerate(self.slots) if i != slot for p in pairs for s in p]
        if self.ops is not None:
            others.append(self.ops.socket)
        return Member(fork_worker(self.worker_main, start, others), slot, ready, key)

    def _restart_dead(self) -> None:
        for i, member in enumerate(self.members):
            if member.proc.poll() is not None:
                log.error(
                    "worker %d exited with %s; starting it again",
                    member.proc.pid,
                    member.proc.returncode,
                )
                self.files.retire(member.key)  # keep its counters: sums never go backwards
                self.members[i] = self._start(member.slot, self.snapshot)

    # -- operations port -----------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """``/ready``: every current worker is running and listening."""
        if self.stopping:
            return False, "shutting down"
        current = list(self.members)
        if len(current) < self.count:
            return False, "workers starting"
        for i, member in enumerate(current):
            if member.proc.poll() is not None or not member.ready.exists():
                return False, f"worker {i} not listening"
        return True, ""

    def totals(self) -> metrics.Totals:
        """The workers' totals, with the reloads counted here (workers do not reload)."""
        out = self.files.totals()
        out.set("dnspol_reloads_total", ("ok",), self.reloads.ok)
        out.set("dnspol_reloads_total", ("failed",), self.reloads.failed)
        out.set("dnspol_reload_last_success_timestamp_seconds", (), self.reloads.last_ok)
        return out


def run(
    worker_main: WorkerMain,
    load: Callable[[], Snapshot],
    snapshot: Snapshot,
    listen: list[tuple[str, int]],
    count: int,
    ready_file: str | None,
    metrics_listen: tuple[str, int] | None = None,
    watch: bool = True,
) -> int:
    """Serve ``snapshot`` with ``count`` forked workers until SIGTERM; reload with ``load``."""
    supervisor = Supervisor(worker_main, load, snapshot, listen, count, watch, metrics_listen)
    del snapshot  # the supervisor's reference is the one a reload replaces
    return supervisor.run(ready_file)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait_ready(members: list[Member]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if any(member.proc.poll() is not None for member in members):
            return False
        if all(member.ready.exists() for member in members):
            return True
        time.sleep(0.02)
    return False


def _stop_all(members: list[Member]) -> None:
    for member in members:
        if member.proc.poll() is None:
            member.proc.terminate()
    for member in members:
        member.proc.wait()


def _announce(first: tuple[str, int], ready_file: str | None) -> None:
    host, port = first
    if ready_file:
        tmp = ready_file + ".tmp"
        Path(tmp).write_text(f"{host} {port}\n")
        os.replace(tmp, ready_file)
    print(f"READY {host} {port}", flush=True)
