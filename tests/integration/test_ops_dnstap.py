"""dnstap from the real server to real collectors: fstrm_capture on a Unix socket, its
file read by dnstap-ldns (and by dnstap_pb for the ``extra`` field, which dnstap-ldns
does not print).

One server and two workers each send every query and answer; a collector restarted
mid-run is found again; an absent or stalled collector holds up no answer, and what
could not be sent is counted in ``dnspol_dnstap_dropped_total``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dnstap_pb
import pytest
from itkit import DATA, EXAMPLE, make_query, need, serve_deployed, stop_process, workers

import dnspol.testing

RULES = """
server:
  dnstap: {{socket: {socket}, identity: ns-test, version: dnspol-it{more}}}
subnets:
  lab: [127.0.0.2/32]
rules:
  - name: lab-view
    zone: example.
    match: {{client: lab}}
    answer: lab
"""
LAB = "www 60 IN A 10.0.0.10\n"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory for Unix sockets: their paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tap", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Capture:
    """``fstrm_capture`` listening on ``socket``, writing the frames to ``out``."""

    def __init__(self, sock: Path, out: Path) -> None:
        self.sock, self.out = sock, out
        tool = need("fstrm_capture", "fstrm-bin")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        with open(f"{out}.log", "w") as log:
            self.proc = subprocess.Popen(
                # -ddd: a log line for each connection accepted
                [tool, "-ddd", "-t", "protobuf:dnstap.Dnstap", "-u", str(sock), "-w", str(out)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert self.proc.poll() is None, Path(f"{out}.log").read_text()
            assert time.monotonic() < deadline, "fstrm_capture never listened"
            time.sleep(0.02)

    @property
    def connections(self) -> int:
        return Path(f"{self.out}.log").read_text().count("accepted new connection")

    def stop(self) -> list[dnstap_pb.Dnstap]:
        """SIGTERM (it closes its file), then the messages as dnstap-ldns and dnstap_pb
        read them; dnstap-ldns must read the file too."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        return read(self.out)


def read(path: Path) -> list[dnstap_pb.Dnstap]:
    tool = need("dnstap-ldns", "dnstap-ldns")
    done = subprocess.run([tool, "-r", str(path), "-y"], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr.decode()
    messages = [dnstap_pb.Dnstap.FromString(frame) for frame in frames_of(path.read_bytes())]
    assert done.stdout.decode().count("type: MESSAGE") == len(messages)
    return messages


def frames_of(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        at += 4
        if size == 0:  # an escape: a control frame follows
            at += 4 + int.from_bytes(data[at : at + 4], "big")
            continue
        out.append(data[at : at + size])
        at += size
    return out


def qname(message: dnstap_pb.Dnstap) -> str:
    m = message.message
    wire = m.query_message if m.type == dnstap_pb.Message.AUTH_QUERY else m.response_message
    labels, at = [], 12
    while wire[at]:
        labels.append(wire[at + 1 : at + 1 + wire[at]].decode())
        at += 1 + wire[at]
    return ".".join(labels) + "."


def address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def test_queries_and_answers_reach_fstrm_capture(dnspol, short_dir) -> None:
    capture = Capture(short_dir / "tap.sock", short_dir / "tap.fstrm")
    try:
        srv = dnspol(
            zone=EXAMPLE,
            origin="example.",
            scopes={"example.": {"lab": LAB}},
            policies=RULES.format(socket=capture.sock, more=""),
        )
        assert srv.dig("www.example.", source="127.0.0.2").addresses == ["10.0.0.10"]
        assert srv.dig("mail.example.", "A", tcp=True).addresses == ["192.0.2.25"]
        srv.stop()  # the tap writes what is queued, then STOP
    finally:
        messages = capture.stop()
    kinds = [(m.message.type, qname(m)) for m in messages]
    assert kinds == [
        (dnstap_pb.Message.AUTH_QUERY, "www.example."),
        (dnstap_pb.Message.AUTH_RESPONSE, "www.example."),
        (dnstap_pb.Message.AUTH_QUERY, "mail.example."),
        (dnstap_pb.Message.AUTH_RESPONSE, "mail.example."),
    ]
    lab, _, plain, _ = (m.message for m in messages)
    assert address(lab.query_address) == "127.0.0.2" and lab.socket_protocol == dnstap_pb.UDP
    assert address(lab.response_address) == "127.0.0.1" and lab.response_port == srv.port
    assert plain.socket_protocol == dnstap_pb.TCP and plain.socket_family == dnstap_pb.INET
    assert [m.extra for m in messages] == [b"rule=lab-view scope=lab"] * 2 + [
        b"rule=- scope=default"
    ] * 2
    assert {(m.identity, m.version) for m in messages} == {(b"ns-test", b"dnspol-it")}
    answered = messages[1].message
    assert answered.response_time_sec * 10**9 + answered.response_time_nsec >= (
        answered.query_time_sec * 10**9 + answered.query_time_nsec
    )


def test_each_worker_connects_and_every_query_arrives(short_dir) -> None:
    capture = Capture(short_dir / "tap.sock", short_dir / "tap.fstrm")
    zone = short_dir / "example.zone"
    zone.write_text((DATA / "example.zone").read_text())
    config = short_dir / "dnspol.yaml"
    config.write_text(
        f"server:\n  dnstap: {{socket: {capture.sock}}}\nzones:\n  example.: example.zone\n"
    )
    args = ("--config", str(config), "--workers", "2", "--no-watch", "--control", "none")
    proc, host, port = serve_deployed(short_dir, *args)
    try:
        assert len(workers(proc.pid)) == 2
        sent = 40
        for i in range(sent):  # a new source port each time: both workers answer
            dnspol.testing.dig(host, port, f"n{i}.example.")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
        messages = capture.stop()
    names = sorted(qname(m) for m in messages if m.message.type == dnstap_pb.Message.AUTH_QUERY)
    assert names == sorted(f"n{i}.example." for i in range(sent))
    assert capture.connections == 2  # one for each worker


def _wait_metric(url: str, name: str, want: float, timeout: float = 15) -> None:
    from test_ops_metrics import scrape, total

    deadline = time.monotonic() + timeout
    while total(scrape(url), name) < want:
        assert time.monotonic() < deadline, f"{name} stayed below {want}"
        time.sleep(0.1)


def test_a_restarted_collector_is_found_again(dnspol, short_dir) -> None:
    from test_ops_metrics import ops_url

    first = Capture(short_dir / "tap.sock", short_dir / "first.fstrm")
    second = None
    try:
        srv = dnspol(
            zone=EXAMPLE,
            origin="example.",
            policies=f"server:\n  dnstap: {{socket: {first.sock}}}\n",
            extra_args=["--metrics-listen", "127.0.0.1:0"],
        )
        url = ops_url(srv.log)
        srv.dig("before.example.")
        _wait_metric(url, "dnspol_dnstap_written_total", 2)
        before = first.stop()
        second = Capture(short_dir / "tap.sock", short_dir / "second.fstrm")
        srv.dig("after.example.")  # queued while the tap finds the new collector
        _wait_metric(url, "dnspol_dnstap_written_total", 4)
        srv.stop()
    finally:
        first.stop()
        after = second.stop() if second is not None else []
    assert {qname(m) for m in before} == {"before.example."}
    assert [qname(m) for m in after] == ["after.example.", "after.example."]
    assert (first.connections, second.connections) == (1, 1)


@pytest.mark.parametrize("collector", ["absent", "stalled"])
def test_no_collector_holds_up_an_answer_and_drops_are_counted(
    dnspol, short_dir, collector
) -> None:
    from test_ops_metrics import ops_url, scrape, total

    path = short_dir / "tap.sock"
    stalled = None
    if collector == "stalled":  # listens, never accepts: the handshake waits for ACCEPT
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.bind(str(path))
        stalled.listen(1)
    try:
        srv = dnspol(
            zone=EXAMPLE,
            origin="example.",
            policies=f"server:\n  dnstap: {{socket: {path}, queue: 5}}\n",
            extra_args=["--metrics-listen", "127.0.0.1:0"],
        )
        url = ops_url(srv.log)
        began = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            for i in range(200):
                sock.sendto(make_query(f"n{i}.example.", ident=i), (srv.host, srv.port))
                assert sock.recv(4096)[:2] == i.to_bytes(2, "big")
        elapsed = time.monotonic() - began
        samples = scrape(url)
    finally:
        if stalled is not None:
            stalled.close()
    # 200 answers, one at a time, in less time than one handshake's timeout
    assert elapsed < 2.0, f"200 answers took {elapsed:.2f} s"
    assert total(samples, "dnspol_dnstap_written_total") == 0
    assert total(samples, "dnspol_dnstap_dropped_total") >= 2 * (200 - 5)


def test_with_workers_a_file_output_is_one_file_for_each(short_dir) -> None:
    zone = short_dir / "example.zone"
    zone.write_text((DATA / "example.zone").read_text())
    config = short_dir / "dnspol.yaml"
    config.write_text("server:\n  dnstap: {file: tap.fstrm}\nzones:\n  example.: example.zone\n")
    args = ("--config", str(config), "--workers", "2", "--no-watch", "--control", "none")
    proc, host, port = serve_deployed(short_dir, *args)
    try:
        pids = workers(proc.pid)
        sent = 20
        for i in range(sent):
            dnspol.testing.dig(host, port, f"n{i}.example.")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    files = sorted(short_dir.glob("tap.fstrm*"))
    assert {path.name for path in files} == {f"tap.fstrm.{pid}" for pid in pids}
    names = sorted(
        qname(m)
        for path in files
        for m in read(path)
        if m.message.type == dnstap_pb.Message.AUTH_QUERY
    )
    assert names == sorted(f"n{i}.example." for i in range(sent))
