"""Generate a deterministic dnsperf query file for the ``bench.example.`` zone.

Two modes:

* ``repeat`` (default, 10,000 lines): a realistic mix drawn from a small set of names, so
  every name repeats many times (a server with an answer cache runs warm).
* ``distinct`` (100,000 lines): every line has a different query name, mostly wildcard
  hits and NXDOMAIN (the cold-cache / cache-busting case).

A JSON file with the per-category counts is written next to the query file (``--mix-out``).

Usage: python bench/gen_queries.py --mode repeat --out Q.txt --mix-out Q.mix.json
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

import gen_zone as z

SEED = 20241125
ZONE = z.ORIGIN.rstrip(".")

Query = tuple[str, str]
Picker = Callable[[random.Random], Query]

# Category -> share of the file.  The shares are exact (largest-remainder rounding).
REPEAT_MIX: dict[str, float] = {
    "hit_a": 0.40,
    "hit_aaaa": 0.10,
    "hit_mx": 0.05,
    "cname": 0.10,
    "wildcard": 0.10,
    "nxdomain": 0.15,
    "nodata": 0.10,
}
DISTINCT_MIX: dict[str, float] = {
    "wildcard": 0.50,
    "wildcard_nodata": 0.05,
    "nxdomain": 0.45,
}
DEFAULT_LINES = {"repeat": 10_000, "distinct": 100_000}

WILDCARD_POOL = 500  # distinct wildcard labels used in repeat mode
NXDOMAIN_POOL = 1000  # distinct non-existent names used in repeat mode

HOSTS_AAAA = [i for i in range(z.N_HOSTS) if z.host_has_aaaa(i)]
HOSTS_MX = [i for i in range(z.N_HOSTS) if z.host_has_mx(i)]
HOSTS_NO_AAAA = [i for i in range(z.N_HOSTS) if not z.host_has_aaaa(i)]
HOSTS_NO_MX = [i for i in range(z.N_HOSTS) if not z.host_has_mx(i)]


def fqdn(relative: str) -> str:
    return f"{relative}.{ZONE}" if relative else ZONE


def host(i: int) -> str:
    return fqdn(z.host_name(i))


def pick_hit_a(rng: random.Random) -> Query:
    return host(rng.randrange(z.N_HOSTS)), "A"


def pick_hit_aaaa(rng: random.Random) -> Query:
    return host(rng.choice(HOSTS_AAAA)), "AAAA"


def pick_hit_mx(rng: random.Random) -> Query:
    if rng.random() < 0.3:
        return ZONE, "MX"
    return host(rng.choice(HOSTS_MX)), "MX"


def pick_cname(rng: random.Random) -> Query:
    return fqdn(z.alias_name(rng.randrange(z.N_ALIASES))), rng.choice(("A", "A", "AAAA"))


def pick_wildcard(rng: random.Random) -> Query:
    return fqdn(f"w{rng.randrange(WILDCARD_POOL)}.{z.WILDCARD_PARENT}"), "A"


def pick_nxdomain(rng: random.Random) -> Query:
    k = rng.randrange(NXDOMAIN_POOL)
    if k % 4 == 0:  # below an existing name
        return fqdn(f"nx{k}.{z.host_name(k % z.N_HOSTS)}"), "A"
    return fqdn(f"nx-{k:04d}"), rng.choice(("A", "A", "AAAA"))


def pick_nodata(rng: random.Random) -> Query:
    roll = rng.random()
    if roll < 0.4:
        return host(rng.choice(HOSTS_NO_MX)), "MX"
    if roll < 0.8:
        return host(rng.choice(HOSTS_NO_AAAA)), "AAAA"
    return fqdn(rng.choice(z.ENT_NAMES)), "A"


REPEAT_PICKERS: dict[str, Picker] = {
    "hit_a": pick_hit_a,
    "hit_aaaa": pick_hit_aaaa,
    "hit_mx": pick_hit_mx,
    "cname": pick_cname,
    "wildcard": pick_wildcard,
    "nxdomain": pick_nxdomain,
    "nodata": pick_nodata,
}


def allocate(mix: dict[str, float], total: int) -> dict[str, int]:
    """Split ``total`` lines over the categories (largest remainder, deterministic)."""
    raw = {cat: share * total for cat, share in mix.items()}
    counts = {cat: int(value) for cat, value in raw.items()}
    leftover = total - sum(counts.values())
    by_remainder = sorted(raw, key=lambda cat: (counts[cat] - raw[cat], cat))
    for cat in by_remainder[:leftover]:
        counts[cat] += 1
    return counts


def repeat_queries(total: int, rng: random.Random) -> tuple[list[Query], dict[str, int]]:
    counts = allocate(REPEAT_MIX, total)
    queries = [REPEAT_PICKERS[cat](rng) for cat, n in counts.items() for _ in range(n)]
    rng.shuffle(queries)
    return queries, counts


def unique_labels(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct random-looking labels."""
    seen: set[str] = set()
    labels: list[str] = []
    while len(labels) < n:
        label = f"{rng.getrandbits(48):012x}"
        if label not in seen:
            seen.add(label)
            labels.append(label)
    return labels


def distinct_queries(total: int, rng: random.Random) -> tuple[list[Query], dict[str, int]]:
    counts = allocate(DISTINCT_MIX, total)
    labels = iter(unique_labels(total, rng))
    wild = z.WILDCARD_PARENT
    queries: list[Query] = []
    queries += [(fqdn(f"d{next(labels)}.{wild}"), "A") for _ in range(counts["wildcard"])]
    queries += [(fqdn(f"d{next(labels)}.{wild}"), "AAAA") for _ in range(counts["wildcard_nodata"])]
    queries += [(fqdn(f"x{next(labels)}"), "A") for _ in range(counts["nxdomain"])]
    rng.shuffle(queries)
    return queries, counts


def write_outputs(
    queries: list[Query], counts: dict[str, int], mode: str, out: Path, mix_out: Path | None
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{name} {qtype}\n" for name, qtype in queries), encoding="ascii")
    mix = {
        "mode": mode,
        "lines": len(queries),
        "distinct_qnames": len({name for name, _ in queries}),
        "distinct_questions": len(set(queries)),
        "seed": SEED,
        "categories": counts,
    }
    if mix_out is not None:
        mix_out.write_text(json.dumps(mix, indent=2) + "\n", encoding="ascii")
    print(f"wrote {out} ({len(queries)} queries, {mix['distinct_qnames']} distinct names)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(DEFAULT_LINES), default="repeat")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mix-out", type=Path, default=None)
    parser.add_argument(
        "--mixed-case",
        type=int,
        default=0,
        metavar="N",
        help="write the list N times, each query's name in a random letter case (as "
        "resolvers that use 0x20 send them): no two lines' bytes then repeat soon",
    )
    args = parser.parse_args()
    total = args.lines or DEFAULT_LINES[args.mode]
    rng = random.Random(SEED)
    build = repeat_queries if args.mode == "repeat" else distinct_queries
    queries, counts = build(total, rng)
    if args.mixed_case:
        queries = [(random_case(name, rng), qtype) for _ in range(args.mixed_case)
                   for name, qtype in queries]  # fmt: skip
        counts = {category: n * args.mixed_case for category, n in counts.items()}
    write_outputs(queries, counts, args.mode, args.out, args.mix_out)


def random_case(name: str, rng: random.Random) -> str:
    bits = rng.getrandbits(len(name))
    return "".join(c.upper() if bits >> i & 1 else c for i, c in enumerate(name))


if __name__ == "__main__":
    main()
