"""A zone's ``dnssec:`` settings: which keys sign it, how denial is proven, how long
signatures last. Read from the config (``read_config``), described in ``dnspol schema``
(``json_schema``), compiled to one frozen ``SigningPolicy`` that ``dnspol.dnssec.sign`` uses.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dnspol.dnssec.keys import KeyFileError, SigningKey, key_paths, read_key
from dnspol.names import Name
from dnspol.policy.yamlnodes import Node, Reader

__all__ = ["KEYS", "SigningPolicy", "json_schema", "parse_duration", "read_config"]

DAY = 86_400
KEYS = (
    "keys",
    "denial",
    "validity",
    "refresh",
    "inception",
    "jitter",
    "cds",
    "dnskey_ttl",
    "serial",
)
DENIALS = ("nsec", "nsec3")
SERIALS = ("keep", "unixtime")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


@dataclass(frozen=True)
class SigningPolicy:
    """How one zone is signed (every scope of it alike).

    A signature made at ``now`` is valid from ``now - inception`` until
    ``now + validity - j`` (``j`` drawn from 0 to ``jitter`` per RRset, so a later
    zone's expirations spread out); the zone is signed again ``refresh`` before the
    earliest expiration, while the old signatures still validate.
    """

    keys: tuple[SigningKey, ...]
    denial: str = "nsec"  # or "nsec3": RFC 9276, no salt, 0 extra iterations, no opt-out
    validity: int = 14 * DAY
    refresh: int = 4 * DAY
    inception: int = 3600
    jitter: int = 12 * 3600
    cds: bool = False  # publish CDS and CDNSKEY for the KSKs (RFC 7344, 8078)
    dnskey_ttl: int | None = None  # None: the SOA's TTL
    # "unixtime": the SOA serial becomes the signing time (when that is newer, RFC 1982),
    # so a secondary sees each signing as a new version, as Knot's serial-policy does
    serial: str = "keep"

    def resign_after(self, now: int) -> int:
        """When signatures made at ``now`` reach their refresh point."""
        return now + self.validity - self.jitter - self.refresh


def parse_duration(text: str) -> int:
    """``3600``, ``90s``, ``30m``, ``12h``, ``14d``, ``2w`` -> seconds. Raises ValueError."""
    found = _DURATION.match(str(text))
    if not found:
        raise ValueError(f"{text!r} is not a duration (e.g. 3600, 30m, 12h, 14d, 2w)")
    return int(found[1]) * _UNIT[found[2].lower()]


def read_config(node: Node, reader: Reader, base_dir: str, origin: Name) -> SigningPolicy | None:
    """``zones.<zone>.dnssec``; problems go to ``reader`` (None when there were any)."""
    entries = reader.mapping(node, "dnssec", KEYS, required=("keys",))
    if entries is None or "keys" not in entries:
        return None
    before = len(reader.problems)
    keys = _keys(entries["keys"], reader, base_dir, origin)
    values: dict[str, object] = {"keys": keys}
    if "denial" in entries:
        values["denial"] = reader.choice(entries["denial"], "dnssec.denial", DENIALS)
    for key in ("validity", "refresh", "inception", "jitter", "dnskey_ttl"):
        if key in entries:
            values[key] = reader.convert(entries[key], f"dnssec.{key}", parse_duration)
    if "serial" in entries:
        values["serial"] = reader.choice(entries["serial"], "dnssec.serial", SERIALS)
    if "cds" in entries:
        values["cds"] = reader.boolean(entries["cds"], "dnssec.cds")
    if len(reader.problems) > before:
        return None
    policy = SigningPolicy(**values)  # type: ignore[arg-type]
    if policy.validity - policy.jitter - policy.refresh <= 0:
        reader.problem(
            node,
            f"dnssec: validity ({policy.validity} s) must be longer than refresh "
            f"({policy.refresh} s) plus jitter ({policy.jitter} s)",
        )
        return None
    if not keys:
        reader.problem(entries["keys"], "dnssec.keys: name at least one key")
        return None
    return policy


def _keys(node: Node, reader: Reader, base_dir: str, origin: Name) -> tuple[SigningKey, ...]:
    keys: list[SigningKey] = []
    for text, item in reader.texts(node, "dnssec.keys"):
        path = os.path.join(base_dir, text)
        missing = [file for file in key_paths(path) if not os.path.isfile(file)]
        if missing:
            reader.problem(item, f"dnssec.keys: key file {' and '.join(missing)} does not exist")
            continue
        try:
            key = read_key(path, origin)
        except KeyFileError as exc:  # each names the key file and its line
            reader.problems.extend(exc.problems)
            continue
        except OSError as exc:
            reader.problem(item, f"key {text}: cannot read it: {exc}")
            continue
        if any(other.key_tag == key.key_tag and other.algorithm == key.algorithm for other in keys):
            reader.problem(item, f"key {text}: listed twice (key tag {key.key_tag})")
            continue
        keys.append(key)
    return tuple(keys)


def json_schema() -> dict:
    duration = {"type": ["string", "integer"], "description": "seconds, or e.g. 30m, 12h, 14d"}
    return {
        "type": "object",
        "description": "sign the zone and every scope of it at load (dnspol.dnssec)",
        "properties": {
            "keys": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                ],
                "description": "key files: K<zone>+<alg>+<tag> (its .key and .private)",
            },
            "denial": {"enum": list(DENIALS)},
            "validity": duration,
            "refresh": duration,
            "inception": duration,
            "jitter": duration,
            "cds": {"type": "boolean"},
            "serial": {"enum": list(SERIALS)},
            "dnskey_ttl": duration,
        },
        "required": ["keys"],
        "additionalProperties": False,
    }
