"""PROXY protocol v2 headers: parsing, building, trust."""

import pytest

from dnspol.transport import proxy


@pytest.mark.parametrize(
    "src, dst, tcp",
    [
        (("203.0.113.7", 40000), ("127.0.0.1", 53), False),
        (("2001:db8::7", 40001), ("::1", 53), True),
    ],
)
def test_round_trip(src, dst, tcp):
    header = proxy.build(src, dst, tcp)
    assert proxy.parse(header + b"dns") == (src, len(header))


def test_partial_header_asks_for_more():
    header = proxy.build(("192.0.2.1", 1), ("127.0.0.1", 53), True)
    for cut in (1, 12, 15, len(header) - 1):
        assert proxy.parse(header[:cut]) is proxy.NEED_MORE


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: b"X" + h[1:],  # signature
        lambda h: h[:12] + b"\x31" + h[13:],  # version 3
        lambda h: h[:12] + b"\x22" + h[13:],  # command 2
        lambda h: h[:13] + b"\x12" + b"\x00\x04" + h[16:20],  # address block too short
    ],
)
def test_invalid_headers(mutate):
    header = proxy.build(("192.0.2.1", 1), ("127.0.0.1", 53), False)
    assert proxy.parse(mutate(header)) is None


def test_local_command_carries_no_address():
    header = proxy.SIGNATURE + b"\x20\x00\x00\x00"
    assert proxy.parse(header + b"dns") == (None, 16)


def test_trust_by_network():
    trust = proxy.ProxyTrust(["127.0.0.0/30", "::1"])
    assert trust and trust.trusts("127.0.0.2") and trust.trusts("::1")
    assert not trust.trusts("127.0.0.9")
    assert not proxy.ProxyTrust()
