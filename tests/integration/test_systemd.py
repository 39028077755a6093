"""Running under systemd: the notifications the real server sends to a ``NOTIFY_SOCKET``
the test binds (as systemd would), and the unit file in ``deploy/``.

What systemd relies on: READY=1 once queries are answered; for ``Type=notify-reload``,
RELOADING=1 with a MONOTONIC_USEC after the SIGHUP, then READY=1 once the new
configuration answers (also for a reload systemd did not ask for); STOPPING=1 on
SIGTERM; and every message from the main process (``NotifyAccess=main``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from itkit import make_query, stop_process, workers

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "dnspol.service"
ZONE = """$ORIGIN sd.test.
$TTL 60
@   IN SOA ns hostmaster {serial} 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.{serial}
"""


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: each message as a dict, with the sender's pid
    (SO_PASSCRED, as systemd checks it)."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)

    def next(self, timeout: float = 15.0) -> tuple[dict[str, str], int]:
        self.sock.settimeout(timeout)
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return fields, pid

    def expect(self, key: str, pid: int, timeout: float = 15.0) -> dict[str, str]:
        """The next message, which must carry ``key`` and come from ``pid``."""
        fields, sender = self.next(timeout)
        assert key in fields, fields
        assert sender == pid, f"sent by {sender}, not the main process {pid}: {fields}"
        return fields

    def silent(self, seconds: float) -> bool:
        try:
            fields, _ = self.next(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected notification {fields}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_dir():
    directory = tempfile.mkdtemp(prefix="sd-")  # short: sun_path holds 108 bytes
    yield Path(directory)
    shutil.rmtree(directory, ignore_errors=True)


def start(
    workdir: Path, notify: str, *args: str, journal: bool = False, wrapper: tuple[str, ...] = ()
) -> subprocess.Popen:
    zone = workdir / "sd.test.zone"
    if not zone.exists():
        zone.write_text(ZONE.format(serial=1))
    argv = [*wrapper, sys.executable, "-m", "dnspol", "serve", "--zone", str(zone)]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(workdir / "ready")]
    argv += ["--control", "none", *args]
    env = {**os.environ, "NOTIFY_SOCKET": notify, "PYTHONPATH": str(ROOT)}
    (workdir / "log").touch()
    if journal:  # as systemd says stderr is the journal: the log file's device and inode
        st = (workdir / "log").stat()
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    with open(workdir / "log", "w") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def answer(workdir: Path) -> str:
    """www.sd.test's address, asked once (2 s)."""
    _, port = (workdir / "ready").read_text().split()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(make_query("www.sd.test."), ("127.0.0.1", int(port)))
        reply = sock.recv(512)
    return ".".join(str(b) for b in reply[-4:])


def rewrite(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def expect_reload(fake: FakeSystemd, pid: int, asked: int) -> dict[str, str]:
    """RELOADING=1 stamped after ``asked``, then READY=1; returns the READY message."""
    reloading = fake.expect("RELOADING", pid)
    assert asked <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec(), reloading
    assert reloading["STATUS"].startswith("reloading ("), reloading
    return fake.expect("READY", pid)


@pytest.mark.parametrize("count", ["1", "2"])
def test_ready_reloads_and_stopping_from_the_main_process(tmp_path, notify_dir, count) -> None:
    fake = FakeSystemd(str(notify_dir / "notify"))
    proc = start(tmp_path, str(notify_dir / "notify"), "--workers", count, "--no-watch")
    try:
        ready = fake.expect("READY", proc.pid)
        assert answer(tmp_path) == "192.0.2.1"  # answering once READY=1 is sent
        if count == "2":
            assert len(workers(proc.pid)) == 2
        assert re.match(r"serving generation 1: 1 zone\(s\) on 127\.0\.0\.1:\d+", ready["STATUS"])

        rewrite(tmp_path / "sd.test.zone", ZONE.format(serial=2))
        asked = monotonic_usec()
        proc.send_signal(signal.SIGHUP)  # what systemctl reload sends (notify-reload)
        ready = expect_reload(fake, proc.pid, asked)
        assert answer(tmp_path) == "192.0.2.2"  # READY=1: the new configuration answers
        assert ready["STATUS"].startswith("serving generation 2: 1 zone(s)"), ready

        rewrite(tmp_path / "sd.test.zone", ZONE.format(serial=3) + "bad IN A 999.1.2.3\n")
        asked = monotonic_usec()
        proc.send_signal(signal.SIGHUP)
        ready = expect_reload(fake, proc.pid, asked)  # a rejected reload ends too
        assert ready["STATUS"].startswith("reload failed (SIGHUP)"), ready
        assert "serving generation 2" in ready["STATUS"], ready
        assert answer(tmp_path) == "192.0.2.2"

        proc.send_signal(signal.SIGTERM)
        stopping = fake.expect("STOPPING", proc.pid)
        assert stopping["STATUS"] == "stopping"
        assert proc.wait(15) == 0
        assert fake.silent(0.2)  # nothing from the workers as they stop
    finally:
        stop_process(proc)
        fake.close()


@pytest.mark.parametrize("count", ["1", "2"])
def test_a_changed_file_is_a_reload_systemd_is_told_about(tmp_path, notify_dir, count) -> None:
    fake = FakeSystemd(str(notify_dir / "notify"))
    proc = start(tmp_path, str(notify_dir / "notify"), "--workers", count)
    try:
        fake.expect("READY", proc.pid)
        time.sleep(0.05)  # a file changed within the start's clock tick looks unchanged
        asked = monotonic_usec()
        rewrite(tmp_path / "sd.test.zone", ZONE.format(serial=2))
        ready = expect_reload(fake, proc.pid, asked)
        assert "generation 2" in ready["STATUS"], ready
        assert answer(tmp_path) == "192.0.2.2"
    finally:
        stop_process(proc)
        fake.close()


@pytest.mark.parametrize("count", ["1", "2"])
def test_a_ctl_reload_is_a_reload_systemd_is_told_about(tmp_path, notify_dir, count) -> None:
    fake = FakeSystemd(str(notify_dir / "notify"))
    control = str(notify_dir / "control.sock")
    proc = start(tmp_path, str(notify_dir / "notify"), "--workers", count, "--no-watch",
                 "--control", control)  # fmt: skip
    try:
        fake.expect("READY", proc.pid)
        rewrite(tmp_path / "sd.test.zone", ZONE.format(serial=2))
        asked = monotonic_usec()
        done = subprocess.run(
            [sys.executable, "-m", "dnspol", "ctl", "--control", control, "reload"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr
        ready = expect_reload(fake, proc.pid, asked)
        assert "generation 2" in ready["STATUS"], ready
    finally:
        stop_process(proc)
        fake.close()


def test_sighups_while_reloading_end_in_one_ready_after_the_last(tmp_path, notify_dir) -> None:
    """systemctl reload returns at READY=1: not before the reload it asked for is done."""
    fake = FakeSystemd(str(notify_dir / "notify"))
    proc = start(tmp_path, str(notify_dir / "notify"), "--workers", "2", "--no-watch")
    try:
        fake.expect("READY", proc.pid)
        proc.send_signal(signal.SIGHUP)
        fake.expect("RELOADING", proc.pid)
        rewrite(tmp_path / "sd.test.zone", ZONE.format(serial=3))
        proc.send_signal(signal.SIGHUP)  # while the first loads (0.2 s ticks: it does)
        messages = [fake.next()[0]]
        while "READY" not in messages[-1]:
            messages.append(fake.next()[0])
        # the first reload's end is only a STATUS; the second one's READY=1 ends both
        kinds = [(("READY" in m), ("RELOADING" in m)) for m in messages]
        assert kinds == [(False, False), (False, True), (True, False)], messages
        assert answer(tmp_path) == "192.0.2.3", messages
    finally:
        stop_process(proc)
        fake.close()


def test_an_abstract_notify_socket(tmp_path) -> None:
    name = f"dnspol-test-{os.getpid()}-{time.monotonic_ns()}"
    fake = FakeSystemd(b"\0" + name.encode())
    proc = start(tmp_path, "@" + name, "--workers", "1", "--no-watch")
    try:
        fake.expect("READY", proc.pid)
        assert answer(tmp_path) == "192.0.2.1"
    finally:
        stop_process(proc)
        fake.close()


def test_lines_to_the_journal_carry_their_priority(tmp_path, notify_dir) -> None:
    fake = FakeSystemd(str(notify_dir / "notify"))
    proc = start(tmp_path, str(notify_dir / "notify"), "--workers", "2", "--no-watch",
                 journal=True)  # fmt: skip
    try:
        fake.expect("READY", proc.pid)
        rewrite(tmp_path / "sd.test.zone", ZONE.format(serial=2) + "bad IN A 999.1.2.3\n")
        proc.send_signal(signal.SIGHUP)
        fake.expect("RELOADING", proc.pid)
        fake.expect("READY", proc.pid)
    finally:
        stop_process(proc)
        fake.close()
    lines = [x for x in (tmp_path / "log").read_text().splitlines() if not x.startswith("READY")]
    assert lines[0].startswith("<6>INFO [supervisor] dnspol "), lines
    assert any(x.startswith("<3>ERROR [supervisor] reload failed (SIGHUP") for x in lines), lines
    assert all(re.match(r"<[2-7]>[A-Z]+ \[", x) for x in lines), lines


# -- the unit file --------------------------------------------------------------------------


def verify(unit: Path) -> list[str]:
    """``systemd-analyze verify``'s complaints about ``unit`` itself (in a container it
    also complains about the host: missing /etc/machine-id, units it cannot load...)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install the systemd package (scripts/test.sh)"
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # a complaint about the unit names it ("dnspol.service:19: ...", "Unit dnspol.service
    # has a bad unit file setting."); the broken copies below show such lines are caught
    return [line for line in done.stdout.splitlines() + done.stderr.splitlines()
            if unit.name in line]  # fmt: skip


def checkable_copy(tmp_path: Path, text: str) -> Path:
    """The unit beside a stand-in for its ExecStart binary (verify wants it to exist)."""
    unit = tmp_path / "dnspol.service"
    unit.write_text(text.replace("/opt/dnspol/bin/dnspol", shutil.which("true") or "/bin/true"))
    return unit


def test_the_unit_file_verifies(tmp_path) -> None:
    assert verify(checkable_copy(tmp_path, UNIT.read_text())) == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("\nType=notify\n", "\nType=notifyy\n"), "service type"),
        (("\nExecStart=", "\n#ExecStart="), "ExecStart"),
        (("ProtectSystem=strict", "ProtectSystem=strictly"), "protect system"),
        (("=@system-service", "=@system-servic"), "system call group"),
    ],
)
def test_a_broken_unit_file_is_caught(tmp_path, change, said) -> None:
    """The check above can fail: the same verify rejects a unit with a real error."""
    text = UNIT.read_text()
    assert change[0] in text
    complaints = verify(checkable_copy(tmp_path, text.replace(change[0], change[1], 1)))
    assert complaints and any(said in line for line in complaints), complaints


def test_the_unit_is_what_the_server_needs() -> None:
    unit = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert unit["Type"] == "notify"
    assert unit["ExecReload"].endswith(" ctl --control /run/dnspol/control.sock reload")
    assert unit["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert unit["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert unit["RuntimeDirectory"] == "dnspol"  # the control socket's place
    assert unit["ProtectSystem"] == "strict" and unit["NoNewPrivileges"] == "yes"
    assert " serve " in unit["ExecStart"]


def syscall_group(name: str) -> set[str]:
    """The system calls a ``SystemCallFilter=`` group allows, its groups expanded."""
    done = subprocess.run(
        ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    calls: set[str] = set()
    for line in done.stdout.splitlines()[1:]:
        word = line.strip()
        if word.startswith("@"):
            calls |= syscall_group(word)
        elif word and not word.startswith("#"):
            calls.add(word)
    return calls


def test_the_system_call_filter_allows_what_the_server_calls(tmp_path, notify_dir) -> None:
    """Under strace, the real server (two workers) starts, answers UDP and TCP, reloads,
    answers the control socket and stops: every system call it made is in the unit's
    SystemCallFilter (a call outside it would fail with EPERM under systemd)."""
    (filtered,) = [x for x in UNIT.read_text().splitlines() if x.startswith("SystemCallFilter=")]
    allowed = syscall_group(filtered.split("=", 1)[1])
    strace = shutil.which("strace")
    assert strace, "strace is missing: install the strace package (scripts/test.sh)"
    fake = FakeSystemd(str(notify_dir / "notify"))
    summary = tmp_path / "strace"
    control = str(notify_dir / "control.sock")
    proc = start(
        tmp_path,
        str(notify_dir / "notify"),
        "--workers", "2", "--no-watch", "--control", control,
        wrapper=(strace, "-f", "-qq", "-c", "-o", str(summary)),
    )  # fmt: skip
    try:
        fields, server = fake.next(60)
        assert "READY" in fields, fields
        assert answer(tmp_path) == "192.0.2.1"
        _, port = (tmp_path / "ready").read_text().split()
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as conn:
            query = make_query("www.sd.test.")
            conn.sendall(struct.pack("!H", len(query)) + query)
            assert conn.recv(2)
        os.kill(server, signal.SIGHUP)
        assert "RELOADING" in fake.next(60)[0]
        assert "READY" in fake.next(60)[0]
        status = subprocess.run(
            [sys.executable, "-m", "dnspol", "ctl", "--control", control, "status"],
            capture_output=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert status.returncode == 0, status.stderr
        os.kill(server, signal.SIGTERM)
        assert "STOPPING" in fake.next(60)[0]
        assert proc.wait(60) == 0
    finally:
        stop_process(proc)
        fake.close()
    rows = [line.split() for line in summary.read_text().splitlines()]
    used = {row[-1] for row in rows if row and row[0][0].isdigit() and row[-1] != "total"}
    assert len(used) > 20, summary.read_text()
    assert used - allowed == set()
