"""Building response messages on the reference path: flags, sizes, and the rcode of a
lookup's outcome (``rcode_for``; the handler names the rcode of a protocol error:
FORMERR, BADVERS, NOTIMP, REFUSED, BADCOOKIE, SERVFAIL).

Messages are packed by ``dnspol.packer`` with the query's own question bytes;
names compress against the question's lowercased labels, so owners come out in
the client's letter case (RFC 4343), and the packed bytes depend only on what
decides the answer — which is what lets ``dnspol.answers`` compile them at load.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from dnslib import RR, EDNSOption

from dnspol.codes import Rcode, RRType
from dnspol.packer import pack_message
from dnspol.wire import Query
from dnspol.zones.lookup import LookupResult, Outcome
from dnspol.zones.model import Rec

OPTION_EDE = 15
EDE_PROHIBITED = 18
KEEPALIVE_TIMEOUT = 300  # units of 100 ms: 30 s, as BIND (RFC 7828)
UNLIMITED = 65535  # the size limit over TCP, and of compiled answers
_OUTCOME_RCODES = {Outcome.NXDOMAIN: Rcode.NXDOMAIN, Outcome.YXDOMAIN: Rcode.YXDOMAIN}


def rcode_for(outcome: Outcome) -> int:
    """The rcode of a lookup's outcome (RFC 1035 §4.1.1, RFC 6672 §2.2)."""
    return _OUTCOME_RCODES.get(outcome, Rcode.NOERROR)


def flags_word(query_flags: int, rcode: int, aa: bool, tc: bool = False) -> int:
    """QR=1; OPCODE, RD and CD copied; AA as given; RA, Z and AD clear (RFC 1035, 4035)."""
    return (
        0x8000
        | (query_flags & 0x7800)  # opcode
        | (0x0400 if aa else 0)
        | (0x0200 if tc else 0)
        | (query_flags & 0x0100)  # RD
        | (query_flags & 0x0010)  # CD
        | (rcode & 0xF)
    )


def build(
    query: Query,
    rcode: int,
    result: LookupResult | None = None,
    *,
    limit: int,
    server_max: int,
    aa: bool = False,
    ttl_cap: int | None = None,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """Pack a full response; if it does not fit ``limit``, drop what may go, then TC."""
    opt = _opt(query, rcode, server_max, options)
    answer = authority = additional = ()
    if result is not None:
        answer, authority, additional = (
            _capped(result.answer, ttl_cap),
            _capped(result.authority, ttl_cap),
            _capped(result.additional, ttl_cap),
        )
    wire = _pack(query, flags_word(query.flags, rcode, aa), answer, authority, additional, opt)
    if len(wire) <= limit:
        return wire
    if additional and not (result is not None and result.glue_required):
        # RFC 2181 §9: additional data may be dropped without TC
        wire = _pack(query, flags_word(query.flags, rcode, aa), answer, authority, (), opt)
        if len(wire) <= limit:
            return wire
    # RFC 2181 §9 / RFC 6891 §7: empty TC reply with the question and OPT kept
    return _pack(query, flags_word(query.flags, rcode, aa, tc=True), (), (), (), opt)


def error(query: Query, rcode: int, server_max: int, options=()) -> bytes:
    """An answer-less reply (REFUSED, NOTIMP, FORMERR with a question, BADVERS)."""
    return build(query, rcode, limit=65535, server_max=server_max, options=options)


def header_only(ident: int, query_flags: int, rcode: int) -> bytes:
    """A reply with no question at all (FORMERR when not even that could be read)."""
    return struct.pack("!HHHHHH", ident, flags_word(query_flags, rcode, aa=False), 0, 0, 0, 0)


def ede_option(code: int, text: str = "") -> tuple[int, bytes]:
    return OPTION_EDE, struct.pack("!H", code) + text.encode()


def _opt(query: Query, rcode: int, server_max: int, options) -> RR | None:
    edns = query.edns
    if edns is None:
        return None
    ttl = ((rcode >> 4) << 24) | (0x8000 if edns.do else 0)
    opts = [EDNSOption(code, data) for code, data in options]
    return RR(rtype=RRType.OPT, rclass=server_max, ttl=ttl, rdata=opts)


def _capped(rrs: list[Rec], cap: int | None) -> Iterable[Rec]:
    if cap is None or all(rr.ttl <= cap for rr in rrs):
        return rrs
    return [rr._replace(ttl=min(rr.ttl, cap)) for rr in rrs]


def _pack(query: Query, flags: int, answer, authority, additional, opt: RR | None) -> bytes:
    # the query's own spelling of the question (RFC 1035 §4.1.2), compressed against
    return pack_message(
        query.id, flags, query.qname, query.question, answer, authority, additional, opt
    )
