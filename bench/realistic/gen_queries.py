"""Generate dnsperf query files that model real traffic to the ``real.example.`` zone.

Loads (``--load``), each ``--lines`` long (1,000,000), deterministic (fixed seed):

* ``zipf``: names drawn from a Zipf distribution (exponent ``--zipf-s``, 1.0) over every
  name that resolves -- each entry of ``gen_zone.py`` (a delegation is asked as its cut or
  as ``www.`` below it), the fixed names, the empty non-terminals and one name under the
  wildcard per hundred entries -- ranked in a shuffled order, so the popular names are of
  every kind;
* ``flood``: a random-subdomain flood: every name new, a random 8-16 character label under
  the apex (half) or under a name of the zone drawn uniformly (half);
* ``mix``: 80 % from the Zipf head (the ``--head`` most popular names, 1 % of them, drawn
  by Zipf), 15 % from the long tail (the other names, uniformly), 5 % flood names;
* ``policy``: the ``mix`` file again, as dnsperf binary input (``-B``): every query with an
  OPT record and an EDNS Client Subnet option from ``--subnets`` (4,000) distinct /24s,
  10 % of them inside the 10,000-prefix list of ``gen_policy.py`` (``--prefixes``), built
  with ``bench/gen_ecs.py``'s functions. The text file is written too.

Query types: A 60 %, AAAA 30 %, MX 5 %, TXT 5 % (``flood``: A 80 %, AAAA 20 %), whether the
name has that type or not. Every query's name is in a random letter case (0x20, as
resolvers send them) unless ``--case lower``, so in ``zipf`` a (name, type, case) triple
rarely recurs even for the most popular names.

A JSON summary (``--mix-out``) has the expected outcome of every query (answer, nodata,
cname, referral, wildcard, nxdomain), the number of distinct names and of distinct exact
questions; ``bench/report.py`` prints the outcome shares.

Usage: python bench/realistic/gen_queries.py --load zipf|flood|mix|policy --out Q.txt
           [--names 200000] [--lines 1000000] [--mix-out Q.json] [--case random|lower]
           [--prefixes prefixes.txt --bin-out Q.ecs.bin --subnets 4000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import struct
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path

import gen_zone as z
from _bench import bench_module

SEED = 20261127
DEFAULT_LINES = 1_000_000
ZIPF_S = 1.0
HEAD_SHARE = 0.01  # the Zipf head of the mix: the most popular 1 % of the names
MIX = (("head", 0.80), ("tail", 0.15), ("random", 0.05))
QTYPES = (("A", 0.60), ("AAAA", 0.30), ("MX", 0.05), ("TXT", 0.05))
FLOOD_QTYPES = (("A", 0.80), ("AAAA", 0.20))
LABEL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
WILDCARD_TYPES = frozenset({"A", "AAAA", "TXT"})
LOADS = ("zipf", "flood", "mix", "policy")


class Target(Enum):
    """What a name of the population is, which decides the answer's outcome."""

    HOST = "host"  # records of its own (the fixed names too)
    CNAME = "cname"
    DELEGATION = "delegation"  # at or below a zone cut: a referral
    WILDCARD = "wildcard"  # below *.wild, synthesised
    ENT = "ent"  # an empty non-terminal: NODATA


@dataclass(frozen=True)
class Item:
    owner: str  # relative to the origin, "" for the apex
    kind: Target
    types: frozenset[str] = frozenset()

    def outcome(self, qtype: str) -> str:
        if self.kind is Target.HOST:
            return "answer" if qtype in self.types else "nodata"
        if self.kind is Target.WILDCARD:
            return "wildcard" if qtype in WILDCARD_TYPES else "wildcard_nodata"
        if self.kind is Target.ENT:
            return "nodata"
        return self.kind.value if self.kind is Target.CNAME else "referral"


FIXED = (
    Item("", Target.HOST, frozenset({"SOA", "NS", "MX", "TXT", "A", "AAAA"})),
    Item("ns1", Target.HOST, frozenset({"A", "AAAA"})),
    Item("ns2", Target.HOST, frozenset({"A"})),
    Item("mail", Target.HOST, frozenset({"A", "AAAA"})),
    Item(z.WILDCARD_EXPLICIT, Target.HOST, frozenset({"A"})),
    Item(z.ENT_LEAF, Target.HOST, frozenset({"A"})),
)


def empty_non_terminals(names: int) -> list[Item]:
    owners = {"ent", "deep.ent", z.WILDCARD_PARENT}
    for e in z.entries(names):
        labels = e.owner.split(".")
        owners.update(".".join(labels[k:]) for k in range(1, len(labels)))
    return [Item(owner, Target.ENT) for owner in sorted(owners)]


@cache
def popularity(names: int) -> tuple[Item, ...]:
    """Every name that resolves, most popular first (a fixed shuffle)."""
    items = list(FIXED)
    for e in z.entries(names):
        if e.kind is z.Kind.HOST:
            items.append(Item(e.owner, Target.HOST, frozenset(e.types)))
        elif e.kind is z.Kind.CNAME:
            items.append(Item(e.owner, Target.CNAME))
        else:
            owner = e.owner if e.index % 200 == 7 else f"www.{e.owner}"
            items.append(Item(owner, Target.DELEGATION))
    items += [Item(f"u{k}.{z.WILDCARD_PARENT}", Target.WILDCARD) for k in range(names // 100)]
    items += empty_non_terminals(names)
    random.Random(SEED).shuffle(items)
    return tuple(items)


def zipf_weights(n: int, s: float) -> list[float]:
    """Cumulative weights of ranks 1..n: P(rank r) is proportional to 1 / r**s."""
    return list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))


def absolute(owner: str) -> str:
    origin = z.ORIGIN.rstrip(".")
    return f"{owner}.{origin}" if owner else origin


class Caser:
    """Writes a name in a random letter case: each ASCII letter's 0x20 bit at random."""

    def __init__(self, rng: random.Random, random_case: bool) -> None:
        self.rng = rng
        self.random_case = random_case
        self.masks: dict[str, tuple[int, int, int]] = {}

    def __call__(self, name: str) -> str:
        if not self.random_case:
            return name
        found = self.masks.get(name)
        if found is None:
            raw = name.encode("ascii")
            letters = bytes(0x20 if 97 <= b <= 122 else 0 for b in raw)
            found = (int.from_bytes(raw), int.from_bytes(letters), len(raw))
            if len(self.masks) < 1_000_000:
                self.masks[name] = found
        value, letters, length = found
        flipped = value ^ (self.rng.getrandbits(8 * length) & letters)
        return flipped.to_bytes(length).decode("ascii")


def draw_types(rng: random.Random, table: tuple[tuple[str, float], ...], k: int) -> list[str]:
    qtypes, weights = zip(*table, strict=True)
    return rng.choices(qtypes, weights=weights, k=k)


def random_label(rng: random.Random) -> str:
    return "".join(rng.choices(LABEL_CHARS, k=rng.randint(8, 16)))


def flood_names(rng: random.Random, items: tuple[Item, ...], k: int) -> list[tuple[str, str]]:
    """``k`` new names (owner, outcome): a random label under the apex or under an item."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    while len(out) < k:
        label = random_label(rng)
        parent = items[rng.randrange(len(items))] if rng.random() < 0.5 else None
        owner = f"{label}.{parent.owner}" if parent and parent.owner else label
        if owner in seen:
            continue
        seen.add(owner)
        if parent is None or parent.kind not in (Target.WILDCARD, Target.DELEGATION):
            outcome = "nxdomain"
        else:
            outcome = "referral" if parent.kind is Target.DELEGATION else "wildcard"
        out.append((owner, outcome))
    return out


@dataclass
class Questions:
    lines: list[str]
    outcomes: Counter[str]
    sources: Counter[str]
    distinct_names: int
    distinct_exact: int


def build(load: str, names: int, lines: int, s: float, head_share: float, random_case: bool):
    # policy asks the questions of the mix
    rng = random.Random(SEED + LOADS.index("mix" if load == "policy" else load))
    caser = Caser(rng, random_case)
    items = popularity(names)
    picked: list[tuple[str, str, str]] = []  # (owner, qtype, outcome)
    sources: Counter[str] = Counter()
    if load == "zipf":
        cum = zipf_weights(len(items), s)
        qtypes = draw_types(rng, QTYPES, lines)
        for item, qtype in zip(rng.choices(items, cum_weights=cum, k=lines), qtypes, strict=True):
            picked.append((item.owner, qtype, item.outcome(qtype)))
        sources["zipf"] = lines
    elif load == "flood":
        qtypes = draw_types(rng, FLOOD_QTYPES, lines)
        for (owner, outcome), qtype in zip(flood_names(rng, items, lines), qtypes, strict=True):
            picked.append((owner, qtype, outcome))
        sources["random"] = lines
    else:  # mix (policy: the same questions, with ECS)
        head = max(100, round(len(items) * head_share))
        kinds = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX], k=lines)
        sources.update(kinds)
        heads = iter(rng.choices(items[:head], cum_weights=zipf_weights(head, s), k=lines))
        flood = iter(flood_names(rng, items, sources["random"]))
        flood_types = iter(draw_types(rng, FLOOD_QTYPES, sources["random"]))
        for kind, qtype in zip(kinds, draw_types(rng, QTYPES, lines), strict=True):
            if kind == "random":
                owner, outcome = next(flood)
                picked.append((owner, next(flood_types), outcome))
                continue
            item = next(heads) if kind == "head" else items[rng.randrange(head, len(items))]
            picked.append((item.owner, qtype, item.outcome(qtype)))
    text = [f"{caser(absolute(owner))} {qtype}" for owner, qtype, _ in picked]
    return Questions(
        lines=text,
        outcomes=Counter(outcome for _, _, outcome in picked),
        sources=sources,
        distinct_names=len({owner for owner, _, _ in picked}),
        distinct_exact=len(set(text)),
    )


def write_ecs(text_lines: list[str], out: Path, prefixes: Path, subnets: int) -> dict:
    """The questions as dnsperf -B input with ECS (bench/gen_ecs.py's encoding)."""
    ecs = bench_module("gen_ecs")
    rng = random.Random(ecs.SEED)
    chosen, internal = ecs.pick_subnets(
        subnets, ecs.DEFAULT_INTERNAL_SHARE, ecs.read_v4_prefixes(prefixes), rng
    )
    chunks = []
    for n, line in enumerate(text_lines):
        name, qtype = line.split()
        message = ecs.query_message(name, ecs.qtype_number(qtype), chosen[n % len(chosen)])
        chunks.append(struct.pack("!H", len(message)) + message)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(chunks))
    inside = set(internal)
    return {
        "ecs_subnets": len(chosen),
        "ecs_source_prefix_length": ecs.ECS_SOURCE,
        "ecs_subnets_inside_prefix_list": len(internal),
        "example_inside": str(internal[0]) if internal else None,
        "example_outside": str(next(s for s in chosen if s not in inside)),
        "edns_payload": ecs.EDNS_PAYLOAD,
        "file": str(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=LOADS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="dnsperf text query file")
    parser.add_argument("--names", type=int, default=z.DEFAULT_NAMES, help="the zone's --names")
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES)
    parser.add_argument("--zipf-s", type=float, default=ZIPF_S)
    parser.add_argument("--head-share", type=float, default=HEAD_SHARE)
    parser.add_argument("--case", choices=("random", "lower"), default="random")
    parser.add_argument("--mix-out", type=Path, default=None)
    parser.add_argument("--prefixes", type=Path, help="policy: gen_policy.py's prefixes.txt")
    parser.add_argument("--bin-out", type=Path, help="policy: the dnsperf -B file")
    parser.add_argument("--subnets", type=int, default=4_000, help="policy: distinct ECS /24s")
    args = parser.parse_args()
    if args.load == "policy" and not (args.prefixes and args.bin_out):
        parser.error("--load policy needs --prefixes and --bin-out")
    random_case = args.case == "random"
    q = build(args.load, args.names, args.lines, args.zipf_s, args.head_share, random_case)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(q.lines) + "\n", encoding="ascii")
    summary: dict[str, object] = {
        "mode": args.load,
        "lines": len(q.lines),
        "distinct_qnames": q.distinct_names,
        "distinct_questions": q.distinct_exact,
        "categories": dict(q.outcomes.most_common()),
        "sources": dict(q.sources.most_common()),
        "zone_names": args.names,
        "zipf_s": args.zipf_s,
        "case": args.case,
        "seed": SEED,
    }
    if args.load == "policy":
        summary["ecs"] = write_ecs(q.lines, args.bin_out, args.prefixes, args.subnets)
    if args.mix_out:
        args.mix_out.write_text(json.dumps(summary, indent=1) + "\n", encoding="ascii")
    print(
        f"wrote {args.out}: {args.load}, {len(q.lines):,} queries, {q.distinct_names:,} "
        f"distinct names, {q.distinct_exact:,} distinct exact questions"
    )


if __name__ == "__main__":
    main()
