"""Server cookies with real peers: dig +cookie, BIND 9.18 given the same secret makes the
same cookie (RFC 9018 interoperability), BADCOOKIE with ``require``, and a valid cookie
lets a client through response-rate limiting."""

from __future__ import annotations

import os
import socket
import struct

from itkit import edns_option, make_query, opt_rr, run_named, stop_process

from dnspol.testing import Server

ZONE = """$ORIGIN example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  IN A   192.0.2.10
"""
SECRET = "e5e973e5a6b2a43f48e7dc849e37bfcf"
CLIENT = bytes.fromhex("2464c4abcf10c957")


def cookie_query(cookie: bytes, ident: int = 0x1234) -> bytes:
    return make_query(
        "www.example.com.", 1, ident=ident, opt=opt_rr(options=edns_option(10, cookie))
    )


def ask(port: int, query: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2)
        sock.sendto(query, ("127.0.0.1", port))
        return sock.recv(4096)


def cookie_in(reply: bytes) -> bytes | None:
    """The COOKIE option's data in an answer (the OPT record is the last record)."""
    at = reply.rfind(b"\x00\x0a\x00\x18")  # code 10, length 24
    return reply[at + 4 : at + 28] if at > 0 else None


def full_rcode(reply: bytes) -> int:
    """Header rcode plus the OPT's extended rcode (the OPT is last; its TTL's top byte)."""
    at = reply.rfind(b"\x00\x00\x29")  # root owner, type OPT
    extended = reply[at + 5] if at > 0 else 0
    return (extended << 4) | (reply[3] & 0x0F)


def test_dig_cookie_is_answered_and_marked_good() -> None:
    with Server(zone_text=ZONE, policies="server:\n  cookies: true\n") as srv:
        first = srv.dig("www.example.com", "A", "+cookie")
        assert first.rcode == "NOERROR" and first.addresses == ["192.0.2.10"]
        assert "COOKIE:" in first.raw and "(good)" in first.raw
        # dig sends the server cookie back: still good
        sent = srv.dig("www.example.com", "A", "+cookie=" + CLIENT.hex())
        assert "(good)" in sent.raw
        off = srv.dig("www.example.com", "A", "+nocookie")
        assert "COOKIE" not in off.raw


def test_bind_and_dnspol_with_one_secret_make_the_same_cookie_and_accept_each_others(
    tmp_path,
) -> None:
    named_dir = tmp_path / "bind"
    named_dir.mkdir()
    options = f'cookie-algorithm siphash24; cookie-secret "{SECRET}";'
    bind, bind_port = run_named(named_dir, options, ZONE, "example.com")
    policies = f"server:\n  cookies:\n    secrets: [{SECRET}]\n"
    try:
        with Server(zone_text=ZONE, policies=policies) as srv:
            for _ in range(5):  # both within one second: the timestamps agree
                theirs = cookie_in(ask(bind_port, cookie_query(CLIENT)))
                ours = cookie_in(ask(srv.port, cookie_query(CLIENT)))
                if theirs and ours and theirs[12:16] == ours[12:16]:
                    break
            assert theirs is not None and ours is not None
            assert ours == theirs, f"dnspol {ours.hex()} BIND {theirs.hex()}"
            # each accepts the other's: a valid, fresh cookie comes back unchanged
            assert cookie_in(ask(srv.port, cookie_query(theirs))) == theirs
            assert cookie_in(ask(bind_port, cookie_query(ours)))[8:16] == ours[8:16]
    finally:
        stop_process(bind)


def test_require_answers_badcookie_until_the_client_has_a_valid_cookie() -> None:
    policies = "server:\n  cookies:\n    require: true\n"
    with Server(zone_text=ZONE, policies=policies) as srv:
        bad = ask(srv.port, cookie_query(CLIENT))
        assert full_rcode(bad) == 23  # BADCOOKIE, with a cookie to use
        assert struct.unpack("!H", bad[6:8])[0] == 0  # no answer records
        cookie = cookie_in(bad)
        assert cookie is not None and cookie[:8] == CLIENT
        good = ask(srv.port, cookie_query(cookie))
        assert full_rcode(good) == 0 and good[7] == 1
        wrong = bytearray(cookie)
        wrong[-1] ^= 1
        assert full_rcode(ask(srv.port, cookie_query(bytes(wrong)))) == 23
        over_tcp = srv.dig("www.example.com", "A", "+cookie", tcp=True)  # TCP: no proof needed
        assert over_tcp.rcode == "NOERROR"
        plain = ask(srv.port, make_query("www.example.com.", 1))  # no cookie at all: answered
        assert full_rcode(plain) == 0


def test_a_valid_cookie_passes_the_rate_limit() -> None:
    policies = "server:\n  cookies: true\n  rate_limit:\n    responses_per_second: 1\n    slip: 0\n"
    with Server(zone_text=ZONE, policies=policies) as srv:
        source = "127.0.5.1"
        cookie = cookie_in(ask(srv.port, cookie_query(CLIENT), source))
        assert cookie is not None
        answered = 0
        for i in range(20):
            try:
                reply = ask(srv.port, cookie_query(cookie, ident=i), source)
            except TimeoutError:
                continue
            answered += reply[7] == 1
        assert answered == 20
        dropped = 0  # the same client without the cookie is limited
        for i in range(5):
            try:
                ask(srv.port, cookie_query(os.urandom(8), ident=i), source)
            except TimeoutError:
                dropped += 1
        assert dropped >= 4


def test_cookies_are_on_unless_turned_off() -> None:
    with Server(zone_text=ZONE) as srv:  # nothing configured: on, as in BIND
        assert "(good)" in srv.dig("www.example.com", "A", "+cookie").raw
    with Server(zone_text=ZONE, policies="server:\n  cookies: false\n") as srv:
        assert "COOKIE" not in srv.dig("www.example.com", "A", "+cookie").raw
