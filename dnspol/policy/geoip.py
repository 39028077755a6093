"""GeoIP criteria: ``country``, ``continent``, ``subdivision``, ``city``, ``asn`` and named
``regions``, compiled at load from MaxMind DB files into the prefix sets ``client:`` uses.

This module owns the ``server.geoip`` databases, the ``regions:`` section, what each GeoIP
value means and how a database becomes prefixes. Nothing here runs per query: a rule's
GeoIP criterion is first compiled to a ``GeoPending`` leaf (the values it names); once every
rule is read, ``resolve`` walks each database's search tree **once**, keeps the networks
whose record holds a value some rule names, with their exact prefix length, and replaces
each pending leaf by a ``GeoIn``: an ``AddressIn`` on the client address over those
networks. From then on a GeoIP criterion is a ``client:`` subnet criterion — the same
tables in ``Decider``, the same cost, the same ECS rules (trusted resolvers only, refuse and
drop see the packet's source) — and its ECS SCOPE is the prefix length of the database
network that matched (or shorter, where neighbouring networks give the same verdict), as
``PrefixSet.scope_length`` computes for any set.

The search tree is walked here, by the MaxMind DB format's specification (version 2.0:
records of 24, 28 or 32 bits, the IPv4 subtree at ``::/96`` of an IPv6 database, aliases of
it at ``::ffff:0:0/96`` and ``2002::/16``), rather than with ``Reader.__iter__``: that decodes
every network's record (millions of them in a City database), where this walk decodes each
distinct record once, with ``maxminddb``'s public ``Reader.get`` on the record's first
network. ``explain`` looks records up with ``maxminddb`` too (``Reader.get_with_prefix_len``).
"""

from __future__ import annotations

import ipaddress
import mmap
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from dnspol.policy.criteria import (
    ADDRESS,
    AddressIn,
    All,
    Any,
    Context,
    Criterion,
    Not,
    _address_text,
    _join,
)
from dnspol.policy.prefixes import Prefix, PrefixSet
from dnspol.policy.yamlnodes import Node, Reader, did_you_mean

FIELDS = ("country", "continent", "subdivision", "city", "asn")
MATCH_KEYS = (*FIELDS, "region")
ROLES = ("country", "city", "asn")  # the keys of server.geoip
# which server.geoip database each field is read from, first choice first
FIELD_ROLES = {
    "country": ("country", "city"),
    "continent": ("country", "city"),
    "subdivision": ("city",),
    "city": ("city",),
    "asn": ("asn",),
}
CONTINENTS = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
REGION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_SUBDIVISION = re.compile(r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")
_ASN = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)
IPV4_SUBTREE_DEPTH = 96  # an IPv6 database keeps IPv4 at ::a.b.c.d

Term = tuple[str, object]  # (field, normalised value): ("country", "DE"), ("asn", 3320)


# --- databases -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeoDatabase:
    """One ``server.geoip`` entry: which role it fills, its file, where it was configured."""

    role: str  # "country" | "city" | "asn"
    path: str
    where: str  # file:line of the entry

    def describe(self) -> str:
        return f"{self.path} (server.geoip.{self.role}, {self.where})"


def read_databases(node: Node, reader: Reader, base_dir: str) -> dict[str, GeoDatabase]:
    """``server.geoip``: ``{country: FILE, city: FILE, asn: FILE}``, each optional."""
    entries = reader.mapping(node, "geoip", ROLES)
    if entries is None:
        return {}
    databases = {}
    for role, value in entries.items():
        text = reader.text(value, f"geoip.{role}")
        if text is not None:
            databases[role] = GeoDatabase(role, os.path.join(base_dir, text), value.where)
    return databases


class DatabaseError(Exception):
    """A database that cannot be opened or walked; the message says why, for people."""


class _Opened:
    """A database opened for one load: its reader and its search tree's bytes."""

    def __init__(self, path: str) -> None:
        import maxminddb  # imported here: only configurations with GeoIP need it

        try:
            self.reader = maxminddb.open_database(path)
            meta = self.reader.metadata()
        except FileNotFoundError:
            raise DatabaseError("no such file") from None
        except PermissionError as error:
            raise DatabaseError(str(error.strerror)) from None
        except (OSError, ValueError, maxminddb.InvalidDatabaseError):
            raise DatabaseError("not a readable MaxMind DB file") from None
        self.database_type = str(meta.database_type)
        self.node_count = int(meta.node_count)
        self.record_size = int(meta.record_size)
        self.bits = 128 if meta.ip_version == 6 else 32
        if self.record_size not in (24, 28, 32):
            raise DatabaseError(f"unsupported record size {self.record_size}")
        tree_bytes = self.node_count * self.record_size // 4
        try:
            with (
                open(path, "rb") as handle,
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            ):
                if len(mapped) < tree_bytes:
                    raise DatabaseError("the file is shorter than its search tree")
                self.tree = mapped[:tree_bytes]
        except (OSError, ValueError) as error:
            raise DatabaseError(f"cannot read it: {error}") from None

    def close(self) -> None:
        self.reader.close()

    def networks(self) -> Iterator[tuple[int, int, int, int]]:
        """Every network with data: ``(value, bits, length, data pointer)``; IPv4 networks
        of an IPv6 database come out as IPv4 (bits 32), their aliases not at all."""
        node_count, bits, tree = self.node_count, self.bits, self.tree
        read = _node_reader(self.record_size)
        ipv4_start = self._ipv4_start(read) if bits == 128 else -1
        stack = [(0, 0, 0)]  # node, depth, the network's bits so far
        pop, push = stack.pop, stack.append
        visits = 0
        while stack:
            node, depth, value = pop()
            visits += 1
            if visits > node_count or depth >= bits:
                raise DatabaseError("its search tree is not a tree (corrupt file?)")
            children = read(tree, node)
            depth += 1
            value <<= 1
            for child in children:
                if child < node_count:
                    if child != ipv4_start or (not value and depth == IPV4_SUBTREE_DEPTH):
                        push((child, depth, value))
                    # else: an alias of the IPv4 subtree, walked once, at ::/96
                elif child > node_count:
                    start = value << (bits - depth)
                    if bits == 128 and not start >> 32:
                        if depth >= IPV4_SUBTREE_DEPTH:
                            yield start, 32, depth - IPV4_SUBTREE_DEPTH, child
                            value += 1
                            continue
                        yield 0, 32, 0, child  # a network around ::/96: every IPv4 address
                    yield start, bits, depth, child
                value += 1  # the right child's network

    def _ipv4_start(self, read) -> int:  # noqa: ANN001 - one of the _node_reader functions
        node = 0
        for _ in range(IPV4_SUBTREE_DEPTH):
            if node >= self.node_count:
                break
            node = read(self.tree, node)[0]
        return node

    def record(self, value: int, bits: int) -> object:
        address = ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value)
        return self.reader.get(address)


def _node_reader(record_size: int):  # noqa: ANN202 - (tree, node) -> (left, right)
    if record_size == 24:

        def read24(tree: bytes, node: int) -> tuple[int, int]:
            both = int.from_bytes(tree[node * 6 : node * 6 + 6], "big")
            return both >> 24, both & 0xFFFFFF

        return read24
    if record_size == 28:

        def read28(tree: bytes, node: int) -> tuple[int, int]:
            both = int.from_bytes(tree[node * 7 : node * 7 + 7], "big")
            middle = (both >> 24) & 0xFF
            return ((middle >> 4) << 24) | (both >> 32), ((middle & 0x0F) << 24) | (both & 0xFFFFFF)

        return read28

    def read32(tree: bytes, node: int) -> tuple[int, int]:
        both = int.from_bytes(tree[node * 8 : node * 8 + 8], "big")
        return both >> 32, both & 0xFFFFFFFF

    return read32


# --- values ----------------------------------------------------------------------------------


def parse_term(key: str, text: str) -> Term:
    """One value of a GeoIP key, normalised. Raises ValueError with a message for people."""
    word = text.strip()
    if key == "country":
        if not _COUNTRY.match(word):
            raise ValueError(f"country {text!r} is not an ISO 3166-1 code such as DE or US")
        return key, word.upper()
    if key == "continent":
        if word.upper() not in CONTINENTS:
            raise ValueError(
                f"continent {text!r} is not one of {', '.join(CONTINENTS)}"
                f"{did_you_mean(word.upper(), CONTINENTS)}"
            )
        return key, word.upper()
    if key == "subdivision":
        if not _SUBDIVISION.match(word):
            raise ValueError(
                f"subdivision {text!r} is not an ISO 3166-2 code such as DE-BY or US-CA"
            )
        return key, word.upper()
    if key == "city":
        if word.isdigit():
            return key, int(word)  # a GeoNames id
        if not word:
            raise ValueError("city needs a name (as in the database, English) or a GeoNames id")
        return key, word.casefold()
    found = _ASN.match(word)
    if not found or not 0 < int(found[1]) < 2**32:
        raise ValueError(f"asn {text!r} is not an AS number such as 3320 or AS3320")
    return "asn", int(found[1])


def term_text(term: Term) -> str:
    key, value = term
    if key == "asn":
        return f"AS{value}"
    if key == "city" and isinstance(value, str):
        return f"city {value.title()}"
    return f"{key} {value}"


def record_terms(record: object) -> set[Term]:
    """Every term a database record holds (GeoIP2/GeoLite2 and DB-IP layouts)."""
    if not isinstance(record, Mapping):
        return set()
    terms: set[Term] = set()
    country = _code(record.get("country"), "iso_code")
    if country:
        terms.add(("country", country))
    continent = _code(record.get("continent"), "code")
    if continent:
        terms.add(("continent", continent))
    subdivisions = record.get("subdivisions")
    if country and isinstance(subdivisions, list):
        for subdivision in subdivisions:
            code = _code(subdivision, "iso_code")
            if code:
                terms.add(("subdivision", f"{country}-{code}"))
    city = record.get("city")
    if isinstance(city, Mapping):
        if isinstance(city.get("geoname_id"), int):
            terms.add(("city", city["geoname_id"]))
        names = city.get("names")
        if isinstance(names, Mapping) and isinstance(names.get("en"), str):
            terms.add(("city", names["en"].casefold()))
    asn = record.get("autonomous_system_number")
    if isinstance(asn, int):
        terms.add(("asn", asn))
    return terms


def _code(part: object, key: str) -> str | None:
    if isinstance(part, Mapping) and isinstance(part.get(key), str):
        return part[key].upper()
    return None


def record_text(record: object) -> str:
    """A record in a few words: ``country DE, continent EU, subdivision DE-BY, AS3320``."""
    if not isinstance(record, Mapping):
        return "no record"
    words = []
    for key in ("continent", "country"):
        code = _code(record.get(key), "code" if key == "continent" else "iso_code")
        if code:
            words.append(f"{key} {code}")
    country = _code(record.get("country"), "iso_code")
    for subdivision in record.get("subdivisions") or ():
        code = _code(subdivision, "iso_code")
        if code and country:
            words.append(f"subdivision {country}-{code}")
    city = record.get("city")
    if isinstance(city, Mapping):
        name = (city.get("names") or {}).get("en")
        ident = city.get("geoname_id")
        words.append(f"city {name or '?'}" + (f" ({ident})" if ident else ""))
    if isinstance(record.get("autonomous_system_number"), int):
        org = record.get("autonomous_system_organization")
        words.append(f"AS{record['autonomous_system_number']}" + (f" {org}" if org else ""))
    return ", ".join(words) or "a record without country, continent, city or AS"


# --- regions ---------------------------------------------------------------------------------


def compile_regions(node: Node | None, reader: Reader) -> dict[str, tuple[Term, ...]]:
    """``regions:`` → name → its terms. A region is a mapping of GeoIP keys (any value of any
    key matches) and may name other regions under ``region``."""
    if node is None or node.is_null:
        return {}
    entries = reader.mapping(node, "regions", None)
    if entries is None:
        return {}
    raw: dict[str, tuple[list[Term], list[tuple[str, Node]]]] = {}
    for name, value in entries.items():
        if not REGION_NAME.match(name):
            reader.problem(
                value, f"region name {name!r} must start with a letter (letters, digits, _ . -)"
            )
            continue
        parts = reader.mapping(value, f"region {name!r}", MATCH_KEYS)
        if parts is None:
            continue
        if not parts:
            reader.problem(value, f"region {name!r} needs at least one of {', '.join(MATCH_KEYS)}")
        terms: list[Term] = []
        references: list[tuple[str, Node]] = []
        for key, item in parts.items():
            if key == "region":
                references.extend(reader.texts(item, "region"))
            else:
                terms.extend(_terms(key, item, reader))
        raw[name] = (terms, references)
    return _resolve_regions(raw, reader)


def _resolve_regions(
    raw: dict[str, tuple[list[Term], list[tuple[str, Node]]]], reader: Reader
) -> dict[str, tuple[Term, ...]]:
    resolved: dict[str, tuple[Term, ...]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> tuple[Term, ...]:
        if name in resolved:
            return resolved[name]
        own, references = raw[name]
        collected = list(own)
        for other, node in references:
            if other in chain:
                loop = " → ".join(chain[chain.index(other) :] + (other,))
                reader.problem(node, f"regions name each other in a loop: {loop}")
            elif other not in raw:
                reader.problem(node, f"unknown region {other!r}{did_you_mean(other, raw)}")
            else:
                collected.extend(resolve(other, chain + (other,)))
        resolved[name] = tuple(dict.fromkeys(collected))
        return resolved[name]

    for name in raw:
        resolve(name, (name,))
    return resolved


def _terms(key: str, node: Node, reader: Reader) -> list[Term]:
    terms = []
    for _, item in reader.texts(node, key):
        term = reader.convert(item, key, lambda text: parse_term(key, text))
        if term is not None:
            terms.append(term)
    return terms


# --- criteria --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeoPending(Criterion):
    """A GeoIP criterion as written, until ``resolve`` turns it into a ``GeoIn``."""

    terms: tuple[Term, ...]
    labels: tuple[str, ...]  # as written: "country DE", "region eu"
    where: str  # file:line of the key
    direct: bool = True  # False: the terms come from regions (not each worth a warning)

    @property
    def order(self) -> int:  # type: ignore[override]
        return ADDRESS

    def test(self, ctx: Context) -> bool:
        raise RuntimeError("a GeoIP criterion is used before its databases were read")

    def failures(self, ctx: Context) -> list[str]:
        raise RuntimeError("a GeoIP criterion is used before its databases were read")

    def describe(self) -> str:
        return f"client in {_join(self.labels)}"


def compile_criterion(
    key: str, node: Node, reader: Reader, regions: Mapping[str, tuple[Term, ...]]
) -> GeoPending | None:
    """A ``match:`` key of this module (``MATCH_KEYS``) → a pending criterion."""
    if key == "region":
        terms: list[Term] = []
        labels = []
        for name, item in reader.texts(node, "region"):
            if name not in regions:
                reader.problem(item, f"unknown region {name!r}{did_you_mean(name, regions)}")
                return None
            terms.extend(regions[name])
            labels.append(f"region {name}")
        if not labels:
            return None
        return GeoPending(tuple(dict.fromkeys(terms)), tuple(labels), node.where, direct=False)
    problems = len(reader.problems)
    own = _terms(key, node, reader)
    if not own or len(reader.problems) > problems:
        return None
    return GeoPending(tuple(dict.fromkeys(own)), tuple(term_text(t) for t in own), node.where)


@dataclass(frozen=True, slots=True)
class GeoIn(AddressIn):
    """A GeoIP criterion compiled: the client address inside the networks the database
    gives the values; tested exactly as ``client:`` is. ``databases`` serve ``explain``."""

    databases: tuple[GeoDatabase, ...] = field(default=(), compare=False, repr=False)

    def failures(self, ctx: Context) -> list[str]:
        value, bits = ctx.client
        if self.prefixes.contains(value, bits):
            return []
        shown = _address_text(value, bits) + (" (ECS)" if ctx.client_is_ecs else "")
        return [f"client {shown} is not in {_join(self.labels)}: {self.records_text(ctx)}"]

    def matched_label(self, ctx: Context) -> str | None:
        label = AddressIn.matched_label(self, ctx)
        if label is None:
            return None
        return f"{label}: {self.records_text(ctx)}"

    def records_text(self, ctx: Context) -> str:
        """What each database says about the client address (for ``explain``)."""
        value, bits = ctx.client
        return "; ".join(_lookup_text(db, value, bits) for db in self.databases)

    def describe(self) -> str:
        return f"client in {_join(self.labels)}"


def _lookup_text(database: GeoDatabase, value: int, bits: int) -> str:
    import maxminddb

    address = _address_text(value, bits)
    try:
        with maxminddb.open_database(database.path) as reader:
            record, length = reader.get_with_prefix_len(address)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        return f"GeoIP {os.path.basename(database.path)}: cannot look up {address}: {error}"
    network = ipaddress.ip_network(f"{address}/{length}", strict=False)
    found = record_text(record) if record is not None else "no record"
    return f"GeoIP {os.path.basename(database.path)} network {network}: {found}"


# --- resolving -------------------------------------------------------------------------------


@dataclass
class GeoStats:
    """What a load read from each database, for logs and tests."""

    networks: dict[str, int] = field(default_factory=dict)  # path → networks walked
    kept: dict[str, int] = field(default_factory=dict)  # path → networks kept


def resolve(
    rules: Sequence, databases: Mapping[str, GeoDatabase], reader: Reader, warnings: list[str]
) -> tuple[list, GeoStats]:
    """Rules with every ``GeoPending`` replaced by a ``GeoIn``; each database needed is
    walked once. A database that is missing or unreadable is reported at every criterion
    that needs it (``file:line`` of the rule's key), with where it was configured; a value
    no network of its database holds (``country: UK``: the code is GB) is a warning."""
    pending = [(rule.name, leaf) for rule in rules for leaf in _pending_leaves(rule.criteria)]
    stats = GeoStats()
    wanted: dict[str, set[Term]] = {}  # role → the terms read from that database
    chosen: dict[Term, str] = {}
    unread: set[tuple[str, str]] = set()  # (where, key) reported for want of a database
    for name, leaf in pending:
        for term in leaf.terms:
            role = next((r for r in FIELD_ROLES[term[0]] if r in databases), None)
            if role is None:
                if (leaf.where, term[0]) not in unread:
                    unread.add((leaf.where, term[0]))
                    options = " or ".join(f"server.geoip.{r}" for r in FIELD_ROLES[term[0]])
                    reader.problem(
                        leaf.where,
                        f"rule {name!r}: {term[0]} needs a GeoIP database: set {options} "
                        "to a MaxMind DB file",
                    )
                continue
            chosen[term] = role
            wanted.setdefault(role, set()).add(term)
    prefixes: dict[Term, list[Prefix]] = {term: [] for term in chosen}
    failed: dict[str, str] = {}
    for role, terms in wanted.items():
        database = databases[role]
        try:
            _collect(database, terms, prefixes, stats)
        except DatabaseError as error:
            failed[role] = str(error)
    _check_unused([db for role, db in databases.items() if role not in wanted], reader)
    resolved: dict[int, GeoIn] = {}
    for name, leaf in pending:
        _warn_empty(leaf, chosen, failed, prefixes, databases, warnings)
        roles = sorted({chosen[t] for t in leaf.terms if t in chosen})
        for role in roles:
            if role in failed:
                reader.problem(
                    leaf.where,
                    f"rule {name!r}: {_join(leaf.labels)} needs the GeoIP database "
                    f"{databases[role].describe()}: {failed[role]}",
                )
        resolved[id(leaf)] = _geo_in(leaf, prefixes, [databases[r] for r in roles])
    out = [
        replace(rule, criteria=_swap(rule.criteria, resolved))
        if _pending_leaves(rule.criteria)
        else rule
        for rule in rules
    ]
    return out, stats


def _warn_empty(
    leaf: GeoPending,
    chosen: Mapping[Term, str],
    failed: Mapping[str, str],
    prefixes: Mapping[Term, list[Prefix]],
    databases: Mapping[str, GeoDatabase],
    warnings: list[str],
) -> None:
    """Each value written in a rule that no network holds (a region: when none of its
    values does), as a warning: a typo such as ``country: UK`` (the code is GB)."""
    terms = [t for t in leaf.terms if t in chosen and chosen[t] not in failed]
    if not leaf.direct:
        if terms and not any(prefixes[t] for t in terms):
            paths = ", ".join(sorted({databases[chosen[t]].path for t in terms}))
            warnings.append(
                f"warning: {leaf.where}: no network of {paths} has any value of "
                f"{_join(leaf.labels)}, so it matches no client"
            )
        return
    for term in terms:
        if not prefixes[term]:
            warnings.append(
                f"warning: {leaf.where}: no network of {databases[chosen[term]].path} has "
                f"{term_text(term)}, so it matches no client"
            )


def _check_unused(databases: list[GeoDatabase], reader: Reader) -> None:
    """A configured database no rule reads is still opened, so a typo shows at once."""
    for database in databases:
        try:
            _Opened(database.path).close()
        except DatabaseError as error:
            reader.problem(database.where, f"GeoIP database {database.path}: {error}")


def _collect(
    database: GeoDatabase, terms: set[Term], out: dict[Term, list[Prefix]], stats: GeoStats
) -> None:
    """One walk of the database: the networks holding each term, at their own length."""
    opened = _Opened(database.path)
    try:
        held: dict[int, tuple[Term, ...]] = {}  # data pointer → the wanted terms it holds
        walked = kept = 0
        for value, bits, length, pointer in opened.networks():
            walked += 1
            found = held.get(pointer)
            if found is None:
                try:
                    record = opened.record(value, bits)
                except Exception as error:  # maxminddb raises several kinds on bad data
                    raise DatabaseError(f"a record cannot be read: {error}") from None
                found = held[pointer] = tuple(record_terms(record) & terms)
            if found:
                kept += 1
                prefix = Prefix(bits, value, length)
                for term in found:
                    out[term].append(prefix)
        stats.networks[database.path] = walked
        stats.kept[database.path] = kept
    finally:
        opened.close()


def _geo_in(
    leaf: GeoPending, prefixes: Mapping[Term, list[Prefix]], databases: list[GeoDatabase]
) -> GeoIn:
    parts = tuple((term_text(term), PrefixSet(prefixes.get(term, ()))) for term in leaf.terms)
    union = PrefixSet(prefix for term in leaf.terms for prefix in prefixes.get(term, ()))
    return GeoIn("client", union, leaf.labels, parts, tuple(databases))


def _pending_leaves(criterion: Criterion) -> list[GeoPending]:
    if isinstance(criterion, GeoPending):
        return [criterion]
    if isinstance(criterion, All | Any):
        return [leaf for child in criterion.children for leaf in _pending_leaves(child)]
    if isinstance(criterion, Not):
        return _pending_leaves(criterion.child)
    return []


def _swap(criterion: Criterion, resolved: Mapping[int, GeoIn]) -> Criterion:
    if isinstance(criterion, GeoPending):
        return resolved[id(criterion)]
    if isinstance(criterion, All | Any):
        return type(criterion)(tuple(_swap(child, resolved) for child in criterion.children))
    if isinstance(criterion, Not):
        return Not(_swap(criterion.child, resolved))
    return criterion
