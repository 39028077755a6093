"""DNSSEC signing keys: reading them from files, and making signatures with them.

This module owns the key files dnspol reads (BIND's ``K<zone>+<alg>+<tag>.key`` with its
``.private``, as ``dnssec-keygen`` and Knot's ``keymgr`` write them; a ``.private`` may also
hold a PKCS#8 PEM key, as Knot keeps them) and the one ``SigningKey`` value a key becomes:
its DNSKEY rdata, key tag, role and a ``sign(data) -> signature`` in DNSSEC's wire form
(RFC 6605 for ECDSA, RFC 8080 for Ed25519, RFC 5702 for RSA/SHA-256).

Every problem is reported as ``file:line: what is wrong`` in one ``KeyError_`` (a
``ConfigError``), so a config naming a bad key fails to load with the file to fix.
Key timing metadata (``Publish:``, ``Activate:``, ``Inactive:`` …) is read past, not obeyed:
every key the config names is published and signs.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from dnspol.errors import ConfigError
from dnspol.names import Name, to_text
from dnspol.zones.rdata import to_name

__all__ = ["ALGORITHMS", "KeyFileError", "SigningKey", "dnskey_wire", "key_paths", "read_key"]

# algorithm number -> mnemonic (RFC 8624's MUST/RECOMMENDED signing algorithms)
ALGORITHMS = {8: "RSASHA256", 13: "ECDSAP256SHA256", 14: "ECDSAP384SHA384", 15: "ED25519"}
SEP = 0x0001  # DNSKEY flags: the Secure Entry Point bit (a KSK, or a CSK)
ZONE_KEY = 0x0100  # DNSKEY flags: a zone key (every DNSSEC signing key has it)
REVOKE = 0x0080
_EC_CURVES = {13: (ec.SECP256R1(), hashes.SHA256(), 32), 14: (ec.SECP384R1(), hashes.SHA384(), 48)}
_RSA_FIELDS = (
    "Modulus",
    "PublicExponent",
    "PrivateExponent",
    "Prime1",
    "Prime2",
    "Exponent1",
    "Exponent2",
    "Coefficient",
)


class KeyFileError(ConfigError):
    """A key file that cannot be used; ``problems`` are ``file:line: what is wrong``."""


@dataclass(frozen=True)
class SigningKey:
    """One key as the signer uses it. ``sign`` takes the RFC 4034 §3.1.8.1 signed data."""

    owner: Name
    flags: int
    algorithm: int
    public_key: bytes  # the DNSKEY's Public Key field
    key_tag: int
    path: str  # the .key file, for messages
    sign: Callable[[bytes], bytes] = field(repr=False, compare=False)

    @property
    def is_ksk(self) -> bool:
        """The SEP bit: a key-signing key (or a CSK, when the zone has no ZSK)."""
        return bool(self.flags & SEP)

    @property
    def rdata(self) -> bytes:
        """The DNSKEY RDATA (RFC 4034 §2.1)."""
        return dnskey_wire(self.flags, self.algorithm, self.public_key)


def dnskey_wire(flags: int, algorithm: int, public_key: bytes) -> bytes:
    return struct.pack("!HBB", flags, 3, algorithm) + public_key


def key_paths(path: str) -> tuple[str, str]:
    """``Kexample.com.+013+12345`` (or its ``.key`` / ``.private``) -> both files."""
    for suffix in (".key", ".private"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return path + ".key", path + ".private"


def read_key(path: str, origin: Name) -> SigningKey:
    """The key whose files are at ``path`` (with or without ``.key``) for zone ``origin``.

    Raises ``KeyFileError`` naming the file and line of every problem found.
    """
    public_path, private_path = key_paths(path)
    problems: list[str] = []
    for file in (public_path, private_path):
        if not os.path.isfile(file):
            problems.append(f"{file}:1: key file does not exist")
    if problems:
        raise KeyFileError(problems)
    line, owner, dnskey = _read_public(public_path)
    if owner != origin:
        raise KeyFileError(
            [f"{public_path}:{line}: the key is for {to_text(owner)}, not for {to_text(origin)}"]
        )
    flags, algorithm, public_key = dnskey.flags, dnskey.algorithm, dnskey.key
    if algorithm not in ALGORITHMS:
        known = ", ".join(f"{n} ({name})" for n, name in ALGORITHMS.items())
        raise KeyFileError(
            [f"{public_path}:{line}: algorithm {algorithm} cannot sign here; use one of {known}"]
        )
    if not flags & ZONE_KEY or flags & REVOKE:
        raise KeyFileError(
            [f"{public_path}:{line}: flags {flags}: a signing key has 256 (ZSK) or 257 (KSK)"]
        )
    signer = _read_private(private_path, algorithm, public_key)
    return SigningKey(
        owner=owner,
        flags=flags,
        algorithm=algorithm,
        public_key=public_key,
        key_tag=dns.dnssec.key_id(dnskey),
        path=public_path,
        sign=signer,
    )


# --- the .key file --------------------------------------------------------------------------


def _read_public(path: str) -> tuple[int, Name, dns.rdata.Rdata]:
    """The one DNSKEY record of a ``.key`` file: (line, owner, rdata)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    for number, text in enumerate(lines, 1):
        record = text.split(";", 1)[0].strip()
        if not record:
            continue
        return number, *_parse_dnskey_line(record, path, number)
    raise KeyFileError([f"{path}:1: no DNSKEY record (expected 'OWNER IN DNSKEY FLAGS 3 ALG KEY')"])


def _parse_dnskey_line(record: str, path: str, number: int) -> tuple[Name, dns.rdata.Rdata]:
    words = record.split()
    try:
        at = [word.upper() for word in words].index("DNSKEY")
    except ValueError:
        raise KeyFileError(
            [f"{path}:{number}: expected 'OWNER [TTL] IN DNSKEY FLAGS 3 ALGORITHM KEY'"]
        ) from None
    try:
        owner = dns.name.from_text(words[0])
        dnskey = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.DNSKEY, " ".join(words[at + 1 :])
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise KeyFileError([f"{path}:{number}: not a DNSKEY record: {exc}"]) from None
    return to_name(owner), dnskey


# --- the .private file ----------------------------------------------------------------------


def _read_private(path: str, algorithm: int, public_key: bytes) -> Callable[[bytes], bytes]:
    with open(path, "rb") as fh:
        data = fh.read()
    if data.lstrip().startswith(b"-----BEGIN"):
        private = _load_pem(data, path)
        fields: dict[str, tuple[int, str]] = {}
    else:
        fields = _private_fields(data.decode("utf-8", "replace"), path)
        private = _load_bind(fields, algorithm, path)
    _check_matches(private, algorithm, public_key, path, fields)
    return _signer(private, algorithm)


def _private_fields(text: str, path: str) -> dict[str, tuple[int, str]]:
    """``Name: value`` lines -> {name: (line, value)}."""
    fields: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise KeyFileError([f"{path}:{number}: expected 'Name: value'"])
        fields[name.strip()] = (number, value.strip())
    if "Private-key-format" not in fields:
        raise KeyFileError([f"{path}:1: not a private key file (no 'Private-key-format:' line)"])
    return fields


def _load_bind(fields: dict[str, tuple[int, str]], algorithm: int, path: str):  # noqa: ANN202
    line, text = fields.get("Algorithm", (1, ""))
    number = text.split()[0] if text.split() else ""
    if not number.isdigit():
        raise KeyFileError([f"{path}:{line}: expected 'Algorithm: NUMBER (NAME)'"])
    if int(number) != algorithm:
        raise KeyFileError(
            [f"{path}:{line}: algorithm {number}, but the .key file says {algorithm}"]
        )
    if algorithm == 8:
        return _load_rsa(fields, path)
    line, value = _field(fields, "PrivateKey", path)
    secret = _base64(value, path, line, "PrivateKey")
    if algorithm == 15:
        if len(secret) != 32:
            raise KeyFileError([f"{path}:{line}: an Ed25519 PrivateKey is 32 bytes"])
        return ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    curve, _, size = _EC_CURVES[algorithm]
    if len(secret) != size:
        raise KeyFileError([f"{path}:{line}: this algorithm's PrivateKey is {size} bytes"])
    try:
        return ec.derive_private_key(int.from_bytes(secret, "big"), curve)
    except ValueError as exc:
        raise KeyFileError([f"{path}:{line}: PrivateKey: {exc}"]) from None


def _load_rsa(fields: dict[str, tuple[int, str]], path: str):  # noqa: ANN202
    numbers = {}
    for name in _RSA_FIELDS:
        line, value = _field(fields, name, path)
        numbers[name] = int.from_bytes(_base64(value, path, line, name), "big")
    public = rsa.RSAPublicNumbers(numbers["PublicExponent"], numbers["Modulus"])
    private = rsa.RSAPrivateNumbers(
        p=numbers["Prime1"],
        q=numbers["Prime2"],
        d=numbers["PrivateExponent"],
        dmp1=numbers["Exponent1"],
        dmq1=numbers["Exponent2"],
        iqmp=numbers["Coefficient"],
        public_numbers=public,
    )
    try:
        return private.private_key()
    except ValueError as exc:
        raise KeyFileError([f"{path}:{fields['Modulus'][0]}: not an RSA key: {exc}"]) from None


def _load_pem(data: bytes, path: str):  # noqa: ANN202
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        short = _ec_key_written_short(data)  # Knot writes about one key in 256 so
        if short is not None:
            return short
        raise KeyFileError([f"{path}:1: not a usable PEM private key: {exc}"]) from None


# the named curves of DNSSEC's ECDSA algorithms, by their DER-encoded object identifiers
_CURVES = {
    bytes.fromhex("2a8648ce3d030107"): ec.SECP256R1(),  # prime256v1: algorithm 13
    bytes.fromhex("2b81040022"): ec.SECP384R1(),  # secp384r1: algorithm 14
}


def _ec_key_written_short(pem: bytes):  # noqa: ANN202 - an EC private key, or None
    """A PKCS#8 EC key whose private value has fewer bytes than its curve (a leading zero
    left out, as Knot's keymgr writes it), read as the integer it is; cryptography
    refuses such a key ("private key value is too short"). None for anything else."""
    try:
        der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))
        info = _der_items(_der_item(der, 0)[1])  # version, algorithm, private key
        identifiers = _der_items(info[1][1])  # id-ecPublicKey, the curve
        curve = _CURVES.get(identifiers[1][1])
        ec_key = _der_items(_der_item(info[2][1], 0)[1])  # version, private value, ...
        value = int.from_bytes(ec_key[1][1], "big")
        return ec.derive_private_key(value, curve) if curve is not None else None
    except (ValueError, IndexError, TypeError, binascii.Error):
        return None


def _der_item(data: bytes, at: int) -> tuple[int, bytes, int]:
    """The DER item at ``at``: its tag, its content, where the next one starts."""
    tag, size, at = data[at], data[at + 1], at + 2
    if size & 0x80:
        width = size & 0x7F
        size, at = int.from_bytes(data[at : at + width], "big"), at + width
    if at + size > len(data):
        raise ValueError("a DER item runs past its end")
    return tag, data[at : at + size], at + size


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The items of a DER sequence's content, as (tag, content)."""
    items, at = [], 0
    while at < len(data):
        tag, content, at = _der_item(data, at)
        items.append((tag, content))
    return items


def _field(fields: dict[str, tuple[int, str]], name: str, path: str) -> tuple[int, str]:
    if name not in fields:
        raise KeyFileError([f"{path}:1: no '{name}:' line"])
    return fields[name]


def _base64(value: str, path: str, line: int, name: str) -> bytes:
    try:
        return base64.b64decode(value.replace(" ", ""), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError([f"{path}:{line}: {name} is not base64"]) from None


def _check_matches(private, algorithm, public_key, path, fields) -> None:  # noqa: ANN001
    """The private key must belong to the DNSKEY: else every signature would be bogus."""
    line = fields.get("PrivateKey", fields.get("Modulus", (1, "")))[0]
    try:
        derived = _public_key_field(private, algorithm)
    except (TypeError, ValueError):
        derived = None
    if derived != public_key:
        name = ALGORITHMS[algorithm]
        raise KeyFileError(
            [
                f"{path}:{line}: this private key ({name}) does not match the public key in the "
                ".key file"
            ]
        )


def _public_key_field(private, algorithm: int) -> bytes:  # noqa: ANN001
    public = private.public_key()
    if algorithm == 15:
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if algorithm in _EC_CURVES:
        point = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point[1:]  # RFC 6605 §4: x | y, without the 0x04 prefix
    numbers = public.public_numbers()  # RFC 3110 §2
    exponent = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    size = len(exponent)
    length = bytes([size]) if size < 256 else b"\0" + struct.pack("!H", size)
    return length + exponent + numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")


def _signer(private, algorithm: int) -> Callable[[bytes], bytes]:  # noqa: ANN001
    """``sign(data)`` giving the signature as an RRSIG carries it."""
    if algorithm == 15:
        return private.sign
    if algorithm in _EC_CURVES:
        _, digest, size = _EC_CURVES[algorithm]
        scheme = ec.ECDSA(digest)

        def sign_ecdsa(data: bytes) -> bytes:
            r, s = decode_dss_signature(private.sign(data, scheme))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")  # RFC 6605 §4

        return sign_ecdsa
    pad, digest = padding.PKCS1v15(), hashes.SHA256()
    return lambda data: private.sign(data, pad, digest)
