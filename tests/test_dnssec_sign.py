"""Signing at load (dnspol.dnssec.sign): every RRset of every scope validates, the denial
chains are complete and match each scope's names, keys sign what their role says."""

from __future__ import annotations

import base64
import io
import struct
import time
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from dnspol.config import load_config
from dnspol.dnssec.sign import nsec3_hash, type_bitmap, write_zone
from dnspol.names import from_text
from dnspol.state import snapshot_from_config
from dnspol.zones.model import Zone

KEYS = Path(__file__).parent / "data" / "dnssec"
KSK = KEYS / "Kexample.com.+013+34096"  # ECDSAP256SHA256, flags 257
ZSK = KEYS / "Kexample.com.+013+14727"  # ECDSAP256SHA256, flags 256
CSK = KEYS / "Kexample.com.+015+23388"  # ED25519, flags 257, alone: a CSK
ORIGIN = from_text("example.com.")
NOW = int(time.time())  # the signer signs with the real clock

ZONE = """\
$ORIGIN example.com.
$TTL 300
@       SOA   ns1 hostmaster 1 3600 600 604800 120
@       NS    ns1
@       MX    10 Mail.Example.COM.
ns1     A     192.0.2.53
www     A     192.0.2.10
www     AAAA  2001:db8::10
alias   CNAME www
*.wild  TXT   "anything"
deep.a.b TXT  "two empty non-terminals above"
insecure NS   ns.insecure
ns.insecure A 192.0.2.99
secure  NS    ns.elsewhere.net.
secure  DS    12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
"""
OVERLAY = """\
$ORIGIN example.com.
$TTL 60
www     A     10.0.0.10
alias   A     10.0.0.11
intra   A     10.0.0.80
"""
AUTHORITATIVE = {
    "example.com.",
    "ns1.example.com.",
    "www.example.com.",
    "alias.example.com.",
    "*.wild.example.com.",
    "deep.a.b.example.com.",
    "insecure.example.com.",
    "secure.example.com.",
}


def write_config(tmp_path: Path, keys: list[Path], denial: str = "nsec", extra: str = "") -> Path:
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "internal.zone").write_text(OVERLAY)
    key_list = ", ".join(str(key) for key in keys)
    config = tmp_path / "dnspol.yaml"
    config.write_text(
        f"""\
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {{overlay: internal.zone}}
    dnssec:
      keys: [{key_list}]
      denial: {denial}
{extra}"""
    )
    return config


def signed_scopes(tmp_path: Path, keys: list[Path], denial: str = "nsec", extra: str = ""):
    snap = snapshot_from_config(load_config(write_config(tmp_path, keys, denial, extra)))
    return snap, snap.variants[(ORIGIN, "default")], snap.variants[(ORIGIN, "internal")]


def as_dnspython(zone: Zone) -> dns.zone.Zone:
    out = io.StringIO()
    write_zone(zone, out)
    return dns.zone.from_text(out.getvalue(), origin="example.com.", relativize=False)


def validate_every_rrset(zone: dns.zone.Zone, when: int) -> set[tuple[str, str]]:
    """Every RRset that has RRSIGs, validated; returns (owner, type) of each."""
    apex = dns.name.from_text("example.com.")
    keys = {apex: zone.find_rdataset(apex, "DNSKEY")}
    done = set()
    for name, node in zone.items():
        for rdataset in node:
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            if sigs is None:
                continue
            rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
            rrset.update(rdataset)
            rrsigs = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            rrsigs.update(sigs)
            dns.dnssec.validate(rrset, rrsigs, keys, now=when)
            done.add((name.to_text(), dns.rdatatype.to_text(rdataset.rdtype)))
    return done


def authoritative_types(zone: dns.zone.Zone) -> set[tuple[str, str]]:
    """(owner, type) of every RRset a validator would want signed."""
    out = set()
    for name, node in zone.items():
        owner = name.to_text()
        for rdataset in node:
            kind = dns.rdatatype.to_text(rdataset.rdtype)
            if kind == "RRSIG":
                continue
            if owner in ("insecure.example.com.", "secure.example.com.") and kind == "NS":
                continue  # the child's NS: not signed by the parent
            if owner == "ns.insecure.example.com.":
                continue  # glue
            out.add((owner, kind))
    return out


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_every_rrset_of_the_default_and_an_overlay_scope_validates(
    tmp_path: Path, denial: str
) -> None:
    _, default, internal = signed_scopes(tmp_path, [KSK, ZSK], denial)
    for scope in (default, internal):
        zone = as_dnspython(scope)
        validated = validate_every_rrset(zone, NOW)
        assert validated == authoritative_types(zone)
    internal_zone = as_dnspython(internal)
    www = internal_zone.find_rdataset("www.example.com.", "A")
    assert [rd.to_text() for rd in www] == ["10.0.0.10"]  # the overlay's data, signed
    assert ("intra.example.com.", "A") in validate_every_rrset(internal_zone, NOW)


def test_a_tampered_rrset_does_not_validate(tmp_path: Path) -> None:
    """The validation above can fail: change one address after signing."""
    _, default, _ = signed_scopes(tmp_path, [KSK, ZSK])
    out = io.StringIO()
    write_zone(default, out)
    text = out.getvalue().replace("192.0.2.10", "192.0.2.11")
    zone = dns.zone.from_text(text, origin="example.com.", relativize=False)
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate_every_rrset(zone, NOW)


def nsec_chain(zone: dns.zone.Zone) -> list[tuple[str, str, set[str]]]:
    out = []
    for name, node in zone.items():
        nsec = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC)
        if nsec is not None:
            (rd,) = nsec
            types = set(rd.to_text().split()[1:])
            out.append((name.to_text(), rd.next.to_text(), types))
    return sorted(out, key=lambda item: dns.name.from_text(item[0]))


def test_nsec_chain_is_complete_and_in_canonical_order_per_scope(tmp_path: Path) -> None:
    _, default, internal = signed_scopes(tmp_path, [KSK, ZSK])
    for scope, names in (
        (default, AUTHORITATIVE),
        (internal, AUTHORITATIVE | {"intra.example.com."}),
    ):
        chain = nsec_chain(as_dnspython(scope))
        owners = [owner for owner, _, _ in chain]
        assert set(owners) == names  # glue and empty non-terminals have none
        assert owners == sorted(owners, key=dns.name.from_text)
        nexts = [following for _, following, _ in chain]
        assert nexts == owners[1:] + ["example.com."]
    default_chain = {owner: types for owner, _, types in nsec_chain(as_dnspython(default))}
    assert default_chain["example.com."] == {"SOA", "NS", "MX", "DNSKEY", "RRSIG", "NSEC"}
    assert default_chain["insecure.example.com."] == {"NS", "RRSIG", "NSEC"}
    assert default_chain["secure.example.com."] == {"NS", "DS", "RRSIG", "NSEC"}
    assert default_chain["alias.example.com."] == {"CNAME", "RRSIG", "NSEC"}
    internal_chain = {owner: types for owner, _, types in nsec_chain(as_dnspython(internal))}
    assert internal_chain["alias.example.com."] == {"A", "RRSIG", "NSEC"}  # the overlay's


def test_nsec3_chain_covers_every_name_and_empty_non_terminal(tmp_path: Path) -> None:
    _, default, internal = signed_scopes(tmp_path, [KSK, ZSK], "nsec3")
    ents = {"b.example.com.", "a.b.example.com.", "wild.example.com."}
    for scope, names in (
        (default, AUTHORITATIVE),
        (internal, AUTHORITATIVE | {"intra.example.com."}),
    ):
        zone = as_dnspython(scope)
        chain = {}
        for name, node in zone.items():
            nsec3 = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC3)
            if nsec3 is not None:
                (rd,) = nsec3
                assert (rd.algorithm, rd.flags, rd.iterations, rd.salt) == (1, 0, 0, b"")
                chain[name.labels[0]] = rd
        expected = {base64.b32hexencode(nsec3_hash(from_text(n))).lower() for n in names | ents}
        assert set(chain) == expected
        order = sorted(chain)
        for at, owner in enumerate(order):  # one cycle through every hash
            following = base64.b32hexencode(chain[owner].next).lower()
            assert following == order[(at + 1) % len(order)]
        param = zone.find_rdataset("example.com.", "NSEC3PARAM")
        assert [rd.to_text() for rd in param] == ["1 0 0 -"]
        assert not any(
            node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC) for _, node in zone.items()
        )


def test_nsec3_hash_matches_rfc5155_and_dnspython() -> None:
    expected = dns.dnssec.nsec3_hash("www.example.com.", salt=None, iterations=0, algorithm=1)
    assert base64.b32hexencode(nsec3_hash(from_text("www.example.com."))).decode() == expected


def test_type_bitmap_matches_dnspython() -> None:
    import dns.rdtypes.util

    types = [1, 2, 6, 15, 46, 47, 48, 257, 32769]
    ours = type_bitmap(types)
    bitmap = dns.rdtypes.util.Bitmap.from_rdtypes([dns.rdatatype.RdataType(t) for t in types])
    theirs = io.BytesIO()
    bitmap.to_wire(theirs)
    assert ours == theirs.getvalue()


def signers(zone: dns.zone.Zone, owner: str, covered: str) -> set[int]:
    sigs = zone.find_node(owner).get_rdataset(
        dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.from_text(covered)
    )
    return {rd.key_tag for rd in sigs}


def test_ksk_signs_the_key_rrsets_and_zsk_the_rest(tmp_path: Path) -> None:
    _, default, _ = signed_scopes(tmp_path, [KSK, ZSK], extra="      cds: true\n")
    zone = as_dnspython(default)
    assert signers(zone, "example.com.", "DNSKEY") == {34096}
    assert signers(zone, "example.com.", "CDS") == {34096}
    assert signers(zone, "example.com.", "CDNSKEY") == {34096}
    assert signers(zone, "example.com.", "SOA") == {14727}
    assert signers(zone, "www.example.com.", "A") == {14727}
    assert {rd.key_tag for rd in zone.find_rdataset("example.com.", "CDS")} == {34096}
    (cdnskey,) = zone.find_rdataset("example.com.", "CDNSKEY")
    assert cdnskey.flags == 257
    (cds,) = zone.find_rdataset("example.com.", "CDS")
    apex = dns.name.from_text("example.com.")
    assert cds.digest == dns.dnssec.make_ds(apex, cdnskey, "SHA256").digest


def test_a_single_key_is_a_csk_and_signs_everything(tmp_path: Path) -> None:
    _, default, _ = signed_scopes(tmp_path, [CSK])
    zone = as_dnspython(default)
    assert signers(zone, "example.com.", "DNSKEY") == {23388}
    assert signers(zone, "www.example.com.", "AAAA") == {23388}
    assert validate_every_rrset(zone, NOW) == authoritative_types(zone)


def test_two_algorithms_each_sign_every_rrset(tmp_path: Path) -> None:
    _, default, _ = signed_scopes(tmp_path, [KSK, ZSK, CSK])
    zone = as_dnspython(default)
    assert signers(zone, "www.example.com.", "A") == {14727, 23388}
    assert signers(zone, "example.com.", "DNSKEY") == {34096, 23388}


def test_delegations_and_glue(tmp_path: Path) -> None:
    _, default, _ = signed_scopes(tmp_path, [KSK, ZSK])
    zone = as_dnspython(default)
    assert signers(zone, "secure.example.com.", "DS") == {14727}
    node = zone.find_node("insecure.example.com.")
    assert node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.NS) is None
    glue = zone.find_node("ns.insecure.example.com.")
    assert [r.rdtype for r in glue] == [dns.rdatatype.A]  # no RRSIG, no NSEC


def test_wildcard_rrsig_labels_leave_out_the_asterisk(tmp_path: Path) -> None:
    _, default, _ = signed_scopes(tmp_path, [KSK, ZSK])
    zone = as_dnspython(default)
    sigs = zone.find_node("*.wild.example.com.").get_rdataset(
        dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TXT
    )
    assert {rd.labels for rd in sigs} == {3}


def rrsigs_at(zone: Zone, owner: str, covered: int) -> list[object]:
    """The RRSIG rdata objects (the model's) over one type at one owner."""
    node = zone.nodes[from_text(owner)]
    return [rd for rd in node[46].rdatas if parsed(rd).type_covered == covered]


def parsed(rd: object):  # noqa: ANN201 - dnspython's RRSIG
    """An RRSIG of the model as dnspython reads its wire form."""
    from dnspol.zones.rdata import pack_uncompressed

    wire = pack_uncompressed(rd)
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RRSIG, wire, 0, len(wire))


def test_rrsets_shared_by_scopes_are_signed_once(tmp_path: Path) -> None:
    _, default, internal = signed_scopes(tmp_path, [KSK, ZSK])
    aaaa_default = rrsigs_at(default, "www.example.com.", 28)
    aaaa_internal = rrsigs_at(internal, "www.example.com.", 28)
    assert aaaa_default and all(a is b for a, b in zip(aaaa_default, aaaa_internal, strict=True))
    (a_default,) = rrsigs_at(default, "www.example.com.", 1)
    (a_internal,) = rrsigs_at(internal, "www.example.com.", 1)
    assert parsed(a_default).signature != parsed(a_internal).signature  # its own data


def test_validity_inception_jitter_and_the_refresh_point(tmp_path: Path) -> None:
    extra = "      validity: 10d\n      refresh: 2d\n      jitter: 1d\n      inception: 2h\n"
    snap, default, _ = signed_scopes(tmp_path, [KSK, ZSK], extra=extra)
    rrsigs = [parsed(rd) for node in default.nodes.values() if 46 in node for rd in node[46].rdatas]
    inceptions = {rd.inception for rd in rrsigs}
    assert len(inceptions) == 1
    (inception,) = inceptions
    now = inception + 7200
    expirations = [rd.expiration for rd in rrsigs]
    assert all(now + 9 * 86400 <= e <= now + 10 * 86400 for e in expirations)
    assert len(set(expirations)) > 1  # spread by the jitter
    assert snap.resign_at == pytest.approx(now + (10 - 1 - 2) * 86400, abs=5)


def test_an_unsigned_zone_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "example.com.zone").write_text(ZONE)
    config = tmp_path / "dnspol.yaml"
    config.write_text("zones:\n  example.com: example.com.zone\n")
    snap = snapshot_from_config(load_config(config))
    assert snap.resign_at is None
    assert not any(46 in node for node in snap.zones.get(ORIGIN).nodes.values())


def test_a_presigned_zone_is_signed_again_not_twice(tmp_path: Path) -> None:
    _, default, _ = signed_scopes(tmp_path, [KSK, ZSK])
    out = io.StringIO()
    write_zone(default, out)
    presigned = tmp_path / "presigned"
    presigned.mkdir()
    write_config(presigned, [KSK, ZSK])
    (presigned / "example.com.zone").write_text(out.getvalue())
    snap = snapshot_from_config(load_config(presigned / "dnspol.yaml"))
    zone = snap.variants[(ORIGIN, "default")]
    www = zone.nodes[from_text("www.example.com.")]
    assert len(www[46].rdatas) == 3  # A, AAAA, NSEC: each once, by the ZSK
    assert len(www[47].rdatas) == 1


def test_rrsig_wire_has_the_signer_uncompressed_and_original_ttl(tmp_path: Path) -> None:
    from dnspol.zones.rdata import pack_uncompressed

    _, _, internal = signed_scopes(tmp_path, [KSK, ZSK])
    www = internal.nodes[from_text("www.example.com.")]
    by_type = {parsed(rd).type_covered: rd for rd in www[46].rdatas}
    wire = pack_uncompressed(by_type[1])
    assert struct.unpack_from("!I", wire, 4)[0] == 60  # the overlay's TTL
    assert struct.unpack_from("!I", pack_uncompressed(by_type[28]), 4)[0] == 300
    assert wire[18:31] == b"\x07example\x03com\x00"


@pytest.mark.parametrize(
    ("dnssec", "message"),
    [
        ("{keys: []}", "dnssec.keys is an empty list"),
        ("{keys: [Knope]}", "does not exist"),
        ("{keys: [KEY], denial: nsec5}", "'nsec5' is not one of nsec, nsec3"),
        ("{keys: [KEY], validity: 2d, refresh: 2d}", "must be longer than refresh"),
        ("{keys: [KEY], validity: soon}", "'soon' is not a duration"),
        ("{keys: [KEY], ttl: 5}", "unknown key 'ttl' in dnssec"),
    ],
)
def test_config_problems_name_the_line(tmp_path: Path, dnssec: str, message: str) -> None:
    from dnspol.errors import ConfigError

    (tmp_path / "example.com.zone").write_text(ZONE)
    config = tmp_path / "dnspol.yaml"
    dnssec = dnssec.replace("KEY", str(KSK))
    config.write_text(f"zones:\n  example.com:\n    file: example.com.zone\n    dnssec: {dnssec}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert any(
        problem.startswith(f"{config}:4: ") and message in problem
        for problem in caught.value.problems
    ), caught.value.problems


def test_signing_on_worker_processes_gives_the_same_valid_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``server.sign_workers``: forked processes sign shares of the RRsets."""
    import dnspol.dnssec.sign as sign

    monkeypatch.setattr(sign, "PARALLEL_FROM", 1)  # the test zone is small
    monkeypatch.setattr(sign.os, "cpu_count", lambda: 2)
    forked = []
    real_pool = sign.multiprocessing.get_context("fork").Pool

    class CountingContext:
        def Pool(self, workers: int):  # noqa: N802 - multiprocessing's name
            forked.append(workers)
            return real_pool(workers)

    monkeypatch.setattr(sign.multiprocessing, "get_context", lambda method: CountingContext())
    _, default, internal = signed_scopes(tmp_path, [KSK, ZSK], extra="server: {sign_workers: 2}\n")
    assert forked == [2, 2]  # each scope's RRsets (the internal one's few changed ones too)
    for scope in (default, internal):
        zone = as_dnspython(scope)
        assert validate_every_rrset(zone, NOW) == authoritative_types(zone)


def test_the_schema_describes_dnssec(tmp_path: Path) -> None:
    import jsonschema
    import yaml

    from dnspol.config import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    extra = "      validity: 14d\n      refresh: 4d\n      cds: true\n      dnskey_ttl: 3600\n"
    document = yaml.safe_load(write_config(tmp_path, [KSK, ZSK], "nsec3", extra).read_text())
    assert list(validator.iter_errors(document)) == []
    document["zones"]["example.com"]["dnssec"]["denial"] = "nsec5"
    assert list(validator.iter_errors(document))


def test_serial_unixtime_makes_each_signing_a_new_version(tmp_path: Path) -> None:
    """For secondaries: the SOA serial becomes the signing time, in every scope alike."""
    _, default, internal = signed_scopes(tmp_path, [KSK, ZSK], extra="      serial: unixtime\n")
    assert default.serial == internal.serial
    assert abs(default.serial - time.time()) < 60
    assert validate_every_rrset(as_dnspython(internal), NOW) == authoritative_types(
        as_dnspython(internal)
    )
    kept = tmp_path / "kept"
    kept.mkdir()
    _, unchanged, _ = signed_scopes(kept, [KSK, ZSK])
    assert unchanged.serial == 1  # the default: the file's serial


def test_serial_unixtime_never_goes_back(tmp_path: Path) -> None:
    write_config(tmp_path, [KSK, ZSK])
    zone_file = tmp_path / "example.com.zone"
    zone_file.write_text(zone_file.read_text().replace("hostmaster 1 ", "hostmaster 2026112701 "))
    config = tmp_path / "dnspol.yaml"
    config.write_text(config.read_text() + "      serial: unixtime\n")
    snap = snapshot_from_config(load_config(config))
    assert snap.variants[(ORIGIN, "default")].serial == 2026112701  # ahead of the clock
