"""Server cookies (RFC 7873, RFC 9018 format): making, checking, rotation, BADCOOKIE."""

from __future__ import annotations

import pytest

from dnspol.cookies import CookieConfig, address_bytes, judge, make, valid

SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
OLD = bytes.fromhex("445536bcd2513298075a5d379663c962")
CLIENT = bytes.fromhex("2464c4abcf10c957")
NOW = 1_800_000_000
V4 = address_bytes("198.51.100.100")


def test_a_server_cookie_is_version_reserved_timestamp_and_hash() -> None:
    cookie = make(SECRET, CLIENT, V4, NOW)
    assert len(cookie) == 16 and cookie[0] == 1 and cookie[1:4] == b"\0\0\0"
    assert int.from_bytes(cookie[4:8]) == NOW
    assert valid(CookieConfig((SECRET,)), CLIENT + cookie, V4, NOW)


@pytest.mark.parametrize(
    "change",
    ["address", "client", "secret", "hash", "version", "reserved", "too old", "from the future"],
)
def test_anything_else_is_not_valid(change: str) -> None:
    config = CookieConfig((SECRET,))
    client, address, secret, now = CLIENT, V4, SECRET, NOW
    cookie = bytearray(make(secret, client, address, now))
    if change == "address":
        address = address_bytes("198.51.100.101")
    elif change == "client":
        client = bytes(8)
    elif change == "secret":
        config = CookieConfig((OLD,))
    elif change == "hash":
        cookie[-1] ^= 1
    elif change == "version":
        cookie[0] = 2
    elif change == "reserved":
        cookie[2] = 1
    elif change == "too old":
        now += 3601
    elif change == "from the future":
        now -= 301
    assert not valid(config, client + bytes(cookie), address, now)


def test_ipv6_clients_and_a_rotated_secret() -> None:
    v6 = address_bytes("2001:db8::53")
    made_with_old = make(OLD, CLIENT, v6, NOW)
    rotated = CookieConfig((SECRET, OLD))  # the new one makes, both are accepted
    assert valid(rotated, CLIENT + made_with_old, v6, NOW)
    verdict = judge(rotated, CLIENT + made_with_old, "2001:db8::53", False, lambda: NOW + 10)
    assert verdict.option is not None and verdict.option[1][8:] == made_with_old  # fresh: kept


def test_judge_makes_a_cookie_for_a_client_cookie_and_refreshes_old_ones() -> None:
    config = CookieConfig((SECRET,))
    fresh = judge(config, CLIENT, "198.51.100.100", False, lambda: NOW)
    assert fresh.option == (10, CLIENT + make(SECRET, CLIENT, V4, NOW)) and not fresh.bad
    later = judge(config, fresh.option[1], "198.51.100.100", False, lambda: NOW + 1801)
    assert later.option == (10, CLIENT + make(SECRET, CLIENT, V4, NOW + 1801))


def test_require_answers_badcookie_over_udp_only_and_not_to_valid_cookies() -> None:
    config = CookieConfig((SECRET,), require=True)
    assert judge(config, CLIENT, "198.51.100.100", False, lambda: NOW).bad
    assert not judge(config, CLIENT, "198.51.100.100", True, lambda: NOW).bad  # TCP
    good = CLIENT + make(SECRET, CLIENT, V4, NOW)
    assert not judge(config, good, "198.51.100.100", False, lambda: NOW).bad
    assert judge(None, CLIENT, "198.51.100.100", False).option is None  # cookies off
