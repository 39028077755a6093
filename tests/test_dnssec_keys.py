"""Key files (dnspol.dnssec.keys): BIND's K*.key/.private as dnssec-keygen writes them, PEM
private keys as Knot keeps them, and each wrong file named with its line."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from dnspol.dnssec.keys import KeyFileError, SigningKey, read_key
from dnspol.dnssec.policy import SigningPolicy
from dnspol.dnssec.sign import sign_zone, write_zone
from dnspol.names import from_text
from dnspol.zones.loader import load_zone_text

KEYS = Path(__file__).parent / "data" / "dnssec"
KSK = KEYS / "Kexample.com.+013+34096"
ORIGIN = from_text("example.com.")
ZONE = "$TTL 300\n@ SOA ns1 hm 1 2 3 4 60\n@ NS ns1\nns1 A 192.0.2.1\n"


def signs_and_validates(key: SigningKey) -> None:
    """A zone signed with ``key`` validates with dnspython (the cryptography underneath)."""
    import io

    import dns.zone

    zone = load_zone_text(ZONE, "example.com.")
    signed = sign_zone(zone, SigningPolicy(keys=(key,)), int(time.time()))
    out = io.StringIO()
    write_zone(signed, out)
    parsed = dns.zone.from_text(out.getvalue(), origin="example.com.", relativize=False)
    apex = dns.name.from_text("example.com.")
    keys = {apex: parsed.find_rdataset(apex, "DNSKEY")}
    for rtype in ("SOA", "NS", "DNSKEY", "NSEC"):
        rrset = dns.rrset.RRset(apex, dns.rdataclass.IN, dns.rdatatype.from_text(rtype))
        rrset.update(parsed.find_rdataset(apex, rtype))
        sigs = dns.rrset.RRset(apex, dns.rdataclass.IN, dns.rdatatype.RRSIG, rrset.rdtype)
        sigs.update(parsed.find_rdataset(apex, "RRSIG", rtype))
        dns.dnssec.validate(rrset, sigs, keys)


@pytest.mark.parametrize(
    ("algorithm", "number"),
    [("ECDSAP256SHA256", 13), ("ECDSAP384SHA384", 14), ("ED25519", 15), ("RSASHA256", 8)],
)
def test_keys_made_by_dnssec_keygen_are_read_and_sign(
    tmp_path: Path, algorithm: str, number: int
) -> None:
    keygen = shutil.which("dnssec-keygen")
    assert keygen, "dnssec-keygen (bind9-utils) is needed: scripts/test.sh installs it"
    args = [keygen, "-q", "-K", str(tmp_path), "-a", algorithm, "-f", "KSK"]
    if number == 8:
        args += ["-b", "2048"]
    made = subprocess.run([*args, "example.com"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    base = tmp_path / made.stdout.strip()
    key = read_key(str(base), ORIGIN)
    assert (key.algorithm, key.flags, key.is_ksk) == (number, 257, True)
    assert key.key_tag == int(made.stdout.strip().rsplit("+", 1)[1])
    signs_and_validates(key)


def test_the_key_path_may_name_either_file(tmp_path: Path) -> None:
    for path in (f"{KSK}.key", f"{KSK}.private", str(KSK)):
        assert read_key(path, ORIGIN).key_tag == 34096


def test_a_pem_private_key_as_knot_keeps_them(tmp_path: Path) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    dnskey = dns.dnssec.make_dnskey(private.public_key(), "ED25519", flags=257)
    base = tmp_path / f"Kexample.com.+015+{dns.dnssec.key_id(dnskey):05d}"
    Path(f"{base}.key").write_text(f"example.com. 3600 IN DNSKEY {dnskey.to_text()}\n")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    Path(f"{base}.private").write_bytes(pem)
    key = read_key(str(base), ORIGIN)
    assert key.key_tag == dns.dnssec.key_id(dnskey)
    signs_and_validates(key)


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    head = bytes([size]) if size < 128 else bytes([0x81, size])
    return bytes([tag]) + head + content


def test_an_ec_key_whose_private_value_is_written_short_is_read(tmp_path: Path) -> None:
    """Knot's keymgr writes the EC private value as the integer's bytes, so about one key
    in 256 (a leading zero byte) has 31 bytes for P-256; cryptography refuses that
    ("private key value is too short"), and a test with a fresh keymgr key failed at
    random. The value is read as the integer it is."""
    value = int.from_bytes(os.urandom(31), "big") | (1 << 240)  # its first byte is zero
    private = ec.derive_private_key(value, ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(private.public_key(), "ECDSAP256SHA256", flags=257)
    base = tmp_path / f"Kexample.com.+013+{dns.dnssec.key_id(dnskey):05d}"
    Path(f"{base}.key").write_text(f"example.com. 3600 IN DNSKEY {dnskey.to_text()}\n")
    ec_key = _der(0x30, _der(0x02, b"\x01") + _der(0x04, value.to_bytes(31, "big")))
    algorithm = _der(
        0x30, bytes.fromhex("06072a8648ce3d0201") + bytes.fromhex("06082a8648ce3d030107")
    )
    der = _der(0x30, _der(0x02, b"\x00") + algorithm + _der(0x04, ec_key))
    body = base64.encodebytes(der).decode()
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"
    with pytest.raises(ValueError, match="too short"):  # what cryptography says of it
        serialization.load_pem_private_key(pem.encode(), password=None)
    Path(f"{base}.private").write_text(pem)
    key = read_key(str(base), ORIGIN)
    assert key.key_tag == dns.dnssec.key_id(dnskey)
    signs_and_validates(key)


def copy_key(tmp_path: Path, private: str | None = None, public: str | None = None) -> Path:
    base = tmp_path / KSK.name
    Path(f"{base}.key").write_text(public if public is not None else Path(f"{KSK}.key").read_text())
    Path(f"{base}.private").write_text(
        private if private is not None else Path(f"{KSK}.private").read_text()
    )
    return base


PRIVATE = Path(f"{KSK}.private").read_text()
PUBLIC = Path(f"{KSK}.key").read_text()
OTHER_PRIVATE = Path(f"{KEYS / 'Kexample.com.+013+14727'}.private").read_text()


@pytest.mark.parametrize(
    ("private", "public", "where", "message"),
    [
        (
            PRIVATE.replace("PrivateKey: ", "PrivateKey: !!"),
            None,
            ".private:3",
            "PrivateKey is not base64",
        ),
        (
            "\n".join(line for line in PRIVATE.splitlines() if "PrivateKey" not in line),
            None,
            ".private:1",
            "no 'PrivateKey:' line",
        ),
        (
            PRIVATE.replace("Algorithm: 13", "Algorithm: 15"),
            None,
            ".private:2",
            "the .key file says 13",
        ),
        (OTHER_PRIVATE, None, ".private:3", "does not match the public key"),
        ("just some text\n", None, ".private:1", "expected 'Name: value'"),
        (
            None,
            PUBLIC.replace("example.com. IN", "example.net. IN"),
            ".key:5",
            "not for example.com.",
        ),
        (None, PUBLIC.replace("DNSKEY 257 3 13", "DNSKEY 257 3 16"), ".key:5", "algorithm 16"),
        (None, PUBLIC.replace("DNSKEY 257", "DNSKEY 385"), ".key:5", "flags 385"),
        (None, "; only a comment\n", ".key:1", "no DNSKEY record"),
        (None, PUBLIC.replace("DNSKEY", "DNSKEYS"), ".key:5", "expected 'OWNER [TTL] IN DNSKEY"),
    ],
)
def test_a_wrong_key_file_names_its_line(
    tmp_path: Path, private: str | None, public: str | None, where: str, message: str
) -> None:
    base = copy_key(tmp_path, private, public)
    with pytest.raises(KeyFileError) as caught:
        read_key(str(base), ORIGIN)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{base}{where}: "), problem
    assert message in problem, problem


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    base = copy_key(tmp_path)
    Path(f"{base}.private").unlink()
    with pytest.raises(KeyFileError) as caught:
        read_key(str(base), ORIGIN)
    assert caught.value.problems == [f"{base}.private:1: key file does not exist"]


def test_a_bad_key_fails_the_config_with_the_key_files_line(tmp_path: Path) -> None:
    from dnspol.config import check_config

    base = copy_key(tmp_path, private=OTHER_PRIVATE)
    (tmp_path / "example.com.zone").write_text(ZONE)
    config = tmp_path / "dnspol.yaml"
    config.write_text(
        f"zones:\n  example.com:\n    file: example.com.zone\n    dnssec: {{keys: [{base.name}]}}\n"
    )
    problems = check_config(config)
    assert len(problems) == 1 and problems[0].startswith(f"{base}.private:3: "), problems


def test_a_key_made_by_knots_keymgr_is_read(tmp_path: Path) -> None:
    """Knot keeps a key as keys/<id>.pem in its KASP directory; ``keymgr ZONE dnskey TAG``
    prints the DNSKEY: the two are the .private and .key dnspol reads."""
    keymgr = shutil.which("keymgr")
    assert keymgr, "keymgr (knot) is needed: scripts/test.sh installs it"
    kasp = tmp_path / "kasp"
    kasp.mkdir()

    def run(*args: str) -> str:
        done = subprocess.run(
            [keymgr, "-D", str(kasp), "example.com.", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    key_id = run("generate", "algorithm=ecdsap256sha256", "ksk=yes").strip()
    tag = int(run("list").split(key_id, 1)[1].split()[0])
    base = tmp_path / f"Kexample.com.+013+{tag:05d}"
    Path(f"{base}.key").write_text(run("dnskey", str(tag)))
    shutil.copy(kasp / "keys" / f"{key_id}.pem", f"{base}.private")
    key = read_key(str(base), ORIGIN)
    assert (key.key_tag, key.flags, key.algorithm) == (tag, 257, 13)
    signs_and_validates(key)
