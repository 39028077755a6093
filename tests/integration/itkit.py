"""Shared pieces of the integration tests: the test zones, raw DNS messages for what dig
cannot send, and reading reply headers."""

from __future__ import annotations

import os
import shutil
import struct
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
EXAMPLE = (DATA / "example.zone").read_text()
SUB2 = (DATA / "sub2.example.zone").read_text()


def qname_wire(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes((len(label),)) + label.encode()
    return out + b"\x00"


def make_query(
    name: str = "www.example.",
    qtype: int = 1,
    *,
    ident: int = 0x1234,
    flags: int = 0x0100,
    qclass: int = 1,
    qdcount: int = 1,
    opt: bytes | None = None,
    extra_additional: int = 0,
) -> bytes:
    """A query message; ``opt`` is a full OPT RR appended to the additional section."""
    arcount = (1 if opt is not None else 0) + extra_additional
    header = struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, arcount)
    return header + qname_wire(name) + struct.pack("!HH", qtype, qclass) + (opt or b"")


def opt_rr(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(options)) + options


def edns_option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def header(reply: bytes) -> dict:
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", reply[:12])
    return {
        "id": ident,
        "qr": bool(flags & 0x8000),
        "opcode": (flags >> 11) & 0xF,
        "aa": bool(flags & 0x0400),
        "tc": bool(flags & 0x0200),
        "rd": bool(flags & 0x0100),
        "ra": bool(flags & 0x0080),
        "rcode": flags & 0xF,
        "qd": qd,
        "an": an,
        "ns": ns,
        "ar": ar,
    }


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def workers(pid: int) -> list[int]:
    """The worker processes of a ``dnspol serve`` supervisor: its generation processes'
    children."""
    return [worker for head in children(pid) for worker in children(head)]


def process_tree(pid: int) -> list[int]:
    """Every process below ``pid``."""
    out = children(pid)
    for child in list(out):
        out += process_tree(child)
    return out


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def need(command: str, package: str) -> str:
    """The path of a tool the tests need; scripts/test.sh installs it, so missing fails."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is not installed: scripts/test.sh installs it (apt-get install {package})"
        )
    return path
