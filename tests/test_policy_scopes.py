"""Overlay scopes: what an overlay replaces, removes and keeps."""

from __future__ import annotations

from dnslib import CNAME, A

from dnspol.codes import RRType
from dnspol.names import from_text
from dnspol.policy.scopes import merge_overlay, records_of
from dnspol.zones.model import Record, Zone

A_TYPE, TXT_TYPE, MX_TYPE = 1, 16, 15


def rec(name: str, rtype: int, data: str) -> Record:
    rdata = CNAME(data) if rtype == RRType.CNAME else A(data)
    return Record(from_text(name), rtype, 300, rdata, "t:1")


DEFAULT = [
    rec("www.example.com", A_TYPE, "192.0.2.1"),
    rec("www.example.com", A_TYPE, "192.0.2.2"),
    rec("mail.example.com", A_TYPE, "192.0.2.3"),
    rec("alias.example.com", RRType.CNAME, "www.example.com"),
    rec("ftp.example.com", A_TYPE, "192.0.2.4"),
]


def owners(records: list[Record]) -> list[tuple[str, int, str]]:
    return sorted((b".".join(r.name).decode(), r.rtype, str(r.rdata)) for r in records)


def test_overlay_rrset_replaces_the_whole_default_rrset() -> None:
    merged = merge_overlay(DEFAULT, [rec("www.example.com", A_TYPE, "10.0.0.1")])
    assert [r for r in owners(merged) if r[0] == "www.example.com"] == [
        ("www.example.com", A_TYPE, "10.0.0.1")
    ]
    assert ("mail.example.com", A_TYPE, "192.0.2.3") in owners(merged)


def test_overlay_cname_replaces_everything_at_its_owner() -> None:
    merged = merge_overlay(DEFAULT, [rec("ftp.example.com", RRType.CNAME, "www.example.com")])
    assert [r for r in owners(merged) if r[0] == "ftp.example.com"] == [
        ("ftp.example.com", RRType.CNAME, "www.example.com.")
    ]


def test_overlay_data_removes_a_default_cname() -> None:
    merged = merge_overlay(DEFAULT, [rec("alias.example.com", A_TYPE, "10.0.0.9")])
    assert [r for r in owners(merged) if r[0] == "alias.example.com"] == [
        ("alias.example.com", A_TYPE, "10.0.0.9")
    ]


def test_overlay_adds_new_names() -> None:
    merged = merge_overlay(DEFAULT, [rec("new.example.com", A_TYPE, "10.0.0.7")])
    assert len(merged) == len(DEFAULT) + 1


def test_records_of_round_trips_a_zone() -> None:
    zone = Zone.from_records(from_text("example.com"), DEFAULT, source="z.zone")
    assert owners(records_of(zone)) == owners(DEFAULT)
    assert {r.where for r in records_of(zone)} == {"z.zone"}
