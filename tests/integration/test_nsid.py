"""NSID (RFC 5001): which replica answered, for operators behind anycast or dnsdist."""

from __future__ import annotations

import socket

import pytest

from dnspol.testing import Server

ZONE = """$ORIGIN example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
"""


@pytest.mark.parametrize("tcp", [False, True])
def test_dig_nsid_shows_the_configured_identity(tcp) -> None:
    with Server(zone_text=ZONE, policies="server:\n  nsid: replica-7\n") as srv:
        answered = srv.dig("ns1.example.com", "A", "+nsid", tcp=tcp)
        assert answered.rcode == "NOERROR"
        assert 'NSID: 72 65 70 6c 69 63 61 2d 37 ("replica-7")' in answered.raw
        refused = srv.dig("www.example.org", "A", "+nsid", tcp=tcp)  # not ours: REFUSED
        assert refused.rcode == "REFUSED" and '("replica-7")' in refused.raw
        plain = srv.dig("ns1.example.com", "A")  # not asked: not given
        assert "NSID" not in plain.raw


def test_hostname_is_the_machines_name_and_no_nsid_means_none() -> None:
    with Server(zone_text=ZONE, policies="server:\n  nsid: hostname\n") as srv:
        assert f'("{socket.gethostname()}")' in srv.dig("ns1.example.com", "A", "+nsid").raw
    with Server(zone_text=ZONE) as srv:
        assert "NSID" not in srv.dig("ns1.example.com", "A", "+nsid").raw
