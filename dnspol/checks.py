"""Health checks: the ``checks:`` section compiled, and the board every worker reads.

This module owns what a check *is* (``Check``: kind, target, timing, hysteresis), how the
YAML section becomes checks (``compile_checks``), and where their verdicts live while the
server runs (``HealthBoard``). Running the probes is ``dnspol.checker``'s job.

The board is one anonymous shared memory map, made when the configuration loads, so every
process forked from the loaded configuration (a generation's workers) maps the same page:

    bytes 0-7   version: a counter bumped after every change (native unsigned 64 bits)
    byte 8 + i  check i: 1 up, 0 down

A change is one byte written, then the counter bumped. A worker's decider keeps the bits
it computed with the version it read and recomputes when the counter moved (one int read
per query that passes through a rule reading health, none otherwise). Every worker reads
the same page, so a change is seen by all of them from the same instant: the next
decision in any process uses it — the moment of the switch is the byte write, as a
reload's is the baton handed over. Answers decided in the microseconds before may still
leave after it (a reload drains those; a health change does not wait for them).
"""

from __future__ import annotations

import mmap
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from dnspol.names import Name
from dnspol.policy.yamlnodes import Node, Reader, did_you_mean

KINDS = ("tcp", "http", "https", "dns")
COMMON_KEYS = ("kind", "interval", "timeout", "rise", "fall", "source")
KIND_KEYS = {
    "tcp": ("target", "records", "port"),
    "http": ("url", "status", "body", "host"),
    "https": ("url", "status", "body", "host", "verify"),
    "dns": ("server", "name", "type", "rcode", "answer"),
}
CHECK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_RISE = 2
DEFAULT_FALL = 3
MAX_CHECKS = 65536
MAX_MEMBERS = 8  # addresses of one record-set check: each subset is compiled as a scope
HEADER = 8  # the version counter


@dataclass(frozen=True, slots=True)
class Check:
    """One named check, compiled. ``slot``: its byte on the board."""

    name: str
    kind: str  # tcp | http | https | dns
    host: str  # the address probed
    port: int
    slot: int = 0
    where: str = ""  # file:line of its definition
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    rise: int = DEFAULT_RISE  # consecutive successes that mark a down check up
    fall: int = DEFAULT_FALL  # consecutive failures that mark an up check down
    source: str | None = None  # local address the probe is sent from
    path: str = "/"  # http(s): the request target
    status: int = 200  # http(s): the expected status
    body: str | None = None  # http(s): a text the body must hold
    host_header: str | None = None  # http(s): Host (and TLS server name); default the URL's
    verify: bool = True  # https: check the certificate
    qname: str = ""  # dns: the name asked
    qtype: str = "A"  # dns: its type
    rcode: str = "NOERROR"  # dns: the rcode expected
    answer: str | None = None  # dns: a text an answer record must hold
    group: str = ""  # a record-set check (``records:``) this member check belongs to

    @property
    def target(self) -> str:
        """What is probed, in words (the ``target`` metrics label)."""
        if self.kind in ("http", "https"):
            port = "" if self.port == (80 if self.kind == "http" else 443) else f":{self.port}"
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{self.kind}://{host}{port}{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self) -> str:
        if self.kind == "dns":
            return f"dns {self.qname} {self.qtype} at {self.target}"
        if self.kind == "tcp":
            return f"tcp {self.target}"
        return f"{self.kind} {self.target} expecting {self.status}"


class HealthBoard:
    """The shared page of check verdicts (see the module docstring); one per loaded
    configuration. Writers (the checker, a forced state) hold ``_lock``; readers never lock."""

    def __init__(self, checks: Iterable[Check], health_ttl: int) -> None:
        self.checks: tuple[Check, ...] = tuple(checks)
        self.by_name: Mapping[str, Check] = {check.name: check for check in self.checks}
        self.health_ttl = health_ttl
        pages = 1 + (HEADER + len(self.checks)) // mmap.PAGESIZE
        self.page = mmap.mmap(-1, mmap.PAGESIZE * pages)  # MAP_SHARED | MAP_ANONYMOUS
        self.counter = memoryview(self.page)[:HEADER].cast("Q")  # read per query: one int
        for check in self.checks:
            self.page[HEADER + check.slot] = 1  # up until the first probe says otherwise
        self._lock = threading.Lock()

    def __getstate__(self) -> None:
        raise TypeError("a HealthBoard is shared memory: fork, do not pickle")

    def version(self) -> int:
        return self.counter[0]

    def up(self, slot: int) -> bool:
        return self.page[HEADER + slot] == 1

    def set(self, slot: int, up: bool) -> bool:
        """Write one verdict; True when it changed (then the version moves)."""
        with self._lock:
            value = 1 if up else 0
            if self.page[HEADER + slot] == value:
                return False
            self.page[HEADER + slot] = value
            self.counter[0] = self.counter[0] + 1
            return True

    def slots_up(self, slots: Iterable[int]) -> bool:
        return all(self.page[HEADER + slot] == 1 for slot in slots)


# --- compiling ``checks:`` --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordSet:
    """The A/AAAA record set a ``records:`` check watches, address by address."""

    name: str  # the check's name; its members are checks named ``NAME@ADDRESS``
    zone: Name
    owner: Name
    members: tuple[tuple[int, str], ...]  # (rtype, address text) in the zone's order
    slots: tuple[int, ...]  # the members' board slots, in the same order

    def scope(self, mask: int) -> str:
        """The generated scope holding the members of ``mask`` (bit i: member i); all of
        them is the default scope itself."""
        if mask == (1 << len(self.members)) - 1:
            return "default"
        return f"{self.name}~{mask}"


# finds the A/AAAA addresses of a name in the default scope: (zone, owner, members);
# ValueError says why there are none
AddressesOf = Callable[[str], tuple[Name, Name, list[tuple[int, str]]]]


def compile_checks(
    node: Node | None, reader: Reader, addresses_of: AddressesOf | None = None
) -> tuple[tuple[Check, ...], dict[str, RecordSet]]:
    """``checks:`` → checks, numbered in written order, with each record-set check
    (``records:``) expanded into one check per address; every problem is recorded."""
    if node is None or node.is_null:
        return (), {}
    entries = reader.mapping(node, "checks", None)
    if not entries:
        return (), {}
    if len(entries) > MAX_CHECKS:
        reader.problem(node, f"at most {MAX_CHECKS} checks, not {len(entries)}")
        return (), {}
    out: list[Check] = []
    sets: dict[str, RecordSet] = {}
    for name, value in entries.items():
        if not CHECK_NAME.match(name):
            reader.problem(
                value,
                f"check name {name!r} must start with a letter (letters, digits, _ . - after "
                "that, 63 at most)",
            )
            continue
        check = _check(name, value, reader, len(out))
        if check is None:
            continue
        if check.group:
            members = _record_set(check, value, reader, addresses_of, len(out))
            if members is not None:
                sets[name] = members[0]
                out.extend(members[1])
            continue
        out.append(check)
    return tuple(out), sets


def _record_set(
    check: Check, node: Node, reader: Reader, addresses_of: AddressesOf | None, slot: int
) -> tuple[RecordSet, list[Check]] | None:
    """A ``records:`` check: one member check per address of the record set."""
    if addresses_of is None:
        reader.problem(node, f"check {check.name!r}: records: needs the zones of a config")
        return None
    try:
        zone, owner, addresses = addresses_of(check.group)
    except ValueError as error:
        reader.problem(node, f"check {check.name!r}: {error}")
        return None
    if len(addresses) > MAX_MEMBERS:
        reader.problem(
            node,
            f"check {check.name!r}: {check.group} has {len(addresses)} addresses; at most "
            f"{MAX_MEMBERS} (every subset of them is compiled as a scope)",
        )
        return None
    members = [
        replace(check, name=f"{check.name}@{address}", host=address, slot=slot + i)
        for i, (_, address) in enumerate(addresses)
    ]
    record_set = RecordSet(
        check.name, zone, owner, tuple(addresses), tuple(member.slot for member in members)
    )
    return record_set, members


def _check(name: str, node: Node, reader: Reader, slot: int) -> Check | None:
    what = f"check {name!r}"
    if node.kind != "map":
        reader.problem(node, f"{what} must be a mapping with 'kind:', not a single value")
        return None
    loose = reader.mapping(node, what, None) or {}
    if "kind" not in loose:
        reader.problem(node, f"{what} needs 'kind: tcp|http|https|dns'")
        return None
    kind = reader.choice(loose["kind"], f"{what}: kind", KINDS)
    if kind is None:
        return None
    entries = reader.mapping(node, what, COMMON_KEYS + KIND_KEYS[kind])
    if entries is None:
        return None
    before = len(reader.problems)
    timing = _timing(entries, reader, what)
    fields: dict = {"name": name, "kind": kind, "slot": slot, "where": node.where, **timing}
    if kind == "tcp" and "records" in entries:
        fields.update(_record_target(entries, reader, what))
    elif kind == "tcp":
        fields.update(_tcp_target(entries, reader, what))
    elif kind in ("http", "https"):
        fields.update(_http(entries, reader, what, kind))
    else:
        fields.update(_dns(entries, reader, what))
    if len(reader.problems) > before or "host" not in fields:
        return None
    return Check(**fields)


def _timing(entries: dict[str, Node], reader: Reader, what: str) -> dict:
    out: dict = {}
    for key, default in (("interval", DEFAULT_INTERVAL), ("timeout", DEFAULT_TIMEOUT)):
        if key in entries:
            value = reader.number(entries[key], f"{what}: {key}")
            if value is not None and not 0.01 <= value <= 86400:
                reader.problem(entries[key], f"{what}: {key} must be 0.01 to 86400 seconds")
            out[key] = value if value is not None else default
    for key in ("rise", "fall"):
        if key in entries:
            value = reader.integer(entries[key], f"{what}: {key}", minimum=1, maximum=100)
            if value is not None:
                out[key] = value
    interval = out.get("interval", DEFAULT_INTERVAL)
    if "timeout" not in entries:
        out["timeout"] = min(DEFAULT_TIMEOUT, interval)  # a probe ends before the next
    elif out["timeout"] > interval:
        reader.problem(entries["timeout"], f"{what}: timeout must not be longer than interval")
    if "source" in entries:
        source = reader.convert(entries["source"], f"{what}: source", _address)
        if source is not None:
            out["source"] = source
    return out


def _record_target(entries: dict[str, Node], reader: Reader, what: str) -> dict:
    """``records: www.example.com`` with ``port: 443``: the addresses come later."""
    if "target" in entries:
        reader.problem(entries["target"], f"{what}: give 'target' or 'records', not both")
        return {}
    if "port" not in entries:
        reader.problem(entries["records"], f"{what}: records: needs 'port:'")
        return {}
    port = reader.integer(entries["port"], f"{what}: port", minimum=1, maximum=65535)
    group = reader.text(entries["records"], f"{what}: records")
    if port is None or group is None:
        return {}
    return {"host": "", "port": port, "group": group}


def _tcp_target(entries: dict[str, Node], reader: Reader, what: str) -> dict:
    if "target" not in entries:
        reader.problem(
            next(iter(entries.values())),
            f"{what} needs 'target: ADDRESS:PORT' (or 'records: NAME' with 'port:')",
        )
        return {}
    if "port" in entries:
        reader.problem(entries["port"], f"{what}: 'port' goes with 'records'; write target:")
        return {}
    parsed = reader.convert(entries["target"], f"{what}: target", _host_port)
    return {} if parsed is None else {"host": parsed[0], "port": parsed[1]}


def _http(entries: dict[str, Node], reader: Reader, what: str, kind: str) -> dict:
    if "url" not in entries:
        reader.problem(next(iter(entries.values())), f"{what} needs 'url: {kind}://ADDRESS/PATH'")
        return {}
    out: dict = {}
    url = reader.text(entries["url"], f"{what}: url")
    if url is not None:
        try:
            out.update(_url(url, kind))
        except ValueError as error:
            reader.problem(entries["url"], f"{what}: {error}")
    if "status" in entries:
        status = reader.integer(entries["status"], f"{what}: status", minimum=100, maximum=599)
        if status is not None:
            out["status"] = status
    if "body" in entries:
        out["body"] = reader.text(entries["body"], f"{what}: body")
    if "host" in entries:
        out["host_header"] = reader.text(entries["host"], f"{what}: host")
    if "verify" in entries:
        out["verify"] = bool(reader.boolean(entries["verify"], f"{what}: verify"))
    return out


def _dns(entries: dict[str, Node], reader: Reader, what: str) -> dict:
    from dnslib import QTYPE, RCODE

    out: dict = {}
    for key in ("server", "name"):
        if key not in entries:
            reader.problem(next(iter(entries.values())), f"{what} needs {key!r}")
    if "server" in entries:
        parsed = reader.convert(entries["server"], f"{what}: server", _dns_server)
        if parsed is not None:
            out["host"], out["port"] = parsed
    if "name" in entries:
        out["qname"] = reader.text(entries["name"], f"{what}: name") or ""
    if "type" in entries:
        qtype = (reader.text(entries["type"], f"{what}: type") or "").upper()
        if qtype not in QTYPE.reverse:
            reader.problem(entries["type"], f"{what}: unknown type {qtype!r}")
        out["qtype"] = qtype
    if "rcode" in entries:
        rcode = (reader.text(entries["rcode"], f"{what}: rcode") or "").upper()
        if rcode not in RCODE.reverse:
            reader.problem(entries["rcode"], f"{what}: unknown rcode {rcode!r}")
        out["rcode"] = rcode
    if "answer" in entries:
        out["answer"] = reader.text(entries["answer"], f"{what}: answer")
    return out


def _address(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _host_port(text: str) -> tuple[str, int]:
    """``192.0.2.1:443`` or ``[2001:db8::1]:443``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not ADDRESS:PORT (e.g. 192.0.2.10:443, [2001:db8::1]:443)")
    return _address(host), int(port)


def _dns_server(text: str) -> tuple[str, int]:
    """``192.0.2.53`` (port 53) or ``192.0.2.53:5353``."""
    text = text.strip()
    if text.count(":") == 1 or text.startswith("["):
        return _host_port(text)
    return _address(text), 53


def _url(text: str, kind: str) -> dict:
    parts = urlsplit(text.strip())
    if parts.scheme != kind:
        raise ValueError(f"url {text!r} must start with {kind}://")
    if not parts.hostname:
        raise ValueError(f"url {text!r} has no host")
    try:
        port = parts.port or (80 if kind == "http" else 443)
    except ValueError:
        raise ValueError(f"url {text!r} has a bad port") from None
    host = parts.hostname
    try:
        host = _address(host)
    except ValueError:
        raise ValueError(
            f"url {text!r}: give the address (names are not resolved while checking); "
            "put the name in 'host:'"
        ) from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return {"host": host, "port": port, "path": path}


def unknown_check(name: str, known: Iterable[str]) -> str:
    """The problem text for a rule naming a check that does not exist."""
    known = list(known)
    hint = did_you_mean(name, known) or f" (checks: {', '.join(known) or 'none'})"
    return f"unknown check {name!r}{hint}"
