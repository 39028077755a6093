"""The one declaration of the scalar server settings: each line of ``SETTINGS`` reaches the
config reader, ``Config``, the snapshot, ``dnspol schema`` and the README with its default
and range, so a new setting needs that one line (these tests then cover it too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnspol.config import check_config, config_from_zone_files, json_schema, load_config
from dnspol.settings import SETTINGS, Setting, bounds, markdown_row
from dnspol.state import Snapshot, snapshot_from_config
from dnspol.zones.model import ZoneSet

README = Path(__file__).parent.parent / "policies" / "README.md"
ZONE = """\
$ORIGIN example.com.
$TTL 300
@ SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.1
"""
IDS = [setting.key for setting in SETTINGS]


def write_config(tmp_path: Path, server: str = "") -> Path:
    (tmp_path / "example.com.zone").write_text(ZONE)
    path = tmp_path / "dnspol.yaml"
    section = f"server:\n{server}" if server else ""
    path.write_text(f"{section}zones:\n  example.com: example.com.zone\n")
    return path


def in_range(setting: Setting) -> int | float:
    """A value other than the default inside the range."""
    if setting.default is None:
        return 7
    return min(setting.default + 1, setting.maximum)


def out_of_range(setting: Setting) -> int | float:
    return setting.minimum if setting.above else setting.minimum - 1


def server_schema(key: str) -> dict:
    return json_schema()["anyOf"][0]["properties"]["server"]["properties"][key]


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_the_default_reaches_config_snapshot_and_schema(setting: Setting, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert getattr(config, setting.key) == setting.default
    if setting.runtime:
        assert getattr(snapshot_from_config(config), setting.key) == setting.default
        assert getattr(Snapshot(zones=ZoneSet(())), setting.key) == setting.default
    assert server_schema(setting.key)["default"] == setting.default


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_a_value_in_range_reaches_config_and_snapshot(setting: Setting, tmp_path: Path) -> None:
    value = in_range(setting)
    config = load_config(write_config(tmp_path, f"  {setting.key}: {value}\n"))
    assert getattr(config, setting.key) == value
    assert type(getattr(config, setting.key)) is setting.kind
    snapshot = snapshot_from_config(config)
    assert getattr(snapshot, setting.key, None) == (value if setting.runtime else None)
    from_python = config_from_zone_files([tmp_path / "example.com.zone"], **{setting.key: value})
    assert getattr(from_python, setting.key) == value


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.minimum is not None], ids=str)
def test_a_value_out_of_range_is_a_problem_at_its_line(setting: Setting, tmp_path: Path) -> None:
    value = out_of_range(setting)
    problems = check_config(write_config(tmp_path, f"  {setting.key}: {value}\n"))
    assert problems == [
        f"{tmp_path}/dnspol.yaml:2: {setting.key} must be {bounds(setting)}, not {value}"
    ]
    with pytest.raises(Exception, match=f"<settings>: {setting.key} must be"):
        config_from_zone_files([tmp_path / "example.com.zone"], **{setting.key: value})


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_the_schema_has_the_range(setting: Setting) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    item = server_schema(setting.key)
    assert item["maximum" if setting.maximum is not None else "type"] == (
        setting.maximum if setting.maximum is not None else ["integer", "null"]
    )
    validator = jsonschema.Draft202012Validator(json_schema())

    def valid(value: object) -> bool:
        return validator.is_valid({"zones": {"example.com": "z"}, "server": {setting.key: value}})

    assert valid(in_range(setting))
    assert not valid("ten")
    if setting.minimum is not None:
        assert valid(setting.maximum)
        assert valid(setting.minimum) is not setting.above
        assert not valid(out_of_range(setting))
        assert not valid(setting.maximum * 2)


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_the_readme_table_has_the_row(setting: Setting) -> None:
    """The row is what ``python -m dnspol.settings`` prints: paste it into the README."""
    assert markdown_row(setting) in README.read_text().splitlines()


def test_bounds_and_messages_read_well(tmp_path: Path) -> None:
    problems = check_config(
        write_config(tmp_path, "  tcp_idle_timeout: 0\n  udp_max_payload: 70000\n  seed: x\n")
    )
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "tcp_idle_timeout must be above 0 and at most 3600, not 0",
        "udp_max_payload must be between 512 and 65535, not 70000",
        "seed must be a whole number, not 'x'",
    ]
    assert load_config(write_config(tmp_path, "  seed: ~\n")).seed is None
    with pytest.raises(Exception, match="udp_max_payload must be a whole number, not 1400.5"):
        config_from_zone_files([tmp_path / "example.com.zone"], udp_max_payload=1400.5)


def test_the_snapshot_stays_within_shared_instance_dict_keys() -> None:
    """Every attribute of a snapshot is read per packet. Past 30 attributes CPython gives an
    instance its own dict instead of sharing the class's keys, and each read takes twice as
    long (about 20 -> 40 ns for three reads, measured); so the snapshot carries only the
    RUNTIME settings."""
    assert len(vars(Snapshot(zones=ZoneSet(())))) <= 30
