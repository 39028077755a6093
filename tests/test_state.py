"""Snapshots: which files a snapshot was read from (the reload watcher's list)."""

from dnspol.config import load_config
from dnspol.state import snapshot_from_config, snapshot_from_zone_args

MAIN = """\
$ORIGIN example.com.
$TTL 300
@ SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
$INCLUDE hosts.inc
"""
HOSTS = "ns1 A 192.0.2.1\nwww A 192.0.2.10\n"


def write_zone(tmp_path):
    (tmp_path / "example.com.zone").write_text(MAIN)
    (tmp_path / "hosts.inc").write_text(HOSTS)
    return tmp_path / "example.com.zone"


def test_included_zone_files_are_watched_with_zone_args(tmp_path):
    zone = write_zone(tmp_path)
    snap = snapshot_from_zone_args([str(zone)])
    assert str(tmp_path / "hosts.inc") in snap.files
    assert str(zone) in snap.files


def test_included_zone_files_are_watched_with_a_config(tmp_path):
    write_zone(tmp_path)
    (tmp_path / "dnspol.yaml").write_text("zones:\n  example.com: example.com.zone\n")
    snap = snapshot_from_config(load_config(str(tmp_path / "dnspol.yaml")))
    assert str(tmp_path / "hosts.inc") in snap.files
    assert str(tmp_path / "dnspol.yaml") in snap.files


def test_zone_args_take_an_explicit_origin(tmp_path):
    path = tmp_path / "other.db"
    path.write_text(
        MAIN.replace("$ORIGIN example.com.\n", "").replace(
            "$INCLUDE hosts.inc\n", "ns1 A 192.0.2.1\n"
        )
    )
    snap = snapshot_from_zone_args([f"example.net={path}"])
    assert [zone.name for zone in snap.zones] == ["example.net."]
