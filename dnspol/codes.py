"""The DNS numbers dnspol speaks of: response codes and record types, one enum each.

Everything that names an rcode or a type uses these (as dnspython's ``dns.rcode`` and
``dns.rdatatype`` do); they are ints, so they compare, hash and pack as the numbers on
the wire. Which rcode an answer gets is decided in ``dnspol.answer`` alone.
"""

from __future__ import annotations

import enum


class Rcode(enum.IntEnum):
    """Response codes (RFC 1035 §4.1.1, RFC 6891 §9, RFC 7873 §8); above 15 they need
    the OPT record's extended bits."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    YXDOMAIN = 6  # RFC 6672 §2.2: a DNAME substitution too long
    NOTAUTH = 9  # RFC 8945 §5.2 (TSIG errors), RFC 5936 §2.2.1 (no such zone to transfer)
    BADVERS = 16
    BADSIG = 16  # the TSIG record's error field (RFC 8945 §5.2.2); shares 16 with BADVERS
    BADKEY = 17
    BADTIME = 18
    BADCOOKIE = 23

    @classmethod
    def label(cls, value: int) -> str:
        """The name metrics show for an rcode; ``other`` for one dnspol never sends."""
        member = cls._value2member_map_.get(value)
        return member.name if member is not None else "other"


class RRType(enum.IntEnum):
    """The record and query types dnspol treats by name (RFC 1035, 3596, 2782, 6672,
    6891, 4034, 1995, 5936, 8482, 8659, 9460); any other type is just a number."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    NAPTR = 35
    DNAME = 39
    OPT = 41
    DS = 43
    RRSIG = 46
    NSEC = 47
    DNSKEY = 48
    NSEC3 = 50
    SVCB = 64
    HTTPS = 65
    IXFR = 251
    AXFR = 252
    ANY = 255
    CAA = 257
