"""Tests for dnspol.zones.limits: $GENERATE ranges, file sizes, record counts, $INCLUDEs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from zonekit import HEAD, rrset

from dnspol.errors import ZoneError
from dnspol.zones.limits import MAX_INCLUDES, ZoneLimits
from dnspol.zones.loader import load_zone_file, load_zone_text

# --------------------------------------------------------------------------- limits


def test_generate_above_the_default_cap_is_refused_at_its_line():
    text = HEAD + "$GENERATE 1-65537 host$ A 192.0.2.1\n"
    with pytest.raises(ZoneError) as caught:
        load_zone_text(text, "example.com.", filename="bad.zone")
    assert caught.value.problems == [
        "bad.zone:5: $GENERATE 1-65537 makes 65,537 records, above the limit of 65,536 "
        "(server: generate_max_records)"
    ]


def test_generate_cap_counts_the_step_and_is_configurable():
    limits = ZoneLimits(generate_max_records=10)
    zone = load_zone_text(HEAD + "$GENERATE 1-20/2 h$ A 192.0.2.1\n", "example.com.", limits=limits)
    assert rrset(zone, "h19.example.com.", "A")
    with pytest.raises(ZoneError, match=r"^bad.zone:5: \$GENERATE 0-10 makes 11 records"):
        load_zone_text(HEAD + "$GENERATE 0-10 h$ A 192.0.2.1\n", "example.com.", "bad.zone",
                       limits=limits)  # fmt: skip


def test_a_generate_of_four_billion_records_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(ZoneError, match="above the limit"):
        load_zone_text(HEAD + "$GENERATE 0-4294967295 h$ A 192.0.2.1\n", "example.com.")
    assert time.monotonic() - started < 1.0


def test_an_oversized_zone_file_is_refused_before_it_is_read(tmp_path: Path):
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "".join(f"h{i} A 192.0.2.1\n" for i in range(100)))
    size = path.stat().st_size
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path, limits=ZoneLimits(zone_max_bytes=1000))
    assert caught.value.problems == [
        f"{path}:1: the file is {size:,} bytes, above the limit of 1,000 (server: zone_max_bytes)"
    ]
    assert load_zone_file(path, limits=ZoneLimits(zone_max_bytes=size)).origin


def test_an_oversized_included_file_is_refused_at_the_include(tmp_path: Path):
    (tmp_path / "big.inc").write_text("".join(f"h{i} A 192.0.2.1\n" for i in range(100)))
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "$INCLUDE big.inc\n")
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path, limits=ZoneLimits(zone_max_bytes=1000))
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:5: $INCLUDE big.inc: the file is ")
    assert problem.endswith("above the limit of 1,000 (server: zone_max_bytes)")


@pytest.mark.parametrize(
    ("more", "line"),
    [
        pytest.param("".join(f"h{i} A 192.0.2.1\n" for i in range(10)), 11, id="plain records"),
        pytest.param("$GENERATE 1-10 h$ A 192.0.2.1\n", 5, id="$GENERATE"),
        pytest.param("h TXT ( a )\n" * 10, 11, id="records the Reader reads"),
    ],
)
def test_more_records_than_the_limit_are_refused_at_the_first_too_many(more: str, line: int):
    limits = ZoneLimits(zone_max_records=9)  # HEAD has 3
    with pytest.raises(ZoneError) as caught:
        load_zone_text(HEAD + more, "example.com.", filename="bad.zone", limits=limits)
    assert caught.value.problems == [
        f"bad.zone:{line}: more than 9 records in the zone (server: zone_max_records)"
    ]


def test_records_of_included_files_count_towards_the_zone(tmp_path: Path):
    (tmp_path / "hosts.inc").write_text("".join(f"h{i} A 192.0.2.1\n" for i in range(5)))
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "$INCLUDE hosts.inc\n" * 3)
    with pytest.raises(ZoneError, match=r"more than 12 records in the zone"):
        load_zone_file(path, limits=ZoneLimits(zone_max_records=12))


def test_a_diamond_of_includes_is_cut_off(tmp_path: Path):
    # 15 levels of two files, each including both files of the next: 2**15 files to read
    for level in range(15):
        text = f"$INCLUDE d{level + 1}a.inc\n$INCLUDE d{level + 1}b.inc\n" if level < 14 else ""
        for side in "ab":
            (tmp_path / f"d{level}{side}.inc").write_text(text)
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "$INCLUDE d0a.inc\n")
    started = time.monotonic()
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path)
    assert time.monotonic() - started < 2.0
    [problem] = caught.value.problems
    assert problem.endswith(f"more than {MAX_INCLUDES:,} files included in the zone")
    assert problem.startswith(str(tmp_path / "d"))


@pytest.mark.parametrize("limit", [2**40, 2**36])
def test_the_largest_allowed_zone_limit_reads_a_small_file(tmp_path: Path, limit: int):
    """A limit is a ceiling, not a buffer size: 1 TiB allowed reads a 2 KB file."""
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "".join(f"h{i} A 192.0.2.1\n" for i in range(100)))
    assert len(load_zone_file(path, limits=ZoneLimits(zone_max_bytes=limit)).nodes) > 100


def test_a_zone_file_with_crlf_line_ends_reads_as_with_lf(tmp_path: Path):
    text = HEAD + "h1 A 192.0.2.1\n"
    (tmp_path / "lf.zone").write_text(text)
    (tmp_path / "crlf.zone").write_bytes(text.replace("\n", "\r\n").encode())
    lf = load_zone_file(tmp_path / "lf.zone", "example.com.")
    assert load_zone_file(tmp_path / "crlf.zone", "example.com.").nodes == lf.nodes
