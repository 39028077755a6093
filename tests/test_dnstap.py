"""dnstap: the encoding read back by real readers, the configuration, sampling, and a tap
that never blocks the answers.

The protobuf is read with ``dnstap_pb`` (the dnstap.proto schema compiled by its
authors' tooling), files with Debian's ``dnstap-ldns``, so neither side of a test is
our own decoder.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import dnstap_pb
import jsonschema
import pytest
from dnslib import DNSRecord

from dnspol import dnstap
from dnspol.config import check_config, json_schema, load_config
from dnspol.dnstap import DnstapConfig, Endpoints, Tap
from dnspol.handler import Handler, Listener
from dnspol.observe import Observed
from dnspol.querylog import NO_LABEL
from dnspol.state import ServerState, Snapshot, snapshot_from_config
from dnspol.stats import AnswerLabel
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import ZoneSet

UDP = Listener("127.0.0.1", 53, "udp")
TCP6 = Listener("::1", 53, "tcp")
ZONE = """\
$ORIGIN example.com.
$TTL 300
@    SOA ns1 hostmaster 1 7200 900 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.10
"""
WHEN = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z, in nanoseconds
LABELS = [AnswerLabel(zone="example.com.", rule="office", scope="internal")]


def query(name: str = "www.example.com", qtype: str = "A") -> bytes:
    return bytes(DNSRecord.question(name, qtype).pack())


def answer(wire: bytes) -> bytes:
    return bytes(DNSRecord.parse(wire).reply().pack())


def config(**values) -> DnstapConfig:
    values.setdefault("identity", b"ns1.test")
    values.setdefault("version", b"dnspol test")
    return DnstapConfig(**values)


def frames_of(data: bytes) -> list[bytes]:
    """The data frames of a Frame Streams file (control frames skipped)."""
    out, at = [], 0
    while at + 4 <= len(data):
        (size,) = struct.unpack_from("!I", data, at)
        at += 4
        if size == 0:  # an escape: a control frame follows
            (size,) = struct.unpack_from("!I", data, at)
            at += 4 + size
            continue
        out.append(data[at : at + size])
        at += size
    return out


def decoded(frames: list[bytes]) -> list[dnstap_pb.Dnstap]:
    return [dnstap_pb.Dnstap.FromString(frame) for frame in frames]


def dnstap_ldns(path: Path) -> list[str]:
    tool = shutil.which("dnstap-ldns")
    assert tool, "dnstap-ldns is not installed: scripts/test.sh installs it (dnstap-ldns)"
    done = subprocess.run([tool, "-r", str(path), "-q"], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


# --- encoding -------------------------------------------------------------------------------


def test_a_query_and_its_answer_as_dnstap_pb_reads_them() -> None:
    tap = Tap(config(file="/dev/null"), LABELS)
    wire = query()
    out = answer(wire)
    frames = tap.frames(WHEN, WHEN + 250_000, ("192.0.2.7", 5300), UDP, wire, out, 0)
    asked, answered = decoded([frame[4:] for frame in frames])
    for message in (asked, answered):
        assert message.type == dnstap_pb.Dnstap.MESSAGE
        assert message.identity == b"ns1.test" and message.version == b"dnspol test"
        assert message.extra == b"rule=office scope=internal"
        m = message.message
        assert m.socket_family == dnstap_pb.INET and m.socket_protocol == dnstap_pb.UDP
        assert socket.inet_ntop(socket.AF_INET, m.query_address) == "192.0.2.7"
        assert socket.inet_ntop(socket.AF_INET, m.response_address) == "127.0.0.1"
        assert (m.query_port, m.response_port) == (5300, 53)
        assert (m.query_time_sec, m.query_time_nsec) == (1_767_225_600, 123_456_789)
    assert asked.message.type == dnstap_pb.Message.AUTH_QUERY
    assert asked.message.query_message == wire
    assert not asked.message.HasField("response_message")
    assert answered.message.type == dnstap_pb.Message.AUTH_RESPONSE
    assert answered.message.response_message == out
    got = (answered.message.response_time_sec, answered.message.response_time_nsec)
    assert got == (1_767_225_600, 123_706_789)


def test_ipv6_over_tcp_and_a_query_without_an_answer() -> None:
    tap = Tap(config(file="/dev/null"), LABELS)
    frames = tap.frames(WHEN, WHEN, ("2001:db8::7", 5301, 0, 0), TCP6, query(), None, None)
    (only,) = decoded([frame[4:] for frame in frames])
    m = only.message
    assert m.type == dnstap_pb.Message.AUTH_QUERY
    assert m.socket_family == dnstap_pb.INET6 and m.socket_protocol == dnstap_pb.TCP
    assert socket.inet_ntop(socket.AF_INET6, m.query_address) == "2001:db8::7"
    assert socket.inet_ntop(socket.AF_INET6, m.response_address) == "::1"
    assert only.extra == b"rule=- scope=- action=drop reason=policy"


@pytest.mark.parametrize(
    "label, extra",
    [
        (AnswerLabel(scope="default"), b"rule=- scope=default"),
        (AnswerLabel(rule="inside", scope="internal"), b"rule=inside scope=internal"),
        (AnswerLabel(rule="block", action="nxdomain"), b"rule=block scope=- action=nxdomain"),
        (
            AnswerLabel(rule="quiet", action="drop", dropped="policy"),
            b"rule=quiet scope=- action=drop dropped=policy",
        ),
    ],
)
def test_the_extra_field_says_what_decided(label, extra) -> None:
    assert Tap(config(file="/dev/null"), [label])._extra(0) == extra


def test_a_v4_client_on_a_v6_listener_leaves_the_server_address_out() -> None:
    ends = Endpoints.of(("192.0.2.7", 1), "::", 53, "udp")
    assert ends.server is None and ends.family == dnstap.INET


def test_control_frames_round_trip() -> None:
    frame = dnstap.control_frame(dnstap.READY)
    assert frame[:4] == b"\0\0\0\0"
    kind, types = dnstap.parse_control(frame[8:])
    assert (kind, types) == (dnstap.READY, [dnstap.CONTENT_TYPE])
    assert dnstap.control_frame(dnstap.STOP) == b"\0\0\0\0\0\0\0\4\0\0\0\3"


def test_a_file_read_by_dnstap_ldns(tmp_path) -> None:
    path = tmp_path / "out.fstrm"
    tap = Tap(config(file=str(path)), LABELS)
    tap.start()
    wire = query()
    tap.offer(WHEN, WHEN + 1000, ("192.0.2.7", 5300), UDP, wire, answer(wire), 0)
    tap.offer(WHEN, WHEN, ("2001:db8::7", 5301, 0, 0), TCP6, query("x.example.com"), None, None)
    tap.stop()
    assert (tap.written, tap.dropped) == (3, 0)
    lines = dnstap_ldns(path)
    assert [line.split()[2:5] for line in lines] == [
        ["AQ", "192.0.2.7", "UDP"],
        ["AR", "192.0.2.7", "UDP"],
        ["AQ", "2001:db8::7", "TCP"],
    ]
    assert '"www.example.com." IN A' in lines[0] and '"x.example.com." IN A' in lines[2]
    assert [m.extra for m in decoded(frames_of(path.read_bytes()))][:1] == [
        b"rule=office scope=internal"
    ]


def test_with_several_workers_each_writes_a_file_of_its_own(tmp_path) -> None:
    tap = Tap(config(file=str(tmp_path / "out.fstrm")), per_process=True)
    assert tap.output_name() == f"file {tmp_path}/out.fstrm.{os.getpid()}"


# --- the socket: handshake, reconnecting, never blocking ---------------------------------------


class Collector:
    """A Frame Streams reader in a thread: READY → ACCEPT, then frames until STOP."""

    def __init__(self, path: Path, answer_ready: bool = True) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.answer_ready = answer_ready
        self.frames: list[bytes] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        if answer_ready:
            self.thread.start()

    def _run(self) -> None:
        conn, _ = self.server.accept()
        self.connections += 1
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
                if data.startswith(b"\0\0\0\0") and len(data) >= 8 + data[7]:
                    ready = data[: 8 + data[7]]
                    if dnstap.parse_control(ready[8:])[0] == dnstap.READY:
                        conn.sendall(dnstap.control_frame(dnstap.ACCEPT))
                        data = data[len(ready) :]
                if data.endswith(dnstap.control_frame(dnstap.STOP)):
                    conn.sendall(dnstap.control_frame(dnstap.FINISH))
                    break
        self.frames = frames_of(data)

    def close(self) -> None:
        self.server.close()


def test_the_socket_handshake_and_stop(tmp_path) -> None:
    path = tmp_path / "tap.sock"
    collector = Collector(path)
    tap = Tap(config(socket=str(path)), LABELS)
    tap.start()
    wire = query()
    tap.offer(WHEN, WHEN, ("192.0.2.7", 5300), UDP, wire, answer(wire), 0)
    deadline = time.monotonic() + 5
    while tap.written < 2:
        assert time.monotonic() < deadline, "the tap never wrote"
        time.sleep(0.01)
    tap.stop()
    collector.thread.join(5)
    collector.close()
    kinds = [m.message.type for m in decoded(collector.frames)]
    assert kinds == [dnstap_pb.Message.AUTH_QUERY, dnstap_pb.Message.AUTH_RESPONSE]


def test_an_absent_collector_drops_and_counts_without_blocking(tmp_path) -> None:
    tap = Tap(config(socket=str(tmp_path / "nobody.sock"), queue=100))
    tap.start()
    began = time.monotonic()
    wire = query()
    for _ in range(1000):
        tap.offer(WHEN, WHEN, ("192.0.2.7", 5300), UDP, wire, wire, 0)
    assert time.monotonic() - began < 1.0
    assert len(tap.queue) == 100 and tap.full == 1800  # two messages per query
    tap.stop()
    assert tap.written == 0 and tap.dropped == 2000  # the queued ones too, at the stop


def test_a_collector_that_never_accepts_holds_up_nothing(tmp_path) -> None:
    path = tmp_path / "stalled.sock"
    stalled = Collector(path, answer_ready=False)  # listens; never accepts, never answers
    try:
        tap = Tap(config(socket=str(path), queue=10))
        tap.start()
        began = time.monotonic()
        for _ in range(100):
            tap.offer(WHEN, WHEN, ("192.0.2.7", 5300), UDP, query(), None, 0)
        assert time.monotonic() - began < 1.0  # the writer waits for ACCEPT, not offer
        assert tap.full == 90 and tap.written == 0
        tap.stop(timeout=0.1)
    finally:
        stalled.close()


def test_a_collector_answering_nonsense_is_retried(tmp_path) -> None:
    path = tmp_path / "odd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(5)
    tap = Tap(config(socket=str(path)))
    tap.start()
    try:
        for _ in range(2):  # the second connection: the writer lived through the first
            conn, _ = server.accept()
            with conn:
                conn.recv(512)
                conn.sendall(struct.pack("!II", 0, 2) + b"\0\1")  # too short to be a frame
    finally:
        tap.stop(timeout=0.1)
        server.close()
    assert tap.connects == 0


# --- the configuration -------------------------------------------------------------------------


def write_config(tmp_path: Path, dnstap_yaml: str) -> Path:
    (tmp_path / "example.com.zone").write_text(ZONE)
    path = tmp_path / "dnspol.yaml"
    text = "server:\n  dnstap:\n" + textwrap.indent(textwrap.dedent(dnstap_yaml), "    ")
    path.write_text(text + "zones:\n  example.com: example.com.zone\n")
    return path


def test_the_configuration(tmp_path) -> None:
    path = write_config(tmp_path, "socket: run/tap.sock\nidentity: ns1\nsample: 0.5\nqueue: 50\n")
    loaded = load_config(path).dnstap
    assert loaded == DnstapConfig(
        socket=str(tmp_path / "run/tap.sock"),
        identity=b"ns1",
        version=dnstap.default_version(),
        sample=0.5,
        queue=50,
    )
    assert snapshot_from_config(load_config(path)).dnstap == loaded
    default = load_config(write_config(tmp_path, "file: /var/log/dnstap.fstrm\n")).dnstap
    assert default is not None and default.identity == socket.gethostname().encode()
    assert default.sample == 1.0 and default.queue == 10_000


@pytest.mark.parametrize(
    "text, problem",
    [
        ("identity: x\n", "dnstap needs exactly one of 'socket' or 'file'"),
        ("socket: a\nfile: b\n", "dnstap needs exactly one of 'socket' or 'file'"),
        ("file: a\nsample: 0\n", "dnstap.sample must be above 0 and at most 1, not 0"),
        ("file: a\nsample: 2\n", "dnstap.sample must be above 0 and at most 1, not 2"),
        ("file: a\nqueue: 0\n", "dnstap.queue"),
        ("file: a\nrate: 1\n", "rate"),
        # every problem at once, not the first only
        ("socket: a\nfile: b\nsample: 3\n", "dnstap.sample must be above 0"),
    ],
)
def test_configuration_problems(tmp_path, text, problem) -> None:
    problems = check_config(write_config(tmp_path, text))
    assert any(problem in p and "dnspol.yaml:" in p for p in problems), problems


def test_the_schema_knows_dnstap() -> None:
    schema = json_schema()
    good = {"zones": {"a.": "a.zone"}, "server": {"dnstap": {"socket": "/run/t.sock"}}}
    jsonschema.validate(good, schema)
    for bad in ({"sample": 0.5}, {"socket": "a", "file": "b"}, {"file": "a", "queue": 0}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"zones": {"a.": "a.zone"}, "server": {"dnstap": bad}}, schema)


# --- sampling, beside the handler ---------------------------------------------------------------


@pytest.fixture
def handler() -> Handler:
    zones = ZoneSet([load_zone_text(ZONE, "example.com.")])
    return Handler(ServerState(Snapshot(zones=zones)))


def test_every_query_is_offered_with_its_answer(handler) -> None:
    tap = Tap(config(file="/dev/null"), handler.stats.labels)
    observed = Observed(handler, durations=False, dnstap=tap)
    out = observed.handle(query(), ("192.0.2.7", 1), UDP)
    observed.handle(query("nope.example.com"), ("192.0.2.7", 1), UDP)
    first, second = tap.queue
    assert first[5] == out and first[0] <= first[1]
    labels = [handler.stats.labels[record[6]] for record in (first, second)]
    assert [label.rcode for label in labels] == ["NOERROR", "NXDOMAIN"]
    assert observed.handle(b"\x12", ("192.0.2.7", 1), UDP) is None
    assert tap.queue[-1][6] is NO_LABEL


def test_sampling_rate(handler) -> None:
    tap = Tap(config(file="/dev/null", sample=0.1))
    observed = Observed(handler, durations=False, dnstap=tap, rng=random.Random(3))
    for _ in range(20_000):
        observed.handle(query(), ("192.0.2.7", 1), UDP)
    assert 1_700 < len(tap.queue) < 2_300  # not started: everything offered is still queued


def test_the_queue_holds_at_most_its_bytes_whatever_the_messages_size() -> None:
    """64 KiB TCP queries and answers while the collector is behind: the queue is bounded
    by bytes as well as by count, and what does not fit is counted as dropped."""
    tap = Tap(config(file="/dev/null", queue=100_000), LABELS)  # not started: nothing takes
    big = query() + b"\0" * (65_535 - len(query()))
    for _ in range(1_000):
        tap.offer(WHEN, WHEN, ("192.0.2.7", 5301), TCP6, big, big, 0)
    held = sum(len(record[4]) + len(record[5]) for record in tap.queue)
    assert held <= dnstap.QUEUE_BYTES
    assert tap.full == 2 * (1_000 - len(tap.queue)) > 0
    queued = len(tap.queue)
    tap._take()  # the writer takes a batch: room again
    tap.offer(WHEN, WHEN, ("192.0.2.7", 5301), TCP6, big, big, 0)
    assert len(tap.queue) == 1
    assert queued > 1
