"""DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018).

A client sends an 8-byte client cookie; the server answers with it and a
16-byte server cookie: version 1, three reserved zero bytes, a 32-bit
timestamp, and SipHash-2-4 (keyed with the server secret) over the client
cookie, version, reserved bytes, timestamp and the client's address. A client
that returns a valid server cookie has proved it receives answers at its
address: it is not spoofed, so response-rate limiting lets it through
(``dnspol.ratelimit``), and ``require: true`` answers BADCOOKIE to UDP clients
that send a client cookie without a valid server cookie (BIND's
``require-server-cookie``).

This is the format BIND 9.18 and Knot use, so servers of either kind behind one
anycast address, given the same secret, accept each other's cookies (the test
checks byte equality with BIND). SipHash-2-4 comes from the ``siphash24``
package: the standard library has none, and a Python SipHash costs ~15 µs.

Secrets: the first of ``server.cookies.secrets`` makes cookies, every one is
accepted, so a secret can be rotated by a reload that puts the new one first.
Without configured secrets each loaded configuration draws a random one
(shared by its workers).

This module owns the server cookie: making, checking, and the COOKIE option of
an answer. The handler calls ``answer_option``; the rate limiter calls ``valid``.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from siphash24 import siphash24

from dnspol.policy.yamlnodes import Node, Reader

OPTION_COOKIE = 10
VERSION = 1
CLIENT_LEN = 8
SERVER_LEN = 16  # the RFC 9018 format
SECRET_LEN = 16  # SipHash-2-4's key
MAX_AGE = 3600  # RFC 9018 §4.3: a server cookie older than an hour is not valid
MAX_AHEAD = 300  # ... nor one from more than five minutes in the future
REFRESH_AFTER = 1800  # a valid cookie older than half an hour is replaced
KEYS = ("secrets", "require")


@dataclass(frozen=True)
class CookieConfig:
    """The compiled ``server.cookies`` section."""

    secrets: tuple[bytes, ...] = field(default_factory=lambda: (os.urandom(SECRET_LEN),))
    require: bool = False


def read_config(node: Node, reader: Reader) -> CookieConfig | None:
    """``server.cookies``: ``secrets`` (32 hex digits each) and ``require``."""
    entries = reader.mapping(node, "cookies", KEYS)
    if entries is None:
        return None
    values: dict[str, object] = {}
    if "secrets" in entries:
        secrets = []
        for text, item in reader.texts(entries["secrets"], "cookies.secrets"):
            try:
                secret = bytes.fromhex(text)
            except ValueError:
                secret = b""
            if len(secret) != SECRET_LEN:
                reader.problem(item, "a cookie secret is 32 hex digits (16 bytes)")
                continue
            secrets.append(secret)
        if secrets:
            values["secrets"] = tuple(secrets)
    if "require" in entries:
        require = reader.boolean(entries["require"], "cookies.require")
        if require is not None:
            values["require"] = require
    return CookieConfig(**values)  # type: ignore[arg-type]


def json_schema() -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "secrets": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$"},
                "description": "the first makes server cookies; all are accepted",
            },
            "require": {
                "type": "boolean",
                "description": "BADCOOKIE to UDP queries with a client cookie but no valid "
                "server cookie",
            },
        },
    }


def address_bytes(client: str) -> bytes:
    if ":" in client:
        return socket.inet_pton(socket.AF_INET6, client.split("%")[0])
    return socket.inet_aton(client)


def make(secret: bytes, client_cookie: bytes, address: bytes, now: int) -> bytes:
    """A server cookie (RFC 9018 §4.2)."""
    head = struct.pack("!B3xI", VERSION, now & 0xFFFFFFFF)
    return head + siphash24(client_cookie + head + address, key=secret).digest()


def valid(config: CookieConfig, cookie: bytes, address: bytes, now: int) -> bool:
    """Whether a COOKIE option's data carries a server cookie this server made."""
    if len(cookie) != CLIENT_LEN + SERVER_LEN or cookie[8] != VERSION or cookie[9:12] != b"\0\0\0":
        return False
    stamp = int.from_bytes(cookie[12:16])
    age = (now - stamp + 0x80000000) % 0x100000000 - 0x80000000  # serial arithmetic
    if not -MAX_AHEAD <= age <= MAX_AGE:
        return False
    client, head, digest = cookie[:8], cookie[8:16], cookie[16:]
    return any(siphash24(client + head + address, key=s).digest() == digest for s in config.secrets)


@dataclass(frozen=True)
class Verdict:
    """What the handler does with a query's COOKIE."""

    option: tuple[int, bytes] | None  # the COOKIE option of the answer
    bad: bool  # answer BADCOOKIE instead (``require`` and UDP)


NO_COOKIE = Verdict(None, False)


def judge(
    config: CookieConfig | None,
    cookie: bytes | None,
    client: str,
    tcp: bool,
    clock: Callable[[], float] = time.time,
) -> Verdict:
    """RFC 7873 §5.2: the cookie to answer with, and whether to answer BADCOOKIE."""
    if config is None or cookie is None:
        return NO_COOKIE
    now = int(clock())
    address = address_bytes(client)
    good = valid(config, cookie, address, now)
    if good and (now - int.from_bytes(cookie[12:16])) % 0x100000000 < REFRESH_AFTER:
        server_cookie = cookie[8:]  # still fresh: no need for a new one
    else:
        server_cookie = make(config.secrets[0], cookie[:8], address, now)
    option = (OPTION_COOKIE, cookie[:8] + server_cookie)
    return Verdict(option, bad=config.require and not good and not tcp)
