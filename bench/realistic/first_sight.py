"""In-process cost of a query seen for the first time, against the same query repeated.

    python bench/realistic/first_sight.py [--names 200000] [--queries 200000] [--repeat 3]
        [--zone FILE | --config dnspol.yaml] [--edns]

Loads the realistic zone (``gen_zone.py``, generated into bench/realistic/zone/ when
missing) with ``dnspol.state.snapshot_loader`` and calls ``dnspol.handler.Handler.handle``
directly, no sockets (like bench/handler_cost.py). The queries: one per name of the zone
(``gen_queries.popularity``; up to ``--queries``), each with a query type drawn from
A/AAAA/MX/TXT and its name in a random letter case, so every (name, type, case) is new
on the first pass. Then:

* ``first sight``: one pass over them, each query never seen before;
* ``second sight``: the same bytes again, once (a store that admits on a second
  sighting fills here);
* ``new case``: the same (name, type) pairs, each in another random case;
* ``repeated``: the very same bytes again, best of ``--repeat`` passes.

Prints µs per query of each and the ratio first sight / repeated: 1.0 means an answer
costs the same whether or not it was asked before (compiled at load); a large ratio
means the speed of repeated queries comes from a cache that a long tail, random
subdomains or 0x20 case never hit. The sizes of the snapshot's answer stores after the
run are printed when it has them.
"""

from __future__ import annotations

import argparse
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import gen_queries as q
import gen_zone as z
from _bench import bench_module

from dnspol.handler import Handler, Listener
from dnspol.state import ServerState, snapshot_loader

SEED = 20261128
HERE = Path(__file__).resolve().parent
STORES = ("answers", "decisions", "repeats", "zone_decisions")  # reported if present


def questions(names: int, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(name, type) pairs, one per popular name, in the popularity order."""
    items = q.popularity(names)[:count]
    qtypes = q.draw_types(rng, q.QTYPES, len(items))
    return [(q.absolute(item.owner), qtype) for item, qtype in zip(items, qtypes, strict=True)]


def wire(name: str, qtype: str, ident: int, edns: bool) -> bytes:
    ecs = bench_module("gen_ecs")
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1 if edns else 0)
    question = ecs.encode_name(name) + struct.pack("!HH", ecs.qtype_number(qtype), 1)
    opt = b"\0" + struct.pack("!HHIH", 41, 4096, 0, 0) if edns else b""
    return header + question + opt


def messages(pairs: list[tuple[str, str]], rng: random.Random, edns: bool) -> list[bytes]:
    caser = q.Caser(rng, random_case=True)
    return [wire(caser(name), qtype, rng.getrandbits(16), edns) for name, qtype in pairs]


def per_query_us(handler: Handler, queries: list[bytes]) -> float:
    handle, peer, listener = handler.handle, ("127.0.0.1", 40000), Listener("127.0.0.1", 53, "udp")
    start = time.perf_counter()
    for message in queries:
        handle(message, peer, listener)
    return (time.perf_counter() - start) / len(queries) * 1e6


def zone_file(names: int) -> Path:
    path = HERE / "zone" / f"real.example.{names}.zone"
    if not path.exists():
        cmd = [sys.executable, str(HERE / "gen_zone.py"), "--names", str(names), "--out", str(path)]
        subprocess.run(cmd, check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=z.DEFAULT_NAMES)
    parser.add_argument("--queries", type=int, default=200_000, help="at most this many")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zone", type=Path, help="instead of the generated zone")
    parser.add_argument("--config", type=Path, help="a dnspol config instead of --zone")
    parser.add_argument("--edns", action="store_true", help="queries carry an OPT record")
    args = parser.parse_args()
    rng = random.Random(SEED)
    if args.config:
        loader = snapshot_loader(config=str(args.config))
    else:
        loader = snapshot_loader(zone_args=[str(args.zone or zone_file(args.names))])
    start = time.perf_counter()
    state = ServerState(loader())
    loaded = time.perf_counter() - start
    handler = Handler(state, seed=1)
    pairs = questions(args.names, args.queries, rng)
    first = messages(pairs, rng, args.edns)
    other_case = messages(pairs, rng, args.edns)
    figures = {"first sight": per_query_us(handler, first)}
    figures["second sight"] = per_query_us(handler, first)
    figures["new case"] = per_query_us(handler, other_case)
    figures["repeated"] = min(per_query_us(handler, first) for _ in range(args.repeat))
    print(f"zone loaded in {loaded:.1f} s; {len(first):,} queries, one per name, A/AAAA/MX/TXT")
    for label, value in figures.items():
        print(f"  {label:<13} {value:8.2f} µs/query")
    print(f"first sight / repeated = {figures['first sight'] / figures['repeated']:.2f}")
    stores = [
        f"{name} {len(getattr(state.snapshot, name)):,}"
        for name in STORES
        if hasattr(getattr(state.snapshot, name, None), "__len__")
    ]
    if stores:
        print("answer stores after the run: " + ", ".join(stores))


if __name__ == "__main__":
    main()
