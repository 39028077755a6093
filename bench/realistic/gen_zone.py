"""Generate the realistic benchmark zone ``real.example.`` deterministically.

The zone owns the *shape* of the realistic benchmark: which names exist, what each holds,
and where the zone cuts, wildcard and empty non-terminals are. ``gen_queries.py``,
``gen_policy.py``, ``first_sight.py`` and ``big_zone.py`` import ``entries()`` from here, so
their queries always match the zone.

For ``--names N`` (default 200,000) numbered entries ``i = 0 .. N-1``:

* ``i % 100 == 7`` (1 %): a delegation -- ``NS ns1.<owner>`` and ``NS ns2.<owner>`` with
  in-zone glue (``ns1`` A, ``ns2`` A and AAAA), nothing else at the cut;
* ``i % 25 == 3`` (4 %): a CNAME -- to another entry's host name, one in ten to an
  out-of-zone target (``edgeN.cdn.example.net.``);
* every other entry: a host with an A record; AAAA on two in three, MX on one in twenty,
  TXT on one in ten, a 300 s TTL on one in eight (3600 s otherwise).

Owner names: ``<word><i>`` (``api1234``) at depth 1, 2 or 3 below the apex -- directly, under
a region (``web5.eu``), under a region and a service (``db6.eu.k8s``), or under a team
(``cam7.team42``). The region, service and team labels hold no records of their own: they
are empty non-terminals (RFC 8020), as are ``ent`` and ``deep.ent`` above ``x.deep.ent``.
Besides: the apex (SOA, NS, MX, TXT, A, AAAA), ``ns1``/``ns2``/``mail``, and a wildcard
``*.wild`` (A, AAAA, TXT) with one explicit name beside it (``host.wild``).

The syntax is what BIND, NSD, Knot and dnspython all read the same way: ``$ORIGIN``, ``$TTL``,
one record per line, owners relative to the origin, TTL and class on every line.

``--records R`` stops after R records instead (for zones of exactly 1,000,000 records; the
entry count is then whatever fits). A JSON manifest beside the zone (``--manifest``) has
the counts and a few names to probe.

Usage: python bench/realistic/gen_zone.py [--names 200000 | --records R] --out FILE
           [--manifest FILE]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

ORIGIN = "real.example."
SERIAL = 2026112701
DEFAULT_NAMES = 200_000

WORDS = (
    "www", "mail", "api", "cdn", "app", "web", "shop", "blog", "img", "static", "auth",
    "login", "vpn", "git", "ci", "db", "cache", "mx", "smtp", "imap", "ftp", "docs", "wiki",
    "status", "portal", "admin", "dev", "test", "stage", "prod", "edge", "lb", "proxy", "gw",
    "node", "srv", "host", "pc", "printer", "cam", "iot", "media", "video", "news", "m",
    "beta", "data", "metrics",
)  # fmt: skip
REGIONS = ("eu", "us", "ap", "sa", "af", "me", "cn", "au")
SERVICES = (
    "k8s", "int", "corp", "lab", "infra", "ops", "sales", "hr", "fin", "eng", "mkt", "it",
    "sec", "net", "sto", "dc1", "dc2", "dc3", "hq", "branch",
)  # fmt: skip
TEAMS = 500
WILDCARD_PARENT = "wild"
WILDCARD_EXPLICIT = "host.wild"
ENT_LEAF = "x.deep.ent"  # makes "ent" and "deep.ent" empty non-terminals
CDN = "cdn.example.net."


class Kind(Enum):
    HOST = "host"
    CNAME = "cname"
    DELEGATION = "delegation"


@dataclass(frozen=True)
class Entry:
    """One numbered name of the zone: its owner (relative) and what it holds."""

    index: int
    owner: str
    kind: Kind
    types: tuple[str, ...]  # the types at the owner (NS for a delegation)


def owner_name(i: int) -> str:
    label = f"{WORDS[(i * 7919) % len(WORDS)]}{i}"
    depth = i % 4
    if depth == 0:
        return label
    region = REGIONS[(i // 4) % len(REGIONS)]
    if depth == 1:
        return f"{label}.{region}"
    if depth == 2:
        return f"{label}.{region}.{SERVICES[(i // 32) % len(SERVICES)]}"
    return f"{label}.team{(i // 4) % TEAMS}"


def kind_of(i: int) -> Kind:
    if i % 100 == 7:
        return Kind.DELEGATION
    if i % 25 == 3:
        return Kind.CNAME
    return Kind.HOST


def host_types(i: int) -> tuple[str, ...]:
    types = ["A"]
    if i % 3 != 0:
        types.append("AAAA")
    if i % 20 == 1:
        types.append("MX")
    if i % 10 == 2:
        types.append("TXT")
    return tuple(types)


def entry(i: int) -> Entry:
    kind = kind_of(i)
    types = {Kind.HOST: host_types(i), Kind.CNAME: ("CNAME",), Kind.DELEGATION: ("NS",)}
    return Entry(i, owner_name(i), kind, types[kind])


def entries(names: int = DEFAULT_NAMES) -> Iterator[Entry]:
    for i in range(names):
        yield entry(i)


def cname_target(i: int, names: int) -> str:
    """An absolute target: another entry's host (in the zone), or the CDN every tenth."""
    if (i // 25) % 10 == 9:
        return f"edge{i % 997}.{CDN}"
    j = (i * 104729 + 11) % names
    while kind_of(j) is not Kind.HOST:
        j = (j + 1) % names
    return f"{owner_name(j)}.{ORIGIN}"


def ipv4(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def ipv6(i: int) -> str:
    return f"2001:db8:{(i >> 16) & 0xFFFF:x}:{i & 0xFFFF:x}::1"


def glue_ipv4(i: int) -> str:
    return f"100.64.{(i >> 8) & 255}.{i & 255}"


def ttl(i: int) -> int:
    return 300 if i % 8 == 5 else 3600


def entry_records(e: Entry, names: int) -> list[str]:
    i, owner, t = e.index, e.owner, ttl(e.index)
    if e.kind is Kind.DELEGATION:
        return [
            f"{owner} 86400 IN NS ns1.{owner}",
            f"{owner} 86400 IN NS ns2.{owner}",
            f"ns1.{owner} 86400 IN A {glue_ipv4(i)}",
            f"ns2.{owner} 86400 IN A {glue_ipv4(i + 1)}",
            f"ns2.{owner} 86400 IN AAAA 2001:db8:ffff:{i & 0xFFFF:x}::53",
        ]
    if e.kind is Kind.CNAME:
        return [f"{owner} {t} IN CNAME {cname_target(i, names)}"]
    records = [f"{owner} {t} IN A {ipv4(i)}"]
    if "AAAA" in e.types:
        records.append(f"{owner} {t} IN AAAA {ipv6(i)}")
    if "MX" in e.types:
        records.append(f"{owner} {t} IN MX 10 mail.{ORIGIN}")
    if "TXT" in e.types:
        records.append(f'{owner} {t} IN TXT "v=spf1 ip4:{ipv4(i)} -all" "id {i}"')
    return records


def fixed_records() -> list[str]:
    soa = f"@ 3600 IN SOA ns1 hostmaster {SERIAL} 7200 900 1209600 300"
    return [
        soa,
        "@ 3600 IN NS ns1",
        "@ 3600 IN NS ns2",
        "@ 3600 IN MX 10 mail",
        '@ 3600 IN TXT "v=spf1 mx -all"',
        "@ 3600 IN A 192.0.2.10",
        "@ 3600 IN AAAA 2001:db8::10",
        "ns1 3600 IN A 192.0.2.1",
        "ns1 3600 IN AAAA 2001:db8::1",
        "ns2 3600 IN A 192.0.2.2",
        "mail 3600 IN A 192.0.2.25",
        "mail 3600 IN AAAA 2001:db8::25",
        f"*.{WILDCARD_PARENT} 3600 IN A 192.0.2.80",
        f"*.{WILDCARD_PARENT} 3600 IN AAAA 2001:db8::80",
        f'*.{WILDCARD_PARENT} 3600 IN TXT "wildcard"',
        f"{WILDCARD_EXPLICIT} 3600 IN A 192.0.2.81",
        f"{ENT_LEAF} 3600 IN A 192.0.2.82",
    ]


def record_count(e: Entry) -> int:
    return {Kind.DELEGATION: 5, Kind.CNAME: 1, Kind.HOST: len(e.types)}[e.kind]


def names_for_records(records: int) -> int:
    """How many entries it takes to reach ``records`` records (the last one cut short)."""
    left, i = records - len(fixed_records()), 0
    while left > 0:
        left -= record_count(entry(i))
        i += 1
    return i


def zone_lines(names: int) -> Iterator[str]:
    """The zone's lines, fixed records first, then every entry's."""
    yield "; generated by bench/realistic/gen_zone.py -- do not edit"
    yield f"$ORIGIN {ORIGIN}"
    yield "$TTL 3600"
    lines = fixed_records()
    for e in entries(names):
        lines.extend(entry_records(e, names))
        if len(lines) >= 4096:
            yield from lines
            lines.clear()
    yield from lines


def nearest_host(i: int) -> int:
    while kind_of(i) is not Kind.HOST:
        i -= 1
    return i


def write_zone(out: Path, names: int, records: int | None = None) -> dict[str, object]:
    """Write the zone file; return its manifest (counts and names to probe)."""
    if records is not None:
        names = names_for_records(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    by_type: Counter[str] = Counter()
    owners: set[str] = set()
    left = records if records is not None else -1
    with open(out, "w", encoding="ascii") as f:
        for line in zone_lines(names):
            if line[0] not in ";$":
                if left == 0:
                    break
                left -= 1
                parts = line.split(maxsplit=4)
                by_type[parts[3]] += 1
                owners.add(parts[0])
            f.write(line + "\n")
    kinds = Counter(kind_of(i).value for i in range(names))
    return {
        "origin": ORIGIN,
        "file": str(out),
        "entries": names,
        "owner_names": len(owners),
        "records": sum(by_type.values()),
        "records_by_type": dict(sorted(by_type.items())),
        "entries_by_kind": dict(sorted(kinds.items())),
        "probes": [f"{owner_name(nearest_host(i))}.{ORIGIN}" for i in (1, names // 2, names - 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=DEFAULT_NAMES)
    parser.add_argument("--records", type=int, default=None, help="stop after R records")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, default=None)
    args = parser.parse_args()
    manifest = write_zone(args.out, args.names, args.records)
    manifest_path = args.manifest or args.out.with_suffix(".json")
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="ascii")
    print(
        f"wrote {args.out}: {manifest['records']:,} records, {manifest['entries']:,} entries, "
        f"{manifest['owner_names']:,} owner names ({manifest['entries_by_kind']})"
    )


if __name__ == "__main__":
    main()
