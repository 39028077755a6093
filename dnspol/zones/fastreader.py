"""The fast reader: simple one-line records read with str methods, straight into dnslib objects.

Nearly every line of a big zone is one simple record, ``owner [ttl] [class] type
rdata``, of type A, AAAA, CNAME, NS, PTR, MX, TXT or SOA, with an address, a name
or a few strings, plus ``$TTL`` and ``$ORIGIN``. This module reads those itself
and makes the dnslib RD directly (the Reader, ``rdata.from_text`` and the round
trip through wire format cost some 50 µs a record).

Every other statement (parentheses, escapes, $INCLUDE, $GENERATE, other types,
anything it is not sure of) goes to dnspython's Reader (``dnspol.zones.reader``),
which starts from the fast reader's state and hands its state back, so the
records, the file:line of each and every error are the Reader's own.
tests/test_zones_fastreader.py reads zone texts both ways and compares.

When it is used (``dnspol.zones.loader`` chooses): for every zone text except
one with a ``$UNICODE`` directive or a CR inside quotes, which the Reader reads
whole.
"""

from __future__ import annotations

import re

import dns.exception
import dns.ipv4
import dns.ipv6
import dns.rdataclass
import dns.ttl
from dnslib import QTYPE, DNSLabel
from dnslib.dns import RDMAP

from dnspol.errors import ZoneError
from dnspol.names import Name
from dnspol.zones.limits import DEFAULT_LIMITS, Budget, ZoneLimits, too_many_records
from dnspol.zones.model import Record
from dnspol.zones.reader import ReaderState, convert, parse_statements

__all__ = ["FastReader"]


_DIGITS = frozenset("0123456789")
# A line the fast reader leaves to the Reader: anything but tab and printable ASCII
# (line breaks, IDN), parentheses (a statement over several lines), backslash escapes.
_NOT_SIMPLE = re.compile(r"[^\t -~]|[()\\]")
# A line with quotes, in tokens: "string", plain, the start of a comment, a quote left open.
_QUOTED_LINE_TOKEN = re.compile(r'"([^"]*)"|([^ \t";]+)|(;)|(")')
_MAX_WIRE_NAME = 255
_MAX_LABEL = 63
_MAX_UINT32 = 2**32 - 1

_TYPE_A = int(QTYPE.A)
_TYPE_AAAA = int(QTYPE.AAAA)
_TYPE_MX = int(QTYPE.MX)
_TYPE_TXT = int(QTYPE.TXT)
_TYPE_SOA = int(QTYPE.SOA)
# Types whose rdata is one name; the RD class is the one to_dnslib would pick.
_NAME_TYPES = {int(QTYPE.CNAME): RDMAP["CNAME"], int(QTYPE.NS): RDMAP["NS"],
               int(QTYPE.PTR): RDMAP["PTR"]}  # fmt: skip
_FAST_TYPES = {
    word: int(getattr(QTYPE, word))
    for word in ("A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "SOA")
}
_FAST_TYPES.update({word.lower(): rtype for word, rtype in _FAST_TYPES.items()})


class FastReader:
    """Reads simple lines itself and hands every other statement to dnspython's Reader.

    A line is read here only when all of it is understood: otherwise nothing of it is
    kept and the Reader reads the statement from the same state, so it gives the records
    or the error the whole-file Reader would give.
    """

    def __init__(self, origin: Name, filename: str, limits: ZoneLimits = DEFAULT_LIMITS) -> None:
        self.zone_origin = origin
        self.filename = filename
        self.limits = limits
        self.budget = Budget(limits)
        self.state = ReaderState(origin, origin)
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
                    raise ZoneError(f"{self.filename}:{number}: {too_many_records(self.limits)}")
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
        added = parse_statements(
            text, self.zone_origin, self.filename, self.budget, room, self.state, first_line
        )
        self._origin_changed()
        convert(added, self.records, self.problems)


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
