"""``dnspol explain``: one query through the real pipeline, written out for people.

The rules' verdicts come from ``Policy.explain`` and the answer from the same
``Handler`` the server runs (slow path, fixed clock), so what explain prints is
what the server would send.
"""

from __future__ import annotations

import ipaddress
import random
import time

from dnslib import EDNS0, QTYPE, DNSRecord, EDNSOption

from dnspol.handler import Clock, Handler, Listener
from dnspol.names import from_text
from dnspol.policy.model import QueryFacts
from dnspol.state import ServerState, Snapshot


def explain(
    snap: Snapshot,
    name: str,
    qtype_text: str,
    client: str,
    server: str = "127.0.0.1",
    ecs: str | None = None,
    when: float | None = None,
    tcp: bool = False,
    seed: int | None = None,
) -> str:
    qtype = _qtype(qtype_text)
    qname = from_text(name)
    now = time.time() if when is None else when
    ecs_net = ipaddress.ip_network(ecs, strict=True) if ecs else None
    lines = []
    zone = snap.zones.find(qname)
    if snap.has_rules:
        facts = QueryFacts(
            client=ipaddress.ip_address(client),
            ecs=ecs_net,
            server=ipaddress.ip_address(server),
            transport="tcp" if tcp else "udp",
            qname=qname,
            qtype=qtype,
            zone=zone.origin if zone is not None else None,
            now=now,
        )
        lines.append(str(snap.policy.explain(facts, random.Random(seed))))
    else:
        lines.append("rules: none configured; every query is answered from the default scope")
    clock = Clock()
    clock.set(now, frozen=True)
    handler = Handler(ServerState(snap), clock, seed)
    handler.fast_path = False
    wire = _query_wire(name, qtype, ecs_net)
    listener = Listener(server, 53, "tcp" if tcp else "udp")
    result = handler.answer(wire, (client, 53000), listener, snap)
    lines.append("")
    if result.wire is None:
        lines.append("answer: none (the query is dropped)")
    else:
        lines.append(str(DNSRecord.parse(result.wire)))
    return "\n".join(lines)


def _qtype(text: str) -> int:
    text = text.upper()
    if text.isdigit():
        return int(text)
    if text.startswith("TYPE") and text[4:].isdigit():
        return int(text[4:])
    try:
        return getattr(QTYPE, text)
    except Exception as exc:  # dnslib raises its own DNSError
        raise ValueError(f"unknown query type {text!r}") from exc


def _query_wire(name: str, qtype: int, ecs) -> bytes:
    query = DNSRecord.question(name)
    query.q.qtype = qtype
    query.header.rd = 0
    if ecs is not None:
        family = 1 if ecs.version == 4 else 2
        length = ecs.prefixlen
        address = ecs.network_address.packed[: (length + 7) // 8]
        data = family.to_bytes(2, "big") + bytes((length, 0)) + address
        query.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, data)]))
    return bytes(query.pack())
