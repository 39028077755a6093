"""Several worker processes on one set of ports, so every core answers.

Python runs one thread of Python code at a time, so dnspol scales across cores
with processes: each worker is a full single-process server with its own
sockets bound with SO_REUSEPORT, and the kernel spreads queries between them.
The supervisor loads the configuration once and forks the workers from it, so
they start sharing that memory (copy-on-write; the collector is frozen first so
it does not write to every object); from their first reload on, each worker
holds its own copy, like replicas behind a load balancer. The supervisor
reserves the ports (port 0 becomes a real port for all), starts the workers,
forwards SIGHUP and SIGTERM, restarts a worker that dies (that one loads the
configuration itself), and exits when told to stop. With a metrics port, the supervisor serves
it: every worker writes its metric totals to a file in the supervisor's work
directory each second, and ``/metrics`` adds them up (``dnspol.metrics.WorkerFiles``);
``/ready`` holds until every worker is listening.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dnspol import health, metrics
from dnspol.server import format_listen
from dnspol.transport import tcp, udp

log = logging.getLogger("dnspol.supervisor")

START_TIMEOUT = 30.0


def reserve_ports(listen: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list]:
    """Bind every address once (SO_REUSEPORT) to turn port 0 into a concrete port."""
    resolved, held = [], []
    for host, port in listen:
        for _ in range(20):
            usock = udp.open_socket(host, port, reuse_port=True)
            try:
                tsock = tcp.open_socket(host, usock.getsockname()[1], reuse_port=True)
            except OSError:
                usock.close()
                if port != 0:
                    raise
                continue
            break
        else:
            raise OSError(f"no free port on {host}")
        resolved.append((host, usock.getsockname()[1]))
        held += [usock, tsock]
    return resolved, held


# What a worker runs, in the forked child: (ports, ready file, metrics file or None) -> status
WorkerMain = Callable[[list[tuple[str, int]], str, "str | None"], int]


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


def fork_worker(main: WorkerMain, args: tuple, inherited: list) -> Worker:
    """Run ``main(*args)`` in a child process; never returns in the child.

    ``inherited``: sockets of the supervisor's that the child closes at once (a worker
    holding the port reservation would keep a socket in the port's group that nobody
    reads, and queries sent to it would be lost).
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
        code = main(*args)
    except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor
        log.exception("worker failed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(
    worker_main: WorkerMain,
    listen: list[tuple[str, int]],
    count: int,
    ready_file: str | None,
    metrics_listen: tuple[str, int] | None = None,
    release: Callable[[], None] | None = None,
) -> int:
    """Serve with ``count`` forked workers. ``release`` drops the supervisor's loaded
    configuration once every worker has started from it."""
    resolved, held = reserve_ports(listen)
    stopping = False
    workdir = Path(tempfile.mkdtemp(prefix="dnspol-workers-"))
    files = metrics.WorkerFiles(workdir)
    workers: list[tuple[Worker, Path]] = []
    inherited: list = list(held)

    def start(index: int) -> tuple[Worker, Path]:
        ready = workdir / f"worker-{index}.ready"
        ready.unlink(missing_ok=True)
        metrics_file = str(files.path(index)) if metrics_listen is not None else None
        args = (list(resolved), str(ready), metrics_file)
        return fork_worker(worker_main, args, inherited), ready

    def readiness() -> tuple[bool, str]:
        """``/ready``: every worker is running and listening."""
        if stopping:
            return False, "shutting down"
        current = list(workers)
        if len(current) < count:
            return False, "workers starting"
        for i, (proc, ready) in enumerate(current):
            if proc.poll() is not None or not ready.exists():
                return False, f"worker {i} not listening"
        return True, ""

    ops = None
    if metrics_listen is not None:
        registry = metrics.registry(files.totals)
        try:
            ops = health.OpsServer(metrics_listen, registry, readiness)
        except OSError as exc:
            log.error("cannot start the metrics port: %s", exc)
            _clean_up(None, workdir)
            return 1
        inherited.append(ops.socket)
    gc.collect()
    gc.freeze()  # the loaded configuration: the collector would write to every object
    workers += [start(i) for i in range(count)]
    if ops is not None:
        ops.start()  # after the forks: a child gets no copy of its thread
    if not _wait_ready(workers):
        _stop_all(workers)
        log.error("workers did not start")
        _clean_up(ops, workdir)
        return 1
    for sock in held:  # the workers hold the ports now; ours would only steal queries
        sock.close()
    if release is not None:
        release()  # the workers have their shared copy; restarted ones load afresh

    def forward(signum, _frame) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for proc, _ in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    log.info("%d workers serving on %s", count, ", ".join(format_listen(*a) for a in resolved))
    _announce(resolved[0], ready_file)
    while True:
        time.sleep(0.2)
        if stopping:
            codes = [proc.wait() for proc, _ in workers]
            _clean_up(ops, workdir)
            return max(codes, default=0)
        for i, (proc, _) in enumerate(workers):
            if proc.poll() is not None:
                log.error("worker %d exited with %s; starting it again", proc.pid, proc.returncode)
                files.retire(i)  # keep its counters, so the sums never go backwards
                workers[i] = start(i)


def _clean_up(ops: health.OpsServer | None, workdir: Path) -> None:
    if ops is not None:
        ops.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait_ready(workers) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc, _ in workers):
            return False
        if all(ready.exists() for _, ready in workers):
            return True
        time.sleep(0.02)
    return False


def _stop_all(workers) -> None:
    for proc, _ in workers:
        if proc.poll() is None:
            proc.terminate()
    for proc, _ in workers:
        proc.wait()


def _announce(first: tuple[str, int], ready_file: str | None) -> None:
    host, port = first
    if ready_file:
        tmp = ready_file + ".tmp"
        Path(tmp).write_text(f"{host} {port}\n")
        os.replace(tmp, ready_file)
    print(f"READY {host} {port}", flush=True)
