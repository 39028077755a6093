"""Response-rate limiting against the real thing: dnspol and BIND 9.18 with the same
settings, flooded the same way, must reflect about the same number of bytes, while a
client in another prefix keeps getting every answer."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from itkit import free_port, make_query, run_named, stop_process, wait_answering

ZONE = """$ORIGIN example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  IN A   192.0.2.10
www  IN A   192.0.2.11
www  IN A   192.0.2.12
"""
FLOOD = 50_000  # identical queries ...
SECONDS = 5.0  # ... over this long, from one source
ATTACKER = "127.0.0.10"
BYSTANDER = "127.0.1.10"  # another /24: its own balance

RATE_LIMIT = "rate-limit { responses-per-second 5; slip 2; window 15; };"


def start_dnspol(tmp: Path, workers: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (tmp / "example.com.zone").write_text(ZONE)
    (tmp / "dnspol.yaml").write_text(
        f"""server:
  listen: 127.0.0.1:{port}
  rate_limit:
    responses_per_second: 5
    slip: 2
    window: 15
zones:
  example.com: example.com.zone
"""
    )
    argv = [sys.executable, "-m", "dnspol", "serve", "--config", str(tmp / "dnspol.yaml")]
    argv += ["--workers", workers, "--no-watch", "--control", "none"]
    with open(tmp / "dnspol.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def flood(port: int) -> dict:
    """FLOOD identical queries in SECONDS from ATTACKER, paced; meanwhile BYSTANDER asks
    one question every 50 ms. Returns what came back."""
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind((ATTACKER, 0))
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    attacker.setblocking(False)
    bystander = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bystander.bind((BYSTANDER, 0))
    bystander.settimeout(1.0)
    query = make_query("www.example.com.", 1, ident=0x4242)
    server = ("127.0.0.1", port)
    got = {"bytes": 0, "answers": 0, "truncated": 0, "bystander_asked": 0, "bystander_got": 0}
    batch = 100
    began = time.monotonic()
    for sent in range(0, FLOOD, batch):
        for _ in range(batch):
            attacker.sendto(query, server)
        _drain(attacker, got)
        if sent % 2500 == 0:  # 4 a second: within its own limit
            got["bystander_asked"] += 1
            bystander.sendto(make_query("www.example.com.", 1, ident=sent & 0xFFFF), server)
            try:
                if bystander.recv(512)[3] & 0x0F == 0:
                    got["bystander_got"] += 1
            except TimeoutError:
                pass
        pause = began + SECONDS * (sent + batch) / FLOOD - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        _drain(attacker, got)
        time.sleep(0.01)
    attacker.close()
    bystander.close()
    return got


def _drain(sock: socket.socket, got: dict) -> None:
    while True:
        try:
            reply = sock.recv(4096)
        except BlockingIOError:
            return
        got["bytes"] += len(reply)
        if struct.unpack("!H", reply[2:4])[0] & 0x0200:
            got["truncated"] += 1
        else:
            got["answers"] += 1


def test_reflected_bytes_are_within_ten_percent_of_bind(tmp_path) -> None:
    (tmp_path / "bind").mkdir()
    (tmp_path / "dnspol").mkdir()
    bind, bind_port = run_named(tmp_path / "bind", RATE_LIMIT, ZONE, "example.com")
    try:
        theirs = flood(bind_port)
    finally:
        stop_process(bind)
    ours_proc, port = start_dnspol(tmp_path / "dnspol", workers="2")
    try:
        wait_answering(port, "example.com")
        ours = flood(port)
    finally:
        stop_process(ours_proc)
    report = f"dnspol {ours}, BIND {theirs}"
    assert theirs["truncated"] > 1000, "BIND did not limit: no comparison " + report
    assert abs(ours["bytes"] - theirs["bytes"]) <= 0.10 * theirs["bytes"], report
    assert ours["bytes"] < FLOOD * 20, report  # far below what an unlimited server sends
    assert ours["bystander_got"] == ours["bystander_asked"], report
    print(report)
    log = (tmp_path / "dnspol" / "dnspol.log").read_text()
    assert "rate limit: slip responses to 127.0.0.0/24 for" in log or "rate limit: drop" in log


def test_tcp_and_exempt_clients_are_never_limited(tmp_path) -> None:
    from dnspol.testing import Server

    policies = (
        "server:\n  rate_limit:\n    responses_per_second: 1\n    exempt_clients: [127.0.3.0/24]\n"
    )
    with Server(zone_text=ZONE, policies=policies) as srv:
        for _ in range(20):
            assert srv.dig("www.example.com", "A", tcp=True).rcode == "NOERROR"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.3.1", 0))
            sock.settimeout(1.0)
            for i in range(20):
                sock.sendto(make_query("www.example.com.", 1, ident=i), (srv.host, srv.port))
                reply = sock.recv(512)
                assert not reply[2] & 0x02 and reply[7] == 3  # whole: three A records
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # not exempt
            sock.bind(("127.0.4.1", 0))
            sock.settimeout(1.0)
            flags = []
            for i in range(6):
                sock.sendto(make_query("www.example.com.", 1, ident=i), (srv.host, srv.port))
                try:
                    flags.append(sock.recv(512)[2] & 0x02)
                except TimeoutError:
                    flags.append(None)
            assert flags[0] == 0 and None in flags and 0x02 in flags
