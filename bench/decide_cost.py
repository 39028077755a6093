"""In-process cost of one policy decision: ``Policy.evaluate`` against ``Decider.decide``.

    python bench/decide_cost.py [--config bench/zone/policy/dnspol.yaml] [--clients 4000]
        [--subnets 4000] [--repeat 5]

Without ``--config`` it writes the ``--policy`` configuration of run.sh (gen_zone.py,
gen_policy.py: the split-horizon rules with 10,000 prefixes, 127.0.0.1 a trusted resolver)
into a temporary directory. Then, for queries in ``bench.example``:

- from ``--clients`` distinct client addresses (a fifth inside the prefix list, IPv4 and
  IPv6, the rest outside), no ECS;
- from the trusted resolver 127.0.0.1 with ECS from ``--subnets`` distinct /24s (a tenth
  inside the list, as gen_ecs.py picks them);

it prints µs per decision, best of ``--repeat`` passes over the list, for
``evaluate`` (facts built beforehand: the rules alone), ``facts + evaluate`` (a QueryFacts
built from the address text and ECS bytes per query, as the server must without a store per
client) and ``decide`` (from the text and bytes), after checking that every ``decide``
equals its ``evaluate``. No sockets, no per-client store anywhere.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_ecs  # noqa: E402
import gen_policy  # noqa: E402
import gen_zone  # noqa: E402

from dnspol.config import load_config  # noqa: E402
from dnspol.names import from_text  # noqa: E402
from dnspol.policy import Policy, QueryFacts  # noqa: E402
from dnspol.policy.decide import Decider  # noqa: E402

ZONE = from_text(gen_zone.ORIGIN)
RESOLVER = "127.0.0.1"
NOW = 1_800_000_000.0
Query = tuple[str, bytes | None, object, str, tuple, int, tuple, float]


def write_config(directory: Path) -> Path:
    """run.sh's ``--policy --ecs`` configuration, from the generators it uses."""
    zone = directory / "bench.example.zone"
    zone.write_text(gen_zone.build_zone(), encoding="ascii")
    out = directory / "policy"
    out.mkdir()
    prefixes = gen_policy.make_prefixes()
    text = "".join(f"{net}\n" for net in prefixes)
    (out / gen_policy.PREFIX_FILE).write_text(text, encoding="ascii")
    (out / gen_policy.OVERLAY_FILE).write_text(gen_policy.overlay_text(), encoding="ascii")
    config = out / gen_policy.CONFIG_FILE
    config.write_text(gen_policy.config_text("../bench.example.zone", [f"{RESOLVER}/32"]))
    return config


def listed_prefixes(config: Path) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    path = config.parent / gen_policy.PREFIX_FILE
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [ipaddress.ip_network(line) for line in lines if line]


def client_addresses(count: int, prefixes: list, rng: random.Random) -> list[str]:
    """``count`` distinct addresses: a fifth inside listed prefixes, the rest random IPv4
    (and every tenth IPv6) — random ones fall outside the list but for a few."""
    chosen: set[str] = set()
    while len(chosen) < count // 5:
        net = rng.choice(prefixes)
        chosen.add(str(net.network_address + rng.randrange(min(net.num_addresses, 2**32))))
    while len(chosen) < count:
        if rng.random() < 0.1:
            chosen.add(str(ipaddress.IPv6Address(0x2 << 124 | rng.getrandbits(124))))
        else:
            chosen.add(str(ipaddress.IPv4Address(rng.getrandbits(32))))
    out = sorted(chosen)
    rng.shuffle(out)
    return out


def queries(clients: list[str], ecs: list[bytes | None], rng: random.Random) -> list[Query]:
    server = ipaddress.ip_address("127.0.0.1")
    names = [from_text(f"{gen_zone.host_name(i)}.{gen_zone.ORIGIN}") for i in range(1, 200)]
    return [
        (client, data, server, "udp", rng.choice(names), rng.choice((1, 28)), ZONE, NOW)
        for client, data in zip(clients, ecs, strict=True)
    ]


def facts_of(query: Query) -> QueryFacts:
    """What the server builds per query for ``evaluate`` (handler._decide)."""
    client, data, server, transport, qname, qtype, zone, now = query
    network = None
    if data is not None and data[2] > 0:
        family, source = struct.unpack_from("!HB", data)
        value = int.from_bytes(data[4:].ljust(4 if family == 1 else 16, b"\x00"), "big")
        kind = ipaddress.IPv4Network if family == 1 else ipaddress.IPv6Network
        network = kind((value, source))
    address = ipaddress.ip_address(client.split("%")[0])
    return QueryFacts(address, network, server, transport, qname, qtype, zone, now)  # type: ignore[arg-type]


def best_us(run: Callable[[], None], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def measure(policy: Policy, decider: Decider, asked: list[Query], repeat: int) -> dict:
    rng = random.Random(1)
    facts = [facts_of(query) for query in asked]
    for query, fact in zip(asked, facts, strict=True):
        ours = decider.decide(*query, random.Random(5))
        if ours != policy.evaluate(fact, random.Random(5)):
            raise SystemExit(f"decide differs from evaluate for {query}")
    evaluate = policy.evaluate
    decide = decider.decide

    def rules_alone() -> None:
        for fact in facts:
            evaluate(fact, rng)

    def with_facts() -> None:
        for query in asked:
            evaluate(facts_of(query), rng)

    def decided() -> None:
        for query in asked:
            decide(*query, rng)

    def nothing(*query: object) -> None:
        return None

    def loop_alone() -> None:  # the harness: the same loop and call, doing nothing
        for query in asked:
            nothing(*query, rng)

    count = len(asked)
    internal = sum(decide(*query, rng).scope == "internal" for query in asked)
    return {
        "evaluate": best_us(rules_alone, count, repeat),
        "facts + evaluate": best_us(with_facts, count, repeat),
        "decide": best_us(decided, count, repeat),
        "loop": best_us(loop_alone, count, repeat),
        "internal": internal,
        "count": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="a dnspol.yaml (default: generate)")
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--subnets", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        config = args.config or write_config(Path(work))
        policy = load_config(config).policy
        started = time.perf_counter()
        decider = Decider.build(policy)
        built_ms = (time.perf_counter() - started) * 1e3
        prefixes = listed_prefixes(config)
    rng = random.Random(20261127)
    clients = client_addresses(args.clients, prefixes, rng)
    v4 = [net for net in prefixes if net.version == 4]
    subnets, _ = gen_ecs.pick_subnets(args.subnets, 0.1, v4, rng)
    ecs = [gen_ecs.ecs_option(subnet)[4:] for subnet in subnets]  # option data
    cases = {
        f"{len(set(clients)):,} client addresses, no ECS": queries(
            clients, [None] * len(clients), rng
        ),
        f"{len(set(ecs)):,} ECS /24s from trusted {RESOLVER}": queries(
            [RESOLVER] * len(ecs), ecs, rng
        ),
    }
    print(f"policy: {config}, {len(prefixes):,} prefixes; Decider.build: {built_ms:.0f} ms")
    print(f"{'case':<44} {'evaluate':>9} {'facts+eval':>11} {'decide':>8} {'loop':>7}  internal")
    for label, asked in cases.items():
        row = measure(policy, decider, asked, args.repeat)
        print(
            f"{label:<44} {row['evaluate']:>7.2f}us {row['facts + evaluate']:>9.2f}us "
            f"{row['decide']:>6.2f}us {row['loop']:>5.2f}us  {row['internal']}/{row['count']}"
        )
    print(
        f"µs per decision, best of {args.repeat} passes; every decide == evaluate checked; "
        "loop: the same loop calling a function that does nothing (included in the others)"
    )


if __name__ == "__main__":
    main()
