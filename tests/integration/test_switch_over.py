"""What a client can observe while the configuration changes: the switch-over guarantee.

Once an answer from a new configuration has left the server, no answer from the
previous one does, over UDP and TCP, with one worker or several; and no query is
lost while generations change hands.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from itkit import make_query, serve_deployed, wait_gone, workers

ZONE = """$ORIGIN switch.test.
$TTL 60
@   IN SOA ns hostmaster {serial} 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.{version}
"""
RELOADS = 20
HOLD = 0.6  # after a reload shows, keep probing: old answers came back for 0.4-0.6 s


def write_zone(path, serial: int) -> int:
    """Serial n serves version 1 or 2 (alternating configurations); returns the version."""
    version = 1 + serial % 2
    tmp = path.with_suffix(".tmp")
    tmp.write_text(ZONE.format(serial=serial, version=version))
    os.replace(tmp, path)
    return version


def start_server(tmp_path, zone, workers: str) -> tuple[subprocess.Popen, int]:
    proc, _, port = serve_deployed(
        tmp_path, "--zone", str(zone), "--workers", workers, "--no-watch"
    )
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def version_of(reply: bytes) -> int:
    """The last byte of www's A record: 1 or 2."""
    assert reply[3] & 0x0F == 0, f"rcode {reply[3] & 0x0F}"
    return reply[-1]


class Probe(threading.Thread):
    """One client, asking back to back and alternating UDP and a kept TCP connection, so
    each question is sent after the previous answer arrived: the versions it records are
    in the order the server sent them."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seen: list[tuple[str, int]] = []
        self.lost = 0
        self.stop = threading.Event()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.settimeout(2.0)
        self.tcp: socket.socket | None = None

    def run(self) -> None:
        ident = 0
        while not self.stop.is_set():
            ident = (ident + 1) & 0xFFFF
            query = make_query("www.switch.test.", 1, ident=ident)
            self.udp.sendto(query, ("127.0.0.1", self.port))
            try:
                self.seen.append(("udp", version_of(self._udp_reply(ident))))
            except TimeoutError:
                self.lost += 1
            reply = self._tcp_exchange(query)
            if reply is not None:
                self.seen.append(("tcp", version_of(reply)))

    def _udp_reply(self, ident: int) -> bytes:
        while True:
            reply = self.udp.recv(4096)
            if struct.unpack("!H", reply[:2])[0] == ident:
                return reply

    def _tcp_exchange(self, query: bytes) -> bytes | None:
        """A connection the server closed (a generation finishing) is opened again and
        the query asked again, as RFC 7766 clients do."""
        for _ in range(3):
            try:
                if self.tcp is None:
                    self.tcp = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                self.tcp.sendall(struct.pack("!H", len(query)) + query)
                size = self._recv_exact(2)
                return self._recv_exact(struct.unpack("!H", size)[0])
            except (OSError, ConnectionError, EOFError):
                if self.tcp is not None:
                    self.tcp.close()
                self.tcp = None
        self.lost += 1
        return None

    def _recv_exact(self, size: int) -> bytes:
        assert self.tcp is not None
        data = b""
        while len(data) < size:
            chunk = self.tcp.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def versions(self) -> list[int]:
        return [v for _, v in self.seen]


def changes(versions: list[int]) -> int:
    return sum(1 for a, b in zip(versions, versions[1:], strict=False) if a != b)


@pytest.mark.parametrize("workers", ["2", "1"])
def test_each_reload_switches_answers_once_and_never_back(tmp_path, workers) -> None:
    zone = tmp_path / "switch.test.zone"
    version = write_zone(zone, 1)
    proc, port = start_server(tmp_path, zone, workers)
    probe = Probe(port)
    try:
        probe.start()
        for serial in range(2, 2 + RELOADS):
            version = write_zone(zone, serial)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while not probe.seen or probe.seen[-1][1] != version:
                assert time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
                time.sleep(0.01)
            time.sleep(HOLD)
        probe.stop.set()
        probe.join(10)
        versions = probe.versions()
        assert changes(versions) == RELOADS, (
            f"{changes(versions)} changes of answer over {RELOADS} reloads "
            f"({len(versions)} answers)"
        )
        assert {t for t, _ in probe.seen} == {"udp", "tcp"}
        assert probe.lost == 0
    finally:
        probe.stop.set()
        stop_server(proc)


def test_an_old_worker_that_hangs_is_ended_and_the_new_generation_answers(tmp_path) -> None:
    """The switch waits for every old worker to stop answering; one that never does
    (here: stopped with SIGSTOP) is killed after SWITCH_TIMEOUT, then the new answers."""
    zone = tmp_path / "switch.test.zone"
    write_zone(zone, 1)
    proc, port = start_server(tmp_path, zone, "2")
    try:
        hung = workers(proc.pid)[0]
        os.kill(hung, signal.SIGSTOP)
        new = write_zone(zone, 2)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            while True:
                assert time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
                sock.sendto(make_query("www.switch.test.", 1), ("127.0.0.1", port))
                try:
                    if version_of(sock.recv(512)) == new:
                        break
                except TimeoutError:
                    pass
        assert "did not stop answering in time" in (tmp_path / "log").read_text()
        assert wait_gone([hung]) == []
    finally:
        stop_server(proc)
