"""The query log: record contents, sampling, and never blocking when the output stalls."""

from __future__ import annotations

import json
import os
import random
import time

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption

from dnspol.handler import Handler, Listener
from dnspol.observe import Observed
from dnspol.querylog import NO_LABEL, QueryLog, pack_lines
from dnspol.state import ServerState, Snapshot
from dnspol.stats import AnswerLabel
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import ZoneSet

UDP = Listener("127.0.0.1", 53, "udp")
ZONE = """\
$ORIGIN example.com.
$TTL 300
@    SOA ns1 hostmaster 1 7200 900 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.10
"""


def query(name: str = "www.example.com", qtype: str = "A", ecs: bytes | None = None) -> bytes:
    q = DNSRecord.question(name, qtype)
    if ecs is not None:
        q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, ecs)]))
    return bytes(q.pack())


def record(log: QueryLog, wire: bytes, label, client=("192.0.2.7", 5300), proto="udp") -> dict:
    return json.loads(log.format(1_767_225_600.25, client, wire, label, proto, 0.000042))


@pytest.fixture
def handler() -> Handler:
    zones = ZoneSet([load_zone_text(ZONE, "example.com.")])
    return Handler(ServerState(Snapshot(zones=zones)))


def test_record_of_an_answered_query() -> None:
    labels = [
        AnswerLabel(zone="example.com.", qtype="A", rule="office", scope="internal"),
    ]
    log = QueryLog("-", labels=labels)
    ecs = bytes([0, 1, 24, 0, 10, 1, 2])  # 10.1.2.0/24
    assert record(log, query(ecs=ecs), 0) == {
        "time": "2026-01-01T00:00:00.250000+00:00",
        "client": "192.0.2.7",
        "ecs": "10.1.2.0/24",
        "qname": "www.example.com.",
        "qtype": "A",
        "proto": "udp",
        "rcode": "NOERROR",
        "zone": "example.com.",
        "rule": "office",
        "action": "answer",
        "scope": "internal",
        "duration_ms": 0.042,
    }


@pytest.mark.parametrize(
    "label, wire, expect",
    [
        (None, query(), {"rcode": None, "dropped": "policy", "qname": "www.example.com."}),
        (NO_LABEL, b"\x12\x34", {"rcode": None, "dropped": "malformed", "qname": None}),
        # a question that reads but a message that does not (FORMERR): name and type survive
        (NO_LABEL, query()[:-1] + b"", {"qname": "www.example.com.", "qtype": "A"}),
        (NO_LABEL, query("mixed.EXAMPLE.com", "TYPE65000"), {"qname": "mixed.example.com."}),
    ],
)
def test_records_of_odd_queries(label, wire, expect) -> None:
    got = record(QueryLog("-"), wire, label)
    assert {key: got[key] for key in expect} == expect


def test_unknown_type_is_shown_by_number() -> None:
    assert record(QueryLog("-"), query(qtype="TYPE65000"), NO_LABEL)["qtype"] == "65000"


def test_written_to_a_file_as_json_lines(handler, tmp_path) -> None:
    path = tmp_path / "queries.jsonl"
    log = QueryLog(str(path), labels=handler.stats.labels)
    log.start()
    observed = Observed(handler, durations=False, query_log=log)
    for name in ("www.example.com", "nope.example.com", "www.example.org"):
        observed.handle(query(name), ("192.0.2.7", 1), UDP)
    log.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["qname"], r["rcode"]) for r in lines] == [
        ("www.example.com.", "NOERROR"),
        ("nope.example.com.", "NXDOMAIN"),
        ("www.example.org.", "REFUSED"),
    ]
    assert log.written == 3 and log.dropped == 0


def test_sampling_rate(handler) -> None:
    log = QueryLog("-", sample=0.1)
    observed = Observed(handler, durations=False, query_log=log, rng=random.Random(3))
    for _ in range(20_000):
        observed.handle(query(), ("192.0.2.7", 1), UDP)
    assert 1_700 < len(log.queue) < 2_300  # not started: everything offered is still queued


def test_bad_sample_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        QueryLog("-", sample=0)


def test_a_stalled_output_drops_records_instead_of_blocking(handler) -> None:
    read_end, write_end = os.pipe()  # nobody reads: the writer blocks once the pipe is full
    try:
        log = QueryLog(f"/proc/self/fd/{write_end}", labels=handler.stats.labels)
        log.limit = 1_000
        log.start()
        observed = Observed(handler, durations=False, query_log=log)
        began = time.monotonic()
        for _ in range(30_000):
            observed.handle(query(), ("192.0.2.7", 1), UDP)
        assert time.monotonic() - began < 10  # answering went on at full speed
        assert log.dropped > 0
        assert len(log.queue) <= log.limit
    finally:
        os.close(read_end)  # the blocked write fails now; the writer thread gives up
        log.stop(timeout=2)
        os.close(write_end)


def test_pack_lines_keeps_lines_whole_within_the_limit() -> None:
    lines = [b"a" * 30 + b"\n", b"b" * 50 + b"\n", b"c" * 10 + b"\n", b"d" * 200 + b"\n"]
    chunks = pack_lines(lines, 90)
    assert b"".join(chunks) == b"".join(lines)
    assert [len(chunk) for chunk in chunks] == [82, 11, 201]  # the long line alone
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert pack_lines([], 100) == []


def test_the_queue_holds_at_most_its_bytes_whatever_the_queries_size() -> None:
    """An attacker's 64 KiB TCP queries while the writer is behind: the queue is bounded
    by bytes, not only by count, and what does not fit is counted as dropped."""
    from dnspol import querylog

    log = QueryLog("-")  # not started: nothing takes from the queue
    big = query() + b"\0" * (65_535 - len(query()))
    for _ in range(1_000):
        log.offer(0.0, ("192.0.2.1", 1), big, 0, "tcp", 0.0)
    held = sum(len(record[2]) for record in log.queue)
    assert held <= querylog.QUEUE_BYTES
    assert log.dropped == 1_000 - len(log.queue) > 0
    queued = len(log.queue)
    log._take(most=10)  # the writer takes some: room again
    log.offer(0.0, ("192.0.2.1", 1), big, 0, "tcp", 0.0)
    assert len(log.queue) == queued - 10 + 1
