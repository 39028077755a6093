"""TSIG (RFC 8945): the server's keys, checking a signed request, signing its answers.

This module owns everything TSIG: the keys of the configuration (``TsigKey``, read from
``keys:``), finding and checking the TSIG record of a request (``check``), the error
answers RFC 8945 §5.2 asks for (BADKEY, BADSIG, BADTIME, rcode NOTAUTH), and signing
replies (``Signer``), one message or each message of a zone transfer in turn (§5.3.1:
every message after the first is signed over the previous MAC, itself and its timers).
The MAC arithmetic is dnspython's ``dns.tsig``; dnspol only finds the bytes it covers.

Only queries that carry a TSIG record pay for any of this: the compiled path never sees
one (``wire.read_plain`` takes no additional record but OPT).
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dnspython is imported when a TSIG is first seen: the server starts faster
    import dns.name
    import dns.tsig
    from dns.rdtypes.ANY.TSIG import TSIG

from dnspol.codes import Rcode
from dnspol.wire import skip_name

TYPE_TSIG = 250
CLASS_ANY = 255
FUDGE = 300  # seconds of clock difference allowed (RFC 8945 §10: 300 recommended)
ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")
TSIG_ERRORS = {Rcode.BADSIG: "badsig", Rcode.BADKEY: "badkey", Rcode.BADTIME: "badtime"}
MIN_SECRET_BYTES = 16  # RFC 8945 §6: at least as long as half the hash; 128 bits here


@dataclass(frozen=True)
class TsigKey:
    """One key of ``keys:``: its name as secondaries spell it, algorithm, secret, and the
    scope a transfer signed with it receives (None: the default scope)."""

    name: str  # lowercase, with the trailing dot
    algorithm: str  # one of ALGORITHMS
    secret: bytes = field(repr=False)
    scope: str | None = None
    where: str = ""  # file:line of its declaration

    @property
    def dns_key(self) -> dns.tsig.Key:
        import dns.tsig

        return dns.tsig.Key(self.name, self.secret, self.algorithm)


def read_secret(text: str) -> bytes:
    """A secret as BIND's ``tsig-keygen`` and Knot's ``keymgr`` print it: base64, or the
    whole ``key "name" { algorithm ...; secret "..."; };`` block. ValueError if neither."""
    if "secret" in text:
        quoted = text.split("secret", 1)[1].split('"')
        if len(quoted) >= 3:
            text = quoted[1]
    try:
        secret = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not base64 (as tsig-keygen prints it)") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret is {len(secret)} bytes; use at least {MIN_SECRET_BYTES}")
    return secret


# --- checking a request ---------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A request whose TSIG checked out: the key, and the MAC its answer must cover."""

    key: TsigKey
    request_mac: bytes


@dataclass(frozen=True)
class Rejected:
    """A request with a TSIG record that failed (RFC 8945 §5.2): the TSIG error to answer
    with, the key when the MAC was good (BADTIME answers are signed), and the record."""

    error: int  # Rcode.BADSIG, BADKEY or BADTIME
    owner: dns.name.Name
    rdata: TSIG
    key: TsigKey | None = None

    @property
    def reason(self) -> str:
        """badsig, badkey or badtime (the metrics' and the log's word)."""
        return TSIG_ERRORS[self.error]


Check = Signed | Rejected | None  # None: the request is not signed


def check(wire: bytes, keys: Mapping[str, TsigKey], now: float | None = None) -> Check:
    """The request's TSIG verdict. A request whose TSIG record is malformed or not last
    raises ``MalformedTsig`` or dnspython's ``FormError`` (the caller answers FORMERR)."""
    found = _find_tsig(wire)
    if found is None:
        return None
    import dns.name
    import dns.tsig

    start, owner, rdata = found
    key = keys.get(owner.to_text().lower())
    if key is None or dns.name.from_text(key.algorithm) != rdata.algorithm:
        return Rejected(Rcode.BADKEY, owner, rdata)  # §5.2.1: unknown key or algorithm
    when = int(time.time() if now is None else now)
    try:
        dns.tsig.validate(wire, key.dns_key, owner, rdata, when, b"", start)
    except dns.tsig.BadTime:
        return Rejected(Rcode.BADTIME, owner, rdata, key)  # §5.2.3, after the MAC
    except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        return Rejected(Rcode.BADSIG, owner, rdata)  # §5.2.2
    except dns.tsig.PeerError:  # a request with an error code set: not a valid request
        return Rejected(Rcode.BADSIG, owner, rdata)
    return Signed(key, rdata.mac)


class MalformedTsig(ValueError):
    """A TSIG record that is cut short or not the message's last record."""


def _find_tsig(wire: bytes) -> tuple[int, dns.name.Name, TSIG] | None:
    """(offset, owner, rdata) of the TSIG record, which must be the last one (RFC 8945
    §5.1); None when the message has none."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    if ar == 0:
        return None
    offset = 12
    for _ in range(qd):
        offset = skip_name(wire, offset) + 4
    start = offset
    for index in range(an + ns + ar):
        start = offset
        end_of_owner = skip_name(wire, offset)
        if end_of_owner + 10 > len(wire):
            raise MalformedTsig("record runs past the end of the message")
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", wire, end_of_owner)
        offset = end_of_owner + 10 + rdlength
        if offset > len(wire):
            raise MalformedTsig("record data runs past the end of the message")
        if rtype == TYPE_TSIG and index != an + ns + ar - 1:
            raise MalformedTsig("TSIG is not the last record")
    if rtype != TYPE_TSIG:
        return None
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    owner, used = dns.name.from_wire(wire, start)
    rdata_at = start + used + 10
    rdata = dns.rdata.from_wire(
        dns.rdataclass.ANY, dns.rdatatype.TSIG, wire, rdata_at, offset - rdata_at
    )
    return start, owner, rdata  # type: ignore[return-value]


# --- answering --------------------------------------------------------------------------------


def error_reply(reply: bytes, rejected: Rejected, now: float | None = None) -> bytes:
    """``reply`` (rcode NOTAUTH, the question echoed) with the TSIG record RFC 8945 §5.2
    asks for: unsigned with an empty MAC for BADKEY and BADSIG; for BADTIME signed, with
    the request's time and the server's own in Other Data (§5.2.3)."""
    import dns.tsig

    ident = int.from_bytes(reply[:2], "big")
    template = rejected.rdata.replace(mac=b"", original_id=ident, error=rejected.error, other=b"")
    if rejected.error == Rcode.BADTIME and rejected.key is not None:
        server_time = int(time.time() if now is None else now)
        template = template.replace(other=server_time.to_bytes(6, "big"))
        signed, _ = dns.tsig.sign(
            reply,
            rejected.key.dns_key,
            template,
            rejected.rdata.time_signed,
            rejected.rdata.mac,
        )
        return _append(reply, rejected.owner, signed)
    return _append(reply, rejected.owner, template)


class Signer:
    """Signs the answers to one signed request: one message, or each message of a
    transfer in order (the MAC of each covers the one before, RFC 8945 §5.3.1)."""

    def __init__(self, signed: Signed) -> None:
        import dns.name

        self.key = signed.key
        self._dns_key = signed.key.dns_key
        self._owner = dns.name.from_text(signed.key.name)
        self._request_mac = signed.request_mac
        self._ctx = None  # the running digest after the first message

    def sign(self, message: bytes, now: float | None = None) -> bytes:
        import dns.rdataclass
        import dns.rdatatype
        import dns.tsig
        from dns.rdtypes.ANY.TSIG import TSIG

        ident = int.from_bytes(message[:2], "big")
        when = int(time.time() if now is None else now)
        template = TSIG(
            dns.rdataclass.ANY,
            dns.rdatatype.TSIG,
            self._dns_key.algorithm,
            when,
            FUDGE,
            b"",
            ident,
            0,
            b"",
        )
        first = self._ctx is None
        rdata, self._ctx = dns.tsig.sign(
            message,
            self._dns_key,
            template,
            when,
            self._request_mac if first else None,
            self._ctx,
            multi=True,
        )
        return _append(message, self._owner, rdata)

    @property
    def overhead(self) -> int:
        """Bytes a TSIG record adds to a message (to keep messages under their limit)."""
        import dns.tsig

        size = dns.tsig.mac_sizes[self._dns_key.algorithm]
        return len(self._owner.to_wire()) + len(self._dns_key.algorithm.to_wire()) + 26 + size


def _append(message: bytes, owner: dns.name.Name, rdata: TSIG) -> bytes:
    """``message`` with one more additional record: the TSIG (never compressed, §4.2)."""
    data = rdata.to_wire()
    record = owner.to_wire() + struct.pack("!HHIH", TYPE_TSIG, CLASS_ANY, 0, len(data)) + data
    arcount = int.from_bytes(message[10:12], "big") + 1
    return message[:10] + arcount.to_bytes(2, "big") + message[12:] + record


__all__ = [
    "ALGORITHMS",
    "Check",
    "Rejected",
    "Signed",
    "Signer",
    "TsigKey",
    "check",
    "error_reply",
    "read_secret",
]
