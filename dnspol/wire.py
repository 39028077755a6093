"""Decoding queries from wire bytes: the strict reference decoder and the plain-query read.

dnslib is lenient where a server must be strict (two OPT RRs, options running
past the RDATA, QDCOUNT != 1 all parse), and parsing a query with it costs more
than answering one from the cache. So the query side is decoded here: the
header, the one question and the OPT record, with every check RFC 1035 and
RFC 6891 ask for. Responses are still packed by dnslib (see ``answer``).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from dnspol.codes import RRType
from dnspol.names import Name

HEADER = struct.Struct("!HHHHHH")
OPT_FIXED = struct.Struct("!HHIH")  # type, class (payload), ttl, rdlength
_OPT_FIXED_AT = struct.Struct("!BHHIH")  # the same after a root owner byte
_OPTION_AT = struct.Struct("!HH")  # an EDNS option's code and length

CLASS_IN = 1
CLASS_CH = 3
OPCODE_QUERY = 0

OPTION_NSID = 3
OPTION_ECS = 8
OPTION_COOKIE = 10
OPTION_KEEPALIVE = 11
# Options that carry one value per message: NSID (RFC 5001), ECS (RFC 7871), EXPIRE
# (RFC 7314), COOKIE (RFC 7873), edns-tcp-keepalive (RFC 7828), PADDING (RFC 7830 §3:
# "at most once per OPT meta-RR"), CHAIN (RFC 7901), edns-key-tag (RFC 8145). No RFC
# says which of two copies counts, so a second copy is FORMERR: a query is not read
# two ways, and cannot be padded out to 64 KB with options the fast path accepts.
SINGLE_USE_OPTIONS = frozenset({3, OPTION_ECS, 9, OPTION_COOKIE, OPTION_KEEPALIVE, 12, 13, 14})


_TYPE_OPT = int(RRType.OPT)  # read per query: an int, not an enum member lookup
MIN_UDP_PAYLOAD = 512
TCP_LIMIT = 65535
# The longest query the compiled path reads. The longest plain query is 350 bytes: a
# 255-octet name, one OPT, one ECS for a /128, one 40-octet COOKIE. Longer messages
# (anyone can send 64 KB) go to the reference path.
MAX_PLAIN_QUERY = 512


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """An EDNS Client Subnet option as received (RFC 7871 §6)."""

    family: int
    source: int
    scope: int
    address: bytes  # exactly ceil(source / 8) bytes, as sent

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        width = 4 if self.family == 1 else 16
        value = int.from_bytes(self.address.ljust(width, b"\x00"), "big")
        if width == 4:
            return ipaddress.IPv4Network((value, self.source))
        return ipaddress.IPv6Network((value, self.source))

    def to_option(self, scope: int) -> bytes:
        """The option data to echo, with our SCOPE."""
        return struct.pack("!HBB", self.family, self.source, scope) + self.address


@dataclass(frozen=True, slots=True)
class Edns:
    payload: int
    version: int
    do: bool
    options: tuple[tuple[int, bytes], ...] = ()
    ecs: ClientSubnet | None = None
    keepalive: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A decoded query. ``question`` is the question's bytes exactly as sent."""

    id: int
    flags: int
    qname: Name
    qtype: int
    qclass: int
    question: bytes
    edns: Edns | None = None
    extra: dict = field(default_factory=dict)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rd(self) -> bool:
        return bool(self.flags & 0x0100)

    @property
    def cd(self) -> bool:
        return bool(self.flags & 0x0010)


class FormErr(Exception):
    """The packet has a header but cannot be answered except with FORMERR.

    Carries what could be decoded so the FORMERR echoes it: the question bytes
    when the question was readable, and whether an OPT was seen.
    """

    def __init__(self, why: str, question: bytes = b"", edns: Edns | None = None) -> None:
        super().__init__(why)
        self.question = question
        self.edns = edns


class BadVersion(Exception):
    """EDNS version > 0: answer BADVERS (RFC 6891 §6.1.3)."""

    def __init__(self, query: Query) -> None:
        super().__init__("EDNS version not supported")
        self.query = query


def should_drop(wire: bytes) -> bool:
    """Packets that get no answer at all: no full header, or a response (QR=1)."""
    return len(wire) < 12 or bool(wire[2] & 0x80)


def read_qname(wire: bytes, offset: int) -> tuple[Name, int]:
    """Read an uncompressed name; a question name cannot use compression."""
    labels: list[bytes] = []
    total = 1
    end = len(wire)
    while True:
        if offset >= end:
            raise FormErr("question runs past the end of the packet")
        length = wire[offset]
        if length == 0:
            return tuple(labels), offset + 1
        if length > 63:
            raise FormErr("compressed or reserved label type in the question")
        total += length + 1
        if total > 255:
            raise FormErr("name longer than 255 octets")
        offset += 1
        if offset + length > end:
            raise FormErr("label runs past the end of the packet")
        labels.append(wire[offset : offset + length].lower())
        offset += length


def skip_name(wire: bytes, offset: int) -> int:
    """Skip a possibly compressed name in a record; return the offset after it."""
    end = len(wire)
    while True:
        if offset >= end:
            raise FormErr("record name runs past the end of the packet")
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > end:
                raise FormErr("truncated compression pointer")
            return offset + 2
        if length > 63:
            raise FormErr("reserved label type")
        offset += length + 1


def decode(wire: bytes) -> Query:
    """Decode a query that ``should_drop`` let through. Raises FormErr/BadVersion."""
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(wire)
    opcode = (flags >> 11) & 0xF
    if qdcount == 0:
        raise FormErr("no question")
    qname, offset = read_qname(wire, 12)
    if offset + 4 > len(wire):
        raise FormErr("question runs past the end of the packet")
    qtype, qclass = struct.unpack_from("!HH", wire, offset)
    question = wire[12 : offset + 4]
    offset += 4
    if qdcount != 1 and opcode == OPCODE_QUERY:
        raise FormErr("more than one question", question)
    edns = None
    if opcode == OPCODE_QUERY:
        for _ in range(qdcount - 1 + ancount + nscount):
            offset = _skip_record(wire, offset, question)
        edns = _read_additional(wire, offset, arcount, question)
    query = Query(ident, flags, qname, qtype, qclass, question, edns)
    if edns is not None and edns.version != 0:
        raise BadVersion(query)
    return query


def _skip_record(wire: bytes, offset: int, question: bytes) -> int:
    try:
        offset = skip_name(wire, offset)
    except FormErr as exc:
        raise FormErr(str(exc), question) from None
    if offset + 10 > len(wire):
        raise FormErr("record runs past the end of the packet", question)
    rdlength = struct.unpack_from("!H", wire, offset + 8)[0]
    offset += 10 + rdlength
    if offset > len(wire):
        raise FormErr("record data runs past the end of the packet", question)
    return offset


def _read_additional(wire: bytes, offset: int, arcount: int, question: bytes) -> Edns | None:
    edns: Edns | None = None
    for _ in range(arcount):
        start = offset
        offset = _skip_record(wire, offset, question)
        owner_end = skip_name(wire, start)
        rtype = struct.unpack_from("!H", wire, owner_end)[0]
        if rtype != RRType.OPT:
            continue
        if edns is not None:
            raise FormErr("more than one OPT record", question)  # RFC 6891 §6.1.1
        if owner_end - start != 1 or wire[start] != 0:
            raise FormErr("OPT owner is not the root", question)
        edns = _read_opt(wire, owner_end, question)
    return edns


def _read_opt(wire: bytes, offset: int, question: bytes) -> Edns:
    _, payload, ttl, rdlength = OPT_FIXED.unpack_from(wire, offset)
    version = (ttl >> 16) & 0xFF
    do = bool(ttl & 0x8000)
    rdata = wire[offset + 10 : offset + 10 + rdlength]
    bare = Edns(payload, version, do)
    options: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    pos = 0
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            raise FormErr("truncated EDNS option header", question, bare)
        code, length = struct.unpack_from("!HH", rdata, pos)
        pos += 4
        if pos + length > len(rdata):
            raise FormErr("EDNS option runs past the OPT record", question, bare)
        if code in seen and code in SINGLE_USE_OPTIONS:  # at the second copy: no more work
            raise FormErr(f"more than one EDNS option {code}", question, bare)
        seen.add(code)
        options.append((code, rdata[pos : pos + length]))
        pos += length
    ecs = None
    keepalive = False
    for code, data in options:
        if code == OPTION_ECS:
            ecs = _read_ecs(data, question, bare)
        elif code == OPTION_COOKIE and not (len(data) == 8 or 16 <= len(data) <= 40):
            raise FormErr("malformed COOKIE option", question, bare)  # RFC 7873 §5.2.2
        elif code == OPTION_KEEPALIVE:
            if data:
                raise FormErr("edns-tcp-keepalive with data in a query", question, bare)
            keepalive = True
    return Edns(payload, version, do, tuple(options), ecs, keepalive)


def ecs_problem(data: bytes) -> str | None:
    """What is wrong with an ECS option (RFC 7871 §6, §7.2.1; what BIND enforces), or None.

    The one statement of the rules: the strict decoder turns a problem into FORMERR,
    the fast path sends any query with a problem down the strict decoder.
    """
    if len(data) < 4:
        return "ECS option too short"
    family, source, scope = struct.unpack_from("!HBB", data)
    if family not in (1, 2):
        return "ECS family is not IPv4 or IPv6"
    if source > (32 if family == 1 else 128):
        return "ECS source prefix longer than the address"
    if len(data) - 4 != (source + 7) // 8:
        return "ECS address length does not match the source prefix"
    if scope != 0:
        return "ECS scope must be 0 in a query"
    if source % 8 and data[-1] & (0xFF >> (source % 8)):
        return "ECS address has bits set beyond the source prefix"
    return None


def _read_ecs(data: bytes, question: bytes, bare: Edns) -> ClientSubnet:
    problem = ecs_problem(data)
    if problem is not None:
        raise FormErr(problem, question, bare)
    family, source, scope = struct.unpack_from("!HBB", data)
    return ClientSubnet(family, source, scope, data[4:])


def udp_limit(edns: Edns | None, server_max: int) -> int:
    """RFC 6891 §6.2.5: 512 without EDNS, else min(max(client, 512), server max)."""
    if edns is None:
        return MIN_UDP_PAYLOAD
    return min(max(edns.payload, MIN_UDP_PAYLOAD), server_max)


class PlainQuery(NamedTuple):
    """What the compiled path reads of a plain query (``read_plain``)."""

    qkey: bytes  # the lowered name with the type and class: the answer tables' key
    qend: int  # where the question ends
    do: int | None  # the DO bit (0 or 0x8000); None: no EDNS
    limit: int  # the size the answer must fit (RFC 6891 §6.2.5; TCP: 65535)
    ecs: bytes | None  # the ECS option's data, checked
    cookie: bool  # a COOKIE came, and server cookies are on: the answer carries one


def read_plain(wire: bytes, tcp: bool, server_max: int, cookies: bool = False) -> PlainQuery | None:
    """The common shape of query read from its bytes, or None.

    Only the common shape qualifies: at most MAX_PLAIN_QUERY bytes, QUERY opcode,
    one question, no records but at most one OPT with version 0 whose options are
    one well-formed COOKIE and/or one well-formed ECS. Everything else returns None
    and takes the reference path, which produces the same bytes (tests replay queries
    through both and compare). ``cookie_data`` reads a COOKIE's data.
    """
    n = len(wire)
    if n < 17 or n > MAX_PLAIN_QUERY or wire[2] & 0xF8:  # QR and OPCODE must be 0
        return None
    counts = wire[4:12]
    i = 12
    while True:
        if i >= n:
            return None
        length = wire[i]
        if length == 0:
            break
        if length > 63:
            return None
        i += length + 1
    qend = i + 5
    if i - 12 > 254:
        return None
    qkey = wire[12 : i + 1].lower() + wire[i + 1 : qend]
    if counts == b"\x00\x01\x00\x00\x00\x00\x00\x00":
        if qend != n:
            return None
        return PlainQuery(qkey, qend, None, TCP_LIMIT if tcp else MIN_UDP_PAYLOAD, None, False)
    if counts != b"\x00\x01\x00\x00\x00\x00\x00\x01":
        return None
    if qend + 11 > n:
        return None
    root, rtype, payload, ttl, rdlength = _OPT_FIXED_AT.unpack_from(wire, qend)
    if root or rtype != _TYPE_OPT or ttl & 0xFFFF0000 or qend + 11 + rdlength != n:
        return None  # not an OPT, or extended rcode / version set, or bytes left over
    ecs = None
    cookie = False
    if rdlength:
        start = qend + 11
        code, length = _OPTION_AT.unpack_from(wire, start) if rdlength >= 4 else (0, 0)
        if code == OPTION_ECS and rdlength == 4 + length:
            ecs = wire[start + 4 : n]  # the one option is an ECS: the common case
            if ecs_problem(ecs) is not None:
                return None
        else:
            plain = _plain_options(wire, start, n)
            if plain is None:
                return None
            ecs, cookie = plain
            ecs = ecs or None
            cookie = cookie and cookies
    limit = TCP_LIMIT if tcp else min(max(payload, MIN_UDP_PAYLOAD), server_max)
    return PlainQuery(qkey, qend, ttl & 0x8000, limit, ecs, cookie)


def _plain_options(wire: bytes, pos: int, end: int) -> tuple[bytes, bool] | None:
    """(the ECS data if there is one valid ECS, else b""; whether there is one COOKIE),
    or None for anything that needs the slow path."""
    ecs = b""
    cookie = False
    while pos < end:
        if pos + 4 > end:
            return None
        code = (wire[pos] << 8) | wire[pos + 1]
        length = (wire[pos + 2] << 8) | wire[pos + 3]
        data = wire[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if pos > end:
            return None
        if code == OPTION_COOKIE:
            if cookie or not (length == 8 or 16 <= length <= 40):
                return None
            cookie = True
        elif code == OPTION_ECS and not ecs and ecs_problem(data) is None:
            ecs = data
        else:
            return None
    return ecs, cookie


def cookie_data(wire: bytes, qend: int) -> bytes | None:
    """The COOKIE option's data of a query ``read_plain`` accepted (its OPT follows the
    question at ``qend``)."""
    pos, end = qend + 11, len(wire)
    while pos + 4 <= end:
        code = (wire[pos] << 8) | wire[pos + 1]
        length = (wire[pos + 2] << 8) | wire[pos + 3]
        if code == OPTION_COOKIE:
            return wire[pos + 4 : pos + 4 + length]
        pos += 4 + length
    return None
