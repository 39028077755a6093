"""In-process cost of Handler.handle() per query, no sockets: where the µs go.

    python bench/handler_cost.py --config bench/zone/policy/dnspol.yaml \
        --queries bench/zone/queries-repeat.txt [--edns] [--ecs-bin F] [--peer 127.0.0.1]

Reports µs per query for the first (cold) pass over the query list and for
later (warm) passes, best of --repeat. A profiling aid beside bench/run.sh,
which measures the real server; figures here leave out recvfrom/sendto.
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

from dnslib import EDNS0, DNSRecord

from dnspol.handler import Handler, Listener
from dnspol.state import ServerState, snapshot_loader


def text_queries(path: Path, edns: bool) -> list[bytes]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, qtype = line.split()
        record = DNSRecord.question(name, qtype)
        if edns:
            record.add_ar(EDNS0(udp_len=4096))
        out.append(bytes(record.pack()))
    return out


def binary_queries(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (length,) = struct.unpack_from("!H", data, i)
        out.append(data[i + 2 : i + 2 + length])
        i += 2 + length
    return out


def per_query_us(handle, queries, peer, listener) -> float:
    start = time.perf_counter()
    for wire in queries:
        handle(wire, peer, listener)
    return (time.perf_counter() - start) / len(queries) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--queries", type=Path)
    parser.add_argument("--ecs-bin", type=Path, help="dnsperf -B file (gen_ecs.py)")
    parser.add_argument("--edns", action="store_true")
    parser.add_argument("--peer", default="127.0.0.1")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slow", action="store_true", help="fast path off")
    args = parser.parse_args()
    if args.ecs_bin:
        queries = binary_queries(args.ecs_bin)
    else:
        queries = text_queries(args.queries, args.edns)
    state = ServerState(snapshot_loader(config=args.config)())
    handler = Handler(state, seed=1)
    handler.fast_path = not args.slow
    listener = Listener("127.0.0.1", 5353, "udp")
    peer = (args.peer, 40000)
    cold = per_query_us(handler.handle, queries, peer, listener)
    warm = min(per_query_us(handler.handle, queries, peer, listener) for _ in range(args.repeat))
    snap = state.snapshot
    entries = (len(snap.answers), len(snap.decisions), len(snap.repeats))
    # without exact repeats (as from resolvers that randomise the qname's case, 0x20)
    snap.repeats.entries.clear()
    snap.repeats.limit = 0
    varied = min(per_query_us(handler.handle, queries, peer, listener) for _ in range(args.repeat))
    print(
        f"{len(queries)} queries: cold {cold:.2f} µs/query, warm {warm:.2f} µs/query, "
        f"warm without the repeat cache {varied:.2f} µs/query"
    )
    print("cache entries: answers {}, decisions {}, repeats {}".format(*entries))


if __name__ == "__main__":
    main()
