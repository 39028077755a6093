"""Matching cost against the number of prefixes: 100,000 vs 10, same run.

Run: .venv/bin/python bench/prefix_scale.py
Prints the time per lookup for 10, 1,000 and 100,000 random IPv4 prefixes and the
ratio to 10 (best of 7 runs of 20,000 lookups each). A longest-prefix structure
keeps the ratio near 1; CPU caches alone make big sets somewhat slower.
"""

from __future__ import annotations

import ipaddress
import random
import time

from dnspol.policy.prefixes import PrefixSet, parse_prefix


def random_prefixes(rng: random.Random, count: int) -> list[str]:
    out = set()
    while len(out) < count:
        length = rng.choice((8, 12, 16, 20, 24, 24, 24, 28, 32))
        net = ipaddress.IPv4Network((rng.getrandbits(32), length), strict=False)
        out.add(str(net))
    return sorted(out)


def per_lookup(count: int, lookups: int = 20_000) -> float:
    prefixes = PrefixSet(parse_prefix(p) for p in random_prefixes(random.Random(count), count))
    rng = random.Random(2)
    blocks = rng.choices(list(prefixes), k=lookups)
    addresses = [b.value + rng.randrange(1 << (32 - b.length)) for b in blocks]
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for address in addresses:
            prefixes.contains(address, 32)
        best = min(best, time.perf_counter() - start)
    return best / lookups


def main() -> None:
    base = per_lookup(10)
    print(f"{'prefixes':>10} {'µs/lookup':>10} {'ratio':>6}")
    for count in (10, 1_000, 100_000):
        cost = base if count == 10 else per_lookup(count)
        print(f"{count:>10} {cost * 1e6:>10.3f} {cost / base:>6.2f}")


if __name__ == "__main__":
    main()
