"""Signals at any instant of a start: the server always ends in the documented state.

SIGHUP: the server keeps running and serves the files as they were when it was
sent (a SIGHUP before the first configuration serves is applied once it does).
SIGTERM and SIGINT: the server and every process it started end, with status 0.
Each signal is sent at random offsets from spawn to one second after it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from itkit import make_query, serve_deployed

ZONE = """$ORIGIN early.test.
$TTL 60
@   IN SOA ns hostmaster {serial} 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.{serial}
"""
# Until the interpreter runs dnspol's first line (``dnspol.signals.hold``, 40-100 ms after
# exec) a signal has its default action; a launcher that blocks signals across exec (the
# test kit, below) covers that window: dnspol unblocks them once its handlers are in place.
HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _block_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD)


def run_once(workdir, signum: int, offset: float, workers: str, blocked: bool) -> str | None:
    """Spawn, wait ``offset`` s, signal; None when the end state is the documented one,
    else what went wrong."""
    workdir.mkdir()
    zone = workdir / "early.test.zone"
    zone.write_text(ZONE.format(serial=1))
    ready = workdir / "ready"
    argv = [sys.executable, "-m", "dnspol", "serve", "--zone", str(zone), "--workers", workers]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(ready), "--no-watch"]
    with open(workdir / "log", "w") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_block_signals if blocked else None,  # noqa: PLW1509 - sigmask only
        )
    try:
        time.sleep(offset)
        if signum == signal.SIGHUP:
            zone.write_text(ZONE.format(serial=2))
        proc.send_signal(signum)
        if signum == signal.SIGHUP:
            problem = _serves_serial_2(proc, ready)
        else:
            problem = _stopped_cleanly(proc)
        if problem:
            return f"{signal.Signals(signum).name} at {offset:.3f} s: {problem}"
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group, even if its leader died
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _serves_serial_2(proc: subprocess.Popen, ready) -> str | None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the server exited with {proc.returncode}"
        if ready.exists() and _answer(int(ready.read_text().split()[1])) == 2:
            break
        time.sleep(0.05)
    else:
        return "the reloaded file was never served"
    proc.send_signal(signal.SIGTERM)
    return _stopped_cleanly(proc)


def _answer(port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(make_query("www.early.test.", 1), ("127.0.0.1", port))
        try:
            return sock.recv(512)[-1]
        except TimeoutError:
            return None


def _stopped_cleanly(proc: subprocess.Popen) -> str | None:
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        return "still running 15 s after the signal"
    if code != 0:
        return f"exited with {code}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # children left in the server's process group?
        except ProcessLookupError:
            return None
        time.sleep(0.05)
    return "processes were left behind"


@pytest.mark.parametrize(
    "signum, workers, runs",
    [
        (signal.SIGHUP, "2", 50),
        (signal.SIGTERM, "2", 50),
        (signal.SIGINT, "2", 20),
        (signal.SIGHUP, "1", 20),
        (signal.SIGTERM, "1", 20),
    ],
    ids=["HUP-workers2", "TERM-workers2", "INT-workers2", "HUP-workers1", "TERM-workers1"],
)
def test_a_signal_at_any_instant_of_the_start(tmp_path, signum, workers, runs) -> None:
    """From spawn on, launched as the test kit launches (signals blocked across exec)."""
    rng = random.Random(signum * 100 + int(workers))
    offsets = [rng.uniform(0.0, 1.0) for _ in range(runs)]
    assert _problems(tmp_path, signum, offsets, workers, blocked=True) == []


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_signal_once_the_interpreter_runs_needs_no_help_from_the_launcher(
    tmp_path, signum
) -> None:
    """Launched plainly: safe once dnspol's first line has run (well within 0.3 s)."""
    rng = random.Random(signum)
    offsets = [rng.uniform(0.3, 1.0) for _ in range(20)]
    assert _problems(tmp_path, signum, offsets, "2", blocked=False) == []


def _problems(tmp_path, signum, offsets: list[float], workers: str, blocked: bool) -> list[str]:
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(
            lambda i: run_once(tmp_path / f"run{i}", signum, offsets[i], workers, blocked),
            range(len(offsets)),
        )
        return [p for p in results if p]


def _big_zone(hosts: int = 150_000) -> str:
    lines = "".join(
        f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(hosts)
    )
    return ZONE.format(serial=2) + lines


def _tcp_answer(port: int) -> int | None:
    query = make_query("www.early.test.", 1)
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(len(query).to_bytes(2, "big") + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
        return data[-1]


@pytest.mark.parametrize("workers", ["2", "1"])
def test_sigterm_while_a_reload_loads_stops_at_once_and_answers_meanwhile(
    tmp_path, workers
) -> None:
    """The loading is abandoned: the stop does not wait for it, and until the stop the
    old configuration keeps answering over UDP and TCP."""
    zone = tmp_path / "early.test.zone"
    zone.write_text(ZONE.format(serial=1))
    log_path = tmp_path / "log"
    proc, _, port = serve_deployed(
        tmp_path, "--zone", str(zone), "--workers", workers, "--no-watch"
    )
    try:
        deadline = time.monotonic() + 30
        zone.write_text(_big_zone())  # several seconds to load
        proc.send_signal(signal.SIGHUP)
        while "reloading" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.02)
        time.sleep(0.3)
        assert _answer(port) == 1
        assert _tcp_answer(port) == 1
        assert "serial 2" not in log_path.read_text(), "the reload finished first: no test"
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert proc.wait(30) == 0, log_path.read_text()
        took = time.monotonic() - began
        assert took < 1.5, f"stopped {took:.1f} s after SIGTERM"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_supervisor_killed_outright_leaves_no_work_directory(tmp_path) -> None:
    """SIGKILL to the supervisor (the OOM killer, ``kill -9``): its generation and workers
    follow it (PR_SET_PDEATHSIG), and the last of them removes the work directory the
    supervisor would have removed, so /tmp does not fill with ``dnspol-workers-*``."""
    from itkit import process_tree, wait_gone

    zone = tmp_path / "example.zone"
    zone.write_text("$ORIGIN example.\n$TTL 60\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n")
    # serve_deployed sets TMPDIR to tmp_path: the server's work directory is made there
    proc, _, _ = serve_deployed(tmp_path, "--zone", str(zone), "--workers", "2")
    try:
        below = process_tree(proc.pid)
        assert len(below) >= 3  # the generation and 2 workers
        assert list(tmp_path.glob("dnspol-workers-*"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_gone(below) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert list(tmp_path.glob("dnspol-workers-*")) == []
