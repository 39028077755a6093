"""The IXFR journal (dnspol.journal) and incremental transfers from it."""

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset

from dnspol.config import load_config
from dnspol.handler import Clock, Handler, Listener
from dnspol.journal import MAX_DIFFERENCES, Journal
from dnspol.state import ServerState, snapshot_from_config
from dnspol.zones.loader import load_zone_text

ZONE = """\
$ORIGIN example.com.
$TTL 300
@    SOA ns1 hostmaster {serial} 7200 900 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
{body}
"""
TCP = Listener("127.0.0.1", 53, "tcp")
PEER = ("127.0.0.1", 40000)


def zone(serial: int, body: str = "www A 192.0.2.10\nmail A 192.0.2.25"):
    return load_zone_text(ZONE.format(serial=serial, body=body), "example.com.")


def texts(records: tuple[bytes, ...]) -> list[str]:
    """Records in wire form, as text (owner type rdata), the SOA as its serial."""
    out = []
    for wire in records:
        name, used = dns.name.from_wire(wire, 0)
        rtype = int.from_bytes(wire[used : used + 2], "big")
        rdata = dns.rdata.from_wire(1, rtype, wire, used + 10, len(wire) - used - 10)
        shown = str(rdata.serial) if rtype == dns.rdatatype.SOA else rdata.to_text()
        out.append(f"{name} {dns.rdatatype.to_text(rtype)} {shown}")
    return out


def test_each_new_serial_records_what_went_and_what_came(tmp_path):
    journal = Journal(tmp_path)
    assert journal.record(zone(1), "default") is None  # the first version: nothing to compare
    journal.record(zone(2, "www A 192.0.2.11\nmail A 192.0.2.25\nnew A 192.0.2.99"), "default")
    journal.record(zone(3, "www A 192.0.2.11\nnew A 192.0.2.99"), "default")
    steps = journal.differences(zone(3), "default", 1)
    assert [(s.old_serial, s.new_serial) for s in steps] == [(1, 2), (2, 3)]
    assert texts(steps[0].removed) == ["example.com. SOA 1", "www.example.com. A 192.0.2.10"]
    assert sorted(texts(steps[0].added)) == sorted(
        ["example.com. SOA 2", "www.example.com. A 192.0.2.11", "new.example.com. A 192.0.2.99"]
    )
    assert texts(steps[1].removed) == ["example.com. SOA 2", "mail.example.com. A 192.0.2.25"]
    assert texts(steps[1].added) == ["example.com. SOA 3"]
    assert [s.old_serial for s in journal.differences(zone(3), "default", 2)] == [2]
    assert journal.differences(zone(3), "default", 7) is None  # not reached back to
    assert journal.differences(zone(4), "default", 1) is None  # does not end at ours


def test_a_change_without_a_new_serial_is_an_error_and_no_difference(tmp_path, caplog):
    journal = Journal(tmp_path)
    journal.record(zone(1), "default")
    assert journal.record(zone(1, "www A 192.0.2.77"), "default") is None
    assert "changed but its serial 1 did not" in caplog.text


def test_the_journal_is_bounded(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    for serial in range(1, MAX_DIFFERENCES + 6):
        journal.record(zone(serial, f"www A 192.0.2.{serial}\nmail A 192.0.2.25"), "default")
    last = zone(MAX_DIFFERENCES + 5)
    assert journal.differences(last, "default", 1) is None
    assert len(journal.differences(last, "default", 5)) == MAX_DIFFERENCES
    # differences bigger than the zone itself: a whole transfer is cheaper, keep one
    monkeypatch.setattr("dnspol.journal.MIN_RECORDS_KEPT", 0)
    for serial in range(100, 103):
        body = "\n".join(f"h{i}x{serial} A 192.0.2.{i}" for i in range(20))
        journal.record(zone(serial, body), "default")
    assert len(journal.differences(zone(102), "default", 101)) == 1


def handler_with_journal(tmp_path, body: str, serial: int) -> Handler:
    (tmp_path / "example.com.zone").write_text(ZONE.format(serial=serial, body=body))
    (tmp_path / "dnspol.yaml").write_text(
        "server:\n  journal: journal\nzones:\n  example.com: example.com.zone\n"
        "transfers:\n  - name: all\n    action: allow\n"
    )
    snap = snapshot_from_config(load_config(str(tmp_path / "dnspol.yaml")))
    Journal(snap.transfer.journal).record_all(snap)
    return Handler(ServerState(snap), Clock())


def ixfr(handler: Handler, serial: int):
    query = dns.message.make_query("example.com.", "IXFR")
    query.authority.append(
        dns.rrset.from_text("example.com.", 0, "IN", "SOA", f". . {serial} 0 0 0 0")
    )
    out = handler.handle(query.to_wire(), PEER, TCP)
    messages = [dns.message.from_wire(w, xfr=True, one_rr_per_rrset=True) for w in out]
    return out.outcome, [
        str(r[0].serial) if r.rdtype == dns.rdatatype.SOA else f"{r.name} {r[0]}"
        for m in messages
        for r in m.answer
    ]


def test_an_ixfr_the_journal_reaches_gets_the_differences(tmp_path):
    handler_with_journal(tmp_path, "www A 192.0.2.10\nmail A 192.0.2.25", 1)
    handler = handler_with_journal(tmp_path, "www A 192.0.2.11\nmail A 192.0.2.25", 2)
    outcome, got = ixfr(handler, 1)
    assert outcome.result == "incremental"
    assert got == ["2", "1", "www.example.com. 192.0.2.10", "2", "www.example.com. 192.0.2.11", "2"]
    outcome, got = ixfr(handler, 0)  # a serial the journal never saw: the whole zone
    assert outcome.result == "ok" and len(got) == 6 and got[0] == got[-1] == "2"


def test_check_and_reload_refuse_a_change_without_a_new_serial(tmp_path):
    from dnspol.config import check_config

    handler_with_journal(tmp_path, "www A 192.0.2.10", 1)  # loaded and recorded
    config = str(tmp_path / "dnspol.yaml")
    assert check_config(config) == []
    (tmp_path / "example.com.zone").write_text(ZONE.format(serial=1, body="www A 192.0.2.11"))
    problems = check_config(config)
    assert (
        len(problems) == 1
        and "example.com.zone:1: zone example.com. (scope default)" in problems[0]
    )
    assert "its serial 1 did not" in problems[0]
    (tmp_path / "example.com.zone").write_text(ZONE.format(serial=2, body="www A 192.0.2.11"))
    assert check_config(config) == []
