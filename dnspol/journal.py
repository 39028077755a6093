"""The IXFR journal (RFC 1995): the differences between successive loaded versions of
each zone and scope, kept in a directory (``server.journal``), bounded.

The process that loads a configuration (``record_all``) compares each zone, as each of
its scopes sees it, with the version it recorded the last time (``NAME@SCOPE.version``):
a new serial appends one difference — the records gone and the records new, each side
led by its SOA — to ``NAME@SCOPE.journal``, which keeps the last ``MAX_DIFFERENCES`` and
drops the oldest once their records outnumber the zone's (a whole transfer is then as
cheap) and ``MIN_RECORDS_KEPT``. Content that changed under the same serial is logged
as an error: secondaries would never see it. The workers read the journal when an IXFR
asks (``differences``), which is rare; files are replaced whole, so a reader sees one
version or the next.

Records are stored as their uncompressed wire form, which is also how an IXFR carries
them (``dnspol.transfer``). The files are dnspol's own; nothing in them is executed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dnspol.codes import RRType
from dnspol.names import to_text
from dnspol.packer import write_record
from dnspol.zones.model import Zone

log = logging.getLogger("dnspol.journal")

MAX_DIFFERENCES = 16
# the journal's records may outnumber the zone's up to this many before the oldest
# difference goes (in a small zone a few differences outnumber it and are still cheap)
MIN_RECORDS_KEPT = 1000
_VERSION = b"DPV1"
_JOURNAL = b"DPJ1"
_COUNT = struct.Struct("!I")
_DIFFERENCE = struct.Struct("!IIII")  # from serial, to serial, records gone, records new
_LENGTH = struct.Struct("!H")


class _Uncompressed(dict):
    """A names table that offers and keeps nothing: records written alone, whole."""

    def get(self, key, default=None):  # noqa: ANN001, ANN201 - dict's own signature
        return None

    def __setitem__(self, key, value) -> None:  # noqa: ANN001
        pass


@dataclass(frozen=True)
class Difference:
    """One step between two versions: each side starts with its SOA (RFC 1995 §4)."""

    old_serial: int
    new_serial: int
    removed: tuple[bytes, ...]  # the old SOA, then the records gone
    added: tuple[bytes, ...]  # the new SOA, then the records new


def record_bytes(zone: Zone) -> tuple[bytes, set[bytes]]:
    """The zone's SOA and its other records, each in uncompressed wire form."""
    names = _Uncompressed()
    soa = bytearray()
    for rec in zone.soa.records():
        write_record(soa, names, rec)
    others: set[bytes] = set()
    for name, node in zone.nodes.items():
        for rtype, rrset in node.items():
            if rtype == RRType.SOA and name == zone.origin:
                continue
            for rec in rrset.records():
                out = bytearray()
                write_record(out, names, rec)
                others.add(bytes(out))
    return bytes(soa), others


class Journal:
    """The journal directory: ``record`` after a load, ``differences`` for an IXFR."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def record_all(self, snapshot) -> None:  # noqa: ANN001 - dnspol.state.Snapshot
        """Record every zone as each scope sees it (the default scope included)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for (_, scope), zone in snapshot.variants.items():
            try:
                self.record(zone, scope)
            except OSError as error:
                log.error("journal of %s scope %s: %s", zone.name, scope, error)

    def record(self, zone: Zone, scope: str) -> Difference | None:
        """Compare ``zone`` with the version recorded before; keep the difference."""
        soa, others = record_bytes(zone)
        version = self._path(zone, scope, "version")
        previous = _read_version(version)
        if previous is not None:
            old_serial, old_soa, old_others = previous
            if old_serial == zone.serial:
                if old_others != others or old_soa != soa:
                    log.error(
                        "%s (scope %s) changed but its serial %d did not: secondaries will "
                        "not transfer it; raise the serial",
                        zone.name,
                        scope,
                        zone.serial,
                    )
                return None
        _write(version, _VERSION + _records([soa, *sorted(others)]))
        if previous is None:
            return None
        difference = Difference(
            old_serial,
            zone.serial,
            (old_soa, *sorted(old_others - others)),
            (soa, *sorted(others - old_others)),
        )
        kept = [*self._read(zone, scope), difference]
        bound = max(len(others), MIN_RECORDS_KEPT)
        while len(kept) > MAX_DIFFERENCES or (
            len(kept) > 1 and sum(len(d.removed) + len(d.added) for d in kept) > bound
        ):
            kept.pop(0)
        _write(self._path(zone, scope, "journal"), _JOURNAL + b"".join(map(_pack, kept)))
        return difference

    def unchanged_serial(self, zone: Zone, scope: str) -> bool:
        """True when ``zone`` differs from the version recorded last under the same serial:
        a secondary would never transfer the change (``dnspol check`` and reload refuse
        it)."""
        previous = _read_version(self._path(zone, scope, "version"))
        if previous is None or previous[0] != zone.serial:
            return False
        soa, others = record_bytes(zone)
        return previous[1] != soa or previous[2] != others

    def differences(self, zone: Zone, scope: str, since: int) -> list[Difference] | None:
        """The steps from serial ``since`` to the zone's, in order; None when the journal
        does not reach back to ``since`` or does not end at the zone's serial."""
        steps = self._read(zone, scope)
        for start, difference in enumerate(steps):
            if difference.old_serial == since:
                chain = steps[start:]
                break
        else:
            return None
        for before, after in zip(chain, chain[1:], strict=False):
            if before.new_serial != after.old_serial:
                return None
        return chain if chain[-1].new_serial == zone.serial else None

    def _read(self, zone: Zone, scope: str) -> list[Difference]:
        try:
            data = self._path(zone, scope, "journal").read_bytes()
        except OSError:
            return []
        if not data.startswith(_JOURNAL):
            return []
        return list(_unpack(data, len(_JOURNAL)))

    def _path(self, zone: Zone, scope: str, kind: str) -> Path:
        name = to_text(zone.origin).rstrip(".") or "root"
        return self.directory / f"{name}@{scope}.{kind}"


def _records(items: list[bytes]) -> bytes:
    return _COUNT.pack(len(items)) + b"".join(_LENGTH.pack(len(i)) + i for i in items)


def _read_records(data: bytes, at: int, count: int) -> tuple[list[bytes], int]:
    items = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(data, at)
        items.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return items, at


def _read_version(path: Path) -> tuple[int, bytes, set[bytes]] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_VERSION):
        return None
    (count,) = _COUNT.unpack_from(data, len(_VERSION))
    items, _ = _read_records(data, len(_VERSION) + 4, count)
    if not items:
        return None
    soa = items[0]
    return _soa_serial(soa), soa, set(items[1:])


def _soa_serial(record: bytes) -> int:
    """The serial of a SOA in uncompressed wire form: 20 bytes before its end."""
    return int.from_bytes(record[-20:-16], "big")


def _pack(difference: Difference) -> bytes:
    head = _DIFFERENCE.pack(
        difference.old_serial,
        difference.new_serial,
        len(difference.removed),
        len(difference.added),
    )
    blobs = difference.removed + difference.added
    return head + b"".join(_LENGTH.pack(len(b)) + b for b in blobs)


def _unpack(data: bytes, at: int) -> Iterator[Difference]:
    while at < len(data):
        old, new, gone, fresh = _DIFFERENCE.unpack_from(data, at)
        removed, at = _read_records(data, at + _DIFFERENCE.size, gone)
        added, at = _read_records(data, at, fresh)
        yield Difference(old, new, tuple(removed), tuple(added))


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
