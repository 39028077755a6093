"""Prefix parsing, longest-prefix sets, ECS scope lengths, and 100,000-prefix lists."""

from __future__ import annotations

import bisect
import ipaddress
import random
from pathlib import Path

import pytest

from dnspol.config import load_config
from dnspol.names import from_text
from dnspol.policy import Action, QueryFacts
from dnspol.policy.prefixes import Prefix, PrefixSet, address_value, parse_prefix

DATA = Path(__file__).parent / "data" / "policy"


def v4(text: str) -> tuple[int, int]:
    return int(ipaddress.IPv4Address(text)), 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.1", "192.0.2.1/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:DB8::1", "2001:db8::1/128"),
        ("::/0", "::/0"),
        (" 198.51.100.0/24 ", "198.51.100.0/24"),
    ],
)
def test_parse_prefix(text: str, expected: str) -> None:
    assert str(parse_prefix(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.1.0.0/8", "'10.1.0.0/8' has host bits set; the network is 10.0.0.0/8"),
        ("2001:db8::1/32", "has host bits set; the network is 2001:db8::/32"),
        ("10.0.0.0/33", "prefix length must be 0..32"),
        ("10.0.0.0/x", "prefix length must be 0..32"),
        ("10.0.0/8", "is not an IP address or CIDR prefix"),
        ("corp", "is not an IP address"),
        ("2001:db8::/129", "0..128"),
    ],
)
def test_parse_prefix_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_prefix(text)
    assert message in str(error.value)


def test_set_collapses_contained_and_sibling_prefixes() -> None:
    prefixes = PrefixSet(
        parse_prefix(t)
        for t in ("10.0.0.0/9", "10.128.0.0/9", "10.1.0.0/16", "192.0.2.0/25", "2001:db8::/32")
    )
    assert [str(p) for p in prefixes] == ["10.0.0.0/8", "192.0.2.0/25", "2001:db8::/32"]
    assert len(prefixes) == 3


def test_contains_and_find() -> None:
    prefixes = PrefixSet(parse_prefix(t) for t in ("10.0.0.0/8", "192.0.2.128/25", "2001:db8::/32"))
    assert prefixes.contains(*v4("10.255.0.1"))
    assert not prefixes.contains(*v4("11.0.0.1"))
    assert str(prefixes.find(*v4("192.0.2.200"))) == "192.0.2.128/25"
    assert prefixes.find(*v4("192.0.2.1")) is None
    assert prefixes.contains_address(ipaddress.ip_address("2001:db8:ffff::1"))
    assert prefixes.contains_address(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert not prefixes.contains_address(ipaddress.ip_address("2001:db9::1"))


def test_address_value_maps_ipv4_mapped_ipv6_to_ipv4() -> None:
    assert address_value(ipaddress.ip_address("::ffff:192.0.2.1")) == v4("192.0.2.1")
    assert address_value(ipaddress.ip_address("2001:db8::1"))[1] == 128


def test_covers() -> None:
    wide = PrefixSet(parse_prefix(t) for t in ("10.0.0.0/8", "2001:db8::/32"))
    assert wide.covers(PrefixSet([parse_prefix("10.1.0.0/16")]))
    assert wide.covers(PrefixSet([parse_prefix("2001:db8:1::/48"), parse_prefix("10.0.0.1")]))
    assert not wide.covers(PrefixSet([parse_prefix("10.0.0.0/7")]))
    assert not wide.covers(PrefixSet([parse_prefix("192.0.2.0/24")]))


def naive_scope_length(blocks: list[ipaddress.IPv4Network], address: int) -> int:
    """The shortest L whose /L network around ``address`` is wholly in or wholly out."""
    for length in range(33):
        net = ipaddress.IPv4Network((address >> (32 - length) << (32 - length), length))
        inside = [b for b in blocks if b.overlaps(net)]
        if not inside or any(net.subnet_of(b) for b in inside):
            return length
    raise AssertionError("unreachable")


def test_scope_length_agrees_with_brute_force() -> None:
    rng = random.Random(5)
    for _ in range(40):
        prefixes = []
        for _ in range(rng.randint(1, 12)):
            length = rng.randint(4, 28)
            prefixes.append(
                Prefix(32, rng.getrandbits(32) >> (32 - length) << (32 - length), length)
            )
        compiled = PrefixSet(prefixes)
        blocks = [ipaddress.IPv4Network((p.value, p.length)) for p in compiled]
        for _ in range(50):
            address = rng.getrandbits(32)
            assert compiled.scope_length(address, 32) == naive_scope_length(blocks, address)


def test_scope_length_empty_family_is_zero() -> None:
    assert PrefixSet([parse_prefix("2001:db8::/32")]).scope_length(*v4("192.0.2.1")) == 0


# --- 100,000 prefixes from a file ------------------------------------------------------------


def random_prefixes(rng: random.Random, count: int) -> list[str]:
    seen: set[tuple[int, int]] = set()
    while len(seen) < count:
        length = rng.randint(16, 32)
        seen.add((rng.getrandbits(32) >> (32 - length) << (32 - length), length))
    return [f"{ipaddress.IPv4Address(value)}/{length}" for value, length in sorted(seen)]


@pytest.fixture(scope="module")
def big_list(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("big")
    prefixes = random_prefixes(random.Random(100_000), 100_000)
    lines = ["# generated for the test", ""] + [
        f"{p}   # entry {i}" if i % 1000 == 0 else p for i, p in enumerate(prefixes)
    ]
    lines += ["2001:db8:1234::/48", "2001:db8:abcd::1"]
    (folder / "big.txt").write_text("\n".join(lines) + "\n")
    config = folder / "dnspol.yaml"
    config.write_text(
        f"""
subnets:
  big: {{file: big.txt}}
zones:
  example.com: {DATA}/example.com.zone
rules:
  - name: block-big
    match: {{client: big}}
    action: drop
"""
    )
    return config, prefixes


def query_from(address: str) -> QueryFacts:
    return QueryFacts(
        client=ipaddress.ip_address(address),
        ecs=None,
        server=ipaddress.ip_address("127.0.0.1"),
        transport="udp",
        qname=from_text("www.example.com"),
        qtype=1,
        zone=from_text("example.com"),
        now=0.0,
    )


def test_hundred_thousand_prefixes_match_correctly(big_list: tuple[Path, list[str]]) -> None:
    config_path, prefixes = big_list
    config = load_config(config_path)
    assert str(config_path.parent / "big.txt") in config.files
    networks = [ipaddress.IPv4Network(p) for p in prefixes]
    starts = sorted((int(n.network_address), int(n.broadcast_address)) for n in networks)
    rng = random.Random(7)

    def brute_force(address: int) -> bool:
        index = bisect.bisect_right(starts, (address, 2**32))
        return any(lo <= address <= hi for lo, hi in starts[max(0, index - 64) : index])

    inside = [int(n.network_address) + rng.randrange(n.num_addresses) for n in networks[::97]]
    anywhere = [rng.getrandbits(32) for _ in range(3000)]
    for address in inside + anywhere:
        expected = brute_force(address)
        decision = config.policy.evaluate(query_from(str(ipaddress.IPv4Address(address))), rng)
        assert (decision.action is Action.DROP) is expected, ipaddress.IPv4Address(address)
    for address in ("2001:db8:1234:5::1", "2001:db8:abcd::1"):
        assert config.policy.evaluate(query_from(address), rng).action is Action.DROP
    assert config.policy.evaluate(query_from("2001:db8:abcd::2"), rng).action is Action.ANSWER
