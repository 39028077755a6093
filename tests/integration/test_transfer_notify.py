"""NOTIFY from a server with several workers: the generation that loaded the
configuration sends it once (not once per worker), and a reload that changes nothing
sends none."""

from __future__ import annotations

import os
import signal
import socket
import time

import dns.message
import dns.opcode
from itkit import serve_deployed, stop_process

ZONE = """\
$ORIGIN example.com.
@ 300 SOA ns1 hostmaster {serial} 7200 900 1209600 300
@ 300 NS ns1
ns1 300 A 192.0.2.1
"""


def notifies(sock: socket.socket, seconds: float, wanted: int = 0) -> list[dns.message.Message]:
    """Every NOTIFY that arrives within ``seconds`` (or, once ``wanted`` came, within one
    more second, which would show a duplicate), each acknowledged."""
    got: list[dns.message.Message] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, peer = sock.recvfrom(65535)
        except TimeoutError:
            break
        message = dns.message.from_wire(data)
        assert message.opcode() == dns.opcode.NOTIFY
        got.append(message)
        sock.sendto(dns.message.make_response(message).to_wire(), peer)
        if wanted and len(got) == wanted:
            deadline = min(deadline, time.monotonic() + 1.0)
    return got


def serve_with_a_secondary(tmp_path, server: str = "") -> tuple:
    """A secondary's socket, and dnspol with 2 workers telling it of example.com's serials
    (``server``: more ``server:`` lines)."""
    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    secondary.bind(("127.0.0.1", 0))
    port = secondary.getsockname()[1]
    (tmp_path / "example.com.zone").write_text(ZONE.format(serial=1))
    (tmp_path / "dnspol.yaml").write_text(
        "zones:\n  example.com:\n    file: example.com.zone\n"
        f"    notify: ['127.0.0.1:{port}']\n"
        f"server:\n  control: none\n{server}"
    )
    proc, _, _ = serve_deployed(
        tmp_path, "--config", str(tmp_path / "dnspol.yaml"), "--workers", "2", "--no-watch"
    )
    return secondary, proc


def test_workers_notify_once_per_new_serial(tmp_path):
    secondary, proc = serve_with_a_secondary(tmp_path)
    try:
        first = notifies(secondary, 15, wanted=1)
        assert [m.answer[0][0].serial for m in first] == [1]  # one, not one per worker
        os.kill(proc.pid, signal.SIGHUP)  # reloaded, the same serial
        assert notifies(secondary, 2) == []
        (tmp_path / "example.com.zone").write_text(ZONE.format(serial=2))
        os.kill(proc.pid, signal.SIGHUP)
        assert [m.answer[0][0].serial for m in notifies(secondary, 15, wanted=1)] == [2]
    finally:
        stop_process(proc)
        secondary.close()
    assert "NOTIFY example.com. serial 2 to 127.0.0.1" in (tmp_path / "log").read_text()


def test_workers_count_notifies_in_the_metrics(tmp_path):
    """With several workers the generation process sends the NOTIFYs; its counts reach
    /metrics like the workers' (they were only logged)."""
    import urllib.request

    secondary, proc = serve_with_a_secondary(tmp_path, "  metrics: 127.0.0.1:0\n")
    try:
        assert len(notifies(secondary, 15, wanted=1)) == 1
        log = (tmp_path / "log").read_text()
        address = next(
            line.split("health on http://")[1].split("/")[0].split()[0]
            for line in log.splitlines()
            if "health on http://" in line
        )
        wanted = 'dnspol_notify_total{result="acked",zone="example.com."} 1.0'
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
            if wanted in text:
                break
            time.sleep(0.2)
        assert wanted in text, [line for line in text.splitlines() if "notify" in line]
    finally:
        stop_process(proc)
        secondary.close()
