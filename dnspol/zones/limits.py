"""What one zone may cost, and the words for going over it.

This module owns the bounds every zone read is held to: ``ZoneLimits`` (the
``server:`` settings of the same names: the size of each file, the records of
the zone, the records of one ``$GENERATE``), the number of ``$INCLUDE``s
followed, the largest TTL, and the ``Budget`` one read of a zone spends from,
shared by both readers (``dnspol.zones.fastreader``, ``dnspol.zones.reader``).
BIND generates any range; Knot refuses ``$GENERATE``; here a range above the
limit is an error naming its line, before a record is made.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_INCLUDES",
    "MAX_TTL",
    "Budget",
    "ZoneLimits",
    "file_too_big",
    "too_many_records",
]

MAX_TTL = 2**31 - 1  # RFC 2181 §8: a TTL with the top bit set is not a TTL


@dataclass(frozen=True)
class ZoneLimits:
    """What one zone may cost; each field is the ``server:`` setting of its name."""

    zone_max_bytes: int = 512 * 2**20  # each file, the zone's and every $INCLUDEd one
    zone_max_records: int = 10_000_000  # the zone's records, however they were written
    generate_max_records: int = 65_536  # the records of one $GENERATE


DEFAULT_LIMITS = ZoneLimits()
MAX_INCLUDES = 10_000  # $INCLUDEs followed in one zone: a diamond of them doubles per level


@dataclass(slots=True)
class Budget:
    """What one zone may still spend while it is read (shared by every part of the read)."""

    limits: ZoneLimits
    includes_left: int = MAX_INCLUDES


def file_too_big(size: int, limits: ZoneLimits) -> str:
    """Why a file of ``size`` bytes is refused, or ""."""
    if size <= limits.zone_max_bytes:
        return ""
    return (
        f"the file is {size:,} bytes, above the limit of {limits.zone_max_bytes:,} "
        "(server: zone_max_bytes)"
    )


def too_many_records(limits: ZoneLimits) -> str:
    """What is wrong when a zone has more records than ``zone_max_records``."""
    return f"more than {limits.zone_max_records:,} records in the zone (server: zone_max_records)"
