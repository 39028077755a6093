"""Tests for dnspol.zones.fastreader: whatever the text, it reads as dnspython's Reader alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zonekit import INCLUDE, ZONES, packed

from dnspol.errors import ZoneError
from dnspol.names import from_text, to_text
from dnspol.zones import fastreader, loader, reader

# --------------------------------------------------------------------------- the fast reader
#
# The fast reader reads simple lines itself and hands every other statement to dnspython's
# Reader. Whatever the text, the result must be what the Reader alone gives: the same
# records (owner, type, TTL, dnslib class, packed bytes, file:line), or the same problems.


def outcome(read, text: str, origin: str, filename: str) -> tuple:
    try:
        records, problems = read(text, from_text(origin), filename)
    except ZoneError as error:
        return ("error", error.problems)
    described = [
        (r.name, r.rtype, r.ttl, type(r.rdata).__name__, packed(r.rdata), r.where) for r in records
    ]
    return ("records", described, problems)


def assert_read_alike(text: str, origin: str = "example.com.", filename: str = "t.zone"):
    fast = outcome(loader._read, text, origin, filename)
    slow = outcome(reader.read_by_dnspython, text, origin, filename)
    assert fast == slow
    return fast


def handed_over(text: str, origin: str = "example.com.") -> int:
    """How many statements of ``text`` the fast reader left to dnspython's Reader."""
    reader = fastreader.FastReader(from_text(origin), "t.zone")
    reader.read(text)
    return reader.handed_over


@pytest.mark.parametrize(
    "path", sorted(ZONES.glob("*.zone")) + sorted(INCLUDE.glob("*.zone")), ids=lambda p: p.name
)
def test_zone_files_read_alike(path: Path):
    origin = loader._origin_from_file(path.read_text(), str(path))
    assert_read_alike(path.read_text(), to_text(origin), str(path))


SIMPLE_ZONE = """\
$ORIGIN Example.COM.
$TTL 1h30m
@ IN SOA ns1 hostmaster.example.com. 2024010101 2h 15m 2w 5m ; one line
  IN NS ns1
\tIN NS ns2.Example.NET.
ns1 A 192.0.2.1 ; comment
ns2 in a 192.0.2.2
www 300 IN A 192.0.2.10
    IN 600 AAAA 2001:DB8::10
mail 1W2d IN MX 10 Mail
alias CNAME www
apex-alias CNAME @
ptr PTR host.example.net.
txt TXT plain "quoted; not a comment" "" ; a comment
*.wild A 192.0.2.30
$ORIGIN sub
host A 192.0.2.40
$ttl 60
Other.Example.COM. A 192.0.2.41
"""


def test_simple_zone_is_read_without_dnspython():
    assert handed_over(SIMPLE_ZONE) == 0
    _, records, problems = assert_read_alike(SIMPLE_ZONE)
    assert len(records) == 15 and problems == []


def test_only_the_statements_it_cannot_read_go_to_dnspython():
    text = SIMPLE_ZONE + 'multi TXT ( "a"\n  "b" )\nsrv SRV 0 5 5060 www\n  A 192.0.2.50\n'
    assert handed_over(text) == 2
    assert_read_alike(text)


# text of a zone (after "$ORIGIN example.com.\n") whose reading must not differ
FAST_READER_CASES = {
    "owner inherited after a statement dnspython read":
        '$TTL 60\nx TXT ( "a"\n "b" )\n  A 192.0.2.1\n',
    "owner inherited over a directive": "$TTL 60\nx A 192.0.2.1\n$TTL 30\n A 192.0.2.2\n",
    "inherited owner at the start is the origin": "$TTL 60\n  A 192.0.2.1\n",
    "@ and relative and absolute":
        "$TTL 60\n@ A 192.0.2.1\nA.b A 192.0.2.2\nc.Example.COM. A 192.0.2.3\n",
    "@ inside a name is a label": "$TTL 60\na.@ A 192.0.2.1\n",
    "root owner": "$TTL 60\n. A 192.0.2.1\n",
    "empty label": "$TTL 60\na..b A 192.0.2.1\n",
    "label of 63 and 64": f"$TTL 60\n{'a' * 63} A 192.0.2.1\n{'b' * 64} A 192.0.2.1\n",
    "name of 255 octets": "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 61]) + ". A 192.0.2.1\n",
    "name of 256 octets": "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 62]) + ". A 192.0.2.1\n",
    "relative name of 255 octets":
        "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 49]) + " A 192.0.2.1\n",
    "relative name of 256 octets":
        "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 50]) + " A 192.0.2.1\n",
    "target of 256 octets": "$TTL 60\nx CNAME " + ".".join(["a" * 63] * 3 + ["b" * 50]) + "\n",
    "TTL units and case": "x 1h30M A 192.0.2.1\ny 2W A 192.0.2.2\nz 1d1s A 192.0.2.3\n",
    "TTL 2**32-1 and 2**32": "x 4294967295 A 192.0.2.1\ny 4294967296 A 192.0.2.2\n",
    "class before TTL": "x IN 300 A 192.0.2.1\n",
    "two TTLs": "x 300 IN 400 A 192.0.2.1\n",
    "class CLASS1 is IN": "$TTL 60\nx CLASS1 A 192.0.2.1\n",
    "class CH": "$TTL 60\nx CH A 192.0.2.1\n",
    "class ANY": "$TTL 60\nx ANY A 192.0.2.1\n",
    "mixed-case type and class": "$TTL 60\nx iN Aaaa ::1\ny In cName x\n",
    "TYPE1 is A": "$TTL 60\nx TYPE1 192.0.2.1\n",
    "unknown type": "$TTL 60\nx FOO 1\n",
    "no type": "$TTL 60\nx 300 IN\n",
    "owner only": "$TTL 60\nx\n",
    "no TTL anywhere": "x A 192.0.2.1\n",
    "RFC 2308: last stated TTL": "x 300 A 192.0.2.1\ny A 192.0.2.2\n",
    "SOA MINIMUM is the default, the last TTL wins":
        "@ SOA ns hm 1 2 3 4 55\nx A 192.0.2.1\ny 300 A 192.0.2.2\nz A 192.0.2.3\n",
    "SOA without TTL after a stated TTL":
        "x 300 A 192.0.2.1\n@ SOA ns hm 1 2 3 4 55\ny A 192.0.2.2\n",
    "SOA TTL then $TTL": "@ 100 SOA ns hm 1 2 3 4 55\n$TTL 70\nx A 192.0.2.1\n",
    "$TTL then SOA MINIMUM ignored": "$TTL 70\n@ SOA ns hm 1 2 3 4 55\nx A 192.0.2.1\n",
    "SOA timers with units": "@ 1h SOA ns. hm. 4294967295 1h 2m 3w 4d\n",
    "SOA serial too big": "@ 1h SOA ns hm 4294967296 1 2 3 4\n",
    "SOA with a field missing": "@ 1h SOA ns hm 1 2 3 4\n",
    "SOA over lines": "@ 1h SOA ns hm (\n 1 2 3\n 4 5 )\n  NS ns\n",
    "SOA twice": "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ SOA ns hm 2 2 3 4 5\n",
    "addresses":
        "$TTL 60\na A 0.0.0.0\nb A 255.255.255.255\nc AAAA ::ffff:192.0.2.1\nd AAAA FE80::1\n",
    "address short": "$TTL 60\nx A 192.0.2\n",
    "address over 255": "$TTL 60\nx A 192.0.2.256\n",
    "address with leading zero": "$TTL 60\nx A 192.0.2.01\n",
    "address and more": "$TTL 60\nx A 192.0.2.1 192.0.2.2\n",
    "IPv6 two ::": "$TTL 60\nx AAAA 1::2::3\n",
    "IPv6 in A": "$TTL 60\nx A ::1\n",
    "MX": "$TTL 60\nx MX 0 .\ny MX 010 Mail.Example.NET.\nz MX 65535 @\n",
    "MX preference too big": "$TTL 60\nx MX 65536 mail\n",
    "MX without exchange": "$TTL 60\nx MX 10\n",
    "MX with a sign": "$TTL 60\nx MX +10 mail\n",
    "names in rdata keep their case": "$TTL 60\nx CNAME WWW\ny NS Ns1.Other.\nz PTR @\nw CNAME .\n",
    "CNAME with two names": "$TTL 60\nx CNAME a b\n",
    "TXT strings": '$TTL 60\nx TXT a "b c" "" d"e"f\ny TXT "a""b"\n',
    "TXT semicolon in quotes": '$TTL 60\nx TXT "a;b" ; "c"\ny TXT "d" ;e\n',
    "TXT of 255 and 256": f'$TTL 60\nx TXT "{"a" * 255}"\ny TXT "{"b" * 256}"\n',
    "TXT without strings": "$TTL 60\nx TXT\n",
    "TXT quote left open": '$TTL 60\nx TXT "abc\n',
    "quoted owner": '$TTL 60\n"x" A 192.0.2.1\n',
    "quoted address": '$TTL 60\nx A "192.0.2.1"\n',
    "quoted type": '$TTL 60\nx IN "TXT" a\n',
    "quoted TTL": '$TTL 60\nx "300" A 192.0.2.1\n',
    "quoted class": '$TTL 60\nx "IN" TXT a\n',
    "escapes": "$TTL 60\na\\.b A 192.0.2.1\nc TXT \\065\n",
    "IDN owner": "$TTL 60\nbücher A 192.0.2.1\n",
    "comments everywhere": "; top\n$TTL 60 ; ttl\n\n   \n\t; indented\nx A 192.0.2.1;tight\n;\n",
    "parentheses in a comment": "$TTL 60\nx A 192.0.2.1 ; (not a group\ny A 192.0.2.2\n",
    "parentheses on one line": "$TTL 60\nx A ( 192.0.2.1 )\ny A 192.0.2.2\n",
    "closing parenthesis alone": "$TTL 60\nx A 192.0.2.1 )\n",
    "unbalanced at the end": "$TTL 60\nx TXT ( a\n",
    "$ORIGIN relative, absolute, root":
        "$TTL 60\n$ORIGIN sub\nx A 192.0.2.1\n$ORIGIN Other.\ny CNAME z\n"
        "$ORIGIN .\nw A 192.0.2.2\n",
    "$ORIGIN bad": "$ORIGIN a..b\n",
    "$ORIGIN without a name": "$ORIGIN\n",
    "$TTL bad": "$TTL 1x\n",
    "$TTL and more": "$TTL 60 70\n",
    "directive lower case": "$ttl 60\n$origin sub\nx A 192.0.2.1\n",
    "directive indented is a record": "$TTL 60\n  $TTL 70\n",
    "unknown directive": "$FOO bar\n",
    "$GENERATE between simple lines":
        "$TTL 60\nx A 192.0.2.1\n$GENERATE 1-3 g$ A 192.0.2.$\n  AAAA ::1\ny A 192.0.2.9\n",
    "$UNICODE": "$TTL 60\n$UNICODE 2008\nx A 192.0.2.1\n",
    "no newline at the end": "$TTL 60\nx A 192.0.2.1",
    "CR LF": "$TTL 60\r\nx A 192.0.2.1\r\n  AAAA ::1\r\ny TXT ( a\r\n b )\r\n",
    "CR LF with quotes": '$TTL 60\r\nx TXT "a"\r\n',
    "lone CR": "$TTL 60\rx A 192.0.2.1\ry A 192.0.2\r",
    "form feed": "$TTL 60\nx A\f192.0.2.1\n",
    "backslash at the end of a line": "$TTL 60\nx A 192.0.2.1\\\ny A 192.0.2.2\n",
    "escaped line break in quotes": '$TTL 60\nx TXT "a\\\nb"\ny A 192.0.2.2\n',
    "rdata dnslib cannot hold": "$TTL 60\nx CNAME a\\200b\ny A 192.0.2.1\n",
}  # fmt: skip


@pytest.mark.parametrize("text", FAST_READER_CASES.values(), ids=FAST_READER_CASES.keys())
def test_fast_reader_reads_like_dnspython(text: str):
    assert_read_alike("$ORIGIN example.com.\n" + text)


def test_include_between_simple_lines(tmp_path: Path):
    (tmp_path / "hosts.inc").write_text("$TTL 30\nweb A 192.0.2.10\n  AAAA ::1\n")
    main = tmp_path / "main.zone"
    text = (
        "$ORIGIN inc.test.\n$TTL 300\nx A 192.0.2.1\n$INCLUDE hosts.inc sub.inc.test.\n"
        "  A 192.0.2.2\ny A 192.0.2.3\n"
    )
    main.write_text(text)
    _, records, _ = assert_read_alike(text, "inc.test.", str(main))
    assert [r[5] for r in records] == [
        f"{main}:3", f"{tmp_path / 'hosts.inc'}:2", f"{tmp_path / 'hosts.inc'}:3",
        f"{main}:5", f"{main}:6",
    ]  # fmt: skip
    assert records[3][0] == from_text("x.inc.test.")  # owner and $TTL restored after it


# --- random zone texts made of such pieces: (pieces that read, pieces that do not)

OWNERS = (["", " ", "\t", "@", "www", "WWW.Sub", "x.example.com.", "Other.NET.", "*", "*.wild",
           "a.@", ".", "a" * 63, "bücher", "_sip._tcp", "a\\.b"],
          ["a..b", "b" * 64, "$x"])  # fmt: skip
TTLS = (["", "300", "0", "1h30m", "1H", "2w", "4294967295", "007"], ["4294967296", "1x"])
CLASSES = (["", "IN", "in", "CLASS1"], ["CH", "ANY"])
RDATAS = (
    [("A", "192.0.2.1"), ("a", "10.0.0.1"), ("A", "( 192.0.2.7 )"), ("A", "\\# 4 C000020A"),
     ("AAAA", "2001:db8::1"), ("aaaa", "::"), ("AAAA", "::ffff:1.2.3.4"), ("CNAME", "www"),
     ("CNAME", "@"), ("CNAME", "Target.Example.NET."), ("CNAME", "."), ("NS", "ns1"),
     ("PTR", "host.example.com."), ("MX", "10 mail"), ("MX", "0 ."), ("TXT", "plain words"),
     ("TXT", '"quoted; with semicolon" second'), ("TXT", '""'), ("TXT", '"a""b"c"d"'),
     ("TXT", '( "multi"\n "line" )'), ("SOA", "ns hm 1 2 3 4 5"), ("SOA", "ns hm 1 1h 2m 3w 4d"),
     ("SOA", "ns hm (\n 1 2 3\n 4 5 )"), ("SRV", "0 5 5060 sip"), ("TYPE1", "192.0.2.9"),
     ("CAA", '0 issue "ca.example"')],
    [("A", "192.0.2"), ("A", "256.1.1.1"), ("A", "01.1.1.1"), ("A", "1.2.3.4 5"),
     ("AAAA", "1::2::3"), ("CNAME", "a..b"), ("MX", "65536 mail"), ("MX", "10"),
     ("TXT", '"' + "x" * 256 + '"'), ("TXT", '"open'), ("SOA", "ns hm 1 2 3 4"), ("FOO", "1")],
)  # fmt: skip
COMMENTS = (["", " ; comment", ";tight", ' ; (paren) "quote" ünïcode'], [])
DIRECTIVES = (["$TTL 300", "$ttl 1h", "$ORIGIN sub", "$ORIGIN Other.Example.", "$ORIGIN .",
               "$ORIGIN example.com.", "$GENERATE 1-2 g$ A 192.0.2.$", "", "   ",
               "\t; only a comment", ";"],
              ["$TTL 1x", "$TTL", "$FOO", ")", "$ORIGIN"])  # fmt: skip


def pieces(both: tuple[list, list], valid_only: bool) -> st.SearchStrategy:
    good, bad = both
    return st.sampled_from(good if valid_only or not bad else good + bad)


@st.composite
def record_lines(draw, valid_only: bool) -> str:
    owner = draw(pieces(OWNERS, valid_only))
    ttl = draw(pieces(TTLS, valid_only))
    rdclass = draw(pieces(CLASSES, valid_only))
    fields = [ttl, rdclass] if draw(st.booleans()) else [rdclass, ttl]
    rtype, rdata = draw(pieces(RDATAS, valid_only))
    separator = draw(st.sampled_from([" ", "\t", "  "]))
    words = separator.join(word for word in (*fields, rtype, rdata) if word)
    line = (owner or " ") + words if owner in ("", " ", "\t") else owner + separator + words
    return line + draw(pieces(COMMENTS, valid_only))


def zone_texts(valid_only: bool, max_lines: int) -> st.SearchStrategy:
    line = st.one_of(record_lines(valid_only), pieces(DIRECTIVES, valid_only))
    return st.builds(
        lambda first, lines, end: "$ORIGIN example.com.\n" + end.join([first, *lines]) + end,
        st.sampled_from(["$TTL 60", "; no $TTL"]),
        st.lists(line, max_size=max_lines),
        st.sampled_from(["\n", "\n", "\r\n"]),
    )


@given(text=zone_texts(valid_only=True, max_lines=25))
@settings(max_examples=300, deadline=None)
def test_random_zone_texts_read_alike(text: str):
    assert_read_alike(text)


@given(text=zone_texts(valid_only=False, max_lines=8))
@settings(max_examples=300, deadline=None)
def test_random_zone_texts_with_errors_read_alike(text: str):
    assert_read_alike(text)
