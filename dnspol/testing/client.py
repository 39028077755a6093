"""Asking a dnspol server things the way the code under test will: real ``dig``,
dnspython messages and raw bytes.

This module owns the client side of the test kit: running the real ``dig``
(``dig``) and reading its default output into a ``DigResult`` (``parse_dig``),
one query as a dnspython ``dns.message.Message`` (``query``: no text to parse,
so nothing changes when dig's output does), and sending one raw message over
UDP or TCP (``exchange``) for what neither can send. It knows nothing about
how the server runs; ``Server.dig``, ``Server.query`` and ``Server.exchange``
call these with the server's address.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from typing import NamedTuple

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype

from dnspol.testing.errors import DigError, QueryError

__all__ = [
    "DigResult",
    "Edns",
    "Question",
    "Record",
    "dig",
    "exchange",
    "parse_dig",
    "query",
    "txt_strings",
]


# --------------------------------------------------------------------------- dig results


class Record(NamedTuple):
    """One resource record as dig prints it; ``data`` is the presentation text."""

    name: str
    ttl: int
    rclass: str
    type: str
    data: str


class Question(NamedTuple):
    name: str
    rclass: str
    type: str


@dataclass(frozen=True)
class Edns:
    """The OPT pseudo-section of a response."""

    version: int
    flags: frozenset[str]
    udp: int
    options: tuple[tuple[str, str], ...] = ()  # (NAME, text) as dig prints them

    def option(self, name: str) -> str | None:
        """Text of the first option called ``name`` (``"EDE"``, ``"CLIENT-SUBNET"``), or None."""
        for key, text in self.options:
            if key.upper() == name.upper():
                return text
        return None


@dataclass(frozen=True)
class DigResult:
    """A parsed dig response; ``raw`` is dig's whole output."""

    raw: str = field(repr=False)
    id: int
    opcode: str
    rcode: str
    flags: frozenset[str]
    question: tuple[Question, ...]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    edns: Edns | None
    size: int | None = None  # MSG SIZE rcvd
    transport: str | None = None  # "UDP" | "TCP", from dig's SERVER line
    truncated_retry: bool = False  # dig got TC=1 over UDP and asked again over TCP

    @property
    def aa(self) -> bool:
        return "aa" in self.flags

    @property
    def tc(self) -> bool:
        return "tc" in self.flags

    @property
    def rd(self) -> bool:
        return "rd" in self.flags

    @property
    def ra(self) -> bool:
        return "ra" in self.flags

    @property
    def addresses(self) -> list[str]:
        """A and AAAA data in the answer section, in answer order."""
        return [r.data for r in self.answer if r.type in ("A", "AAAA")]

    @property
    def texts(self) -> list[str]:
        """TXT records of the answer section, each record's strings joined."""
        return ["".join(txt_strings(r.data)) for r in self.answer if r.type == "TXT"]

    def records(self, rtype: str, section: str = "answer") -> list[Record]:
        """Records of one type in a section (``answer``, ``authority``, ``additional``)."""
        return [r for r in getattr(self, section) if r.type == rtype.upper()]

    def data(self, rtype: str | None = None) -> list[str]:
        """Answer data strings, optionally of one type only."""
        return [r.data for r in self.answer if rtype is None or r.type == rtype.upper()]

    def __str__(self) -> str:
        return self.raw


_HEADER_RE = re.compile(r";; ->>HEADER<<- opcode: (\S+), status: (\S+), id: (\d+)")
_FLAGS_RE = re.compile(r";; flags:([^;]*);")
_EDNS_RE = re.compile(r"; EDNS: version: (\d+), flags:([^;]*); udp: (\d+)")
_SIZE_RE = re.compile(r";; MSG SIZE\s+rcvd: (\d+)")
_SERVER_RE = re.compile(r";; SERVER: \S+ \((UDP|TCP)\)")
_SECTIONS = {
    "QUESTION": "question",
    "ANSWER": "answer",
    "AUTHORITY": "authority",
    "ADDITIONAL": "additional",
    "OPT PSEUDOSECTION": "opt",
}


def parse_dig(raw: str) -> DigResult:
    """Parse dig's default output; with several replies (TC then TCP) the last one counts."""
    starts = [m.start() for m in re.finditer(r"^;; Got answer:", raw, re.MULTILINE)]
    if not starts:
        raise DigError(_dig_failure(raw), raw)
    text = raw[starts[-1] :]
    header = _HEADER_RE.search(text)
    flags_m = _FLAGS_RE.search(text)
    if header is None or flags_m is None:
        raise DigError("cannot read dig's header line", raw)
    sections: dict[str, list[str]] = {k: [] for k in _SECTIONS.values()}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(";; ") and line.rstrip().endswith("SECTION:"):
            title = line[3:].rstrip()[:-1].removesuffix(" SECTION")
            current = _SECTIONS.get(title)
            continue
        if not line.strip() or (line.startswith(";;") and current != "opt"):
            current = None if not line.strip() else current
            continue
        if current is not None:
            sections[current].append(line)
    size = _SIZE_RE.search(text)
    server = _SERVER_RE.search(text)
    return DigResult(
        raw=raw,
        id=int(header.group(3)),
        opcode=header.group(1),
        rcode=header.group(2),
        flags=frozenset(flags_m.group(1).split()),
        question=tuple(_question(line) for line in sections["question"]),
        answer=tuple(_record(line) for line in sections["answer"]),
        authority=tuple(_record(line) for line in sections["authority"]),
        additional=tuple(_record(line) for line in sections["additional"]),
        edns=_edns(sections["opt"]),
        size=int(size.group(1)) if size else None,
        transport=server.group(1) if server else None,
        truncated_retry=";; Truncated, retrying in TCP mode." in raw,
    )


def _question(line: str) -> Question:
    parts = line.lstrip(";").split()
    if len(parts) < 3:
        raise DigError(f"cannot read question line {line!r}")
    return Question(parts[0], parts[1], parts[2])


def _record(line: str) -> Record:
    parts = line.split(None, 4)
    if len(parts) < 4:
        raise DigError(f"cannot read record line {line!r}")
    data = parts[4].strip() if len(parts) > 4 else ""
    return Record(parts[0], int(parts[1]), parts[2], parts[3], data)


def _edns(lines: list[str]) -> Edns | None:
    if not lines:
        return None
    head = _EDNS_RE.search(lines[0])
    if head is None:
        return None
    options = []
    for line in lines[1:]:
        name, _, text = line.lstrip("; ").partition(":")
        options.append((name.strip(), text.strip()))
    return Edns(
        version=int(head.group(1)),
        flags=frozenset(head.group(2).split()),
        udp=int(head.group(3)),
        options=tuple(options),
    )


def _dig_failure(raw: str) -> str:
    lines = [line for line in raw.splitlines() if line.startswith(";;") or "error" in line]
    return "dig got no answer: " + (" / ".join(lines[-3:]) if lines else raw.strip()[-300:])


def txt_strings(data: str) -> list[str]:
    """The character-strings of TXT presentation data (``"a b" "c"`` → ``["a b", "c"]``)."""
    out: list[str] = []
    i = 0
    while i < len(data):
        if data[i].isspace():
            i += 1
            continue
        buf = bytearray()
        quoted = data[i] == '"'
        i += quoted
        while i < len(data):
            ch = data[i]
            if quoted and ch == '"':
                i += 1
                break
            if not quoted and ch.isspace():
                break
            if ch == "\\" and i + 1 < len(data):
                if data[i + 1 : i + 4].isdigit() and len(data[i + 1 : i + 4]) == 3:
                    buf.append(int(data[i + 1 : i + 4]))
                    i += 4
                    continue
                buf += data[i + 1].encode()
                i += 2
                continue
            buf += ch.encode()
            i += 1
        out.append(buf.decode("utf-8", "replace"))
    return out


def dig(
    server: str,
    port: int,
    name: str,
    qtype: str = "A",
    *options: str,
    source: str | None = None,
    tcp: bool | None = None,
    timeout: float = 2.0,
) -> DigResult:
    """Run the real ``dig @server -p port name qtype options...`` and parse its output.

    ``options`` are dig's own (``"+norec"``, ``"+bufsize=512"``, ``"-c"``, ``"CH"``);
    they come after the kit's defaults (``+time``, ``+tries=1``), so they win.
    ``source`` sends from that address (``dig -b``); ``tcp=True`` adds ``+tcp`` and
    ``tcp=False`` adds ``+notcp`` (last, so they win); None leaves it to dig.
    Raises ``DigError`` when dig gets no answer.
    """
    exe = shutil.which("dig")
    if exe is None:
        raise DigError("dig is not installed (Debian/Ubuntu: apt-get install bind9-dnsutils)")
    wait = max(1, round(timeout))
    argv = [exe, "-r", f"@{server}", "-p", str(port)]
    if source:
        argv += ["-b", source]
    argv += [name, qtype, f"+time={wait}", "+tries=1", *options]
    if tcp is not None:
        argv.append("+tcp" if tcp else "+notcp")
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=max(60, wait * 3 + 5), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DigError(f"dig did not finish: {' '.join(argv)}") from exc
    raw = done.stdout + (done.stderr if done.stderr.strip() else "")
    if done.returncode == 0 and ";; Got answer:" not in raw:
        raise DigError(
            "dig answered in a format the kit does not read: leave out options such as "
            "+short, +noall, +yaml or +multiline (the result has every section anyway)",
            raw,
            0,
        )
    if done.returncode != 0 and ";; Got answer:" not in raw:
        raise DigError(
            f"{_dig_failure(raw)} (dig exit {done.returncode}: {' '.join(argv[1:])})",
            raw,
            done.returncode,
        )
    return parse_dig(raw)


# --------------------------------------------------------------------------- dnspython


def query(
    host: str,
    port: int,
    name: str,
    qtype: str | int = "A",
    *,
    source: str | None = None,
    ecs: str | dns.edns.ECSOption | None = None,
    tcp: bool = False,
    rd: bool = False,
    do: bool = False,
    cd: bool = False,
    edns: bool = True,
    payload: int = 1232,
    options: tuple[dns.edns.Option, ...] = (),
    rdclass: str | int = "IN",
    timeout: float = 2.0,
) -> dns.message.Message:
    """Ask ``host``:``port`` one question with dnspython; return the reply as it came.

    Defaults are an authoritative server's usual client: RD clear, EDNS(0) with a
    1232-byte payload (as dig sends). ``source`` sends from that address; ``ecs``
    adds EDNS Client Subnet (``"192.0.2.0/24"``, or a ``dns.edns.ECSOption``);
    ``do``, ``cd`` and ``rd`` set those bits; ``edns=False`` sends no OPT record;
    ``options`` are more EDNS options. Over UDP a reply with TC=1 is returned as it
    is (ask again with ``tcp=True``). Raises ``QueryError`` when no reply comes.
    """
    extra = list(options)
    if ecs is not None:
        extra.append(ecs if isinstance(ecs, dns.edns.ECSOption) else _ecs_option(ecs))
    message = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(qtype),
        dns.rdataclass.RdataClass.make(rdclass),
        use_edns=0 if edns or extra or do else False,
        payload=payload,
        want_dnssec=do,
        options=extra or None,
    )
    message.flags &= ~dns.flags.RD
    message.flags |= (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    try:
        if tcp:
            return dns.query.tcp(message, host, timeout=timeout, port=port, source=source)
        return dns.query.udp(message, host, timeout=timeout, port=port, source=source)
    except dns.exception.Timeout:
        raise QueryError(f"no answer from {host} port {port} within {timeout} s") from None
    except (EOFError, ConnectionError) as exc:
        raise QueryError(
            f"no answer from {host} port {port}: {exc or 'connection closed'}"
        ) from None
    except dns.exception.DNSException as exc:
        raise QueryError(f"the reply from {host} port {port} is not a DNS message: {exc}") from None


def _ecs_option(text: str) -> dns.edns.ECSOption:
    address, _, length = text.partition("/")
    return dns.edns.ECSOption(address, int(length) if length else None)


# --------------------------------------------------------------------------- raw messages


def exchange(
    host: str,
    port: int,
    wire: bytes,
    *,
    tcp: bool = False,
    timeout: float = 2.0,
    source: str | None = None,
) -> bytes | None:
    """Send raw message bytes to ``host``:``port``; return the raw reply, or None when none came.

    Over TCP the 2-byte length is added and stripped here; None means the
    server closed the connection (or stayed silent) without answering.
    ``source`` sends from that address.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        try:
            if tcp:
                sock.connect((host, port))
                sock.sendall(len(wire).to_bytes(2, "big") + wire)
                head = _recv_exact(sock, 2)
                if head is None:
                    return None
                return _recv_exact(sock, int.from_bytes(head, "big"))
            sock.sendto(wire, (host, port))
            return sock.recv(65535)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            return None


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
