"""Turn a dnsperf text query file into a binary one whose queries carry ECS options.

dnsperf 2.10 can add only one fixed EDNS option to every query (``-E code:hex``), so the
ECS case uses dnsperf's binary input instead (``-B``: each query is a 2-byte length and the
raw DNS message; dnsperf overwrites only the ID). Every query of the text file becomes:

* the same question, RD set (as dnsperf sends its text queries);
* an OPT record with a 4096-byte payload (as ``dnsperf -e``) and one EDNS Client Subnet
  option (RFC 7871, code 8): family 1, SOURCE PREFIX-LENGTH 24, SCOPE 0, the /24's first
  three bytes.

The /24s: ``--subnets`` (4,000) distinct ones, assigned round-robin in a shuffled order so
every one recurs in the file. With ``--prefixes FILE`` (the list ``gen_policy.py`` writes),
``--internal-share`` of them (10 %) lie inside IPv4 prefixes of the list (the policy
answers those from the ``internal`` scope); the rest lie in no prefix of the list. None is
in 0/8, 127/8 or 224/3. Deterministic (fixed seed).

A JSON summary goes to ``--mix-out``.

Usage: python bench/gen_ecs.py --queries Q.txt --out Q.ecs.bin [--prefixes prefixes.txt]
           [--subnets 4000] [--internal-share 0.1] [--mix-out Q.ecs.json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import struct
from pathlib import Path

SEED = 20261126
DEFAULT_SUBNETS = 4_000
DEFAULT_INTERNAL_SHARE = 0.10
EDNS_PAYLOAD = 4096
ECS_CODE = 8
ECS_SOURCE = 24
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
QTYPES |= {"SRV": 33, "ANY": 255}
EXCLUDED_FIRST_OCTETS = {0, 127} | set(range(224, 256))


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def qtype_number(text: str) -> int:
    text = text.upper()
    if text in QTYPES:
        return QTYPES[text]
    if text.startswith("TYPE") and text[4:].isdigit():
        return int(text[4:])
    raise ValueError(f"unknown query type {text!r}")


def ecs_option(subnet: ipaddress.IPv4Network) -> bytes:
    address = subnet.network_address.packed[: (ECS_SOURCE + 7) // 8]
    data = struct.pack("!HBB", 1, ECS_SOURCE, 0) + address
    return struct.pack("!HH", ECS_CODE, len(data)) + data


def query_message(name: str, qtype: int, subnet: ipaddress.IPv4Network) -> bytes:
    header = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 1)  # ID (dnsperf's), RD, QD=1, AR=1
    question = encode_name(name) + struct.pack("!HH", qtype, 1)
    option = ecs_option(subnet)
    opt = b"\0" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, len(option)) + option
    return header + question + opt


class PrefixSet:
    """IPv4 prefixes as one set per prefix length, to test /24s against them."""

    def __init__(self, prefixes: list[ipaddress.IPv4Network]) -> None:
        self.by_length: dict[int, set[int]] = {}
        self.below_24: set[int] = set()  # the /24s that hold a longer prefix
        for net in prefixes:
            first = int(net.network_address)
            self.by_length.setdefault(net.prefixlen, set()).add(first)
            if net.prefixlen > ECS_SOURCE:
                self.below_24.add(first >> 8)

    def covers(self, subnet: ipaddress.IPv4Network) -> bool:
        """True if a prefix contains the /24 ``subnet`` or lies inside it."""
        first = int(subnet.network_address)
        if first >> 8 in self.below_24:
            return True
        return any(
            first >> (32 - length) << (32 - length) in nets
            for length, nets in self.by_length.items()
            if length <= ECS_SOURCE
        )


def read_v4_prefixes(path: Path | None) -> list[ipaddress.IPv4Network]:
    if path is None:
        return []
    out = []
    for line in path.read_text(encoding="ascii").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            net = ipaddress.ip_network(line)
            if isinstance(net, ipaddress.IPv4Network):
                out.append(net)
    return out


def slash24(address: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((address >> 8 << 8, ECS_SOURCE))


def pick_subnets(
    count: int, internal_share: float, prefixes: list[ipaddress.IPv4Network], rng: random.Random
) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]:
    """``count`` distinct /24s in random order, and those of them inside ``prefixes``."""
    chosen: set[ipaddress.IPv4Network] = set()
    inner_pool = [net for net in prefixes if net.prefixlen <= ECS_SOURCE]
    n_internal = round(count * internal_share) if inner_pool else 0
    while len(chosen) < n_internal:
        net = rng.choice(inner_pool)
        address = int(net.network_address) + rng.randrange(net.num_addresses)
        chosen.add(slash24(address))
    internal = sorted(chosen)
    listed = PrefixSet(prefixes)
    while len(chosen) < count:
        subnet = slash24(rng.getrandbits(32))
        if subnet.network_address.packed[0] in EXCLUDED_FIRST_OCTETS or subnet in chosen:
            continue
        if not listed.covers(subnet):
            chosen.add(subnet)
    subnets = sorted(chosen)
    rng.shuffle(subnets)
    return subnets, internal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, required=True, help="dnsperf text query file")
    parser.add_argument("--out", type=Path, required=True, help="binary (-B) query file")
    parser.add_argument("--prefixes", type=Path, default=None)
    parser.add_argument("--subnets", type=int, default=DEFAULT_SUBNETS)
    parser.add_argument("--internal-share", type=float, default=DEFAULT_INTERNAL_SHARE)
    parser.add_argument("--mix-out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(SEED)
    prefixes = read_v4_prefixes(args.prefixes)
    subnets, internal = pick_subnets(args.subnets, args.internal_share, prefixes, rng)
    chunks = []
    lines = [ln.split() for ln in args.queries.read_text(encoding="ascii").splitlines()]
    questions = [(parts[0], qtype_number(parts[1])) for parts in lines if len(parts) >= 2]
    for i, (name, qtype) in enumerate(questions):
        message = query_message(name, qtype, subnets[i % len(subnets)])
        chunks.append(struct.pack("!H", len(message)) + message)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(b"".join(chunks))
    summary = {
        "queries": len(questions),
        "source_file": str(args.queries),
        "ecs_subnets": len(subnets),
        "ecs_source_prefix_length": ECS_SOURCE,
        "ecs_subnets_inside_prefix_list": len(internal),
        "example_inside": str(internal[0]) if internal else None,
        "example_outside": str(next(s for s in subnets if s not in set(internal))),
        "edns_payload": EDNS_PAYLOAD,
        "seed": SEED,
    }
    if args.mix_out is not None:
        args.mix_out.write_text(json.dumps(summary, indent=2) + "\n", encoding="ascii")
    print(
        f"wrote {args.out} ({len(questions)} queries with ECS from {len(subnets)} distinct /24s, "
        f"{len(internal)} of them inside the prefix list)"
    )


if __name__ == "__main__":
    main()
