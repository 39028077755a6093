"""Property: ``Handler.handle()`` survives any bytes.

For every input it returns None or a well-formed response: at least a header,
the query's ID, QR set, parseable (dnspython), within the UDP size limit over
UDP, and never from the error boundary (an exception caught there is logged at
ERROR and would be a bug, even though the client only sees SERVFAIL).
Inputs: arbitrary bytes, queries built field by field (random flags, counts,
names, types, classes, OPT records with random options), and mutated valid
queries. Two handlers: plain zones, and zones with rules (ECS, time, weights).
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnspol.config import load_config
from dnspol.handler import Clock, Handler, Listener
from dnspol.state import ServerState, snapshot_from_config

ZONE = """$ORIGIN example.
$TTL 300
@      IN SOA ns1 hostmaster 1 7200 900 1209600 60
       IN NS  ns1
       IN MX  10 mail
ns1    IN A   192.0.2.1
mail   IN A   192.0.2.2
www    IN A   192.0.2.3
       IN AAAA 2001:db8::3
alias  IN CNAME www
loop1  IN CNAME loop2
loop2  IN CNAME loop1
*      IN A   192.0.2.99
*.w    IN CNAME www
a.b.c  IN A   192.0.2.4
sub    IN NS  ns.sub
ns.sub IN A   192.0.2.53
_s._udp IN SRV 0 0 53 www
""" + "".join(f'big IN TXT "{"x" * 60}{i}"\n' for i in range(30))

OVERLAY = "www 60 IN A 10.0.0.3\n"

RULES = """
server:
  trusted_resolvers: [127.0.0.0/8, "::1/128"]
subnets:
  inside: [10.0.0.0/8, 127.0.0.2/32, "2001:db8::/32"]
rules:
  - name: inside
    zone: example
    match: {client: inside}
    answer: inside
  - name: nights
    zone: example
    match:
      qname: alias.example
      time: {between: "22:00-06:00"}
    answer: inside
  - name: split
    zone: example
    match: {qname: www.example}
    answer: {weighted: {default: 1, inside: 1}}
"""

NAMES = [
    "example.",
    "www.example.",
    "WwW.ExAmPlE.",
    "alias.example.",
    "loop1.example.",
    "x.y.example.",
    "foo.w.example.",
    "c.example.",
    "x.c.example.",
    "foo.sub.example.",
    "big.example.",
    "_s._udp.example.",
    "www.example.org.",
    "version.bind.",
    "clock.dnspol.",
    ".",
]


def _handler(with_rules: bool, fast: bool) -> Handler:
    # the loaded snapshot holds everything it needs: the files go once it is built
    with tempfile.TemporaryDirectory(prefix="dnspol-fuzz-") as name:
        tmp = Path(name)
        (tmp / "example.zone").write_text(ZONE)
        (tmp / "inside.zone").write_text(OVERLAY)
        config = "zones:\n  example:\n    file: example.zone\n"
        if with_rules:
            config = RULES + config + "    scopes:\n      inside: {overlay: inside.zone}\n"
        (tmp / "dnspol.yaml").write_text(config)
        snapshot = snapshot_from_config(load_config(tmp / "dnspol.yaml"))
    handler = Handler(ServerState(snapshot), seed=1)
    handler.fast_path = fast
    return handler


EXAMPLES = int(os.environ.get("DNSPOL_FUZZ_EXAMPLES", "1500"))  # more for a long hunt
HANDLERS = [_handler(rules, fast) for rules in (False, True) for fast in (True, False)]
LISTENERS = [Listener("127.0.0.1", 53, "udp"), Listener("127.0.0.1", 53, "tcp")]
PEERS = [("127.0.0.1", 5300), ("127.0.0.2", 5301), ("192.0.2.77", 5302), ("::1", 5303, 0, 0)]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _name_wire(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes((len(label),)) + label.encode()
    return out + b"\x00"


options = st.lists(
    st.tuples(
        st.sampled_from([3, 8, 10, 11, 12, 15, 65001]) | st.integers(0, 65535),
        st.binary(max_size=48),
    ),
    max_size=3,
)


@st.composite
def opt_records(draw) -> bytes:
    payload = draw(st.sampled_from([0, 511, 512, 1232, 4096, 65535]))
    ttl = draw(st.sampled_from([0, 0x8000, 0x00010000, 0x01000000]) | st.integers(0, 2**32 - 1))
    rdata = b"".join(struct.pack("!HH", c, len(d)) + d for c, d in draw(options))
    lie = draw(st.booleans())  # sometimes lie about the length
    claimed = draw(st.integers(0, 0xFFFF)) if lie else len(rdata)
    owner = draw(st.sampled_from([b"\x00", b"\x00", b"\x01a\x00", b"\xc0\x0c"]))
    return owner + struct.pack("!HHIH", 41, payload, ttl, claimed) + rdata


@st.composite
def built_queries(draw) -> bytes:
    ident = draw(st.integers(0, 0xFFFF))
    flags = draw(st.sampled_from([0x0000, 0x0100, 0x0110, 0x0140, 0x1800, 0x2000]))
    flags = draw(st.just(flags) | st.integers(0, 0xFFFF))
    name = draw(st.sampled_from(NAMES))
    qname = _name_wire(name) if draw(st.integers(0, 9)) else draw(st.binary(max_size=70))
    qtype = draw(st.sampled_from([1, 2, 5, 6, 15, 16, 28, 33, 43, 39, 255, 251, 252, 0, 41]))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 254, 255, 5]))
    opts = draw(st.lists(opt_records(), max_size=2))
    extra = draw(st.binary(max_size=16))
    qd = draw(st.sampled_from([1, 1, 1, 0, 2]))
    counts = (
        (qd, 0, 0, len(opts))
        if draw(st.integers(0, 4))
        else draw(st.tuples(*[st.integers(0, 0xFFFF)] * 4))
    )
    header = struct.pack("!HH4H", ident, flags, *counts)
    return header + qname + struct.pack("!HH", qtype, qclass) + b"".join(opts) + extra


@st.composite
def mutated_queries(draw) -> bytes:
    wire = bytearray(draw(built_queries()))
    for _ in range(draw(st.integers(1, 4))):
        if not wire:
            break
        pos = draw(st.integers(0, len(wire) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del wire[pos:]
        else:
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=4))
    return bytes(wire)


messages = st.one_of(st.binary(max_size=600), built_queries(), mutated_queries())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wire=messages,
    handler=st.sampled_from(HANDLERS),
    listener=st.sampled_from(LISTENERS),
    peer=st.sampled_from(PEERS),
)
def test_handle_never_raises(wire: bytes, handler: Handler, listener: Listener, peer) -> None:
    errors = _Errors()
    logger = logging.getLogger("dnspol")
    logger.addHandler(errors)
    try:
        out = handler.handle(wire, peer, listener)
    finally:
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    if len(wire) < 12:
        assert out is None
    if out is None:
        return
    assert isinstance(out, bytes | bytearray)  # exactly bytes: test_handle_returns_bytes
    assert len(out) >= 12
    assert out[:2] == wire[:2]
    assert out[2] & 0x80, "QR must be set in a response"
    # well-formed: dnspython reads binary labels (dnslib does not); opcode cleared so that
    # it reads an UPDATE's NOTIMP as a plain message, not as an UPDATE to validate
    dns.message.from_wire(bytes(out[:2]) + bytes([out[2] & 0x87]) + bytes(out[3:]))
    if listener.transport == "udp":
        assert len(out) <= 1232
    else:
        assert len(out) <= 65535


def test_handle_returns_bytes() -> None:
    """``handle() -> bytes | None``: a first (uncached) answer must be bytes too."""
    handler = _handler(with_rules=False, fast=True)
    query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + _name_wire("www.example.")
    query += struct.pack("!HH", 1, 1)
    listener = LISTENERS[0]
    first = handler.handle(query, PEERS[0], listener)
    again = handler.handle(query, PEERS[0], listener)
    assert first == again
    assert type(again) is bytes
    assert type(first) is bytes, f"the first answer is a {type(first).__name__}"


def _twins() -> tuple[Handler, Handler]:
    """Fast and slow handlers with rules, on one frozen clock (TTL caps tick in seconds)."""
    clock = Clock(datetime(2026, 11, 25, 21, 59, 58, tzinfo=UTC).timestamp())
    clock.set(clock.now(), frozen=True)  # two seconds before the 22:00 window opens
    fast, slow = _handler(with_rules=True, fast=True), _handler(with_rules=True, fast=False)
    fast.clock = slow.clock = clock
    return fast, slow


TWINS = _twins()


def _case_flipped(wire: bytes, seed: int) -> bytes:
    """The same query with letters in the name region in another case."""
    out = bytearray(wire)
    for i in range(12, min(len(out), 80)):
        if 0x41 <= (out[i] | 0x20) - 0x20 <= 0x5A and (seed >> (i % 16)) & 1:
            out[i] ^= 0x20
    return bytes(out)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wire=messages,
    listener=st.sampled_from(LISTENERS),
    peer=st.sampled_from(PEERS),
    seed=st.integers(0, 0xFFFF),
    tick=st.booleans(),
)
def test_fast_path_gives_the_slow_paths_bytes(wire: bytes, listener, peer, seed, tick) -> None:
    """Random and mutated queries, repeated, renumbered and in other letter case, through
    handlers whose stores fill up over the run: the fast path's bytes are the slow path's."""
    fast, slow = TWINS
    if tick:  # move the shared clock on by a fraction of a second: caps and windows move
        fast.clock.set(fast.clock.now() + 0.37, frozen=True)
    renumbered = bytes([seed & 0xFF, seed >> 8]) + wire[2:] if len(wire) >= 2 else wire
    for message in (wire, wire, renumbered, _case_flipped(wire, seed)):
        assert fast.handle(message, peer, listener) == slow.handle(message, peer, listener)
