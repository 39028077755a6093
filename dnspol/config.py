"""Server configuration: one YAML file naming zones, scopes, subnets, rules and settings.

``load_config`` reads the file (and everything it names: included rule files, zone files,
overlays, prefix lists), compiles it, and returns one frozen ``Config``, the snapshot a reload
swaps in whole. Every problem found anywhere is reported at once, each as
``file:line: what is wrong``, in one ``ConfigError``. Relative paths are relative to the
directory of the file that names them.

The rule language itself (what ``match:``, ``answer:`` … mean) lives in
``dnspol.policy.compiler``; ``policies/README.md`` is its reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
import socket
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dnspol import cookies, dnstap, ratelimit, tsig
from dnspol.checks import Check, HealthBoard, RecordSet, compile_checks
from dnspol.codes import RRType
from dnspol.cookies import CookieConfig
from dnspol.dnssec import policy as dnssec_policy
from dnspol.dnssec.keys import key_paths
from dnspol.dnssec.policy import SigningPolicy
from dnspol.dnstap import DnstapConfig
from dnspol.errors import ConfigError, ZoneError
from dnspol.journal import Journal
from dnspol.names import Name, from_text, to_text
from dnspol.notify import NotifyTarget
from dnspol.policy import Policy, geoip
from dnspol.policy.compiler import (
    RuleCompiler,
    RuleSource,
    compile_addresses,
    compile_subnets,
    time_zone,
)
from dnspol.policy.coverage import shadowed_rule_warnings
from dnspol.policy.prefixes import PrefixSet, parse_prefix
from dnspol.policy.schema import json_schema as _policy_json_schema
from dnspol.policy.scopes import load_overlay, load_scope_file, records_of
from dnspol.policy.transfers import TransferCompiler, TransferPolicy
from dnspol.policy.yamlnodes import Node, Reader, did_you_mean, read_yaml_file
from dnspol.ratelimit import RateLimit
from dnspol.settings import DEFAULTS, RETIRED, SETTINGS, ServerSettings, coerce, settings_of
from dnspol.settings import read as read_setting
from dnspol.tsig import TsigKey
from dnspol.zones import loader
from dnspol.zones.loader import ZoneLimits
from dnspol.zones.model import Zone, ZoneSet

DEFAULT_LISTEN: tuple[tuple[str, int], ...] = (("127.0.0.1", 5353),)
TOP_KEYS = ("server", "subnets", "regions", "zones", "checks", "rules", "keys", "transfers")
# the server: keys with a shape of their own; the scalar ones are declared in dnspol.settings
SHAPED_SERVER_KEYS = (
    "listen",
    "trusted_resolvers",
    "trusted_proxies",
    "chaos",
    "timezone",
    "rate_limit",
    "nsid",
    "cookies",
    "metrics",
    "control",
    "dnstap",
    "journal",
    "geoip",
)
SERVER_KEYS = SHAPED_SERVER_KEYS + tuple(setting.key for setting in SETTINGS) + tuple(RETIRED)
ZONE_KEYS = ("file", "scopes", "notify", "dnssec")
NOTIFY_KEYS = ("address", "key")
SCOPE_KEYS = ("file", "overlay")
KEY_KEYS = ("algorithm", "secret_file", "scope")
MAX_NSID = 128  # RFC 5001 sets no limit; an identity is a short name
SCOPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
WARNING = "warning: "

__all__ = [
    "Config",
    "ConfigError",
    "check_config",
    "config_from_zone_files",
    "json_schema",
    "load_config",
]


@dataclass(frozen=True, kw_only=True)
class Config(ServerSettings):
    """Everything the server needs, compiled. Replaced whole on reload, never changed.

    Besides these fields, every setting of ``dnspol.settings.SETTINGS`` (``udp_max_payload``,
    ``tcp_idle_timeout``, ``reload_timeout`` …) is a field, inherited from ``ServerSettings``.
    """

    path: str | None
    listen: tuple[tuple[str, int], ...]
    zones: ZoneSet  # the default scope of every zone
    variants: Mapping[tuple[Name, str], Zone]  # (origin, scope) → Zone; "default" included
    policy: Policy
    chaos: Mapping[str, str]  # lowercase qname without trailing dot → TXT text; empty: REFUSED
    files: tuple[str, ...]  # every file read, for reload watching
    digest: str  # sha256 over the files' contents
    timezone: str = "UTC"  # default time zone of time windows
    trusted_proxies: PrefixSet = field(default_factory=PrefixSet)  # PROXY v2 accepted from
    metrics: tuple[str, int] | None = None  # Prometheus listener; None: off
    rate_limit: RateLimit | None = None  # response-rate limiting; None: off
    nsid: bytes = b""  # RFC 5001 identity given to queries that ask; empty: none
    cookies: CookieConfig | None = None  # server cookies (RFC 7873/9018); None: off (``false``)
    control: str | None = None  # the control socket (``dnspol ctl``); "none": off; None: default
    dnstap: DnstapConfig | None = None  # dnstap output (``dnspol.dnstap``); None: off
    warnings: tuple[str, ...] = ()  # "warning: file:line: …", e.g. shadowed rules
    keys: Mapping[str, TsigKey] = field(default_factory=dict)  # TSIG keys by name (``x.``)
    transfers: TransferPolicy = field(default_factory=TransferPolicy)  # none: refuse all
    notify: Mapping[Name, tuple[NotifyTarget, ...]] = field(default_factory=dict)  # RFC 1996
    journal: str | None = None  # the IXFR journal's directory (``dnspol.journal``); None: off
    # zones signed at load (``dnspol.dnssec``), by origin; the zones above are unsigned
    dnssec: Mapping[Name, SigningPolicy] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def proxy_trusted(self) -> tuple[str, ...]:
        """``trusted_proxies`` as CIDR texts (what ``ProxyTrust`` takes)."""
        return tuple(str(prefix) for prefix in self.trusted_proxies)

    def scope_zone(self, origin: Name, scope: str) -> Zone | None:
        """The zone to answer from for a decision's scope (None: no such scope)."""
        return self.variants.get((origin, scope))


# --- public entry points ---------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and compile a config file. Raises ConfigError listing every problem."""
    problems, warnings, config = _ConfigBuilder(os.fspath(path)).build()
    if problems or config is None:
        raise ConfigError(problems or [f"{os.fspath(path)}:1: configuration is empty"])
    return config


def check_config(path: str | os.PathLike[str]) -> list[str]:
    """Every problem, then every warning (``warning: …``). Empty: all is well."""
    problems, warnings, _ = _ConfigBuilder(os.fspath(path)).build()
    return problems + warnings


def config_from_zone_files(
    paths: Iterable[str | os.PathLike[str]],
    listen: Iterable[tuple[str, int] | str] = DEFAULT_LISTEN,
    **settings: object,
) -> Config:
    """A config with no rules, serving the given zone files (``dnspol serve --zone FILE``).

    ``settings``: the ``server:`` keys of a config file, as Python values (e.g.
    ``udp_max_payload=1400``, ``trusted_resolvers=["10.0.0.0/8"]``, ``seed=1``).
    """
    problems: list[str] = []
    zones: dict[Name, Zone] = {}
    files: list[str] = []
    server = _settings_from_python(dict(settings), listen, problems)
    for path in map(os.fspath, paths):
        files.append(path)
        try:
            zone = loader.load_zone_file(path, limits=server.zone_limits())
        except ZoneError as error:
            problems.extend(error.problems)
            continue
        if zone.origin in zones:
            problems.append(
                f"{path}:1: zone {to_text(zone.origin)} is already served from "
                f"{zones[zone.origin].source}"
            )
            continue
        zones[zone.origin] = zone
    if problems:
        raise ConfigError(problems)
    return _assemble(None, server, zones, {}, Policy((), server.trusted_resolvers), files, ())


def json_schema() -> dict:
    """JSON Schema (2020-12) of config and included rule files (``dnspol schema``)."""
    return _policy_json_schema()


# --- building --------------------------------------------------------------------------------


@dataclass
class _Server:
    listen: tuple[tuple[str, int], ...] = DEFAULT_LISTEN
    trusted_resolvers: PrefixSet = field(default_factory=PrefixSet)
    trusted_proxies: PrefixSet = field(default_factory=PrefixSet)
    chaos: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    metrics: tuple[str, int] | None = None
    rate_limit: RateLimit | None = None
    nsid: bytes = b""
    cookies: CookieConfig | None = field(default_factory=CookieConfig)  # on, as in BIND
    control: str | None = None
    dnstap: DnstapConfig | None = None
    journal: str | None = None
    geoip: dict[str, geoip.GeoDatabase] = field(default_factory=dict)  # role → database
    # the settings of dnspol.settings.SETTINGS, by key
    values: dict[str, int | float | None] = field(default_factory=lambda: settings_of(DEFAULTS))

    def zone_limits(self) -> ZoneLimits:
        names = ("zone_max_bytes", "zone_max_records", "generate_max_records")
        return ZoneLimits(**{name: self.values[name] for name in names})


class _ConfigBuilder:
    """One load: collects problems, warnings and the files read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base_dir = os.path.dirname(path)
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.files: list[str] = [path]
        self.reader = Reader(self.problems)
        self.zone_limits = ZoneLimits()
        self.dnssec: dict[Name, SigningPolicy] = {}

    def build(self) -> tuple[list[str], list[str], Config | None]:
        root, _ = read_yaml_file(self.path, self.problems)
        if root is None:
            if not self.problems:
                self.problems.append(f"{self.path}:1: the file is empty")
            return self.problems, self.warnings, None
        top = self.reader.mapping(root, "the config file", TOP_KEYS)
        if top is None:
            return self.problems, self.warnings, None
        subnets = compile_subnets(top.get("subnets"), self.reader, self.base_dir, self.files)
        server = self._server(top.get("server"), subnets)
        regions = geoip.compile_regions(top.get("regions"), self.reader)
        self.zone_limits = server.zone_limits()
        zones, variants, scopes = self._zones(top.get("zones"), root)
        if server.journal is not None:
            self._check_serials(server.journal, zones, variants)
        checks, record_sets = compile_checks(
            top.get("checks"), self.reader, lambda text: _addresses_of(text, zones)
        )
        variants.update(_member_scopes(record_sets, zones))
        policy = self._policy(
            top.get("rules"), subnets, scopes, server, regions, checks, record_sets
        )
        keys = self._keys(top.get("keys"), scopes)
        transfers = self._transfers(top.get("transfers"), subnets, scopes, server, keys)
        notify = self._notify(top.get("zones"), keys)
        self.problems[:] = sort_problems(self.problems)
        self.warnings[:] = sort_problems(self.warnings)
        if self.problems:
            return self.problems, self.warnings, None
        config = _assemble(
            self.path,
            server,
            zones,
            variants,
            policy,
            self.files,
            tuple(self.warnings),
            self.dnssec,
        )
        config = dataclasses.replace(
            config,
            keys=MappingProxyType(keys),
            transfers=transfers,
            notify=notify,
            journal=server.journal,
        )
        return self.problems, self.warnings, config

    # --- server: ---------------------------------------------------------------------------

    def _server(self, node: Node | None, subnets: Mapping[str, PrefixSet]) -> _Server:
        server = _Server()
        if node is None:
            return server
        entries = self.reader.mapping(node, "server", SERVER_KEYS) or {}
        read = self.reader
        for key, why in RETIRED.items():
            if key in entries:
                self.warnings.append(f"{entries[key].where}: server.{key} has no effect: {why}")
        for setting in SETTINGS:  # table order, so one line's problems keep an order
            if setting.key in entries:
                value = read_setting(setting, entries[setting.key], read)
                if value is not None:
                    server.values[setting.key] = value
        if "listen" in entries:
            server.listen = self._listen(entries["listen"])
        for key in ("trusted_resolvers", "trusted_proxies"):
            if key in entries:
                compiled = compile_addresses(entries[key], key, read, subnets)
                setattr(server, key, compiled[0] if compiled else PrefixSet())
        if "chaos" in entries:
            server.chaos = self._chaos(entries["chaos"])
        if "timezone" in entries:
            tz = read.convert(entries["timezone"], "timezone", time_zone)
            server.timezone = tz.key if tz is not None else "UTC"
        if "metrics" in entries and not entries["metrics"].is_null:
            server.metrics = read.convert(entries["metrics"], "metrics", parse_listen)
        if "cookies" in entries:
            server.cookies = self._cookies(entries["cookies"])
        if "nsid" in entries and not entries["nsid"].is_null:
            server.nsid = self._nsid(entries["nsid"])
        if "rate_limit" in entries and not entries["rate_limit"].is_null:
            server.rate_limit = ratelimit.read_config(
                entries["rate_limit"], read, lambda node: self._exempt(node, subnets)
            )
        if "journal" in entries and not entries["journal"].is_null:
            text = read.text(entries["journal"], "journal")
            if text is not None:
                server.journal = os.path.join(self.base_dir, text)
        if "control" in entries and not entries["control"].is_null:
            text = read.text(entries["control"], "control")
            if text is not None:
                server.control = _control_path(text, self.base_dir)
        if "dnstap" in entries and not entries["dnstap"].is_null:
            server.dnstap = dnstap.read_config(entries["dnstap"], read, self.base_dir)
        if "geoip" in entries and not entries["geoip"].is_null:
            server.geoip = geoip.read_databases(entries["geoip"], read, self.base_dir)
            self.files.extend(db.path for db in server.geoip.values())  # watched: reload
        return server

    def _cookies(self, node: Node) -> CookieConfig | None:
        """``cookies: false`` turns them off; a mapping sets secrets and ``require``."""
        if node.is_null:
            return None
        if node.kind != "map":
            on = self.reader.boolean(node, "cookies")
            return CookieConfig() if on else None
        return cookies.read_config(node, self.reader)

    def _nsid(self, node: Node) -> bytes:
        """RFC 5001: any text up to 128 bytes; ``hostname`` is this machine's name."""
        text = self.reader.text(node, "nsid")
        if text is None:
            return b""
        value = (socket.gethostname() if text == "hostname" else text).encode()
        if not 0 < len(value) <= MAX_NSID:
            self.reader.problem(node, f"nsid must be 1-{MAX_NSID} bytes")
            return b""
        return value

    def _exempt(self, node: Node, subnets: Mapping[str, PrefixSet]) -> PrefixSet | None:
        compiled = compile_addresses(node, "rate_limit.exempt_clients", self.reader, subnets)
        return compiled[0] if compiled else None

    def _listen(self, node: Node) -> tuple[tuple[str, int], ...]:
        addresses = []
        for _, item in self.reader.texts(node, "listen"):
            address = self.reader.convert(item, "listen", parse_listen)
            if address is not None:
                addresses.append(address)
        return tuple(addresses) or DEFAULT_LISTEN

    def _chaos(self, node: Node) -> dict[str, str]:
        entries = self.reader.mapping(node, "chaos", None) or {}
        answers = {}
        for name, value in entries.items():
            text = self.reader.text(value, f"chaos answer for {name}")
            if text is not None:
                answers[name.lower().rstrip(".")] = text
        return answers

    # --- zones: ----------------------------------------------------------------------------

    def _zones(
        self, node: Node | None, root: Node
    ) -> tuple[dict[Name, Zone], dict[tuple[Name, str], Zone], dict[Name, frozenset[str]]]:
        zones: dict[Name, Zone] = {}
        variants: dict[tuple[Name, str], Zone] = {}
        scopes: dict[Name, frozenset[str]] = {}
        if node is None:
            self.reader.problem(root, "no zones: name at least one under 'zones:'")
            return zones, variants, scopes
        for name, key_node, value in _map_items(node, self.reader, "zones"):
            origin = _zone_origin(name)
            if origin is None:
                self.reader.problem(key_node, f"zone {name!r} is not a domain name")
                continue
            if origin in scopes:
                self.reader.problem(key_node, f"zone {to_text(origin)} is listed twice")
                continue
            scopes[origin] = self._zone(origin, value, zones, variants)
        return zones, variants, scopes

    def _zone(
        self,
        origin: Name,
        node: Node,
        zones: dict[Name, Zone],
        variants: dict[tuple[Name, str], Zone],
    ) -> frozenset[str]:
        """Load one zone and its scopes; returns its scope names (even if loading failed)."""
        read = self.reader
        what = f"zone {to_text(origin)}"
        entries = (
            {"file": node}
            if node.kind == "scalar"
            else (read.mapping(node, what, ZONE_KEYS, required=("file",)) or {})
        )
        scope_entries = _map_items(entries["scopes"], read, "scopes") if "scopes" in entries else []
        declared = []
        for scope, key_node, value in scope_entries:
            if scope == "default" or not SCOPE_NAME.match(scope):
                read.problem(
                    key_node,
                    f"scope name {scope!r} must be a word other than "
                    "'default' (letters, digits, _ and -)",
                )
            else:
                declared.append((scope, value))
        names = frozenset({"default"} | {scope for scope, _ in declared})
        if "dnssec" in entries:
            self._dnssec(origin, entries["dnssec"])
        if "file" not in entries:
            return names
        limits = self.zone_limits
        default = self._load(
            entries["file"], lambda path: load_scope_file(path, origin, "default", limits)
        )
        if default is not None:
            zones[origin] = default
            variants[(origin, "default")] = default
        for scope, value in declared:
            zone = self._scope(origin, scope, value, default)
            if zone is not None:
                variants[(origin, scope)] = zone
        return names

    def _dnssec(self, origin: Name, node: Node) -> None:
        """``zones.<zone>.dnssec``: the keys are read now, so a bad one fails the load."""
        policy = dnssec_policy.read_config(node, self.reader, self.base_dir, origin)
        if policy is not None:
            self.dnssec[origin] = policy
            for key in policy.keys:  # watched: a replaced key file reloads
                self.files.extend(key_paths(key.path))

    def _scope(self, origin: Name, scope: str, node: Node, default: Zone | None) -> Zone | None:
        what = f"scope {scope!r}"
        entries = (
            {"file": node} if node.kind == "scalar" else self.reader.mapping(node, what, SCOPE_KEYS)
        )
        if not entries:
            return None
        if len(entries) != 1:
            self.reader.problem(node, f"{what} needs exactly one of 'file' or 'overlay'")
            return None
        limits = self.zone_limits
        if "file" in entries:
            return self._load(
                entries["file"], lambda path: load_scope_file(path, origin, scope, limits)
            )
        if default is None:  # the default failed to load; its problems are reported
            self._record_file(entries["overlay"])
            return None
        return self._load(
            entries["overlay"], lambda path: load_overlay(path, default, scope, limits)
        )

    def _load(self, node: Node, load) -> Zone | None:  # noqa: ANN001 - a small callback
        path = self._record_file(node)
        if path is None:
            return None
        if not os.path.isfile(path):
            self.reader.problem(node, f"zone file {path} does not exist")
            return None
        try:
            zone = load(path)
        except ZoneError as error:
            self.problems.extend(error.problems)
        except (OSError, ValueError) as error:
            self.reader.problem(node, f"cannot load {path}: {error}")
        else:
            self.files.extend(zone.extras.get("files", ()))  # $INCLUDEd files, watched too
            return zone
        return None

    def _record_file(self, node: Node) -> str | None:
        text = self.reader.text(node, "file")
        if text is None:
            return None
        path = os.path.join(self.base_dir, text)
        self.files.append(path)
        return path

    # --- rules: ----------------------------------------------------------------------------

    def _policy(
        self,
        node: Node | None,
        subnets: Mapping[str, PrefixSet],
        scopes: Mapping[Name, frozenset[str]],
        server: _Server,
        regions: Mapping[str, tuple[geoip.Term, ...]],
        checks: tuple[Check, ...] = (),
        record_sets: Mapping[str, RecordSet] | None = None,
    ) -> Policy:
        by_name = {check.name: check for check in checks}
        source = RuleSource(
            subnets,
            scopes,
            zoneinfo.ZoneInfo(server.timezone),
            regions=regions,
            checks=by_name,
            record_sets=record_sets or {},
        )
        max_bytes = int(server.values["rule_file_max_bytes"])  # type: ignore[arg-type]
        compiler = RuleCompiler(source, self.reader, self.files, max_file_bytes=max_bytes)
        compiler.compile_list(node, self.base_dir)
        # GeoIP criteria become prefix sets here: one walk of each database, all rules read
        rules, _ = geoip.resolve(compiler.rules, server.geoip, self.reader, self.warnings)
        self.warnings.extend(source.warnings)
        self.warnings.extend(shadowed_rule_warnings(rules, bool(server.trusted_resolvers)))
        board = None
        if checks and not self.problems:  # shared memory: only for a configuration that loads
            board = HealthBoard(checks, int(server.values["health_ttl"]))  # type: ignore[arg-type]
        return Policy(rules, server.trusted_resolvers, health=board)

    # --- keys: and transfers: ----------------------------------------------------------------

    def _check_serials(self, directory: str, zones: Mapping, variants: Mapping) -> None:
        """With an IXFR journal: a zone whose records changed since the version last
        loaded, under the same serial, is a problem — its secondaries would never
        transfer the change (BIND logs the same and serves it anyway)."""
        journal = Journal(directory)
        every = {(origin, "default"): zone for origin, zone in zones.items()}
        every.update(variants)
        for (_, scope), zone in every.items():
            if journal.unchanged_serial(zone, scope):
                self.problems.append(
                    f"{zone.source or self.path}:1: zone {zone.name} (scope {scope}) changed "
                    f"since it was last loaded but its serial {zone.serial} did not: raise "
                    "the serial (secondaries transfer only a newer one)"
                )

    def _keys(self, node: Node | None, scopes: Mapping[Name, frozenset[str]]) -> dict[str, TsigKey]:
        """``keys:``: name → {algorithm, secret_file, scope}; the secret is read here."""
        keys: dict[str, TsigKey] = {}
        if node is None or node.is_null:
            return keys
        read = self.reader
        every_scope = {scope for names in scopes.values() for scope in names}
        for name, key_node, value in _map_items(node, read, "keys"):
            what = f"key {name!r}"
            if _zone_origin(name) is None:
                read.problem(key_node, f"{what}: a key name must be a domain name")
                continue
            entries = read.mapping(value, what, KEY_KEYS, required=("secret_file",)) or {}
            algorithm = "hmac-sha256"
            if "algorithm" in entries:
                algorithm = read.choice(entries["algorithm"], "algorithm", tsig.ALGORITHMS) or ""
            scope = read.text(entries["scope"], "scope") if "scope" in entries else None
            if scope is not None and scope not in every_scope:
                hint = did_you_mean(scope, every_scope)
                read.problem(entries["scope"], f"{what}: no zone has a scope {scope!r}{hint}")
            secret = None
            if "secret_file" in entries:
                secret = self._secret(entries["secret_file"], what)
            if secret is None or not algorithm:
                continue
            canonical = name.lower().rstrip(".") + "."
            keys[canonical] = TsigKey(canonical, algorithm, secret, scope, key_node.where)
        return keys

    def _secret(self, node: Node, what: str) -> bytes | None:
        path = self._record_file(node)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                return tsig.read_secret(handle.read(4096))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            self.reader.problem(node, f"{what}: cannot read the secret from {path}: {reason}")
            return None

    def _notify(self, node: Node | None, keys: Mapping[str, TsigKey]) -> Mapping:
        """``zones: NAME: notify:``: the secondaries told of a new serial (RFC 1996), each
        ``ADDRESS[:PORT]`` or ``{address: ADDRESS[:PORT], key: NAME}``."""
        out: dict[Name, tuple[NotifyTarget, ...]] = {}
        if node is None or node.kind != "map":
            return out
        read = self.reader
        for name, _, value in node.items():
            origin = _zone_origin(name)
            if value.kind != "map" or "notify" not in value.value or origin is None:
                continue
            targets = []
            _, notify_node = value.value["notify"]  # type: ignore[index]
            for item in read.sequence(notify_node, "notify", scalar_ok=True) or ():
                target = self._notify_target(item, keys)
                if target is not None:
                    targets.append(target)
            out[origin] = tuple(targets)
        return MappingProxyType(out)

    def _notify_target(self, node: Node, keys: Mapping[str, TsigKey]) -> NotifyTarget | None:
        read = self.reader
        entries = {"address": node}
        if node.kind == "map":
            entries = read.mapping(node, "a notify target", NOTIFY_KEYS, required=("address",))
            if not entries or "address" not in entries:
                return None
        text = read.text(entries["address"], "notify address")
        if text is None:
            return None
        host, port = text.strip(), 53
        if not _is_address(host.strip("[]")):
            try:
                host, port = parse_listen(text)
            except ValueError:
                read.problem(entries["address"], f"notify address {text!r} is not ADDRESS[:PORT]")
                return None
        key = None
        if "key" in entries:
            key_text = read.text(entries["key"], "key")
            key = (key_text or "").lower().rstrip(".") + "."
            if key not in keys:
                known = ", ".join(k.rstrip(".") for k in keys) or "none"
                read.problem(entries["key"], f"unknown key {key_text!r}; keys: {known}")
                return None
        return NotifyTarget(host.strip("[]"), port, key)

    def _transfers(
        self,
        node: Node | None,
        subnets: Mapping[str, PrefixSet],
        scopes: Mapping[Name, frozenset[str]],
        server: _Server,
        keys: Mapping[str, TsigKey],
    ) -> TransferPolicy:
        source = RuleSource(subnets, scopes, zoneinfo.ZoneInfo(server.timezone))
        compiler = TransferCompiler(source, self.reader, self.files, keys)
        return compiler.compile_transfers(node)


def _addresses_of(
    text: str, zones: Mapping[Name, Zone]
) -> tuple[Name, Name, list[tuple[int, str]]]:
    """A ``records:`` check's name → (its zone, the owner, its A and AAAA addresses in the
    default scope). ValueError says why there are none."""
    owner = _zone_origin(text)
    if owner is None:
        raise ValueError(f"records: {text!r} is not a domain name")
    zone = next((zones[owner[i:]] for i in range(len(owner) + 1) if owner[i:] in zones), None)
    if zone is None:
        raise ValueError(f"records: {to_text(owner)} is in no served zone")
    node = zone.nodes.get(owner)
    found = [
        (rtype, str(rdata))
        for rtype in (RRType.A, RRType.AAAA)
        for rdata in (node.get(rtype).rdatas if node is not None and node.get(rtype) else ())
    ]
    if not found:
        raise ValueError(f"records: {to_text(owner)} has no A or AAAA records in its zone file")
    return zone.origin, owner, found


def _member_scopes(
    record_sets: Mapping[str, RecordSet], zones: Mapping[Name, Zone]
) -> dict[tuple[Name, str], Zone]:
    """For each record-set check, a scope per proper subset of its members (bit i: member
    i): the default scope with that record set cut down to those addresses."""
    out: dict[tuple[Name, str], Zone] = {}
    for record_set in record_sets.values():
        default = zones[record_set.zone]
        records = records_of(default)
        members = {
            (rtype, address): 1 << i for i, (rtype, address) in enumerate(record_set.members)
        }
        for mask in range(1, (1 << len(record_set.members)) - 1):
            kept = [
                record
                for record in records
                if record.name != record_set.owner
                or (record.rtype, str(record.rdata)) not in members
                or members[(record.rtype, str(record.rdata))] & mask
            ]
            scope = record_set.scope(mask)
            out[(record_set.zone, scope)] = Zone.from_records(
                record_set.zone, kept, source=default.source, scope=scope
            )
    return out


_LOCATION = re.compile(r"^(?:warning: )?(?P<file>[^\n]*?):(?P<line>\d+): ")


def sort_problems(problems: list[str]) -> list[str]:
    """By file (in the order files first appear), then line; unlocated ones keep their place."""
    order: dict[str, int] = {}
    keyed = []
    for index, problem in enumerate(problems):
        found = _LOCATION.match(problem)
        file, line = (found["file"], int(found["line"])) if found else ("", 0)
        order.setdefault(file, len(order))
        keyed.append(((order[file], line, index), problem))
    return [problem for _, problem in sorted(keyed)]


def _map_items(node: Node, reader: Reader, what: str) -> list[tuple[str, Node, Node]]:
    if node.kind != "map":
        reader.mapping(node, what, None)  # records the problem
        return []
    return list(node.items())


def _zone_origin(text: str) -> Name | None:
    try:
        return from_text(text)
    except Exception:  # dnslib raises several kinds for bad names
        return None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:5353`` or ``[::1]:5353`` → (address, port). Raises ValueError."""
    host, colon, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        colon = ""  # a bare IPv6 address without [ ]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        colon = ""
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f"listen address {text!r} must be ADDRESS:PORT, e.g. 127.0.0.1:5353 or [::1]:5353"
        )
    return host, int(port_text)


def _settings_from_python(
    settings: dict[str, object], listen: Iterable[tuple[str, int] | str], problems: list[str]
) -> _Server:
    """``server:`` settings given as keyword arguments (``config_from_zone_files``)."""
    server = _Server()
    unknown = [key for key in settings if key not in SERVER_KEYS]
    for key in unknown:
        problems.append(f"<settings>: unknown setting {key!r}{did_you_mean(key, SERVER_KEYS)}")
    try:
        server.listen = tuple(
            parse_listen(item) if isinstance(item, str) else (str(item[0]), int(item[1]))
            for item in listen
        )
        for key in ("trusted_resolvers", "trusted_proxies"):
            texts = settings.get(key, ())
            setattr(server, key, PrefixSet(parse_prefix(str(t)) for t in texts))  # type: ignore[union-attr]
        if settings.get("timezone"):
            server.timezone = time_zone(str(settings["timezone"])).key
        if settings.get("metrics"):
            server.metrics = parse_listen(str(settings["metrics"]))
        if settings.get("control"):
            server.control = _control_path(str(settings["control"]), "")
    except (ValueError, TypeError) as error:
        problems.append(f"<settings>: {error}")
    for setting in SETTINGS:
        if setting.key in settings:
            value, problem = coerce(setting, settings[setting.key])
            if problem is not None:
                problems.append(f"<settings>: {problem}")
            else:
                server.values[setting.key] = value
    if "chaos" in settings:
        chaos = settings["chaos"] or {}
        server.chaos = {str(k).lower().rstrip("."): str(v) for k, v in dict(chaos).items()}  # type: ignore[call-overload]
    return server


def _assemble(
    path: str | None,
    server: _Server,
    zones: Mapping[Name, Zone],
    variants: Mapping[tuple[Name, str], Zone],
    policy: Policy,
    files: list[str],
    warnings: tuple[str, ...],
    dnssec: Mapping[Name, SigningPolicy] | None = None,
) -> Config:
    all_variants = {(origin, "default"): zone for origin, zone in zones.items()}
    all_variants.update(variants)
    unique_files = tuple(dict.fromkeys(files))
    return Config(
        **server.values,
        path=path,
        listen=server.listen,
        zones=ZoneSet(zones.values()),
        variants=MappingProxyType(all_variants),
        policy=policy,
        chaos=MappingProxyType(dict(server.chaos)),
        files=unique_files,
        digest=files_digest(unique_files),
        timezone=server.timezone,
        trusted_proxies=server.trusted_proxies,
        metrics=server.metrics,
        rate_limit=server.rate_limit if server.rate_limit and server.rate_limit.enabled else None,
        nsid=server.nsid,
        cookies=server.cookies,
        control=server.control,
        dnstap=server.dnstap,
        warnings=warnings,
        dnssec=MappingProxyType(dict(dnssec or {})),
    )


def _control_path(text: str, base_dir: str) -> str:
    """``server.control``: ``none`` (no control socket) or a path, relative to the config."""
    if text.strip().lower() == "none":
        return "none"
    return os.path.join(base_dir, text)


def files_digest(paths: Iterable[str]) -> str:
    """sha256 over each file's name and contents (unreadable files count as empty)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode() + b"\0")
        try:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        except OSError:
            pass
        digest.update(b"\0")
    return digest.hexdigest()
