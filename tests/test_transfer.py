"""Zone transfers out (dnspol.transfer, dnspol.tsig, dnspol.policy.transfers) through
``Handler.handle``: the messages of an AXFR, scopes by key, TSIG, transfer policies."""

import base64
import struct
import time

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import pytest

from dnspol.config import check_config, load_config
from dnspol.handler import Clock, Handler, Listener
from dnspol.state import ServerState, snapshot_from_config
from dnspol.transfer import MESSAGE_LIMIT, MESSAGE_TARGET, Transfer, serial_at_least

SERIAL = 2026112701
ZONE = f"""\
$ORIGIN example.com.
$TTL 3600
@    SOA ns1 hostmaster {SERIAL} 7200 900 1209600 300
@    NS  ns1
@    MX  10 mail
ns1  A   192.0.2.1
www  A   192.0.2.10
www  AAAA 2001:db8::10
mail A   192.0.2.20
sub  NS  ns.sub
ns.sub A 192.0.2.53
"""
INTERNAL = """\
$ORIGIN example.com.
www 60 A 10.0.0.10
db  A 10.0.0.20
"""
OTHER = """\
$ORIGIN example.org.
@ SOA ns1.example.com. hostmaster 5 7200 900 1209600 300
@ NS ns1.example.com.
www A 192.0.2.80
"""
SECRETS = {
    "xfr": base64.b64encode(b"x" * 32).decode(),
    "internal": base64.b64encode(b"i" * 32).decode(),
    "other": base64.b64encode(b"o" * 32).decode(),
}
CONFIG = """\
subnets:
  secondaries: [127.0.0.0/8, "::1/128"]
keys:
  xfr: {secret_file: xfr.key}
  internal: {algorithm: hmac-sha512, secret_file: internal.key, scope: internal}
  other: {secret_file: other.key}
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {overlay: internal.zone}
  example.org: example.org.zone
transfers:
  - name: denied-lab
    match: {client: 127.0.9.0/24}
    action: refuse
  - name: silent
    match: {client: 127.0.8.0/24}
    action: drop
  - name: keyed-fleet
    match: {client: secondaries, key: [xfr, internal]}
    action: allow
  - name: org-open
    zone: example.org
    match: {client: secondaries}
    action: allow
"""
TCP = Listener("127.0.0.1", 53, "tcp")
UDP = Listener("127.0.0.1", 53, "udp")
PEER = ("127.0.0.1", 40000)
KEYS = {
    "xfr": dns.tsig.Key("xfr.", SECRETS["xfr"], dns.tsig.HMAC_SHA256),
    "internal": dns.tsig.Key("internal.", SECRETS["internal"], dns.tsig.HMAC_SHA512),
    "other": dns.tsig.Key("other.", SECRETS["other"], dns.tsig.HMAC_SHA256),
}


def write_config(tmp_path, config: str = CONFIG, zone: str = ZONE):
    (tmp_path / "example.com.zone").write_text(zone)
    (tmp_path / "internal.zone").write_text(INTERNAL)
    (tmp_path / "example.org.zone").write_text(OTHER)
    for name, secret in SECRETS.items():
        (tmp_path / f"{name}.key").write_text(secret + "\n")
    (tmp_path / "dnspol.yaml").write_text(config)
    return tmp_path / "dnspol.yaml"


@pytest.fixture
def handler(tmp_path):
    return make_handler(write_config(tmp_path))


def make_handler(path) -> Handler:
    return Handler(ServerState(snapshot_from_config(load_config(str(path)))), Clock())


def request(zone="example.com", qtype="AXFR", key=None, edns=False, serial=None, fudge=300):
    query = dns.message.make_query(zone, qtype, use_edns=0 if edns else None)
    query.id = 4321
    if serial is not None:  # IXFR: the client's SOA in the authority section
        soa = dns.rrset.from_text(zone + ".", 0, "IN", "SOA", f". . {serial} 0 0 0 0")
        query.authority.append(soa)
    if key is not None:
        query.use_tsig(KEYS[key] if isinstance(key, str) else key, fudge=fudge)
    return query, query.to_wire()


def transfer(handler, key=None, peer=PEER, **kwargs):
    query, wire = request(key=key, **kwargs)
    return query, handler.handle(wire, peer, TCP)


def read_all(query, out: Transfer, key=None) -> list[dns.message.Message]:
    """Every message, each checked with dnspython (TSIG chained as a secondary does)."""
    messages, ctx = [], None
    keyring = None if key is None else (KEYS[key] if isinstance(key, str) else key)
    for wire in out:
        assert len(wire) <= MESSAGE_LIMIT
        message = dns.message.from_wire(
            wire,
            keyring=keyring,
            request_mac=query.mac if keyring else b"",
            xfr=True,
            origin=None,
            tsig_ctx=ctx,
            multi=keyring is not None,
            one_rr_per_rrset=True,
        )
        ctx = message.tsig_ctx
        messages.append(message)
    return messages


def records(messages) -> list[tuple[str, str, str]]:
    return [
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for message in messages
        for rrset in message.answer
        for rdata in rrset
    ]


def test_an_allowed_axfr_is_the_whole_zone_soa_first_and_last(handler):
    query, out = transfer(handler, key="xfr")
    assert type(out) is Transfer
    messages = read_all(query, out, "xfr")
    got = records(messages)
    assert got[0][1] == "SOA" and got[-1] == got[0] and str(SERIAL) in got[0][2]
    assert sorted(got[1:-1]) == sorted(
        [
            ("example.com.", "NS", "ns1.example.com."),
            ("example.com.", "MX", "10 mail.example.com."),
            ("ns1.example.com.", "A", "192.0.2.1"),
            ("www.example.com.", "A", "192.0.2.10"),
            ("www.example.com.", "AAAA", "2001:db8::10"),
            ("mail.example.com.", "A", "192.0.2.20"),
            ("sub.example.com.", "NS", "ns.sub.example.com."),
            ("ns.sub.example.com.", "A", "192.0.2.53"),
        ]
    )
    first = messages[0]
    assert first.id == 4321 and first.flags & dns.flags.AA and first.flags & dns.flags.QR
    assert first.rcode() == dns.rcode.NOERROR
    assert [q.to_text() for q in first.question] == ["example.com. IN AXFR"]
    assert out.outcome.result == "ok" and out.outcome.records == len(got)


def test_a_large_zone_goes_in_many_compressed_messages_each_with_the_id(tmp_path):
    names = "".join(f"host{i:05d} A 192.0.2.{i % 250}\n" for i in range(20000))
    handler = make_handler(write_config(tmp_path, zone=ZONE + names))
    query, out = transfer(handler, key="xfr")
    wires = list(out)
    assert len(wires) > 10
    assert all(len(w) <= MESSAGE_TARGET + 300 for w in wires)  # one record past the target
    sizes = sum(len(w) for w in wires)
    assert sizes < 20000 * 27  # owners compressed: 26 bytes a record, 37 without
    messages = [dns.message.from_wire(w, keyring=False, xfr=True) for w in wires]
    assert {m.id for m in messages} == {4321}
    assert len(messages[0].question) == 1 and all(not m.question for m in messages[1:])
    assert len(records(messages)) == 20000 + 10


def test_each_message_of_a_signed_transfer_is_signed_in_a_chain(tmp_path):
    names = "".join(f"host{i:05d} A 192.0.2.{i % 250}\n" for i in range(3000))
    handler = make_handler(write_config(tmp_path, zone=ZONE + names))
    query, out = transfer(handler, key="xfr")
    messages = read_all(query, out, "xfr")  # dnspython verifies every MAC in the chain
    assert len(messages) > 2 and all(m.had_tsig for m in messages)


def test_a_key_mapped_to_a_scope_transfers_that_scope(handler):
    query, out = transfer(handler, key="internal")
    got = records(read_all(query, out, "internal"))
    assert ("www.example.com.", "A", "10.0.0.10") in got
    assert ("db.example.com.", "A", "10.0.0.20") in got
    assert ("www.example.com.", "A", "192.0.2.10") not in got
    assert out.outcome.scope == "internal"
    # the same zone with the other key: the default scope
    query, out = transfer(handler, key="xfr")
    assert ("www.example.com.", "A", "192.0.2.10") in records(read_all(query, out, "xfr"))


def test_a_key_whose_scope_a_zone_lacks_gets_that_zones_default(handler):
    query, out = transfer(handler, key="internal", zone="example.org")
    assert ("www.example.org.", "A", "192.0.2.80") in records(read_all(query, out, "internal"))
    assert out.outcome.scope == "default"


def rcode_and_ede(reply: bytes):
    message = dns.message.from_wire(reply, keyring=False)
    ede = [o.code for o in message.options if o.otype == 15]
    return message.rcode(), ede, message


@pytest.mark.parametrize(
    "peer, key, rcode",
    [
        (PEER, None, dns.rcode.REFUSED),  # no key: no rule allows it (default deny)
        (PEER, "other", dns.rcode.REFUSED),  # a known key the rule does not name
        (("127.0.9.1", 5000), "xfr", dns.rcode.REFUSED),  # a refused subnet, even keyed
        (("192.0.2.1", 5000), "xfr", dns.rcode.REFUSED),  # outside every rule's subnets
    ],
)
def test_requests_the_policy_does_not_allow_are_refused_with_ede_18(handler, peer, key, rcode):
    query, out = transfer(handler, key=key, peer=peer, edns=True)
    assert type(out) is bytes
    got, ede, message = rcode_and_ede(out)
    assert got == rcode and ede == [18] and not message.answer


def test_a_refusal_to_a_signed_request_is_signed(handler):
    query, out = transfer(handler, key="other")
    message = dns.message.from_wire(out, keyring=KEYS["other"], request_mac=query.mac)
    assert message.rcode() == dns.rcode.REFUSED and message.had_tsig


def test_a_drop_rule_sends_nothing(handler):
    assert transfer(handler, key="xfr", peer=("127.0.8.8", 5000))[1] is None


def test_a_zone_we_do_not_serve_or_a_name_that_is_no_apex_is_notauth(handler):
    for name in ("example.net", "www.example.com"):
        _, out = transfer(handler, key="xfr", zone=name)
        assert rcode_and_ede(out)[0] == dns.rcode.NOTAUTH


def test_over_udp_an_axfr_is_notimp_as_knot_answers_it(handler):
    _, wire = request(key="xfr")
    out = handler.handle(wire, PEER, UDP)
    assert rcode_and_ede(out)[0] == dns.rcode.NOTIMP


@pytest.mark.parametrize("serial, result", [(SERIAL - 1, "use_tcp"), (SERIAL, "up_to_date")])
def test_over_udp_an_allowed_ixfr_gets_our_soa_alone(handler, serial, result):
    """RFC 1995 §2: up to date, or the sign to ask again over TCP."""
    query, wire = request(key="xfr", qtype="IXFR", serial=serial)
    out = handler.handle(wire, PEER, UDP)
    message = dns.message.from_wire(out, keyring=KEYS["xfr"], request_mac=query.mac)
    assert [(r.rdtype, r[0].serial) for r in message.answer] == [(dns.rdatatype.SOA, SERIAL)]
    assert handler.stats.transfers == {("example.com.", "default", "IXFR", result): 1}
    _, wire = request(key=None, qtype="IXFR", serial=serial)
    assert rcode_and_ede(handler.handle(wire, PEER, UDP))[0] == dns.rcode.REFUSED


def test_a_signed_udp_answer_the_signature_would_push_past_512_bytes_is_truncated(tmp_path):
    big = 'big TXT "' + "x" * 200 + '" "' + "y" * 200 + '"\n'
    handler = make_handler(write_config(tmp_path, zone=ZONE + big))
    query = dns.message.make_query("big.example.com", "TXT")
    assert len(handler.handle(query.to_wire(), PEER, UDP)) <= 512  # fits unsigned
    query.use_tsig(KEYS["xfr"])
    out = handler.handle(query.to_wire(), PEER, UDP)
    assert len(out) <= 512
    message = dns.message.from_wire(out, keyring=KEYS["xfr"], request_mac=query.mac)
    assert message.flags & dns.flags.TC and not message.answer and message.had_tsig


def test_a_zone_rule_opens_its_zone_only(handler):
    query, out = transfer(handler, zone="example.org")
    assert type(out) is Transfer and len(records(read_all(query, out))) == 4
    _, out = transfer(handler, zone="example.com")
    assert rcode_and_ede(out)[0] == dns.rcode.REFUSED


def tsig_error(reply: bytes) -> tuple[int, int]:
    """(rcode, TSIG error) of a reply, read without checking its MAC."""
    message = dns.message.from_wire(reply, keyring=False)
    return message.rcode(), message.tsig[0].error


def test_an_unknown_key_is_badkey_unsigned(handler):
    stranger = dns.tsig.Key("stranger.", SECRETS["xfr"], dns.tsig.HMAC_SHA256)
    _, out = transfer(handler, key=stranger)
    assert tsig_error(out) == (dns.rcode.NOTAUTH, dns.rcode.BADKEY)
    assert dns.message.from_wire(out, keyring=False).tsig[0].mac == b""


def test_a_known_key_with_another_algorithm_is_badkey(handler):
    wrong = dns.tsig.Key("xfr.", SECRETS["xfr"], dns.tsig.HMAC_SHA512)
    _, out = transfer(handler, key=wrong)
    assert tsig_error(out) == (dns.rcode.NOTAUTH, dns.rcode.BADKEY)


def test_a_wrong_secret_is_badsig_unsigned(handler):
    forged = dns.tsig.Key("xfr.", SECRETS["other"], dns.tsig.HMAC_SHA256)
    _, out = transfer(handler, key=forged)
    assert tsig_error(out) == (dns.rcode.NOTAUTH, dns.rcode.BADSIG)
    assert dns.message.from_wire(out, keyring=False).tsig[0].mac == b""


def test_a_request_signed_too_long_ago_is_badtime_signed_with_our_time(handler, monkeypatch):
    query, wire = request(key="xfr", fudge=10)
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    out = handler.handle(wire, PEER, TCP)
    assert tsig_error(out) == (dns.rcode.NOTAUTH, dns.rcode.BADTIME)
    tsig = dns.message.from_wire(out, keyring=False).tsig[0]
    assert int.from_bytes(tsig.other, "big") == int(later)
    assert tsig.time_signed == query.tsig[0].time_signed and tsig.mac  # signed
    # the MAC is the key's over the request's MAC, the reply and these TSIG fields
    unsigned = out[:10] + (int.from_bytes(out[10:12], "big") - 1).to_bytes(2, "big")
    unsigned += out[12 : len(out) - len(_tsig_record(out))]
    again, _ = dns.tsig.sign(unsigned, KEYS["xfr"], tsig, tsig.time_signed, query.mac)
    assert again.mac == tsig.mac


def _tsig_record(reply: bytes) -> bytes:
    """The bytes of a reply's last record (its TSIG: owner, fixed fields, rdata)."""
    message = dns.message.from_wire(reply, keyring=False)
    owner = message.tsig.name.to_wire()
    return owner + b"\0" * 10 + message.tsig[0].to_wire()


def test_a_signed_soa_query_gets_a_signed_answer(handler):
    """Secondaries sign their SOA refresh query and reject an unsigned answer."""
    query = dns.message.make_query("example.com", "SOA")
    query.use_tsig(KEYS["xfr"])
    out = handler.handle(query.to_wire(), PEER, UDP)
    message = dns.message.from_wire(out, keyring=KEYS["xfr"], request_mac=query.mac)
    assert message.had_tsig and message.answer[0].rdtype == dns.rdatatype.SOA


def test_a_tsig_record_that_is_not_last_is_formerr(handler):
    query, wire = request(key="xfr")
    _, _, qd, an, ns, ar = struct.unpack_from("!6H", wire)
    edns = dns.message.make_query("example.com", "AXFR", use_edns=0).to_wire()
    opt = edns[len(wire) - len(wire) :][-11:]  # the OPT record is the query's last 11 bytes
    moved = wire[:10] + struct.pack("!H", ar + 1) + wire[12:] + opt
    assert rcode_and_ede(handler.handle(moved, PEER, TCP))[0] == dns.rcode.FORMERR


def test_ixfr_with_our_serial_gets_our_soa_alone_and_an_older_one_the_zone(handler):
    query, out = transfer(handler, key="xfr", qtype="IXFR", serial=SERIAL)
    got = records(read_all(query, out, "xfr"))
    assert len(got) == 1 and got[0][1] == "SOA" and out.outcome.result == "up_to_date"
    query, out = transfer(handler, key="xfr", qtype="IXFR", serial=SERIAL - 1)
    got = records(read_all(query, out, "xfr"))
    assert len(got) == 10 and got[0] == got[-1]


def test_serial_arithmetic_wraps():
    assert serial_at_least(5, 5) and serial_at_least(6, 5) and not serial_at_least(4, 5)
    assert serial_at_least(1, 2**32 - 1) and not serial_at_least(2**32 - 1, 1)


def test_time_windows_open_transfers_by_the_clock(tmp_path):
    config = CONFIG.replace(
        "  - name: denied-lab",
        "  - name: nightly\n    match: {time: {between: '02:00-03:00'}}\n"
        "    action: allow\n  - name: denied-lab",
    )
    path = write_config(tmp_path, config)
    handler = make_handler(path)
    handler.clock = Clock(fixed=1795831200.0)  # 2026-11-27 02:00 UTC
    assert type(transfer(handler)[1]) is Transfer
    handler.clock = Clock(fixed=1795831200.0 + 7200)
    assert rcode_and_ede(transfer(handler)[1])[0] == dns.rcode.REFUSED


@pytest.mark.parametrize(
    "edit, problem",
    [
        ("key: [xfr, internal]", "unknown key 'nope'"),
        ("scope: internal}", "no zone has a scope 'nowhere'"),
        ("action: allow\n  - name: org-open", "action 'permit' is not one of allow"),
    ],
)
def test_config_mistakes_are_named(tmp_path, edit, problem):
    bad = {
        "key: [xfr, internal]": "key: [xfr, nope]",
        "scope: internal}": "scope: nowhere}",
        "action: allow\n  - name: org-open": "action: permit\n  - name: org-open",
    }[edit]
    path = write_config(tmp_path, CONFIG.replace(edit, bad, 1))
    problems = check_config(str(path))
    assert any(problem in text for text in problems), problems


def test_a_secret_that_is_not_base64_is_named(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "xfr.key").write_text("not a secret!")
    assert any("xfr.key" in p and "base64" in p for p in check_config(str(path)))


def test_a_bind_key_file_is_read_as_is(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "xfr.key").write_text(
        f'key "xfr" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRETS["xfr"]}";\n}};\n'
    )
    query, out = transfer(make_handler(path), key="xfr")
    assert type(out) is Transfer


def test_each_transfer_is_counted_by_zone_scope_type_and_result_and_logged(handler, caplog):
    from dnspol.metrics import Folder

    caplog.set_level("INFO", logger="dnspol.transfer")
    list(transfer(handler, key="internal")[1])  # sent whole
    transfer(handler, key=None)  # refused: no rule allows it
    transfer(handler, key="xfr", zone="example.net")  # no such zone
    stranger = dns.tsig.Key("stranger.", SECRETS["xfr"], dns.tsig.HMAC_SHA256)
    transfer(handler, key=stranger)
    folder = Folder(handler.stats)
    folder.fold()
    counted = {
        labels: folder.totals.get("dnspol_transfers_total", labels)
        for labels in [
            ("example.com.", "internal", "AXFR", "ok"),
            ("example.com.", "default", "AXFR", "refused"),
            ("", "default", "AXFR", "notauth"),
            ("example.com.", "default", "AXFR", "badkey"),
        ]
    }
    assert set(counted.values()) == {1}, counted
    lines = [r.getMessage() for r in caplog.records if r.name == "dnspol.transfer"]
    assert len(lines) == 4
    assert lines[0].startswith("transfer ok: AXFR example.com. scope internal to 127.0.0.1:40000")
    assert "key internal." in lines[0] and "rule keyed-fleet" in lines[0]
    assert "records in" in lines[0] and lines[1].startswith("transfer refused:")


def test_an_aborted_transfer_is_counted_as_aborted(handler):
    from dnspol.metrics import Folder

    _, out = transfer(handler, key="xfr")
    out.next_message()
    out.finish("aborted")
    folder = Folder(handler.stats)
    folder.fold()
    labels = ("example.com.", "default", "AXFR", "aborted")
    assert folder.totals.get("dnspol_transfers_total", labels) == 1


def test_the_schema_takes_keys_and_transfers_and_names_mistakes():
    import jsonschema
    import yaml

    from dnspol.config import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    assert list(validator.iter_errors(yaml.safe_load(CONFIG))) == []
    bad = yaml.safe_load(CONFIG.replace("action: drop", "action: permit"))
    assert list(validator.iter_errors(bad))
    bad = yaml.safe_load(CONFIG.replace("secret_file: xfr.key", "secret: abc"))
    assert list(validator.iter_errors(bad))


def test_a_reload_during_a_transfer_changes_nothing_it_sends(tmp_path):
    path = write_config(tmp_path)
    handler = make_handler(path)
    query, out = transfer(handler, key="xfr")
    first = out.next_message()
    write_config(tmp_path, zone=ZONE.replace(str(SERIAL), str(SERIAL + 1)) + "new A 192.0.2.9\n")
    handler.state.swap(snapshot_from_config(load_config(str(path))))
    rest = [dns.message.from_wire(w, keyring=False, xfr=True) for w in out]
    got = records([dns.message.from_wire(first, keyring=False, xfr=True), *rest])
    assert str(SERIAL) in got[-1][2] and not any(name.startswith("new.") for name, _, _ in got)
    _, again = transfer(handler, key="xfr")
    assert any(name.startswith("new.") for name, _, _ in records(read_all(query, again, "xfr")))


def test_the_server_starts_without_importing_dnspython():
    """dnspython is imported when a TSIG or a NOTIFY first needs it (0.1 s of start-up)."""
    import subprocess
    import sys

    code = (
        "import sys, dnspol.server\n"
        "print([m for m in sys.modules if m == 'dns' or m.startswith('dns.')][:3])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sending_a_transfer_writes_no_record_the_messages_are_compiled_at_load(
    tmp_path, monkeypatch
):
    """A transfer that wrote each record as it was sent held the event loop some 3 ms a
    message, so UDP queries waited (p99 during a transfer 10-50x idle, bench/axfr.py). The
    zone's messages are written when the configuration loads; sending one copies bytes."""
    zone = ZONE + "".join(f"h{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(3000))
    handler = make_handler(write_config(tmp_path, zone=zone))
    whole = records(read_all(*transfer(handler, key="xfr"), "xfr"))

    def no_writing(*_args):
        raise AssertionError("a record written while the transfer is sent")

    monkeypatch.setattr("dnspol.transfer.write_record", no_writing)
    for key in ("xfr", "internal"):  # the default scope, and the scope a key maps to
        query, out = transfer(handler, key=key)
        messages = read_all(query, out, key)
        assert len(messages) > 2
        if key == "xfr":
            assert records(messages) == whole


def test_a_transfer_keeps_the_letter_case_of_the_question(handler):
    """The question is the client's, byte for byte (RFC 5936 §2.2.1); the records are
    the zone's, whatever case the question had."""
    query, wire = request(zone="ExAmPle.CoM", key="xfr")
    out = handler.handle(wire, PEER, TCP)
    messages = read_all(query, out, "xfr")
    assert messages[0].question[0].name.to_text() == "ExAmPle.CoM."
    assert {name for name, _, _ in records(messages)} >= {"example.com.", "www.example.com."}
    assert all(rrset.name.to_text().islower() for m in messages for rrset in m.answer)
