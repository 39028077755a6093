"""Reading RFC 1035 master files into ``Zone`` values.

This module owns the zone-file format and everything that can be wrong with
one: it turns master-file text into ``Record`` values that each remember their
``file:line``, checks them as BIND and Knot would (one SOA at the apex, NS at
the apex, CNAME alone, nothing outside the zone, TTLs in range) and builds the
``Zone``. Every problem found is reported at once in one ``ZoneError``.

dnspython's ``dns.zonefile.Reader`` reads the text ($ORIGIN, $TTL, $INCLUDE,
$GENERATE, ``@``, owner inheritance, ``( )``, ``1h30m``, escapes, RFC 3597
``\\#``); its rdata is converted to dnslib ``RD`` objects, our wire codec.
Three things are changed around the Reader:

* adds go to a recording transaction, so nothing is merged or silently
  replaced (dnspython's own nodes drop a CNAME beside other data);
* owners outside the zone are kept (dnspython skips them silently) so that
  ``validate`` can name them;
* ``$INCLUDE`` paths are taken relative to the including file, not the
  process's working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zonefile
from dnslib import QTYPE, RD, DNSBuffer
from dnslib.dns import RDMAP

from dnspol.errors import ZoneError
from dnspol.names import Name, is_subdomain, to_text
from dnspol.zones.model import TYPE_CNAME, TYPE_NS, TYPE_SOA, Record, Zone

__all__ = ["load_zone_file", "load_zone_text", "read_records", "validate"]

MAX_TTL = 2**31 - 1  # RFC 2181 §8: a TTL with the top bit set is not a TTL

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
    path: str | os.PathLike[str], origin: str | None = None, scope: str = "default"
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
    text = _read_text(filename)
    if origin is None:
        zone_origin = _origin_from_file(text, filename)
    else:
        zone_origin = _origin_from_text(origin, filename)
    return _build(text, zone_origin, filename, scope)


def load_zone_text(
    text: str, origin: str, filename: str = "<text>", scope: str = "default"
) -> Zone:
    """Load and validate master-file ``text`` for the zone ``origin``.

    ``filename`` names the text in problems and is the directory ``$INCLUDE``
    paths are relative to. Raises ``ZoneError`` like ``load_zone_file``.
    """
    return _build(text, _origin_from_text(origin, filename), filename, scope)


def read_records(path_or_text: str | os.PathLike[str], origin: Name, filename: str) -> list[Record]:
    """Parse a master file into records, in file order, without validating them.

    A ``str`` is zone text; a path object (``pathlib.Path``) is read from disk.
    ``filename`` is the name problems and ``Record.where`` use, and its
    directory is where relative ``$INCLUDE`` paths are looked up. Each record's
    ``where`` is ``file:line`` of the line the record starts on (an included
    record names the included file). Owners are lowercased; rdata keeps the
    file's spelling. A syntax error stops reading and raises ``ZoneError``.
    """
    if isinstance(path_or_text, os.PathLike):
        text = _read_text(os.fspath(path_or_text))
    else:
        text = path_or_text
    added = _parse(text, origin, filename)
    records: list[Record] = []
    problems: list[str] = []
    for rr in added:
        try:
            records.append(_to_record(rr))
        except _Unrepresentable as exc:
            problems.append(f"{rr.where}: {exc}")
    if problems:
        raise ZoneError(problems)
    return records


def validate(origin: Name, records: list[Record], *, require_apex: bool = True) -> list[str]:
    """Every semantic problem in ``records``, each as ``file:line: what is wrong``.

    ``require_apex=False`` drops the checks that the apex has an SOA and NS
    records (for files that overlay another zone); everything else is checked.
    Problems come in file order, zone-wide ones first.
    """
    numbered = list(enumerate(records))
    inside = [(i, r) for i, r in numbered if is_subdomain(r.name, origin)]
    checks = [
        _outside_zone(origin, numbered),
        _ttl_too_large(numbered),
        _soa_misplaced_or_repeated(origin, inside),
        _cname_not_alone(inside),
    ]
    if require_apex:
        checks.append(_apex_incomplete(origin, inside, records))
    found = sorted((found for check in checks for found in check), key=lambda f: f[0])
    return [text for _, text in found]


# --------------------------------------------------------------------------- building


def _build(text: str, origin: Name, filename: str, scope: str) -> Zone:
    records = read_records(text, origin, filename)
    if not records:
        raise ZoneError(
            f"{filename}: no records: zone {to_text(origin)} needs an SOA and NS at its apex"
        )
    problems = validate(origin, records)
    if problems:
        raise ZoneError(problems)
    return Zone.from_records(origin, records, source=filename, scope=scope)


def _read_text(filename: str) -> str:
    try:
        with open(filename, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ZoneError(f"{filename}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ZoneError(f"{filename}: cannot read: not UTF-8 text ({exc.reason})") from None


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

    def __init__(self, origin: dns.name.Name) -> None:
        self.origin = origin
        self.manager = self
        self.where = "?"
        self.added: list[_Added] = []

    def origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        return (self.origin, False, self.origin)  # absolute names, never relativized

    def check_put_rdataset(self, check: Callable[..., Any]) -> None:
        """The Reader installs its CNAME check here; ``validate`` does that job."""

    def _set_origin(self, origin: dns.name.Name) -> None:
        """$ORIGIN changes the Reader's current origin only; the zone keeps its own."""

    def add_unicode(self, attribute: str) -> None:
        """$UNICODE only changes how the Reader's tokenizer reads names."""

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        self.added.append(_Added(name, ttl, rdata, self.where))


class _Tokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer that resolves a ``$INCLUDE`` path against its own file's directory.

    The Reader reads the path as the token after a line-start ``$INCLUDE`` and
    opens it as given, i.e. relative to the working directory; here that token
    is rewritten to a path next to the including file, checked to be readable
    and not to include itself.
    """

    def __init__(self, f: Any, filename: str, including: tuple[str, ...] = ()) -> None:
        super().__init__(f, filename)
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
        try:
            with open(path, encoding="utf-8"):
                pass
        except OSError as exc:
            raise _LocatedError(
                f"{where}: $INCLUDE {token.value}: cannot read {path}: {exc.strerror or exc}"
            ) from None
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
            tok = _Tokenizer(
                tok.file, tok.filename, (*parent.including, os.path.realpath(parent.filename))
            )
        self._tok = tok

    def _rr_line(self) -> None:
        self._begin_record()
        try:
            super()._rr_line()
        except dns.exception.DNSException as exc:
            raise self._bad_record(exc) from None

    def _generate_line(self) -> None:
        self._begin_record()
        try:
            super()._generate_line()
        except dns.exception.DNSException as exc:
            raise self._bad_record(exc) from None

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


def _parse(text: str, origin: Name, filename: str) -> list[_Added]:
    recorder = _Recorder(_to_dns_name(origin))
    reader = _Reader(_Tokenizer(text, filename), recorder)
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


# --------------------------------------------------------------------------- conversion


class _Unrepresentable(Exception):
    """dnslib cannot hold this rdata with the fields the server needs."""


def _to_record(rr: _Added) -> Record:
    return Record(
        name=_to_name(rr.name),
        rtype=int(rr.rdata.rdtype),
        ttl=rr.ttl,
        rdata=_to_dnslib(rr.rdata),
        where=rr.where,
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


def _outside_zone(origin: Name, numbered: _Numbered) -> _Found:
    for i, r in numbered:
        if not is_subdomain(r.name, origin):
            yield i, f"{r.where}: {to_text(r.name)} is outside the zone {to_text(origin)}"


def _ttl_too_large(numbered: _Numbered) -> _Found:
    for i, r in numbered:
        if r.ttl > MAX_TTL:
            yield i, f"{r.where}: TTL {r.ttl} is above {MAX_TTL}, the largest allowed (RFC 2181 §8)"


def _soa_misplaced_or_repeated(origin: Name, inside: _Numbered) -> _Found:
    first: Record | None = None
    for i, r in inside:
        if r.rtype != TYPE_SOA:
            continue
        if r.name != origin:
            yield i, f"{r.where}: SOA at {to_text(r.name)} is not at the apex {to_text(origin)}"
        elif first is None:
            first = r
        elif not _same_rdata(r, first):
            yield i, f"{r.where}: a second SOA (the first is at {first.where}); a zone has one"


def _apex_incomplete(origin: Name, inside: _Numbered, records: list[Record]) -> _Found:
    apex_types: dict[int, Record] = {}  # the first record of each type at the apex
    for _, r in inside:
        if r.name == origin:
            apex_types.setdefault(r.rtype, r)
    soa = apex_types.get(TYPE_SOA)
    zone = to_text(origin)
    if soa is None:
        yield -1, f"{_zone_file(records)}: zone {zone} has no SOA at its apex"
    if TYPE_NS not in apex_types:
        where = soa.where if soa else _zone_file(records)
        yield -1, f"{where}: zone {zone} has no NS records at its apex"


def _cname_not_alone(inside: _Numbered) -> _Found:
    by_owner: dict[Name, _Numbered] = {}
    for i, r in inside:
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
