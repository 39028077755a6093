"""The one declaration of the server's scalar settings (``server:`` keys with a number).

Each setting is one line of ``SETTINGS``: its key, type, default, range, unit and help, as
Knot's ``rrl_conf[]`` declares a module's items. Everything else is derived from it:

* ``ServerSettings``, the frozen dataclass whose fields are the settings, which ``Config``
  extends, and ``RuntimeSettings``, those the running server reads (not the load limits),
  which ``Snapshot`` extends: each carries its settings as plain attributes
  (``snap.udp_max_payload``), and a new setting needs no field anywhere else;
* the config reader (``dnspol.config``) reads every key here with ``read``;
  ``config_from_zone_files`` checks Python values with ``coerce``;
* ``json_schema_properties``: these keys' part of ``dnspol schema``;
* ``markdown_rows``: their rows of the ``server:`` table in policies/README.md
  (``python -m dnspol.settings`` prints them; a test checks the README has each).

Settings with a shape of their own (``listen``, ``chaos``, ``cookies``, ``rate_limit`` …)
are read by ``dnspol.config`` and described in ``dnspol.policy.schema``; the rate limit's
own settings are declared the same way in ``dnspol.ratelimit.SETTINGS``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dnspol.policy.yamlnodes import MAX_FILE_BYTES, Node, Reader
from dnspol.zones.limits import ZoneLimits

__all__ = [
    "BY_KEY",
    "DEFAULTS",
    "RETIRED",
    "RUNTIME",
    "SETTINGS",
    "RuntimeSettings",
    "ServerSettings",
    "Setting",
    "coerce",
    "json_schema_properties",
    "markdown_rows",
    "read",
    "settings_of",
]

MIB = 2**20


@dataclass(frozen=True)
class Setting:
    """One ``server:`` setting. ``minimum`` is allowed unless ``above`` (a timeout of 0 is
    not a timeout); ``default`` None means "not set" and allows ``key: ~`` (``seed``)."""

    key: str
    kind: type  # int (a whole number) or float (any number)
    default: int | float | None
    minimum: int | float | None
    maximum: int | float | None
    unit: str  # "s", "bytes" or "" (a count)
    help: str
    above: bool = False  # the minimum itself is out of range
    runtime: bool = True  # read while serving (the snapshot has it), not only while loading

    @property
    def nullable(self) -> bool:
        return self.default is None


_ZONE = ZoneLimits()  # the zone loader's own defaults (``--zone`` loads use them too)

SETTINGS: tuple[Setting, ...] = (
    Setting("udp_max_payload", int, 1232, 512, 65535, "bytes",
            "largest UDP answer, the EDNS size advertised"),
    Setting("seed", int, None, None, None, "",
            "integer seed for weighted choices, for repeatable answers in tests"),
    Setting("tcp_idle_timeout", float, 10.0, 0, 3600, "s",
            "seconds a TCP connection may go without completing a message (after connecting "
            "or its last one)", above=True),
    Setting("tcp_message_timeout", float, 2.0, 0, 60, "s",
            "seconds a TCP message has from its first byte to its last; also how long answers "
            "may sit unread before the connection is reset", above=True),
    Setting("tcp_max_connections", int, 1000, 1, 1_000_000, "",
            "concurrent TCP connections, the server's total (each of N workers takes 1/N, "
            "rounded up); when full, the one longest without a completed message is closed "
            "for a newcomer; an idle connection costs ~2.3 KB"),
    Setting("tcp_max_per_source", int, 10, 0, 1_000_000, "",
            "concurrent TCP connections per IPv4 address or IPv6 /64; `0`: no limit; trusted "
            "proxies are exempt"),
    Setting("tcp_max_per_network", int, 64, 0, 1_000_000, "",
            "concurrent TCP connections per IPv4 /24 or IPv6 /56; `0`: no limit"),
    # what one load may read or take (configuration bombs); the config file itself is bounded
    # by constants in dnspol.policy.yamlnodes: its limits cannot come from the file being read
    Setting("zone_max_bytes", int, _ZONE.zone_max_bytes, 1, 2**40, "bytes",
            "largest zone file, and each `$INCLUDE`d file; a bigger one is refused (`file:1`) "
            "before it is read", runtime=False),
    Setting("zone_max_records", int, _ZONE.zone_max_records, 1, 2**31, "",
            "most records in one zone, however written (`$GENERATE` and `$INCLUDE` count); "
            "refused at the first record too many", runtime=False),
    Setting("generate_max_records", int, _ZONE.generate_max_records, 1, 2**31, "",
            "most records one `$GENERATE` may make; a bigger range is refused at its line "
            "before a record is made", runtime=False),
    Setting("rule_file_max_bytes", int, MAX_FILE_BYTES, 1, 2**40, "bytes",
            "largest included rule file", runtime=False),
    Setting("health_ttl", int, 30, 0, 86_400, "s",
            "most seconds a TTL may be in an answer that depends on a health check "
            "(`healthy:`, `failover:`, weighted members with checks)", runtime=False),
    Setting("sign_workers", int, 1, 1, 256, "",
            "processes that sign a big zone (dnssec:) at load; 1: in the server process",
            runtime=False),
    Setting("reload_timeout", float, 600.0, 1, 86_400, "s",
            "seconds a reload (with 2 or more workers) may take to load and start; then it is "
            "abandoned, logged as `reload abandoned after N s`, and the running configuration "
            "keeps serving. Read when the server starts"),
)  # fmt: skip
BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}
# Keys older configurations may hold that no longer do anything: read with a warning.
RETIRED: dict[str, str] = {
    "cache_entries": "answers are compiled when the configuration loads; no store remains to size",
}


def _field(setting: Setting) -> tuple[str, Any, dataclasses.Field]:
    kind: Any = setting.kind | None if setting.nullable else setting.kind
    return setting.key, kind, dataclasses.field(default=setting.default)


def _dataclass(name: str, settings: tuple[Setting, ...], doc: str) -> type:
    """Keyword-only, so the fields of a class extending it may follow these defaults."""
    made = dataclasses.make_dataclass(
        name, [_field(s) for s in settings], frozen=True, kw_only=True, namespace={"__doc__": doc}
    )
    made.__module__ = __name__  # found again by name (pickle, repr)
    return made


RUNTIME = tuple(setting for setting in SETTINGS if setting.runtime)
ServerSettings = _dataclass("ServerSettings", SETTINGS, "Every setting, with its default.")
# Only what serving reads: every attribute of a snapshot is read per packet, and past 30 of
# them CPython stops sharing instance-dict keys and each read costs twice as much.
RuntimeSettings = _dataclass("RuntimeSettings", RUNTIME, "The settings the snapshot carries.")
DEFAULTS = ServerSettings()


def settings_of(source: object, settings: tuple[Setting, ...] = SETTINGS) -> dict[str, Any]:
    """Each setting's value in ``source`` (a Config, a Snapshot), by key."""
    return {setting.key: getattr(source, setting.key) for setting in settings}


# --- checking values --------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def bounds(setting: Setting) -> str:
    """``between 512 and 65535``, ``above 0 and at most 60``, ``at least 1`` or ""."""
    low, high = setting.minimum, setting.maximum
    if low is None and high is None:
        return ""
    if setting.above:
        low_text = f"above {_number(low)}" if low is not None else ""
        high_text = f"at most {_number(high)}" if high is not None else ""
        return " and ".join(text for text in (low_text, high_text) if text)
    if low is not None and high is not None:
        return f"between {_number(low)} and {_number(high)}"
    return f"at least {_number(low)}" if low is not None else f"at most {_number(high)}"


def in_range(setting: Setting, value: float) -> bool:
    low, high = setting.minimum, setting.maximum
    if low is not None and (value <= low if setting.above else value < low):
        return False
    return high is None or value <= high


def _range_problem(setting: Setting, value: float) -> str | None:
    if in_range(setting, value):
        return None
    return f"{setting.key} must be {bounds(setting)}, not {_number(value)}"


def read(setting: Setting, node: Node, reader: Reader) -> int | float | None:
    """The setting's value in ``node``, or None (a problem is recorded, or ``key: ~`` for a
    setting whose default is None)."""
    if setting.nullable and node.is_null:
        return None
    if setting.kind is int:
        value: int | float | None = reader.integer(node, setting.key)
    else:
        value = reader.number(node, setting.key)
    if value is None:
        return None
    problem = _range_problem(setting, value)
    if problem is not None:
        reader.problem(node, problem)
        return None
    return value


def coerce(setting: Setting, value: object) -> tuple[int | float | None, str | None]:
    """A value given in Python (``config_from_zone_files(udp_max_payload=1400)``): the value
    as the setting's type, or a problem."""
    if value is None and setting.nullable:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{setting.key} must be a number, not {value!r}"
    if setting.kind is int and not float(value).is_integer():
        return None, f"{setting.key} must be a whole number, not {value!r}"
    converted = setting.kind(value)
    problem = _range_problem(setting, converted)
    return (None, problem) if problem else (converted, None)


# --- what is derived for users: the schema and the docs ---------------------------------------


def json_schema_properties() -> dict[str, dict[str, Any]]:
    """These settings' part of the ``server:`` object in ``dnspol schema``."""
    properties = {}
    for setting in SETTINGS:
        kind = "integer" if setting.kind is int else "number"
        item: dict[str, Any] = {"type": [kind, "null"] if setting.nullable else kind}
        if setting.minimum is not None:
            item["exclusiveMinimum" if setting.above else "minimum"] = setting.minimum
        if setting.maximum is not None:
            item["maximum"] = setting.maximum
        item["default"] = setting.default
        item["description"] = setting.help
        properties[setting.key] = item
    return properties


def _quantity(value: float, unit: str) -> str:
    """A bound as people read it: ``65,535``, ``512 MiB``, ``1 TiB``."""
    if unit == "bytes" and value >= MIB:
        for size, name in ((2**40, "TiB"), (2**30, "GiB"), (MIB, "MiB")):
            if value % size == 0:
                return f"{value // size} {name}"
    return f"{value:,}" if isinstance(value, int) else f"{value:,g}"


def default_text(setting: Setting) -> str:
    """The default as the docs show it: ``1232``, ``10``, ``536870912`` (512 MiB), none."""
    if setting.default is None:
        return "none"
    text = f"`{_number(setting.default)}`"
    if setting.unit == "bytes" and setting.default >= MIB:
        text += f" ({_quantity(setting.default, setting.unit)})"
    return text


def range_text(setting: Setting) -> str:
    """``512–65,535 bytes``, ``1–1 TiB``, ``above 0, up to 60 s``, ``any``."""
    low, high = setting.minimum, setting.maximum
    if low is None or high is None:  # no table setting has one bound only
        return "any"
    low_text, high_text = _quantity(low, setting.unit), _quantity(high, setting.unit)
    text = f"above {low_text}, up to {high_text}" if setting.above else f"{low_text}–{high_text}"
    return text if high_text.endswith("iB") or not setting.unit else f"{text} {setting.unit}"


def markdown_row(setting: Setting) -> str:
    """The setting's row of the ``server:`` table in policies/README.md."""
    cells = (f"`{setting.key}`", default_text(setting), range_text(setting), setting.help)
    return f"| {' | '.join(cells)} |"


def markdown_rows() -> list[str]:
    return [markdown_row(setting) for setting in SETTINGS]


if __name__ == "__main__":  # python -m dnspol.settings: the rows to paste into the README
    print("\n".join(markdown_rows()))
