"""In-process cost of response-rate limiting per UDP answer, against the answer itself.

Serves the bundled example (policies/dnspol.yaml) in-process and times, over a mix of
queries from many client addresses, ``Handler.handle`` alone and ``handle`` followed
by the rate-limit stage (what the UDP loop runs when ``server.rate_limit`` is set),
with rates high enough that nothing is limited (every answer is accounted, none
dropped: the cost a legitimate load pays). Reports µs per query for both, the
stage's share, and the qps ratio it implies for a server bound by this work.

    python bench/ratelimit_cost.py [--clients 1000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from dnslib import DNSRecord

from dnspol.handler import Handler, Listener
from dnspol.ratelimit import RateLimit
from dnspol.state import ServerState, snapshot_loader

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["www.example.com", "example.com", "mail.example.com", "nope.example.com",
         "api.example.com", "www.example.org"]  # fmt: skip
TYPES = ["A", "AAAA", "MX", "TXT", "SOA"]


def workload(clients: int, count: int = 20_000) -> list[tuple[bytes, str]]:
    rng = random.Random(1)
    queries = [bytes(DNSRecord.question(name, qtype).pack()) for name in NAMES for qtype in TYPES]
    sources = [f"10.{i >> 8 & 255}.{i & 255}.{rng.randrange(1, 255)}" for i in range(clients)]
    return [(rng.choice(queries), rng.choice(sources)) for _ in range(count)]


def timed(run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        count = run()
        best = min(best, (time.perf_counter() - start) / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    state = ServerState(snapshot_loader(config=str(ROOT / "policies/dnspol.yaml"))())
    handler = Handler(state, seed=1)
    listener = Listener("127.0.0.1", 5353, "udp")
    load = workload(args.clients)
    limits = RateLimit(*([1_000_000] * 5))  # everything accounted, nothing limited
    handle, limit = handler.handle, handler.rate_limit

    def answers_only() -> int:
        for wire, client in load:
            handle(wire, (client, 40000), listener)
        return len(load)

    def answers_limited() -> int:
        for wire, client in load:
            out = handle(wire, (client, 40000), listener)
            if out is not None:
                limit(out, client, limits, wire)
        return len(load)

    answers_only()  # warm the stores
    answers_limited()
    plain = timed(answers_only, args.repeat)
    limited = timed(answers_limited, args.repeat)
    table = len(handler._limiter.entries) if handler._limiter else 0
    print(f"{len(load):,} queries from {args.clients:,} clients (table: {table:,} entries)")
    print(f"answer only:            {plain:.2f} µs/query")
    print(f"answer + rate limiting: {limited:.2f} µs/query (+{limited - plain:.2f} µs, "
          f"{100 * (limited - plain) / plain:.0f}%)")  # fmt: skip
    print(f"qps ratio, server bound by this work: {plain / limited:.2f}")


if __name__ == "__main__":
    main()
