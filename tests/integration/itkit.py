"""Shared pieces of the integration tests: the test zones, raw DNS messages for what dig
cannot send, and reading reply headers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from subprocess import STDOUT, Popen, TimeoutExpired

import pytest

DATA = Path(__file__).parent / "data"
EXAMPLE = (DATA / "example.zone").read_text()
SUB2 = (DATA / "sub2.example.zone").read_text()


def qname_wire(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes((len(label),)) + label.encode()
    return out + b"\x00"


def make_query(
    name: str = "www.example.",
    qtype: int = 1,
    *,
    ident: int = 0x1234,
    flags: int = 0x0100,
    qclass: int = 1,
    qdcount: int = 1,
    opt: bytes | None = None,
    extra_additional: int = 0,
) -> bytes:
    """A query message; ``opt`` is a full OPT RR appended to the additional section."""
    arcount = (1 if opt is not None else 0) + extra_additional
    header = struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, arcount)
    return header + qname_wire(name) + struct.pack("!HH", qtype, qclass) + (opt or b"")


def opt_rr(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(options)) + options


def edns_option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def header(reply: bytes) -> dict:
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", reply[:12])
    return {
        "id": ident,
        "qr": bool(flags & 0x8000),
        "opcode": (flags >> 11) & 0xF,
        "aa": bool(flags & 0x0400),
        "tc": bool(flags & 0x0200),
        "rd": bool(flags & 0x0100),
        "ra": bool(flags & 0x0080),
        "rcode": flags & 0xF,
        "qd": qd,
        "an": an,
        "ns": ns,
        "ar": ar,
    }


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def workers(pid: int) -> list[int]:
    """The worker processes of a ``dnspol serve`` supervisor: its generation processes'
    children."""
    return [worker for head in children(pid) for worker in children(head)]


def process_tree(pid: int) -> list[int]:
    """Every process below ``pid``."""
    out = children(pid)
    for child in list(out):
        out += process_tree(child)
    return out


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def need(command: str, package: str) -> str:
    """The path of a tool the tests need; scripts/test.sh installs it, so missing fails."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is not installed: scripts/test.sh installs it (apt-get install {package})"
        )
    return path


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (for servers given a fixed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


def wait_answering(port: int, name: str, timeout: float = 30.0) -> None:
    """Until a UDP query for ``name`` is answered (from 127.0.2.1, a prefix of its own)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.2.1", 0))
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            sock.sendto(make_query(name), ("127.0.0.1", port))
            try:
                sock.recv(512)
                return
            except TimeoutError:
                continue
    raise AssertionError(f"nothing answered on port {port}")


def run_named(workdir: Path, options: str, zone_text: str, origin: str) -> tuple[Popen, int]:
    """BIND 9 (``named -g -n 1``) serving one zone on a free 127.0.0.1 port, with
    ``options`` added to its ``options {}`` block; answering when this returns."""
    named = shutil.which("named") or "/usr/sbin/named"
    if not os.path.exists(named):
        need("named", "bind9")
    port = free_port()
    (workdir / "zone.db").write_text(zone_text)
    (workdir / "named.conf").write_text(
        f"""options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    {options}
}};
controls {{ }};
zone "{origin}" {{ type primary; file "{workdir}/zone.db"; }};
"""
    )
    with open(workdir / "named.log", "w") as log:
        proc = Popen(
            [named, "-g", "-n", "1", "-c", str(workdir / "named.conf")],
            stdout=log,
            stderr=STDOUT,
            start_new_session=True,
        )
    try:
        wait_answering(port, origin)
    except AssertionError:
        stop_process(proc)
        raise AssertionError((workdir / "named.log").read_text()[-2000:]) from None
    return proc, port


def stop_process(proc: Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serve_deployed(workdir: Path, *args: str, timeout: float = 60.0) -> tuple[Popen, str, int]:
    """``dnspol serve ARGS`` as deployed (no --fake-time), on a free 127.0.0.1 port, in a
    process group of its own, logging to ``workdir/log``; returns once it is ready."""
    ready = workdir / "ready"
    argv = [sys.executable, "-m", "dnspol", "serve", *args]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(ready)]
    env = {**os.environ, "TMPDIR": str(workdir)}  # a server killed outright leaves nothing
    with open(workdir / "log", "w") as log:
        proc = Popen(argv, stdout=log, stderr=STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert proc.poll() is None, (workdir / "log").read_text()
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.02)
    host, port = ready.read_text().split()
    return proc, host, int(port)


def run_unbound(
    workdir: Path,
    upstream: int,
    zone: str,
    trust: str,
    outgoing: str = "127.0.0.1",
    ecs: bool = False,
) -> tuple[Popen, int]:
    """unbound on a free 127.0.0.1 port, validating with ``trust`` (a DNSKEY record) and
    asking dnspol (``upstream``) for ``zone`` from ``outgoing``; with ``ecs`` its subnet
    module forwards a client's ECS option (RFC 7871). Logs to ``workdir/unbound.log``."""
    unbound = need("unbound", "unbound")
    port = free_port()
    workdir.mkdir(exist_ok=True)
    modules = "subnetcache validator iterator" if ecs else "validator iterator"
    subnet = (
        "    send-client-subnet: 127.0.0.1\n    client-subnet-always-forward: yes\n"
        "    max-client-subnet-ipv4: 24\n"
        if ecs
        else ""
    )
    (workdir / "unbound.conf").write_text(
        f"""server:
    interface: 127.0.0.1
    port: {port}
    outgoing-interface: {outgoing}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "{modules}"
{subnet}    trust-anchor: "{trust}"
    local-zone: "test." nodefault  # RFC 6761: unbound answers test. itself by default
stub-zone:
    name: "{zone}"
    stub-addr: 127.0.0.1@{upstream}
"""
    )
    with open(workdir / "unbound.log", "w") as log:
        proc = Popen(
            [unbound, "-d", "-c", str(workdir / "unbound.conf")],
            stdout=log,
            stderr=STDOUT,
            start_new_session=True,
        )
    try:
        wait_answering(port, zone)
    except AssertionError:
        stop_process(proc)
        raise AssertionError((workdir / "unbound.log").read_text()[-2000:]) from None
    return proc, port
