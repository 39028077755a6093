"""GeoIP rules against the same rules on ``client:`` subnets: load time, memory, decision cost.

    python bench/geoip_cost.py [--networks 300000] [--db FILE] [--clients 4000]
        [--subnets 4000] [--repeat 5]

Writes (or reuses, with ``--db``) a MaxMind DB of ``--networks`` networks (a tenth IPv6,
IPv4 lengths /18-/24, records of 250 countries on every continent, each record written
once and shared, as in GeoLite2-Country), then two configurations of the bench zone:

- ``geo``: ``country: [DE, FR, ...]`` (ten countries) -> ``internal``, the split horizon of
  ``gen_policy.py`` by country;
- ``client``: the same rule on ``client: countries``, where ``countries`` lists exactly the
  networks the database gives those countries (what the GeoIP load computes).

It prints the time and memory (``tracemalloc`` peak) of ``load_config`` for each, and the
µs per ``Decider.decide`` for random clients and ECS /24s from a trusted resolver, after
checking that both configurations make the same decision (ECS SCOPE included) for every
query. The ratio geo/client is the cost of a GeoIP criterion over a subnet criterion.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import decide_cost  # noqa: E402
import gen_policy  # noqa: E402
import gen_zone  # noqa: E402

from dnspol.config import load_config  # noqa: E402
from dnspol.policy.decide import Decider  # noqa: E402
from dnspol.policy.geoip import GeoIn  # noqa: E402

CONTINENTS = ["EU", "NA", "SA", "AS", "AF", "OC"]


def country_code(index: int) -> str:
    """250 two-letter codes: AA, AB, ... (the rule names the first ten)."""
    return chr(ord("A") + index // 26) + chr(ord("A") + index % 26)


def write_database(path: Path, count: int, seed: int = 20261127) -> None:
    from dnspol.testing.geoip import place, write_mmdb

    rng = random.Random(seed)
    records = [place(country_code(i), CONTINENTS[i % len(CONTINENTS)]) for i in range(250)]
    networks: dict[str, dict] = {}
    address = 1 << 24  # from 1.0.0.0, leaving 127.0.0.0/8 out
    while len(networks) < count * 9 // 10:
        length = rng.choice((18, 20, 21, 22, 22, 23, 24, 24, 24, 24))
        size = 1 << (32 - length)
        address = -(-address // size) * size
        if address >> 24 == 127:
            address = 128 << 24
        networks[str(ipaddress.IPv4Network((address, length)))] = rng.choice(records)
        address += size * rng.choice((1, 1, 2))  # some gaps: addresses without a record
    while len(networks) < count:
        net = ipaddress.IPv6Network(((0x2 << 124) | rng.getrandbits(124), 48), strict=False)
        networks[str(net)] = rng.choice(records)
    write_mmdb(path, networks, database_type="GeoLite2-Country")


def write_configs(directory: Path, database: Path) -> tuple[Path, Path]:
    zone = directory / "bench.example.zone"
    zone.write_text(gen_zone.build_zone(), encoding="ascii")
    (directory / gen_policy.OVERLAY_FILE).write_text(gen_policy.overlay_text(), encoding="ascii")
    countries = ", ".join(country_code(i) for i in range(10))
    head = f"""\
server:
  trusted_resolvers: [127.0.0.1/32]
  geoip: {{country: {database}}}
zones:
  {gen_policy.ZONE_NAME}:
    file: bench.example.zone
    scopes:
      internal: {{overlay: {gen_policy.OVERLAY_FILE}}}
"""
    rule = """\
rules:
  - name: by-country
    zone: {zone}
    match: {match}
    answer: internal
"""
    geo = directory / "geo.yaml"
    geo.write_text(
        head + rule.format(zone=gen_policy.ZONE_NAME, match=f"{{country: [{countries}]}}")
    )
    prefixes = load_config(geo).policy.rules[0].criteria
    assert isinstance(prefixes, GeoIn)
    (directory / "countries.txt").write_text("".join(f"{p}\n" for p in prefixes.prefixes))
    client = directory / "client.yaml"
    client.write_text(
        head.replace(f"  geoip: {{country: {database}}}\n", "")
        + "subnets:\n  countries: {file: countries.txt}\n"
        + rule.format(zone=gen_policy.ZONE_NAME, match="{client: countries}")
    )
    return geo, client


def timed_load(path: Path) -> tuple[object, float, float, float]:
    """(config, seconds to load, tracemalloc peak MiB while loading, MiB it keeps), the
    time from a load without tracemalloc (which slows allocations down)."""
    started = time.perf_counter()
    config = load_config(path)
    seconds = time.perf_counter() - started
    del config
    tracemalloc.start()
    config = load_config(path)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return config, seconds, peak / 2**20, kept / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=300_000)
    parser.add_argument("--db", type=Path, help="the database to use (written if missing)")
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--subnets", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        database = args.db or directory / "country.mmdb"
        if not database.exists():
            started = time.perf_counter()
            write_database(database, args.networks)
            print(f"wrote {database} in {time.perf_counter() - started:.1f} s")
        geo_path, client_path = write_configs(directory, database)
        loads = {"geo": timed_load(geo_path), "client": timed_load(client_path)}
        geo_rule = loads["geo"][0].policy.rules[0].criteria  # type: ignore[attr-defined]
        listed = [ipaddress.ip_network(str(p)) for p in geo_rule.prefixes]
    size = database.stat().st_size if args.db else 0
    print(f"database: {args.networks:,} networks {f'({size / 2**20:.1f} MiB)' if size else ''}")
    print(f"the rule's ten countries hold {len(listed):,} networks (collapsed blocks)")
    for name, (_, seconds, peak, kept) in loads.items():
        print(
            f"load_config {name:<7} {seconds * 1e3:8.0f} ms, memory peak {peak:7.1f} MiB, "
            f"kept {kept:7.1f} MiB"
        )
    extra = loads["geo"][1] - loads["client"][1]
    print(f"the GeoIP load costs {extra * 1e3:.0f} ms more than the subnet list's")
    rng = random.Random(20261127)
    clients = decide_cost.client_addresses(args.clients, listed, rng)
    v4 = [net for net in listed if net.version == 4]
    subnets, _ = decide_cost.gen_ecs.pick_subnets(args.subnets, 0.1, v4, rng)
    ecs = [decide_cost.gen_ecs.ecs_option(subnet)[4:] for subnet in subnets]
    cases = {
        "client addresses, no ECS": decide_cost.queries(clients, [None] * len(clients), rng),
        "ECS /24s from 127.0.0.1": decide_cost.queries(["127.0.0.1"] * len(ecs), ecs, rng),
    }
    policies = {name: load[0].policy for name, load in loads.items()}  # type: ignore[attr-defined]
    deciders = {name: Decider.build(policy) for name, policy in policies.items()}
    print(f"{'case':<28} {'geo':>8} {'client':>8} {'ratio':>6}  internal")
    for label, asked in cases.items():
        for query in asked:
            one, other = (d.decide(*query, random.Random(1)) for d in deciders.values())
            if one != other:
                raise SystemExit(f"geo and client decide differently for {query}")
        best = interleaved_best(deciders, asked, args.repeat)
        geo, client = best["geo"], best["client"]
        internal = sum(deciders["geo"].decide(*q, rng).scope == "internal" for q in asked)
        ratio = geo / client
        print(f"{label:<28} {geo:>6.2f}us {client:>6.2f}us {ratio:>6.3f}  {internal}/{len(asked)}")
    print(
        f"µs per Decider.decide, best of {args.repeat} passes taken in turns; "
        "both decide alike on every query"
    )


def interleaved_best(deciders: dict[str, Decider], asked: list, repeat: int) -> dict[str, float]:
    """Best µs per decision of each decider, their passes taken in turns, so that a busy
    moment of a shared machine slows both alike."""
    rng = random.Random(1)
    best = dict.fromkeys(deciders, float("inf"))
    for _ in range(repeat):
        for name, decider in deciders.items():
            decide = decider.decide
            started = time.perf_counter()
            for query in asked:
                decide(*query, rng)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / len(asked) * 1e6 for name, seconds in best.items()}


if __name__ == "__main__":
    main()
