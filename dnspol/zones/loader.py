"""Reading RFC 1035 master files into ``Zone`` values.

This module owns the zone-file format and everything that can be wrong with
one: it turns master-file text into ``Record`` values that each remember their
``file:line``, checks them as BIND and Knot would (one SOA at the apex, NS at
the apex, CNAME alone, nothing outside the zone, TTLs in range) and builds the
``Zone``. Every problem found is reported at once in one ``ZoneError``.

dnspython's ``dns.zonefile.Reader`` defines how the text reads ($ORIGIN, $TTL,
$INCLUDE, $GENERATE, ``@``, owner inheritance, ``( )``, ``1h30m``, escapes, RFC 3597
``\\#``); its rdata is converted to dnslib ``RD`` objects, our wire codec. A fast
reader reads the plain one-line records that make up nearly all of a big zone
(A, AAAA, CNAME, NS, PTR, MX, TXT, SOA) itself, straight into dnslib objects,
and hands every other statement to the Reader, with the same result.
Three things are changed around the Reader:

* adds go to a recording transaction, so nothing is merged or silently
  replaced (dnspython's own nodes drop a CNAME beside other data);
* owners outside the zone are kept (dnspython skips them silently) so that
  ``validate`` can name them;
* ``$INCLUDE`` paths are taken relative to the including file, not the
  process's working directory.

What one zone may cost is bounded by ``ZoneLimits`` (the ``server:`` settings of the
same names): the size of each file, the records of the zone, the records of one
``$GENERATE``. BIND generates any range; Knot refuses ``$GENERATE``; here a range
above the limit is an error naming its line, before a record is made.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.grange
import dns.ipv4
import dns.ipv6
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.ttl
import dns.zonefile
from dnslib import QTYPE, RD, DNSBuffer, DNSLabel
from dnslib.dns import RDMAP

from dnspol.errors import ZoneError
from dnspol.names import Name, is_subdomain, to_text
from dnspol.zones.model import TYPE_CNAME, TYPE_NS, TYPE_SOA, Record, Zone

__all__ = ["ZoneLimits", "load_zone_file", "load_zone_text", "read_records", "validate"]

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
class _Budget:
    """What one zone may still spend while it is read (shared by every part of the read)."""

    limits: ZoneLimits
    includes_left: int = MAX_INCLUDES


# Types that may share a name with a CNAME (RFC 4035 §2.5, RFC 3007).
_CNAME_NEIGHBOURS = frozenset({QTYPE.RRSIG, QTYPE.NSEC, QTYPE.NSEC3, QTYPE.KEY})

# Types whose fields the server reads (SOA timers, CNAME/NS/MX/SRV targets):
# they must become dnslib's own class, never a raw blob.
_FIELDS_NEEDED = frozenset({QTYPE.SOA, QTYPE.NS, QTYPE.CNAME, QTYPE.MX, QTYPE.SRV})

# dnslib compresses the names inside these, which RFC 3597 §4 (and RFC 3403
# §4.1 for NAPTR) forbids; packed as raw RDATA they stay uncompressed.
_PACKED_AS_RAW = frozenset({QTYPE.NAPTR, QTYPE.RP})

_FIRST_ORIGIN = re.compile(r"^\$ORIGIN[ \t]+([^\s;]+)", re.IGNORECASE | re.MULTILINE)
_ZONE_FILE_SUFFIXES = (".zone", ".db")


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
    with _collector_paused():
        records, problems = _read(text, origin, filename, limits)
    if problems:
        raise ZoneError(problems)
    return records


def validate(origin: Name, records: list[Record], *, require_apex: bool = True) -> list[str]:
    """Every semantic problem in ``records``, each as ``file:line: what is wrong``.

    ``require_apex=False`` drops the checks that the apex has an SOA and NS
    records (for files that overlay another zone); everything else is checked.
    Problems come in file order, zone-wide ones first.
    """
    checks = [
        _outside_zone(origin, records),
        _ttl_too_large(records),
        _soa_misplaced_or_repeated(origin, records),
        _cname_not_alone(origin, records),
    ]
    if require_apex:
        checks.append(_apex_incomplete(origin, records))
    found = sorted((found for check in checks for found in check), key=lambda f: f[0])
    return [text for _, text in found]


# --------------------------------------------------------------------------- building


def _build(text: str, origin: Name, filename: str, scope: str, limits: ZoneLimits) -> Zone:
    with _collector_paused():
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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a zone is built.

    Building makes millions of objects that all stay alive; every collection would walk
    them all again for nothing (it took half the time of loading a big zone). Reference
    counting still frees what is dropped; cycles wait until the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_text(filename: str, limits: ZoneLimits) -> str:
    try:
        with open(filename, encoding="utf-8") as f:
            too_big = _too_big(os.fstat(f.fileno()).st_size, limits)
            if too_big:
                raise ZoneError(f"{filename}:1: {too_big}")
            text = f.read(limits.zone_max_bytes + 1)  # a file growing while read stays bounded
            if len(text) > limits.zone_max_bytes:
                raise ZoneError(f"{filename}:1: {_too_big(len(text), limits)}")
            return text
    except OSError as exc:
        raise ZoneError(f"{filename}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ZoneError(f"{filename}: cannot read: not UTF-8 text ({exc.reason})") from None


def _too_big(size: int, limits: ZoneLimits) -> str:
    """Why a file of ``size`` bytes is refused, or ""."""
    if size <= limits.zone_max_bytes:
        return ""
    return (
        f"the file is {size:,} bytes, above the limit of {limits.zone_max_bytes:,} "
        "(server: zone_max_bytes)"
    )


def _too_many_records(limits: ZoneLimits) -> str:
    return f"more than {limits.zone_max_records:,} records in the zone (server: zone_max_records)"


def _origin_from_text(origin: str, filename: str) -> Name:
    try:
        name = dns.name.from_text(origin, dns.name.root)
    except dns.exception.DNSException as exc:
        raise ZoneError(f"{filename}: bad zone origin {origin!r}: {exc}") from None
    return _to_name(name)


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


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _Added:
    """One record as the Reader handed it over, with where it started."""

    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata
    where: str


class _Recorder:
    """A duck-typed dnspython transaction that keeps every add, in order.

    ``dns.zonefile.Reader`` needs ``manager.origin_information()``,
    ``check_put_rdataset``, ``_set_origin``, ``add`` and ``add_unicode``.
    Nothing is merged or replaced: validation must see all of it.
    """

    def __init__(self, origin: dns.name.Name, room: int, limits: ZoneLimits) -> None:
        self.origin = origin
        self.manager = self
        self.where = "?"
        self.added: list[_Added] = []
        self.room = room  # records the zone may still have
        self.limits = limits

    def origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        return (self.origin, False, self.origin)  # absolute names, never relativized

    def check_put_rdataset(self, check: Callable[..., Any]) -> None:
        """The Reader installs its CNAME check here; ``validate`` does that job."""

    def _set_origin(self, origin: dns.name.Name) -> None:
        """$ORIGIN changes the Reader's current origin only; the zone keeps its own."""

    def add_unicode(self, attribute: str) -> None:
        """$UNICODE only changes how the Reader's tokenizer reads names."""

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        if len(self.added) >= self.room:
            raise _LocatedError(f"{self.where}: {_too_many_records(self.limits)}")
        self.added.append(_Added(name, ttl, rdata, self.where))


class _Tokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer that resolves a ``$INCLUDE`` path against its own file's directory.

    The Reader reads the path as the token after a line-start ``$INCLUDE`` and
    opens it as given, i.e. relative to the working directory; here that token
    is rewritten to a path next to the including file, checked to be readable
    and not to include itself.
    """

    def __init__(
        self, f: Any, filename: str, budget: _Budget, including: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f, filename)
        self.budget = budget
        self.limits = budget.limits
        self.including = including  # real paths of the files that led here
        self.record_tokens: list[str] = []  # what the current record said, for errors
        self.statement_line = 1
        self._path_comes_next = False

    def statement_where(self) -> str:
        """``file:line`` of the line the current record or directive starts on.

        ``where()`` is often one line late: reading a token at the end of a
        line reads the newline after it too.
        """
        return f"{self.filename}:{self.statement_line}"

    def statement_text(self) -> str:
        """What the current record or directive said so far, shortened."""
        said = " ".join(self.record_tokens)
        return said if len(said) <= 60 else said[:57] + "..."

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        # the Reader reads each line's first token with both flags set
        at_line_start = want_leading and want_comment
        if at_line_start and self.ungotten_token is None:
            self.statement_line = self.line_number
            self.record_tokens = []
        token = super().get(want_leading, want_comment)
        if token.is_quoted_string():
            self.record_tokens.append(f'"{token.value}"')
        elif token.is_identifier():
            self.record_tokens.append(token.value)
        if self._path_comes_next:
            self._path_comes_next = False
            return self._resolve_include(token)
        if at_line_start and token.is_identifier() and token.value.upper() == "$INCLUDE":
            self._path_comes_next = True
        return token

    def unget(self, token: dns.tokenizer.Token) -> None:
        super().unget(token)
        if token.is_identifier() or token.is_quoted_string():
            self.record_tokens.pop()

    def _resolve_include(self, token: dns.tokenizer.Token) -> dns.tokenizer.Token:
        where = self.statement_where()
        if not (token.is_identifier() or token.is_quoted_string()):
            raise _LocatedError(f"{where}: $INCLUDE needs a file name")
        path = os.path.join(os.path.dirname(self.filename), token.value)
        chain = (*self.including, os.path.realpath(self.filename))
        if os.path.realpath(path) in chain:
            raise _LocatedError(f"{where}: $INCLUDE {token.value}: the file includes itself")
        if self.budget.includes_left <= 0:
            raise _LocatedError(
                f"{where}: $INCLUDE {token.value}: more than {MAX_INCLUDES:,} files included "
                "in the zone"
            )
        self.budget.includes_left -= 1
        try:
            with open(path, encoding="utf-8") as f:
                too_big = _too_big(os.fstat(f.fileno()).st_size, self.limits)
        except OSError as exc:
            raise _LocatedError(
                f"{where}: $INCLUDE {token.value}: cannot read {path}: {exc.strerror or exc}"
            ) from None
        if too_big:
            raise _LocatedError(f"{where}: $INCLUDE {token.value}: {too_big}")
        return dns.tokenizer.Token(token.ttype, path)


class _LocatedError(Exception):
    """A reading error already worded as ``file:line: what is wrong``.

    Not a ``dns.exception.SyntaxError``, so the Reader lets it through unchanged
    instead of putting its own (often one line late) location in front.
    """


class _Reader(dns.zonefile.Reader):
    """dnspython's Reader, noting where each record starts and keeping outside owners."""

    def __init__(self, tok: _Tokenizer, recorder: _Recorder) -> None:
        super().__init__(tok, dns.rdataclass.IN, recorder, allow_include=True)  # type: ignore[arg-type]
        self.recorder = recorder
        # The Reader drops owners that are not below zone_origin without a word.
        # With the root there, every owner reaches the recorder; relative names
        # still use current_origin, which stays the real origin.
        self.zone_origin = dns.name.root

    @property
    def tok(self) -> _Tokenizer:
        return self._tok

    @tok.setter
    def tok(self, tok: dns.tokenizer.Tokenizer) -> None:
        # $INCLUDE makes a plain Tokenizer for the included file; use ours instead.
        if not isinstance(tok, _Tokenizer):
            parent = self._tok
            chain = (*parent.including, os.path.realpath(parent.filename))
            tok = _Tokenizer(tok.file, tok.filename, parent.budget, chain)
        self._tok = tok

    def _rr_line(self) -> None:
        self._begin_record()
        try:
            super()._rr_line()
        except dns.exception.DNSException as exc:
            raise self._bad_record(exc) from None

    def _generate_line(self) -> None:
        self._begin_record()
        self._check_generate_range()
        try:
            super()._generate_line()
        except dns.exception.DNSException as exc:
            raise self._bad_record(exc) from None

    def _check_generate_range(self) -> None:
        """Refuse a range above ``generate_max_records`` before one record is made."""
        token = self.tok.get()
        self.tok.unget(token)
        try:
            start, stop, step = dns.grange.from_text(token.value)
        except Exception:  # noqa: BLE001 - the Reader reports a bad range in its words
            return
        count = (stop - start) // step + 1 if step > 0 else 0
        limit = self.tok.limits.generate_max_records
        if count > limit:
            raise _LocatedError(
                f"{self.recorder.where}: $GENERATE {token.value} makes {count:,} records, "
                f"above the limit of {limit:,} (server: generate_max_records)"
            )

    def _begin_record(self) -> None:
        self.recorder.where = self.tok.statement_where()

    def _bad_record(self, exc: dns.exception.DNSException) -> _LocatedError:
        """The error at the line the record starts on, quoting what it said."""
        said = self.tok.statement_text()
        return _LocatedError(f"{self.recorder.where}: bad record '{said}': {_explain(exc)}")

    def open_files(self) -> Iterator[Any]:
        """Included files still open after an error stopped the reading."""
        if self.current_file is not None:
            yield self.current_file
        for state in self.saved_state:
            if state[3] is not None:
                yield state[3]


def _parse(
    text: str,
    origin: Name,
    filename: str,
    budget: _Budget,
    room: int,
    state: _State | None = None,
    first_line: int = 1,
) -> list[_Added]:
    """Read ``text`` with dnspython's Reader; it starts at line ``first_line`` of the file.

    With a ``state``, the Reader starts from it (origin, last owner, TTLs), and the
    state is updated to where the Reader ended: how the fast reader hands it a part.
    ``room``: how many more records the zone may have.
    """
    recorder = _Recorder(_to_dns_name(origin), room, budget.limits)
    tokenizer = _Tokenizer(text, filename, budget)
    tokenizer.line_number = first_line
    reader = _Reader(tokenizer, recorder)
    if state is not None:
        state.to_reader(reader)
    try:
        reader.read()
    except _LocatedError as exc:
        raise ZoneError(str(exc)) from None
    except dns.exception.DNSException as exc:  # in a directive
        raise ZoneError(_directive_problem(reader, exc)) from None
    except UnicodeDecodeError as exc:
        raise ZoneError(_at(reader, f"cannot read: not UTF-8 text ({exc.reason})")) from None
    finally:
        for f in reader.open_files():
            f.close()
    if state is not None:
        state.from_reader(reader)
    return recorder.added


def _at(reader: _Reader, what: str) -> str:
    filename, line = reader.tok.where()
    return f"{filename}:{line}: {what}"


def _directive_problem(reader: _Reader, exc: dns.exception.DNSException) -> str:
    """A directive's error at its own line (dnspython's place is often one late)."""
    filename, line = reader.tok.where()
    detail = _explain(exc).removeprefix(f"{filename}:{line}: ")
    said = reader.tok.statement_text()
    return f"{reader.tok.statement_where()}: bad directive '{said}': {detail}"


# dnspython's wording → ours, where theirs does not say what is wrong.
_CLEARER = {
    "RR class is not zone's class": "the class is not IN (dnspol serves class IN only)",
    # raised without a message, a DNSException reads as its class's docstring
    dns.exception.SyntaxError.__doc__: "malformed",
}
_CAUGHT = re.compile(r"^caught exception <class '[\w.]+'>: ")
_TTL_OR_TYPE = re.compile(r"^unknown rdatatype '(\d[^']*)'$")


def _explain(exc: dns.exception.DNSException) -> str:
    detail = str(exc)
    detail = _CLEARER.get(detail, detail)
    detail = _CAUGHT.sub("", detail)
    looks_like_ttl = _TTL_OR_TYPE.match(detail)
    if looks_like_ttl:
        detail = (
            f"'{looks_like_ttl.group(1)}' is neither a type nor a TTL "
            f"(0 to {MAX_TTL} seconds, units s m h d w allowed)"
        )
    return detail


# --------------------------------------------------------------------------- the fast reader

# Nearly every line of a big zone is one simple record, ``owner [ttl] [class] type rdata``
# with an address, a name or a few strings. The fast reader reads those with str methods
# and makes the dnslib RD directly (the Reader, rdata.from_text and the round trip through
# wire format cost some 50 µs a record). Every other statement (parentheses, escapes,
# $INCLUDE, $GENERATE, other types, anything it is not sure of) goes to dnspython's Reader,
# which starts from the fast reader's state and hands its state back, so the records, the
# file:line of each and every error are the Reader's own. tests/test_zones_loader.py
# reads zone texts both ways and compares.

_DIGITS = frozenset("0123456789")
# A line the fast reader leaves to the Reader: anything but tab and printable ASCII
# (line breaks, IDN), parentheses (a statement over several lines), backslash escapes.
_NOT_SIMPLE = re.compile(r"[^\t -~]|[()\\]")
# A line with quotes, in tokens: "string", plain, the start of a comment, a quote left open.
_QUOTED_LINE_TOKEN = re.compile(r'"([^"]*)"|([^ \t";]+)|(;)|(")')
# $UNICODE changes how the Reader's tokenizer reads the rest of the file: dnspython reads it.
_UNICODE_DIRECTIVE = re.compile(r"^\$UNICODE", re.IGNORECASE | re.MULTILINE)
_MAX_WIRE_NAME = 255
_MAX_LABEL = 63
_MAX_UINT32 = 2**32 - 1

_TYPE_A = int(QTYPE.A)
_TYPE_AAAA = int(QTYPE.AAAA)
_TYPE_MX = int(QTYPE.MX)
_TYPE_TXT = int(QTYPE.TXT)
_TYPE_SOA = int(QTYPE.SOA)
# Types whose rdata is one name; the RD class is the one _to_dnslib would pick.
_NAME_TYPES = {int(QTYPE.CNAME): RDMAP["CNAME"], int(QTYPE.NS): RDMAP["NS"],
               int(QTYPE.PTR): RDMAP["PTR"]}  # fmt: skip
_FAST_TYPES = {
    word: int(getattr(QTYPE, word))
    for word in ("A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "SOA")
}
_FAST_TYPES.update({word.lower(): rtype for word, rtype in _FAST_TYPES.items()})


def _read(
    text: str, origin: Name, filename: str, limits: ZoneLimits = DEFAULT_LIMITS
) -> tuple[list[Record], list[str]]:
    """Records in file order, and the rdata problems (a syntax error raises ZoneError)."""
    if "\r" in text:
        if '"' in text:  # a CR inside quotes is data, outside it ends a line
            return _read_by_dnspython(text, origin, filename, limits)
        # the Reader's tokenizer reads CR LF, and a lone CR, as one line break
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _UNICODE_DIRECTIVE.search(text):
        return _read_by_dnspython(text, origin, filename, limits)
    reader = _FastReader(origin, filename, limits)
    reader.read(text)
    return reader.records, reader.problems


def _read_by_dnspython(
    text: str, origin: Name, filename: str, limits: ZoneLimits = DEFAULT_LIMITS
) -> tuple[list[Record], list[str]]:
    """The whole text through dnspython's Reader (the reference the fast reader matches)."""
    records: list[Record] = []
    problems: list[str] = []
    added = _parse(text, origin, filename, _Budget(limits), limits.zone_max_records)
    _convert(added, records, problems)
    return records, problems


def _convert(added: list[_Added], records: list[Record], problems: list[str]) -> None:
    for rr in added:
        try:
            records.append(_to_record(rr))
        except _Unrepresentable as exc:
            problems.append(f"{rr.where}: {exc}")


@dataclass(slots=True)
class _State:
    """What dnspython's Reader carries from one statement to the next."""

    origin: Name  # the current $ORIGIN as written: names in rdata keep its spelling
    last_name: Name  # the owner of the last record, lowercased
    last_ttl: int = 0
    last_ttl_known: bool = False
    default_ttl: int = 0
    default_ttl_known: bool = False
    default_ttl_from_soa: bool = False

    def implicit_ttl(self) -> int | None:
        """The TTL of a record that states none: ``Reader._implicit_ttl`` (RFC 2308 mode).

        $TTL wins; before any $TTL the last stated TTL (RFC 1035 §5.1) wins over the
        SOA MINIMUM; None when there is neither yet.
        """
        if self.last_ttl_known and (not self.default_ttl_known or self.default_ttl_from_soa):
            return self.last_ttl
        if self.default_ttl_known:
            return self.default_ttl
        return None

    def to_reader(self, reader: _Reader) -> None:
        reader.current_origin = _to_dns_name(self.origin)
        reader.last_name = _to_dns_name(self.last_name)
        reader.last_ttl = self.last_ttl
        reader.last_ttl_known = self.last_ttl_known
        reader.default_ttl = self.default_ttl
        reader.default_ttl_known = self.default_ttl_known
        reader.default_ttl_from_soa = self.default_ttl_from_soa

    def from_reader(self, reader: _Reader) -> None:
        self.origin = tuple(reader.current_origin.labels[:-1])
        self.last_name = _to_name(reader.last_name)
        self.last_ttl = reader.last_ttl
        self.last_ttl_known = reader.last_ttl_known
        self.default_ttl = reader.default_ttl
        self.default_ttl_known = reader.default_ttl_known
        self.default_ttl_from_soa = reader.default_ttl_from_soa


class _FastReader:
    """Reads simple lines itself and hands every other statement to dnspython's Reader.

    A line is read here only when all of it is understood: otherwise nothing of it is
    kept and the Reader reads the statement from the same state, so it gives the records
    or the error the whole-file Reader would give.
    """

    def __init__(self, origin: Name, filename: str, limits: ZoneLimits = DEFAULT_LIMITS) -> None:
        self.zone_origin = origin
        self.filename = filename
        self.limits = limits
        self.budget = _Budget(limits)
        self.state = _State(origin, origin)
        self.origin_lower = origin
        self.origin_wire = _wire_length(origin)
        self.records: list[Record] = []
        self.problems: list[str] = []
        self.handed_over = 0  # statements the Reader read
        self._classes: dict[str, int] = {}
        self._owner_text: str | None = None  # the last owner read, and its name
        self._owner: Name | None = origin

    def read(self, text: str) -> None:
        # line by line without a list of them all: a big zone's lines would weigh ~80 MB
        length = len(text)
        start = 0  # of the line being read
        number = 0  # its number, from 1
        records = self.records
        max_records = self.limits.zone_max_records
        while start < length:
            end = text.find("\n", start)
            if end < 0:
                end = length
            number += 1
            line = text[start:end]
            if not line or self._line(line, number):
                if len(records) > max_records:
                    raise ZoneError(f"{self.filename}:{number}: {_too_many_records(self.limits)}")
                start = end + 1
                continue
            stop = _statement_end(text, start)
            part = text[start:stop]
            self._hand_over(part, number)
            number += part.count("\n") - 1
            start = stop

    # --- lines

    def _line(self, line: str, number: int) -> bool:
        """Read one line if it is simple; False leaves it (all of it) to the Reader."""
        if '"' in line:
            return self._quoted_line(line, number)
        semicolon = line.find(";")
        code = line if semicolon < 0 else line[:semicolon]
        if _NOT_SIMPLE.search(code):
            return False
        tokens = code.split()  # only spaces and tabs can be in it
        if not tokens:
            return True  # blank, or a comment
        if code[0] == "$":
            return self._directive(tokens)
        return self._record(tokens, len(tokens), code[0] in " \t", number)

    def _quoted_line(self, line: str, number: int) -> bool:
        """A line with quoted strings: read here only as the strings of a TXT record."""
        if _NOT_SIMPLE.search(line):
            return False
        tokens: list[str] = []
        first_quoted = -1
        for match in _QUOTED_LINE_TOKEN.finditer(line):
            quoted, plain, comment, _ = match.groups()
            if quoted is not None:
                if first_quoted < 0:
                    first_quoted = len(tokens)
                tokens.append(quoted)
            elif plain is not None:
                tokens.append(plain)
            elif comment is not None:
                break
            else:
                return False  # a quote left open
        if not tokens:
            return True
        if first_quoted < 0:
            first_quoted = len(tokens)
        if first_quoted == 0 or tokens[0][0] == "$":
            return False
        return self._record(tokens, first_quoted, line[0] in " \t", number)

    def _directive(self, tokens: list[str]) -> bool:
        if len(tokens) != 2:
            return False
        word = tokens[0].upper()
        state = self.state
        if word == "$TTL":
            ttl = _ttl(tokens[1])
            if ttl is None:
                return False
            state.default_ttl = ttl
            state.default_ttl_known = True
            state.default_ttl_from_soa = False
            return True
        if word == "$ORIGIN":
            origin = self._name(tokens[1], state.origin, self.origin_wire)
            if origin is None:
                return False
            state.origin = origin
            self._origin_changed()
            return True
        return False

    def _record(self, tokens: list[str], first_quoted: int, inherited: bool, number: int) -> bool:
        """``owner [ttl] [class] [ttl] type rdata``, as ``Reader._rr_line`` reads it."""
        state = self.state
        if inherited:
            owner = state.last_name
            at = 0
        else:
            owner = self._owner_name(tokens[0])
            if owner is None:
                return False
            at = 1
        count = len(tokens)
        if at >= count:
            return False
        token = tokens[at]
        ttl: int | None = None
        if token[0] in _DIGITS:
            ttl = _ttl(token)
            if ttl is not None:
                at += 1
                if at >= count:
                    return False
                token = tokens[at]
        rdclass = self._class(token)
        if rdclass < 0:
            return False
        if rdclass:
            at += 1
            if at >= count:
                return False
            token = tokens[at]
        stated = ttl is not None
        if not stated and token[0] in _DIGITS:  # <class> <ttl> <type>
            ttl = _ttl(token)
            if ttl is not None:
                stated = True
                at += 1
                if at >= count:
                    return False
                token = tokens[at]
        rtype = _FAST_TYPES.get(token)
        if rtype is None:
            rtype = _FAST_TYPES.get(token.upper())
            if rtype is None:
                return False
        at += 1
        if first_quoted < at or (first_quoted < count and rtype != _TYPE_TXT):
            return False
        if not stated:
            ttl = state.implicit_ttl()
        rdata = self._rdata(rtype, tokens, at)
        if rdata is None:
            return False
        if rtype == _TYPE_SOA and not state.default_ttl_known:
            # before any $TTL the SOA MINIMUM becomes the default (pre-RFC 2308 files)
            state.default_ttl = rdata.times[4]  # type: ignore[attr-defined]
            state.default_ttl_known = True
            state.default_ttl_from_soa = True
            if ttl is None:
                ttl = state.implicit_ttl()
        if ttl is None:
            return False  # the Reader's "Missing default TTL value"
        if not inherited:
            state.last_name = owner
        if stated:
            state.last_ttl = ttl
            state.last_ttl_known = True
        self.records.append(Record(owner, rtype, ttl, rdata, self.filename, number))
        return True

    def _class(self, token: str) -> int:
        """1: IN; 0: not a class (the type comes next); -1: another class, or unsure."""
        known = self._classes.get(token)
        if known is None:
            try:
                known = 1 if dns.rdataclass.from_text(token) == dns.rdataclass.IN else -1
            except dns.exception.SyntaxError:
                known = -1
            except Exception:  # what the Reader takes for "not a class"
                known = 0
            if len(self._classes) < 1000:
                self._classes[token] = known
        return known

    def _rdata(self, rtype: int, tokens: list[str], at: int) -> object | None:
        """The dnslib RD for the rdata ``tokens[at:]``; None when not sure it is valid."""
        count = len(tokens) - at
        if rtype == _TYPE_A:
            if count != 1:
                return None
            try:
                return RDMAP["A"](tuple(dns.ipv4.inet_aton(tokens[at])))
            except Exception:
                return None
        if rtype == _TYPE_AAAA:
            if count != 1:
                return None
            try:
                return RDMAP["AAAA"](tuple(dns.ipv6.inet_aton(tokens[at])))
            except Exception:
                return None
        if rtype == _TYPE_TXT:
            strings = [token.encode("ascii") for token in tokens[at:]]
            if not strings or max(map(len, strings)) > 255:
                return None
            return RDMAP["TXT"](strings)
        if rtype == _TYPE_SOA:
            return self._soa(tokens, at) if count == 7 else None
        if rtype == _TYPE_MX:
            if count != 2:
                return None
            preference = tokens[at]
            if not preference.isdigit() or int(preference) > 0xFFFF:
                return None
            exchange = self._name(tokens[at + 1], self.state.origin, self.origin_wire)
            if exchange is None:
                return None
            return RDMAP["MX"](DNSLabel(exchange), int(preference))
        if count != 1:
            return None
        target = self._name(tokens[at], self.state.origin, self.origin_wire)
        if target is None:
            return None
        return _NAME_TYPES[rtype](DNSLabel(target))

    def _soa(self, tokens: list[str], at: int) -> object | None:
        """``mname rname serial refresh retry expire minimum``; the timers may have units."""
        origin, origin_wire = self.state.origin, self.origin_wire
        mname = self._name(tokens[at], origin, origin_wire)
        rname = self._name(tokens[at + 1], origin, origin_wire)
        serial = tokens[at + 2]
        if mname is None or rname is None or not serial.isdigit():
            return None
        times = [int(serial), *map(_ttl, tokens[at + 3 : at + 7])]
        if times[0] > _MAX_UINT32 or None in times:
            return None
        return RDMAP["SOA"](DNSLabel(mname), DNSLabel(rname), times)

    # --- names

    def _owner_name(self, text: str) -> Name | None:
        """The owner, lowercased; consecutive records of one owner share one tuple."""
        if text != self._owner_text:
            self._owner = self._name(text.lower(), self.origin_lower, self.origin_wire)
            self._owner_text = text
        return self._owner

    def _name(self, text: str, origin: Name, origin_wire: int) -> Name | None:
        """``dns.name.from_text(text, origin)`` for text without escapes, as label bytes."""
        if text == "@":
            return origin
        if text == ".":
            return ()
        absolute = text[-1] == "."
        raw = text[:-1].encode("ascii") if absolute else text.encode("ascii")
        labels = raw.split(b".")
        wire = len(raw) + (2 if absolute else 1 + origin_wire)
        if wire > _MAX_WIRE_NAME or b"" in labels or max(map(len, labels)) > _MAX_LABEL:
            return None
        return tuple(labels) if absolute else (*labels, *origin)

    def _origin_changed(self) -> None:
        self.origin_lower = tuple(label.lower() for label in self.state.origin)
        self.origin_wire = _wire_length(self.state.origin)
        self._owner_text = None

    # --- the rest

    def _hand_over(self, text: str, first_line: int) -> None:
        """Let dnspython's Reader read ``text`` (whole statements) from the current state."""
        self.handed_over += 1
        room = self.limits.zone_max_records - len(self.records)
        added = _parse(
            text, self.zone_origin, self.filename, self.budget, room, self.state, first_line
        )
        self._origin_changed()
        _convert(added, self.records, self.problems)


def _ttl(text: str) -> int | None:
    """``dns.ttl.from_text`` (0 to 2**32-1, units w d h m s), None where it raises."""
    if text.isdigit():  # the text is ASCII: only 0-9
        value = int(text)
        return value if value <= _MAX_UINT32 else None
    try:
        return dns.ttl.from_text(text)
    except dns.exception.SyntaxError:
        return None


def _wire_length(name: Name) -> int:
    return sum(len(label) + 1 for label in name) + 1


def _statement_end(text: str, start: int) -> int:
    """Where the statement that starts at ``text[start]`` ends: after its line break.

    Follows the tokenizer: ``( )`` outside quotes join lines, ``;`` outside quotes starts
    a comment, a backslash escapes the next character (in quotes even the line break).
    A statement the tokenizer would refuse ends where it fails: the Reader reports it.
    """
    depth = 0
    quoting = False
    length = len(text)
    at = start
    while at < length:
        end = text.find("\n", at)
        if end < 0:
            end = length
        escaped_break = False
        while at < end:
            char = text[at]
            if char == "\\":
                at += 2
                escaped_break = at > end
                continue
            if quoting:
                if char == '"':
                    quoting = False
            elif char == '"':
                quoting = True
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth < 0:
                    return min(end + 1, length)
            elif char == ";":
                break
            at += 1
        if quoting:
            if not escaped_break:
                return min(end + 1, length)  # a line break in a quoted string
        elif escaped_break or depth == 0:
            return min(end + 1, length)
        at = end + 1
    return length


# --------------------------------------------------------------------------- conversion


class _Unrepresentable(Exception):
    """dnslib cannot hold this rdata with the fields the server needs."""


def _to_record(rr: _Added) -> Record:
    return Record(
        name=_to_name(rr.name),
        rtype=int(rr.rdata.rdtype),
        ttl=rr.ttl,
        rdata=_to_dnslib(rr.rdata),
        file=rr.where,  # already file:line
    )


def _to_dnslib(rdata: dns.rdata.Rdata) -> object:
    """The dnslib RD for ``rdata``: dnslib's own class when it round-trips the
    bytes exactly, else a generic ``RD`` that packs the raw RDATA."""
    rtype = int(rdata.rdtype)
    wire = rdata.to_wire()  # uncompressed, in the file's spelling
    rd_class = RDMAP.get(QTYPE[rtype], RD)
    if rd_class is RD or rtype in _PACKED_AS_RAW:
        return RD(wire)
    rd, why_not = _parse_exactly(rd_class, wire)
    if rd is not None:
        return rd
    if rtype in _FIELDS_NEEDED:
        type_name = dns.rdatatype.to_text(rdata.rdtype)
        raise _Unrepresentable(f"{type_name} {rdata.to_text()}: cannot be encoded: {why_not}")
    return RD(wire)


def _parse_exactly(rd_class: type, wire: bytes) -> tuple[object | None, str]:
    """dnslib's object for ``wire`` if it packs back to exactly ``wire``, else why not."""
    try:
        rd = rd_class.parse(DNSBuffer(wire), len(wire))
        if _pack_uncompressed(rd) == wire:
            return rd, ""
        return None, "dnslib does not pack it back to the same bytes"
    except Exception as exc:  # dnslib raises assorted types on data it cannot hold
        return None, f"{type(exc).__name__}: {exc}"


class _UncompressedBuffer(DNSBuffer):
    encode_name = DNSBuffer.encode_name_nocompress


def _pack_uncompressed(rd: Any) -> bytes:
    buf = _UncompressedBuffer()
    rd.pack(buf)
    return bytes(buf.data)


def _to_name(name: dns.name.Name) -> Name:
    return tuple(label.lower() for label in name.labels[:-1])


def _to_dns_name(name: Name) -> dns.name.Name:
    return dns.name.Name([*name, b""])


# --------------------------------------------------------------------------- validation

# A check yields (index of the record a problem is about, problem text);
# index -1 is the zone as a whole.
_Found = Iterator[tuple[int, str]]
_Numbered = list[tuple[int, Record]]


def _outside_zone(origin: Name, records: list[Record]) -> _Found:
    last: Name | None = None
    inside = True
    for i, r in enumerate(records):
        if r.name is not last:  # records of one owner often share its tuple
            last = r.name
            inside = is_subdomain(last, origin)
        if not inside:
            yield i, f"{r.where}: {to_text(r.name)} is outside the zone {to_text(origin)}"


def _ttl_too_large(records: list[Record]) -> _Found:
    for i, r in enumerate(records):
        if r.ttl > MAX_TTL:
            yield i, f"{r.where}: TTL {r.ttl} is above {MAX_TTL}, the largest allowed (RFC 2181 §8)"


def _soa_misplaced_or_repeated(origin: Name, records: list[Record]) -> _Found:
    first: Record | None = None
    for i, r in enumerate(records):
        if r.rtype != TYPE_SOA or not is_subdomain(r.name, origin):
            continue
        if r.name != origin:
            yield i, f"{r.where}: SOA at {to_text(r.name)} is not at the apex {to_text(origin)}"
        elif first is None:
            first = r
        elif not _same_rdata(r, first):
            yield i, f"{r.where}: a second SOA (the first is at {first.where}); a zone has one"


def _apex_incomplete(origin: Name, records: list[Record]) -> _Found:
    apex_types: dict[int, Record] = {}  # the first record of each type at the apex
    for r in records:
        if r.name == origin:
            apex_types.setdefault(r.rtype, r)
    soa = apex_types.get(TYPE_SOA)
    zone = to_text(origin)
    if soa is None:
        yield -1, f"{_zone_file(records)}: zone {zone} has no SOA at its apex"
    if TYPE_NS not in apex_types:
        where = soa.where if soa else _zone_file(records)
        yield -1, f"{where}: zone {zone} has no NS records at its apex"


def _cname_not_alone(origin: Name, records: list[Record]) -> _Found:
    cname_owners = {
        r.name for r in records if r.rtype == TYPE_CNAME and is_subdomain(r.name, origin)
    }
    by_owner: dict[Name, _Numbered] = {}
    if cname_owners:
        for i, r in enumerate(records):
            if r.name in cname_owners:
                by_owner.setdefault(r.name, []).append((i, r))
    for owned in by_owner.values():
        cnames = [(i, r) for i, r in owned if r.rtype == TYPE_CNAME]
        if cnames:
            yield from _beside_other_data(cnames[0], owned)
            yield from _second_cnames(cnames)


def _beside_other_data(cname: tuple[int, Record], owned: _Numbered) -> _Found:
    others: dict[int, Record] = {}  # the first record of each other type
    for _, r in owned:
        if r.rtype != TYPE_CNAME and r.rtype not in _CNAME_NEIGHBOURS:
            others.setdefault(r.rtype, r)
    if others:
        i, r = cname
        listed = ", ".join(f"{QTYPE[t]} at {o.where}" for t, o in others.items())
        text = (
            f"{r.where}: CNAME at {to_text(r.name)} beside other data ({listed}); "
            "a CNAME must be alone at its name"
        )
        yield i, text


def _second_cnames(cnames: _Numbered) -> _Found:
    first = cnames[0][1]
    for i, r in cnames[1:]:
        if not _same_rdata(r, first):
            text = (
                f"{r.where}: a second CNAME at {to_text(r.name)} (the first is at "
                f"{first.where}); a name can have only one CNAME"
            )
            yield i, text


def _same_rdata(a: Record, b: Record) -> bool:
    return _pack_uncompressed(a.rdata) == _pack_uncompressed(b.rdata)


def _zone_file(records: list[Record]) -> str:
    """The file zone-wide problems are reported against: the first record's."""
    return records[0].where.rsplit(":", 1)[0] if records else "?"
