"""PROXY protocol v2 (what dnsdist sends with ``useProxyProtocol``).

A trusted proxy prepends a binary header with the real client's address: to
every datagram over UDP, once at the start of the connection over TCP. Only
configured proxy addresses may send it (anyone else could claim any address),
and from them it is required, or the proxy itself would pass for the client.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER_LEN = 16
NEED_MORE = object()  # TCP: the header has not fully arrived yet


class ProxyTrust:
    """Which peers are proxies; remembers answers so the check costs a dict lookup."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            if len(self._seen) > 10_000:
                self._seen.clear()
            addr = ipaddress.ip_address(host.split("%")[0])
            known = self._seen[host] = any(addr in net for net in self.networks)
        return known


def parse(data: bytes) -> tuple[tuple[str, int] | None, int] | None | object:
    """Read a PROXY v2 header at the start of ``data``.

    Returns ``(source, header length)`` — source None for LOCAL (health checks:
    use the socket peer) — or None when the header is invalid, or ``NEED_MORE``
    when ``data`` holds a valid beginning but not the whole header.
    """
    if len(data) < HEADER_LEN:
        return NEED_MORE if SIGNATURE.startswith(data[:12]) else None
    if data[:12] != SIGNATURE:
        return None
    ver_cmd, fam, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF > 1:
        return None
    total = HEADER_LEN + length
    if len(data) < total:
        return NEED_MORE
    if ver_cmd & 0xF == 0 or fam >> 4 == 0:  # LOCAL, or UNSPEC family
        return None, total
    block = data[HEADER_LEN:total]
    if fam >> 4 == 1 and len(block) >= 12:
        src = socket.inet_ntop(socket.AF_INET, block[0:4])
        port = struct.unpack_from("!H", block, 8)[0]
    elif fam >> 4 == 2 and len(block) >= 36:
        src = socket.inet_ntop(socket.AF_INET6, block[0:16])
        port = struct.unpack_from("!H", block, 32)[0]
    else:
        return None
    return (src, port), total


def build(src: tuple[str, int], dst: tuple[str, int], tcp: bool) -> bytes:
    """A PROXY v2 header (for tests and tools)."""
    v6 = ":" in src[0]
    family = socket.AF_INET6 if v6 else socket.AF_INET
    block = (
        socket.inet_pton(family, src[0])
        + socket.inet_pton(family, dst[0])
        + struct.pack("!HH", src[1], dst[1])
    )
    fam = (0x20 if v6 else 0x10) | (0x01 if tcp else 0x02)
    return SIGNATURE + struct.pack("!BBH", 0x21, fam, len(block)) + block
