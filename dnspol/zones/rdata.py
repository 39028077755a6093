"""dnspython's rdata as dnslib ``RD`` objects, the server's wire codec, and names between them.

This module owns the one conversion the loader makes from dnspython to what
the server packs: dnslib's own class when it packs back to exactly the same
bytes (and always for the types whose fields the server reads), else a
generic ``RD`` that packs the raw RDATA; and packing an ``RD`` uncompressed,
which is how two records' data are compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dnslib import QTYPE, RD, DNSBuffer
from dnslib.dns import RDMAP

from dnspol.names import Name

if TYPE_CHECKING:  # dnspython is imported by the functions that read it: the server
    import dns.name  # packs with this module and starts without dnspython (0.1 s)
    import dns.rdata

__all__ = ["Unrepresentable", "pack_uncompressed", "to_dns_name", "to_dnslib", "to_name"]

# Types whose fields the server reads (SOA timers, CNAME/NS/MX/SRV targets):
# they must become dnslib's own class, never a raw blob.
_FIELDS_NEEDED = frozenset({QTYPE.SOA, QTYPE.NS, QTYPE.CNAME, QTYPE.MX, QTYPE.SRV})

# dnslib compresses the names inside these, which RFC 3597 §4 (and RFC 3403
# §4.1 for NAPTR) forbids; packed as raw RDATA they stay uncompressed.
_PACKED_AS_RAW = frozenset({QTYPE.NAPTR, QTYPE.RP})


class Unrepresentable(Exception):
    """dnslib cannot hold this rdata with the fields the server needs."""


def to_dnslib(rdata: dns.rdata.Rdata) -> object:
    """The dnslib RD for ``rdata``: dnslib's own class when it round-trips the
    bytes exactly, else a generic ``RD`` that packs the raw RDATA."""
    rtype = int(rdata.rdtype)
    wire = rdata.to_wire()  # uncompressed, in the file's spelling
    rd_class = RDMAP.get(QTYPE[rtype], RD)
    if rd_class is RD or rtype in _PACKED_AS_RAW:
        return RD(wire)
    rd, why_not = _parse_exactly(rd_class, wire)
    if rd is not None:
        return rd
    if rtype in _FIELDS_NEEDED:
        import dns.rdatatype

        type_name = dns.rdatatype.to_text(rdata.rdtype)
        raise Unrepresentable(f"{type_name} {rdata.to_text()}: cannot be encoded: {why_not}")
    return RD(wire)


def _parse_exactly(rd_class: type, wire: bytes) -> tuple[object | None, str]:
    """dnslib's object for ``wire`` if it packs back to exactly ``wire``, else why not."""
    try:
        rd = rd_class.parse(DNSBuffer(wire), len(wire))
        if pack_uncompressed(rd) == wire:
            return rd, ""
        return None, "dnslib does not pack it back to the same bytes"
    except Exception as exc:  # dnslib raises assorted types on data it cannot hold
        return None, f"{type(exc).__name__}: {exc}"


class _UncompressedBuffer(DNSBuffer):
    encode_name = DNSBuffer.encode_name_nocompress


def pack_uncompressed(rd: Any) -> bytes:
    buf = _UncompressedBuffer()
    rd.pack(buf)
    return bytes(buf.data)


def to_name(name: dns.name.Name) -> Name:
    return tuple(label.lower() for label in name.labels[:-1])


def to_dns_name(name: Name) -> dns.name.Name:
    import dns.name

    return dns.name.Name([*name, b""])
