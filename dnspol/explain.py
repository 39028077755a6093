"""``dnspol explain``: one query through the real pipeline, written out for people.

The rules' verdicts come from ``Policy.explain`` and the answer from the same
``Handler`` the server runs (slow path, fixed clock), so what explain prints is
what the server would send.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Mapping

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
from dnslib import EDNS0, QTYPE, DNSError, DNSRecord, EDNSOption

from dnspol.handler import Clock, Handler, Listener
from dnspol.names import from_text
from dnspol.policy.model import QueryFacts
from dnspol.state import ServerState, Snapshot

OPTION_NSID = 3
OPTION_ECS = 8
OPTION_COOKIE = 10
OPTION_EDE = 15


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
    health: Mapping[str, bool] | None = None,
) -> str:
    qtype = _qtype(qtype_text)
    qname = from_text(name)
    now = time.time() if when is None else when
    ecs_net = ipaddress.ip_network(ecs, strict=True) if ecs else None
    lines = _check_lines(snap, health or {})
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
        lines.append(reply_text(result.wire))
    return "\n".join(lines)


def _check_lines(snap: Snapshot, health: Mapping[str, bool]) -> list[str]:
    """The configuration's health checks, each probed once now (``health`` forces some
    up or down instead), so the rules below read what a server would read."""
    from dnspol.checker import Checker

    board = getattr(snap.policy, "health", None)
    if board is None:
        if health:
            raise ValueError("--health: the configuration has no checks")
        return []
    unknown = sorted(set(health) - set(board.by_name))
    if unknown:
        raise ValueError(f"--health: no check {unknown[0]!r} (checks: {', '.join(board.by_name)})")
    checker = Checker(board, forced=health)
    checker.prime()
    lines = ["checks (each probed once now):"]
    for item in checker.report():
        line = f"  {item['name']}: {item['state']} ({item['kind']} {item['target']})"
        if item["forced"]:
            line += f", forced {item['forced']} by --health"
        if item["last_error"]:
            line += f"; last error: {item['last_error']}"
        lines.append(line)
    return lines


def reply_text(wire: bytes) -> str:
    """The reply in dig's layout; dnspython's text where dnslib cannot read the reply
    (RDATA of length 0 for a type it does not know, which RFC 3597 allows)."""
    try:
        reply = DNSRecord.parse(wire)
    except DNSError:
        return _dig_layout(dns.message.from_wire(wire))
    return dig_text(reply)


def _dig_layout(reply: dns.message.Message) -> str:
    """dig's header and sections, from a reply dnspython read (records in its text)."""
    sections = [
        ("QUESTION", reply.question),
        ("ANSWER", reply.answer),
        ("AUTHORITY", reply.authority),
        ("ADDITIONAL", reply.additional),
    ]
    counts = ", ".join(
        f"{name if name != 'QUESTION' else 'QUERY'}: {sum(max(len(r), 1) for r in rrsets)}"
        for name, rrsets in sections
    )
    lines = [
        f";; ->>HEADER<<- opcode: {dns.opcode.to_text(reply.opcode())}, "
        f"status: {dns.rcode.to_text(reply.rcode())}, id: {reply.id}",
        f";; flags: {dns.flags.to_text(reply.flags).lower()}; {counts}",
    ]
    for name, rrsets in sections:
        if rrsets:
            lines.append(f";; {name} SECTION:")
            prefix = ";" if name == "QUESTION" else ""
            lines += [
                prefix + line.rstrip() for rrset in rrsets for line in rrset.to_text().splitlines()
            ]
    return "\n".join(lines)


def dig_text(reply: DNSRecord) -> str:
    """The reply as dnslib writes it, with the OPT pseudo-section as dig 9.18 writes it:
    ``; CLIENT-SUBNET: 10.1.2.0/24/8`` and ``; EDE: 18 (Prohibited)``, not option bytes."""
    text = str(reply)
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            text = text.replace(rr.toZone(), _opt_text(rr))
    return text


def _opt_text(rr) -> str:
    flags = " do" if rr.edns_do else ""
    lines = [
        ";; OPT PSEUDOSECTION:",
        f"; EDNS: version: {rr.edns_ver}, flags:{flags}; udp: {rr.edns_len}",
    ]
    lines += [_option_text(opt.code, bytes(opt.data)) for opt in rr.rdata]
    return "\n".join(lines)


def _option_text(code: int, data: bytes) -> str:
    """One EDNS option in dig's words (dig 9.18, ``printednsopts``)."""
    if code == OPTION_ECS and len(data) >= 4:
        return f"; CLIENT-SUBNET: {_ecs_text(data)}"
    if code == OPTION_EDE and len(data) >= 2:
        info = int.from_bytes(data[:2], "big")
        extra = f": ({data[2:].decode('utf-8', 'replace')})" if len(data) > 2 else ""
        return f"; EDE: {info} ({_ede_name(info)}){extra}"
    if code == OPTION_COOKIE:
        return f"; COOKIE: {data.hex()}"
    name = "NSID" if code == OPTION_NSID else f"OPT={code}"
    printable = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
    return f'; {name}: {" ".join(f"{b:02x}" for b in data)} ("{printable}")'


def _ecs_text(data: bytes) -> str:
    family, source, scope = int.from_bytes(data[:2], "big"), data[2], data[3]
    size = 4 if family == 1 else 16
    packed = data[4:].ljust(size, b"\0")[:size]
    address = ipaddress.ip_address(packed) if family in (1, 2) else data[4:].hex()
    return f"{address}/{source}/{scope}"


def _ede_name(info: int) -> str:
    try:
        return dns.edns.EDECode(info).name.replace("_", " ").title()
    except ValueError:
        return "Unknown"


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
        query.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(OPTION_ECS, data)]))
    return bytes(query.pack())
