"""Reading RFC 1035 master files into ``Zone`` values: the zone loader's entry points.

This module owns loading a zone: reading its file (bounded by
``zone_max_bytes``), finding its origin, choosing the reader, validating the
records and building the ``Zone``. Every problem found is reported at once in
one ``ZoneError``, each as ``file:line: what is wrong``.

Which reader reads the text (``_read``):

* the fast reader (``dnspol.zones.fastreader``) reads every zone text, except
  the two below: the simple one-line records that make up nearly all of a big
  zone it reads itself, and it hands every other statement ($INCLUDE,
  $GENERATE, ``( )``, escapes, other types) to dnspython's Reader;
* dnspython's Reader (``dnspol.zones.reader``) reads the whole text when it has
  a ``$UNICODE`` directive (which changes how the rest of the file is
  tokenized) or a CR inside quotes (data there, a line break elsewhere).

Both give the same records, with the same ``file:line``, and the same errors.
The checks on the records as a whole are ``dnspol.zones.validation``; what a
zone may cost is ``dnspol.zones.limits``.
"""

from __future__ import annotations

import dataclasses
import os
import re

import dns.exception
import dns.name

from dnspol.bounded import read_at_most
from dnspol.collector import collector_paused
from dnspol.errors import ZoneError
from dnspol.names import Name, to_text
from dnspol.zones.fastreader import FastReader
from dnspol.zones.limits import DEFAULT_LIMITS, ZoneLimits, file_too_big
from dnspol.zones.model import Record, Zone
from dnspol.zones.rdata import to_name
from dnspol.zones.reader import read_by_dnspython
from dnspol.zones.validation import validate

__all__ = [
    "DEFAULT_LIMITS",
    "ZoneLimits",
    "load_zone_file",
    "load_zone_text",
    "read_records",
    "validate",
]


_FIRST_ORIGIN = re.compile(r"^\$ORIGIN[ \t]+([^\s;]+)", re.IGNORECASE | re.MULTILINE)
_ZONE_FILE_SUFFIXES = (".zone", ".db")
# $UNICODE changes how the Reader's tokenizer reads the rest of the file: dnspython reads it.
_UNICODE_DIRECTIVE = re.compile(r"^\$UNICODE", re.IGNORECASE | re.MULTILINE)


# --------------------------------------------------------------------------- public API


def load_zone_file(
    path: str | os.PathLike[str],
    origin: str | None = None,
    scope: str = "default",
    limits: ZoneLimits = DEFAULT_LIMITS,
) -> Zone:
    """Load and validate the master file at ``path``.

    When ``origin`` is None the zone's origin is the first absolute
    ``$ORIGIN`` in the file or, failing that, the file's name without a
    trailing ``.zone`` or ``.db`` (``example.com.zone`` → ``example.com.``).
    Records before that first ``$ORIGIN`` are read relative to it too.
    A name given without a trailing dot is taken as absolute.

    Raises ``ZoneError`` listing every problem as ``file:line: what is wrong``.
    """
    filename = os.fspath(path)
    text = _read_text(filename, limits)
    if origin is None:
        zone_origin = _origin_from_file(text, filename)
    else:
        zone_origin = _origin_from_text(origin, filename)
    return _build(text, zone_origin, filename, scope, limits)


def load_zone_text(
    text: str,
    origin: str,
    filename: str = "<text>",
    scope: str = "default",
    limits: ZoneLimits = DEFAULT_LIMITS,
) -> Zone:
    """Load and validate master-file ``text`` for the zone ``origin``.

    ``filename`` names the text in problems and is the directory ``$INCLUDE``
    paths are relative to. Raises ``ZoneError`` like ``load_zone_file``.
    """
    return _build(text, _origin_from_text(origin, filename), filename, scope, limits)


def read_records(
    path_or_text: str | os.PathLike[str],
    origin: Name,
    filename: str,
    limits: ZoneLimits = DEFAULT_LIMITS,
) -> list[Record]:
    """Parse a master file into records, in file order, without validating them.

    A ``str`` is zone text; a path object (``pathlib.Path``) is read from disk.
    ``filename`` is the name problems and ``Record.where`` use, and its
    directory is where relative ``$INCLUDE`` paths are looked up. Each record's
    ``where`` is ``file:line`` of the line the record starts on (an included
    record names the included file). Owners are lowercased; rdata keeps the
    file's spelling. A syntax error stops reading and raises ``ZoneError``.
    """
    if isinstance(path_or_text, os.PathLike):
        text = _read_text(os.fspath(path_or_text), limits)
    else:
        text = path_or_text
    with collector_paused():
        records, problems = _read(text, origin, filename, limits)
    if problems:
        raise ZoneError(problems)
    return records


# --------------------------------------------------------------------------- building


def _build(text: str, origin: Name, filename: str, scope: str, limits: ZoneLimits) -> Zone:
    with collector_paused():
        records = read_records(text, origin, filename, limits)
        if not records:
            raise ZoneError(
                f"{filename}: no records: zone {to_text(origin)} needs an SOA and NS at its apex"
            )
        problems = validate(origin, records)
        if problems:
            raise ZoneError(problems)
        zone = Zone.from_records(origin, records, source=filename, scope=scope)
    # a record's file is "path" with a line number beside it, or "path:line" as one string
    read = {rec.file if rec.line else rec.file.rpartition(":")[0] for rec in records}
    included = sorted(read - {filename})
    if included:  # so a change to an $INCLUDEd file reloads too
        zone = dataclasses.replace(zone, extras={"files": tuple(included)})
    return zone


def _read_text(filename: str, limits: ZoneLimits) -> str:
    try:
        with open(filename, "rb") as f:
            too_big = file_too_big(os.fstat(f.fileno()).st_size, limits)
            if too_big:
                raise ZoneError(f"{filename}:1: {too_big}")
            data = read_at_most(f, limits.zone_max_bytes)
        if len(data) > limits.zone_max_bytes:  # it grew while read
            raise ZoneError(f"{filename}:1: {file_too_big(len(data), limits)}")
        # as a file opened in text mode reads it: every line end becomes "\n"
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except OSError as exc:
        raise ZoneError(f"{filename}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ZoneError(f"{filename}: cannot read: not UTF-8 text ({exc.reason})") from None


def _origin_from_text(origin: str, filename: str) -> Name:
    try:
        name = dns.name.from_text(origin, dns.name.root)
    except dns.exception.DNSException as exc:
        raise ZoneError(f"{filename}: bad zone origin {origin!r}: {exc}") from None
    return to_name(name)


def _origin_from_file(text: str, filename: str) -> Name:
    """The first absolute $ORIGIN, else the file name minus .zone/.db."""
    match = _FIRST_ORIGIN.search(text)
    if match and match.group(1).endswith("."):
        return _origin_from_text(match.group(1), filename)
    base = os.path.basename(filename)
    for suffix in _ZONE_FILE_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    return _origin_from_text(base, filename)


# --------------------------------------------------------------------------- the readers


def _read(
    text: str, origin: Name, filename: str, limits: ZoneLimits = DEFAULT_LIMITS
) -> tuple[list[Record], list[str]]:
    """Records in file order, and the rdata problems (a syntax error raises ZoneError)."""
    if "\r" in text:
        if '"' in text:  # a CR inside quotes is data, outside it ends a line
            return read_by_dnspython(text, origin, filename, limits)
        # the Reader's tokenizer reads CR LF, and a lone CR, as one line break
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _UNICODE_DIRECTIVE.search(text):
        return read_by_dnspython(text, origin, filename, limits)
    reader = FastReader(origin, filename, limits)
    reader.read(text)
    return reader.records, reader.problems
