"""dnspython's zone-file Reader, changed to keep everything and to say where: every statement.

This module reads any statement of an RFC 1035 master file: dnspython's
``dns.zonefile.Reader`` defines how the text reads ($ORIGIN, $TTL, $INCLUDE,
$GENERATE, ``@``, owner inheritance, ``( )``, ``1h30m``, escapes, RFC 3597
``\\#``), and its rdata is converted to dnslib ``RD`` objects
(``dnspol.zones.rdata``). Three things are changed around the Reader:

* adds go to a recording transaction, so nothing is merged or silently
  replaced (dnspython's own nodes drop a CNAME beside other data);
* owners outside the zone are kept (dnspython skips them silently) so that
  validation can name them;
* ``$INCLUDE`` paths are taken relative to the including file, not the
  process's working directory.

Every record keeps the ``file:line`` it starts on, and every error is worded
``file:line: what is wrong`` at the line the statement starts on.

When it is used (``dnspol.zones.loader`` chooses): for the statements the fast
reader (``dnspol.zones.fastreader``) leaves, starting from the fast reader's
``ReaderState`` and handing it back (``parse_statements``), and for a whole
text the fast reader does not take ($UNICODE, a CR inside quotes:
``read_by_dnspython``). It is also the reference the fast reader is tested
against.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.grange
import dns.name
import dns.rdata
import dns.rdataclass
import dns.tokenizer
import dns.zonefile

from dnspol.errors import ZoneError
from dnspol.names import Name
from dnspol.zones.limits import (
    DEFAULT_LIMITS,
    MAX_INCLUDES,
    MAX_TTL,
    Budget,
    ZoneLimits,
    file_too_big,
    too_many_records,
)
from dnspol.zones.model import Record
from dnspol.zones.rdata import Unrepresentable, to_dns_name, to_dnslib, to_name

__all__ = ["ReaderState", "convert", "parse_statements", "read_by_dnspython"]


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
            raise _LocatedError(f"{self.where}: {too_many_records(self.limits)}")
        self.added.append(_Added(name, ttl, rdata, self.where))


class _Tokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer that resolves a ``$INCLUDE`` path against its own file's directory.

    The Reader reads the path as the token after a line-start ``$INCLUDE`` and
    opens it as given, i.e. relative to the working directory; here that token
    is rewritten to a path next to the including file, checked to be readable
    and not to include itself.
    """

    def __init__(
        self, f: Any, filename: str, budget: Budget, including: tuple[str, ...] = ()
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
                too_big = file_too_big(os.fstat(f.fileno()).st_size, self.limits)
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


def parse_statements(
    text: str,
    origin: Name,
    filename: str,
    budget: Budget,
    room: int,
    state: ReaderState | None = None,
    first_line: int = 1,
) -> list[_Added]:
    """Read ``text`` with dnspython's Reader; it starts at line ``first_line`` of the file.

    With a ``state``, the Reader starts from it (origin, last owner, TTLs), and the
    state is updated to where the Reader ended: how the fast reader hands it a part.
    ``room``: how many more records the zone may have.
    """
    recorder = _Recorder(to_dns_name(origin), room, budget.limits)
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
    # overlays are where this bites: the zone file's $TTL does not reach another file
    "Missing default TTL value": "no TTL: give the record one, or put $TTL above it "
    "(a file has only its own $TTL: an overlay does not inherit the zone file's)",
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


def read_by_dnspython(
    text: str, origin: Name, filename: str, limits: ZoneLimits = DEFAULT_LIMITS
) -> tuple[list[Record], list[str]]:
    """The whole text through dnspython's Reader (the reference the fast reader matches)."""
    records: list[Record] = []
    problems: list[str] = []
    added = parse_statements(text, origin, filename, Budget(limits), limits.zone_max_records)
    convert(added, records, problems)
    return records, problems


def convert(added: list[_Added], records: list[Record], problems: list[str]) -> None:
    """Append the Reader's records to ``records``; rdata dnslib cannot hold goes to ``problems``."""
    for rr in added:
        try:
            records.append(_to_record(rr))
        except Unrepresentable as exc:
            problems.append(f"{rr.where}: {exc}")


@dataclass(slots=True)
class ReaderState:
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
        reader.current_origin = to_dns_name(self.origin)
        reader.last_name = to_dns_name(self.last_name)
        reader.last_ttl = self.last_ttl
        reader.last_ttl_known = self.last_ttl_known
        reader.default_ttl = self.default_ttl
        reader.default_ttl_known = self.default_ttl_known
        reader.default_ttl_from_soa = self.default_ttl_from_soa

    def from_reader(self, reader: _Reader) -> None:
        self.origin = tuple(reader.current_origin.labels[:-1])
        self.last_name = to_name(reader.last_name)
        self.last_ttl = reader.last_ttl
        self.last_ttl_known = reader.last_ttl_known
        self.default_ttl = reader.default_ttl
        self.default_ttl_known = reader.default_ttl_known
        self.default_ttl_from_soa = reader.default_ttl_from_soa


def _to_record(rr: _Added) -> Record:
    return Record(
        name=to_name(rr.name),
        rtype=int(rr.rdata.rdtype),
        ttl=rr.ttl,
        rdata=to_dnslib(rr.rdata),
        file=rr.where,  # already file:line
    )
