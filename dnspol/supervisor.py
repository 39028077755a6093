"""Several worker processes on one set of ports, so every core answers.

Python runs one thread of Python code at a time, so dnspol scales across cores
with processes. The supervisor opens the sockets and keeps them open for as long
as it runs: per listen address one UDP socket that every worker reads (the first
worker free takes the next datagram), and a TCP listener per worker (SO_REUSEPORT:
the kernel spreads connections between them). The workers of one configuration
are a *generation*: a process that holds the loaded snapshot and forks the
workers from it, so they share one copy of it (copy-on-write; the collector is
frozen first so it does not write to every object). It forks a worker again from
the same snapshot when one dies.

Reload (SIGHUP, or a changed file unless ``--no-watch``): the supervisor forks a
new generation, which loads and checks the files (a bad one is logged with
``file:line``, the generation exits, nothing changes) and forks its workers.
Once they all listen, the old generation is told to finish: each old worker
stops reading between two packets and finishes its TCP answers, and what it did
not read waits in the sockets for the new workers, so a reload loses no query.
The supervisor itself never holds a configuration after the start: a process
forked while one is loaded would keep its pages after it is freed, so after a
reload the server holds one copy again (two while the new one loads).

With a metrics port, the supervisor serves it: every worker writes its metric
totals to a file in the supervisor's work directory each second, ``/metrics``
adds them up (``dnspol.metrics.WorkerFiles``) with the supervisor's reload
counts, and ``/ready`` holds until every worker of the current generation is
listening.

The supervisor also answers ``dnspol ctl`` (``dnspol.control.SupervisorBackend``): each
generation writes what it loaded, or the problems that stopped it, beside its ready file.
From that report the supervisor is the one that speaks for the server: the log line of
each reload (``dnspol.logs``) and what systemd is told (``dnspol.sdnotify``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import json
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
from typing import Any

from dnspol import __version__, control, health, logs, metrics, notify, sdnotify, signals
from dnspol.checker import Checker
from dnspol.errors import ConfigError
from dnspol.handover import Baton, Turn
from dnspol.metrics import notify_totals
from dnspol.server import (
    RESIGN_RETRY_SECONDS,
    STARTED_NS,
    WATCH_INTERVAL,
    FileWatch,
    ListenError,
    ReloadStats,
    describe,
    describe_zones,
    format_listen,
    open_pair,
    return_freed_memory,
    write_atomically,
)
from dnspol.settings import DEFAULTS
from dnspol.state import Snapshot
from dnspol.transport import tcp

log = logging.getLogger("dnspol.supervisor")

START_TIMEOUT = 30.0
LEAVE_TIMEOUT = 30.0  # an old generation still running this long after SIGTERM is killed
# an old worker that has not stopped answering this long after the switch began is
# killed, so the new generation can start (its UDP loops stop within 0.02 s when idle)
SWITCH_TIMEOUT = 2.0
TICK = 0.2
HELD_SIGNALS = signals.HELD  # blocked across fork

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
    turn: Turn  # when it may answer: while its generation holds the baton


WorkerMain = Callable[[WorkerStart], int]


def open_slots(listen: list[tuple[str, int]], count: int) -> tuple[list[tuple[str, int]], list]:
    """The sockets of every worker slot, on each listen address (port 0 becomes one free
    port for all). Returns the concrete addresses and, per slot, a (UDP, TCP) pair per
    address.

    UDP: one socket, read by every worker: whichever is free takes the next datagram.
    SO_REUSEPORT would give each worker a socket of its own, chosen by a hash of the
    client's address and port, so a few busy clients can load one worker and leave
    the other idle (measured with dnsperf's 4 sockets on 2 cores: 30% and 59% CPU,
    0.93x BIND; one shared socket: 56% and 54%, 1.20x). TCP: a listener per worker
    (SO_REUSEPORT), as connections are long and the kernel spreads them well.
    """
    resolved: list[tuple[str, int]] = []
    slots: list[list[SocketPair]] = [[] for _ in range(count)]
    for host, port in listen:
        shared, first_tcp = open_pair(host, port, tcp_reuse_port=True)
        port = shared.getsockname()[1]
        resolved.append((host, port))
        slots[0].append((shared, first_tcp))
        for pairs in slots[1:]:
            pairs.append((shared, tcp.open_socket(host, port, reuse_port=True)))
    return resolved, slots


class Child:
    """A forked process (a generation or a worker), with the few ``subprocess.Popen``
    methods used here."""

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


def fork_process(main: Callable[[Any], int], arg: Any, inherited: list) -> Child:
    """Run ``main(arg)`` in a child process; never returns in the child.

    ``inherited``: the parent's sockets the child has no use for; it closes them.
    The child ends with ``os._exit`` while ``arg`` still holds the snapshot: freeing
    a shared snapshot object by object would copy many pages of it first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # Until the child has its own handlers, a signal would run the parent's (in the
    # child's copy of the parent's objects) and be lost: hold signals across the fork.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return Child(pid)
    code = 1
    try:
        # until ``main`` sets its own: a stop before anything runs is a clean exit
        signal.signal(signal.SIGTERM, _exit_at_once)
        signal.signal(signal.SIGINT, _exit_at_once)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloading is the supervisor's call
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # one held back acts now
        for sock in inherited:
            sock.close()
        _die_with_parent()
        code = main(arg)
    except BaseException:  # noqa: BLE001 - a child must never return into its parent
        log.exception("%s failed", getattr(main, "__qualname__", "child"))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


FORCED_FILE = "health-forced.json"  # ``dnspol ctl set-health``: check name → "up" | "down"


def checks_state_path(workdir: Path, number: int) -> Path:
    """Where a generation's checker writes its checks' states (``dnspol ctl status``)."""
    return Path(workdir) / f"checks-{number}.json"


BAD_CONFIGURATION = 3  # a generation's exit status: its files did not load
RELOAD_TIMEOUT = DEFAULTS.reload_timeout  # loading plus starting; server.reload_timeout


@dataclass
class Member:
    """One running worker: its process, the slot (sockets) it serves, its files."""

    proc: Child
    slot: int
    ready: Path
    key: str  # names its metrics and ready files


class Generation:
    """Runs in its own process: one configuration and the workers forked from it."""

    def __init__(self, number: int, host: Supervisor) -> None:
        self.number = number
        self.host = host  # this process's copy: the slots, the work directory, the options
        self.members: list[Member] = []
        self.stopping = False
        self._serial = itertools.count()

    @property
    def ready_file(self) -> Path:
        return self.host.workdir / f"generation-{self.number}.ready"

    @property
    def notify_key(self) -> str:
        """Names this generation's totals file (its NOTIFY counts) beside its workers'."""
        return f"{self.number}.notify"

    def run(self, snapshot: Snapshot | None) -> int:
        """Load (unless handed a snapshot), fork the workers, keep them running."""
        logs.set_origin("generation", self.number)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        report = control.GenerationReport(self.host.workdir, self.number)  # for ``dnspol ctl``
        if snapshot is None:
            # told to stop while loading: nothing runs yet, so nothing to finish
            signal.signal(signal.SIGTERM, _exit_at_once)
            try:
                snapshot = self.host.load()
            except ConfigError as exc:  # the supervisor logs them, with the reload
                for problem in exc.problems:
                    log.debug("reload failed: %s", problem)
                report.failed(exc.problems)
                return BAD_CONFIGURATION
            log.debug("loaded %s", describe(snapshot))
        report.loaded(snapshot)
        if snapshot.resign_at is not None:  # for the supervisor's re-signing timer
            write_atomically(self.ready_file.with_suffix(".resign"), str(snapshot.resign_at))
        signal.signal(signal.SIGTERM, self._on_stop)
        checker = self._checker(snapshot)  # primed before the workers: they start informed
        gc.collect()
        gc.freeze()  # the loaded configuration: the collector would write to every object
        self.members = [self._start(slot, snapshot) for slot in range(self.host.count)]
        if checker is not None:
            checker.start()  # after the fork: the workers get no copy of its thread
        files = json.dumps(list(snapshot.files))
        # this generation tells secondaries of new serials (RFC 1996), once it answers
        notifier = notify.Notifier(record=self.host.workdir / "notified.json")
        counted: dict = {}  # the NOTIFY counts last written for the metrics
        while not self.stopping:
            time.sleep(TICK)
            self._restart_dead(snapshot)
            listening = all(m.ready.exists() and m.proc.poll() is None for m in self.members)
            report.workers((m.proc.pid, m.ready.exists()) for m in self.members)
            if listening and not self.ready_file.exists():
                write_atomically(self.ready_file, files)
            elif not listening:
                self.ready_file.unlink(missing_ok=True)
            if listening:  # after the ready file: recording the journal may take seconds
                notifier.follow(snapshot)
            notifier.tick()
            if self.host.metrics_listen is not None and notifier.counts != counted:
                counted = dict(notifier.counts)
                metrics.write_totals(self.host.files.path(self.notify_key), notify_totals(counted))
        self.ready_file.unlink(missing_ok=True)
        if checker is not None:
            checker.stop()
            checks_state_path(self.host.workdir, self.number).unlink(missing_ok=True)
        _stop_all(self.members)
        for member in self.members:
            self.host.files.retire(member.key)
        self.host.files.retire(self.notify_key)  # its counts stay in the sums
        if os.getppid() != self.host.pid:  # the supervisor was killed: no one else will
            shutil.rmtree(self.host.workdir, ignore_errors=True)
        return 0

    def _on_stop(self, _signum, _frame) -> None:
        self.stopping = True

    def _checker(self, snapshot: Snapshot) -> Checker | None:
        """The configuration's health checks, run in this process for all its workers
        (they read the board it writes: shared memory made when the files loaded)."""
        board = getattr(snapshot.policy, "health", None)
        if board is None:
            return None
        host = self.host
        metrics_file = host.files.path(f"{self.number}.checks") if host.metrics_listen else None
        checker = Checker(
            board,
            state_file=checks_state_path(host.workdir, self.number),
            forced_file=host.workdir / FORCED_FILE,
            metrics_file=metrics_file,
        )
        checker.prime()
        return checker

    def _start(self, slot: int, snapshot: Snapshot) -> Member:
        host = self.host
        key = f"{self.number}.{slot}.{next(self._serial)}"
        ready = host.workdir / f"worker-{key}.ready"
        metrics_file = str(host.files.path(key)) if host.metrics_listen is not None else None
        turn = host.baton.turn(self.number, slot)
        start = WorkerStart(
            list(host.resolved), host.slots[slot], str(ready), metrics_file, snapshot, turn
        )
        mine = {id(sock) for pair in host.slots[slot] for sock in pair}  # UDP is everyone's
        others = [s for pairs in host.slots for p in pairs for s in p if id(s) not in mine]
        main = functools.partial(_run_worker, host.worker_main, self.number, slot)
        return Member(fork_process(main, start, others), slot, ready, key)

    def _restart_dead(self, snapshot: Snapshot) -> None:
        for i, member in enumerate(self.members):
            if member.proc.poll() is not None and not self.stopping:
                log.error(
                    "worker %d exited with %s; starting it again",
                    member.proc.pid,
                    member.proc.returncode,
                )
                self.host.files.retire(member.key)  # keep its counters: sums never go back
                member.ready.unlink(missing_ok=True)
                self.members[i] = self._start(member.slot, snapshot)


@dataclass
class Head:
    """The supervisor's view of a generation process."""

    proc: Child
    number: int
    ready_file: Path
    started: float
    deadline: float = float("inf")  # once told to finish: killed if still running then
    cause: str = ""  # why it was forked: "start", "SIGHUP", "ctl", "a changed file"...


class Supervisor:
    def __init__(
        self,
        worker_main: WorkerMain,
        load: Callable[[], Snapshot],
        listen: list[tuple[str, int]],
        count: int,
        watch: bool = True,
        metrics_listen: tuple[str, int] | None = None,
        control_path: str | None = None,
        restart_fixed: frozenset[str] = frozenset(),
        control_default: bool = False,
    ) -> None:
        self.worker_main = worker_main
        self.load = load
        self.listen = listen
        self.count = count
        self.watch = watch
        self.metrics_listen = metrics_listen
        self.reloads = ReloadStats(last_ok=time.time())
        self.reload_timeout = RELOAD_TIMEOUT  # the first configuration's server.reload_timeout
        self.current: Head | None = None
        self.pending: Head | None = None  # a generation loading, not yet listening
        self.leaving: list[Head] = []
        self.stopping = False
        self.reload_wanted = False
        self.resign_at: float | None = None  # when the signatures need a new generation
        self.files_in_use: tuple[str, ...] = ()
        self.workdir = Path(tempfile.mkdtemp(prefix="dnspol-workers-"))
        self.pid = os.getpid()  # a generation whose parent is no longer this was orphaned
        self.files = metrics.WorkerFiles(self.workdir)
        self.resolved: list[tuple[str, int]] = []
        self.slots: list[list[SocketPair]] = []
        self.ops: health.OpsServer | None = None
        self.baton = Baton(count)  # before any fork: every generation shares this page
        self._generations = itertools.count(1)
        self.control = control.SupervisorBackend(self, control_path, restart_fixed, control_default)
        self.reload_cause = ""  # why the next generation is forked (``dnspol ctl status``)
        self.notify = sdnotify.Notifier.from_environment(os.environ)  # the main process: tell
        self.stop_signal = "SIGTERM"
        self._zones: tuple[int, list[dict[str, Any]]] = (0, [])  # (generation, its zones)

    # -- lifecycle -----------------------------------------------------------
    def run(self, first: list[Snapshot], ready_file: str | None) -> int:
        """Serve ``first.pop()`` until SIGTERM. Popped, so that once the first generation
        has it, the supervisor frees its own reference (and holds no configuration)."""
        logs.set_origin("supervisor")
        for signum in HELD_SIGNALS:  # first: a signal at any later instant is safe
            signal.signal(signum, self._on_signal)
        self.stopping, self.reload_wanted = signals.take()
        try:
            self.resolved, self.slots = open_slots(self.listen, self.count)
        except OSError as exc:
            log.error("%s", exc if isinstance(exc, ListenError) else f"cannot listen: {exc}")
            self._clean_up()
            return 1
        if not self.control.bind():
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
        self.files_in_use = first[0].files
        self.resign_at = first[0].resign_at  # the current generation's signatures' refresh
        self.reload_timeout = getattr(first[0], "reload_timeout", RELOAD_TIMEOUT)
        self.current = self._fork_generation(first.pop())
        self.baton.hand_to(self.current.number)  # nobody answered before: no one to wait for
        return_freed_memory()
        if self.ops is not None:
            self.ops.start()  # after the first fork: a child gets no copy of its thread
        if not self._wait_listening(self.current, START_TIMEOUT):
            if self.stopping:
                return self._stop()
            self._stop()
            log.error("workers did not start")
            return 1
        self.control.start()
        self._log_serving(self.current)
        _announce(self.resolved[0], ready_file)
        self.notify.ready(self._status())  # last: the ready file is there too
        return self._loop()

    def _log_serving(self, head: Head) -> None:
        """The start, said once for every worker."""
        addresses = ", ".join(format_listen(*a) for a in self.resolved)
        log.info(
            "dnspol %s serving %s on udp+tcp %s, %d workers",
            __version__,
            self._serving(head),
            addresses,
            self.count,
        )

    def _serving(self, head: Head) -> str:
        """What a generation serves: ``N zone(s): name (serial S), ...``."""
        zones = self._zones_of(head)
        return describe_zones([(z["name"], z["serial"]) for z in zones], len(zones))

    def _zones_of(self, head: Head) -> list[dict[str, Any]]:
        """The zones a generation reported (this process holds no configuration); read
        once per generation: with 100,000 zones the report is megabytes."""
        if self._zones[0] != head.number:
            zones = control.read_report(self.workdir, head.number).get("zones", [])
            self._zones = (head.number, zones)
        return self._zones[1]

    def _status(self) -> str:
        """systemd's STATUS= line: what serves, where."""
        head = self.current
        if head is None:
            return "no generation serving"
        zones = len(self._zones_of(head))
        addresses = ", ".join(format_listen(*a) for a in self.resolved)
        return (
            f"serving generation {head.number}: {zones} zone(s) on {addresses}, "
            f"{self.count} workers"
        )

    def _loop(self) -> int:
        watch = FileWatch(self.files_in_use, STARTED_NS)
        next_look = time.monotonic() + WATCH_INTERVAL
        while True:
            time.sleep(TICK)
            if self.stopping:
                return self._stop()
            self._see_off_leaving()
            self._follow_pending()
            self._mind_current()
            if self.watch and time.monotonic() >= next_look:
                next_look = time.monotonic() + WATCH_INTERVAL
                if watch.changed(self.files_in_use):
                    self.reload_wanted = True
                    self.reload_cause = "a changed file"
            if self.resign_at is not None and time.time() >= self.resign_at:
                # the next generation says when, once serving; until then, try again
                self.resign_at = time.time() + RESIGN_RETRY_SECONDS
                log.info("signatures reach their refresh point; signing again")
                self.reload_wanted = True
                self.reload_cause = "signatures due for refresh"
            if self.reload_wanted and self.pending is None:
                self.reload_wanted = False
                cause = self.reload_cause or "SIGHUP"
                logs.reload_started(log, cause)
                self.notify.reloading(f"reloading ({cause}); {self._status()}")
                self.pending = self._fork_generation(None)

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self.reload_wanted = True
            self.reload_cause = "SIGHUP"
        else:
            self.stopping = True
            self.stop_signal = signal.Signals(signum).name

    def _stop(self) -> int:
        if self.stopping:  # said once here; each worker says it only at debug level
            log.info(
                "shutting down (%s): no new connections, finishing TCP answers", self.stop_signal
            )
            self.notify.stopping()
        heads = [h for h in (self.current, self.pending, *self.leaving) if h is not None]
        for head in heads:
            head.proc.terminate()
        codes = [head.proc.wait() for head in heads]
        self._clean_up()
        return max(codes, default=0)

    def _clean_up(self) -> None:
        if self.ops is not None:
            self.ops.stop()
        self.control.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- generations ---------------------------------------------------------
    def _fork_generation(self, snapshot: Snapshot | None) -> Head:
        """A generation process; it loads the files itself unless given ``snapshot``."""
        number = next(self._generations)
        generation = Generation(number, self)
        inherited = [self.ops.socket] if self.ops is not None else []
        inherited += self.control.sockets()
        proc = fork_process(generation.run, snapshot, inherited)
        head = Head(proc, number, generation.ready_file, time.monotonic())
        head.cause = self.reload_cause or ("start" if number == 1 else "SIGHUP")
        self.control.forked(head)
        return head

    def _follow_pending(self) -> None:
        """A reload in progress: failed, still loading, or ready to take over."""
        head = self.pending
        if head is None:
            return
        code = head.proc.poll()
        if code is not None:
            self.pending = None
            self.files.retire_generation(head.number)
            why = "see the problems above" if code == BAD_CONFIGURATION else f"exit {code}"
            self._reload_failed(head, why)
            self.control.finished(head, ok=False, why=why)
            self._notify_reloaded(f"reload failed ({head.cause}); {self._status()}")
            return
        if not head.ready_file.exists():
            self._abandon_if_slow(head)
            return
        old, self.current, self.pending = self.current, head, None
        switch_ms = self._switch(old, head)
        if old is not None:
            old.proc.terminate()  # its workers have stopped answering; now they exit
            old.deadline = time.monotonic() + LEAVE_TIMEOUT
            self.leaving.append(old)
        self.files_in_use = tuple(json.loads(head.ready_file.read_text()))
        self.resign_at = _resign_at(head.ready_file.with_suffix(".resign"))
        self.reloads.ok += 1
        self.reloads.last_ok = time.time()
        logs.reload_finished(
            log,
            head.cause,
            time.monotonic() - head.started,
            generation=head.number,
            serving=self._serving(head),
            after=f"switched in {switch_ms:.1f} ms, the previous one is finishing",
        )
        self.control.finished(head, ok=True)
        self._notify_reloaded(self._status())

    def _notify_reloaded(self, status: str) -> None:
        """READY=1 ends systemd's reload, unless another one is already asked for (then
        that one's READY=1 ends it: ``systemctl reload`` returns after the files it saw)."""
        if self.reload_wanted:
            self.notify.status(status)
        else:
            self.notify.ready(status)

    def _switch(self, old: Head | None, new: Head) -> float:
        """Hand the baton from ``old`` to ``new`` (see ``dnspol.handover``): nobody
        answers until every old worker has stopped, so no old answer follows a new one.
        Meanwhile queries wait in the sockets; the gap is milliseconds under load.
        Returns how long it took, in ms."""
        began = time.monotonic()
        self.baton.hand_to(None)
        alive = old is not None and old.proc.poll() is None
        if alive and not self.baton.wait_stopped(old.number, SWITCH_TIMEOUT):
            log.error("generation %d did not stop answering in time; ending it", old.number)
            _kill_workers(self.workdir, old.number)
        self.baton.hand_to(new.number)
        return 1000 * (time.monotonic() - began)  # in the reload's line

    def _abandon_if_slow(self, head: Head) -> None:
        """Kill a generation not serving after ``reload_timeout``: none of its workers
        answers yet (they follow it, PR_SET_PDEATHSIG), and a load stuck in a huge file
        or a FIFO would not heed SIGTERM."""
        waited = time.monotonic() - head.started
        if waited <= self.reload_timeout or head.deadline != float("inf"):
            return
        log.error(
            "reload abandoned after %.0f s (server.reload_timeout is %g s)",
            waited,
            self.reload_timeout,
        )
        head.proc.send_signal(signal.SIGKILL)  # collected as failed on a later tick
        head.deadline = time.monotonic()  # abandoned once

    def _reload_failed(self, head: Head, why: str) -> None:
        """One line, with the problems the generation reported (``file:line: what``)."""
        self.reloads.failed += 1
        problems = control.read_report(self.workdir, head.number).get("problems") or [
            f"the new configuration was not started ({why})"
        ]
        logs.reload_finished(log, head.cause, time.monotonic() - head.started, problems=problems)

    def _mind_current(self) -> None:
        """A generation process itself never fails on its own; if it did, start again."""
        head = self.current
        if head is None or head.proc.poll() is None:
            return
        log.error(
            "generation %d ended (%s); loading the files again", head.number, head.proc.returncode
        )
        self.files.retire_generation(head.number)
        self.current = None
        self.reload_wanted = True
        self.reload_cause = "the generation ended"

    def _see_off_leaving(self) -> None:
        """Forget old generations that have finished; kill one that hangs."""
        for head in list(self.leaving):
            if head.proc.poll() is None:
                if time.monotonic() > head.deadline:
                    log.error("generation %d did not finish in time; killing it", head.number)
                    head.proc.send_signal(signal.SIGKILL)
                continue
            self.files.retire_generation(head.number)
            self.leaving.remove(head)

    def _wait_listening(self, head: Head, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            if head.proc.poll() is not None:
                return False
            if head.ready_file.exists():
                return True
            time.sleep(0.02)
        return False

    # -- operations port -----------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """``/ready``: every worker of the current generation is running and listening."""
        if self.stopping:
            return False, "shutting down"
        head = self.current
        if head is None or head.proc.poll() is not None or not head.ready_file.exists():
            return False, "workers not listening"
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
    first: list[Snapshot],
    listen: list[tuple[str, int]],
    count: int,
    ready_file: str | None,
    metrics_listen: tuple[str, int] | None = None,
    watch: bool = True,
    control_path: str | None = None,
    restart_fixed: frozenset[str] = frozenset(),
    control_default: bool = False,
) -> int:
    """Serve ``first.pop()`` with ``count`` forked workers until SIGTERM; reload with ``load``."""
    supervisor = Supervisor(
        worker_main,
        load,
        listen,
        count,
        watch,
        metrics_listen,
        control_path,
        restart_fixed,
        control_default,
    )
    return supervisor.run(first, ready_file)


def _kill_workers(workdir: Path, generation: int) -> None:
    """SIGKILL the workers a generation reports (one that hangs mid-answer)."""
    for worker in control.read_report(workdir, generation).get("workers", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker["pid"], signal.SIGKILL)


def _run_worker(main: WorkerMain, generation: int, slot: int, start: WorkerStart) -> int:
    """A worker's process: its log lines say which it is."""
    logs.set_origin("worker", generation, slot)
    return main(start)


def _exit_at_once(_signum, _frame) -> None:
    os._exit(0)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_all(members: list[Member]) -> None:
    for member in members:
        if member.proc.poll() is None:
            member.proc.terminate()
    for member in members:
        member.proc.wait()


def _announce(first: tuple[str, int], ready_file: str | None) -> None:
    host, port = first
    if ready_file:
        write_atomically(ready_file, f"{host} {port}\n")
    print(f"READY {host} {port}", flush=True)


def _resign_at(path: Path) -> float | None:
    """When a generation's signatures need a new load (its ``.resign`` file); None: never."""
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None
