"""Zone scopes: the alternate record sets a rule can answer from.

A scope is either a whole zone file (loaded like the default) or an *overlay*: a zone-file
fragment with the zone's origin, laid over the default scope. Overlay rules, by owner name:

- an RRset in the overlay replaces the default's RRset of the same owner and type;
- a CNAME in the overlay replaces everything the default has at that owner;
- any other type in the overlay removes a CNAME the default has at that owner;
- everything else comes from the default unchanged (SOA and NS included, unless the overlay
  brings its own).

The merged records are validated like a whole zone, so an overlay cannot produce a zone the
loader would refuse.
"""

from __future__ import annotations

import pathlib

from dnspol.codes import RRType
from dnspol.errors import ZoneError
from dnspol.names import Name, to_text
from dnspol.zones import loader
from dnspol.zones.loader import DEFAULT_LIMITS, ZoneLimits
from dnspol.zones.model import Record, Zone


def load_scope_file(
    path: str, origin: Name, scope: str, limits: ZoneLimits = DEFAULT_LIMITS
) -> Zone:
    """A whole zone file as a scope (or the default). Raises ZoneError."""
    return loader.load_zone_file(path, origin=to_text(origin), scope=scope, limits=limits)


def load_overlay(path: str, default: Zone, scope: str, limits: ZoneLimits = DEFAULT_LIMITS) -> Zone:
    """The default zone with the overlay file laid over it. Raises ZoneError."""
    overlay = loader.read_records(pathlib.Path(path), default.origin, path, limits)
    problems = loader.validate(default.origin, overlay, require_apex=False)
    if problems:
        raise ZoneError(problems)
    merged = merge_overlay(records_of(default), overlay)
    problems = loader.validate(default.origin, merged)
    if problems:
        raise ZoneError(problems)
    return Zone.from_records(default.origin, merged, source=path, scope=scope)


def merge_overlay(default: list[Record], overlay: list[Record]) -> list[Record]:
    """The default's records, less what the overlay replaces, then the overlay's."""
    replaced = {(record.name, record.rtype) for record in overlay}
    cname_owners = {record.name for record in overlay if record.rtype == RRType.CNAME}
    data_owners = {record.name for record in overlay if record.rtype != RRType.CNAME}
    kept = [
        record
        for record in default
        if (record.name, record.rtype) not in replaced
        and record.name not in cname_owners
        and not (record.rtype == RRType.CNAME and record.name in data_owners)
    ]
    return kept + list(overlay)


def records_of(zone: Zone) -> list[Record]:
    """A zone's records again, one per rdata (where: the zone's file)."""
    return zone.records()
