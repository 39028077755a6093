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

import hashlib
import ipaddress
import os
import re
import socket
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dnspol import cookies, ratelimit
from dnspol.cookies import CookieConfig
from dnspol.errors import ConfigError, ZoneError
from dnspol.names import Name, from_text, to_text
from dnspol.policy import Policy
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
from dnspol.policy.scopes import load_overlay, load_scope_file
from dnspol.policy.yamlnodes import MAX_FILE_BYTES, Node, Reader, did_you_mean, read_yaml_file
from dnspol.ratelimit import RateLimit
from dnspol.state import (
    DEFAULT_CACHE_ENTRIES,
    DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_TCP_MAX_CONNECTIONS,
    DEFAULT_TCP_MAX_PER_NETWORK,
    DEFAULT_TCP_MAX_PER_SOURCE,
    DEFAULT_TCP_MESSAGE_TIMEOUT,
)
from dnspol.zones import loader
from dnspol.zones.loader import ZoneLimits
from dnspol.zones.model import Zone, ZoneSet

DEFAULT_LISTEN: tuple[tuple[str, int], ...] = (("127.0.0.1", 5353),)
DEFAULT_UDP_MAX_PAYLOAD = 1232
TOP_KEYS = ("server", "subnets", "zones", "rules")
SERVER_KEYS = (
    "listen",
    "udp_max_payload",
    "trusted_resolvers",
    "trusted_proxies",
    "seed",
    "chaos",
    "timezone",
    "tcp_idle_timeout",
    "tcp_max_connections",
    "tcp_message_timeout",
    "tcp_max_per_source",
    "tcp_max_per_network",
    "cache_entries",
    "rate_limit",
    "nsid",
    "cookies",
    "metrics",
    "control",
)
ZONE_KEYS = ("file", "scopes")
SCOPE_KEYS = ("file", "overlay")
MAX_NSID = 128  # RFC 5001 sets no limit; an identity is a short name
SCOPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
WARNING = "warning: "


# --- limits on what one load may read or take (configuration bombs) --------------------------
# Declared here once: parsing, the defaults and ``dnspol schema`` read this table
# (policies/README.md lists it). The config file itself is bounded by constants in
# dnspol.policy.yamlnodes: its limits cannot come from the file being read.
@dataclass(frozen=True)
class Limit:
    """One ``server:`` limit: an int default makes it a whole number, a float any number."""

    default: float
    minimum: float
    maximum: float
    what: str


_ZONE_DEFAULTS = ZoneLimits()
LIMITS: dict[str, Limit] = {
    "zone_max_bytes": Limit(
        _ZONE_DEFAULTS.zone_max_bytes, 1, 2**40, "largest zone file, and $INCLUDEd file (bytes)"
    ),
    "zone_max_records": Limit(
        _ZONE_DEFAULTS.zone_max_records, 1, 2**31, "most records in one zone, however written"
    ),
    "generate_max_records": Limit(
        _ZONE_DEFAULTS.generate_max_records, 1, 2**31, "most records one $GENERATE may make"
    ),
    "rule_file_max_bytes": Limit(MAX_FILE_BYTES, 1, 2**40, "largest included rule file (bytes)"),
    "reload_timeout": Limit(600.0, 1, 86_400, "seconds a reload may take before it is abandoned"),
}
SERVER_KEYS += tuple(LIMITS)

__all__ = [
    "Config",
    "ConfigError",
    "check_config",
    "config_from_zone_files",
    "json_schema",
    "load_config",
]


@dataclass(frozen=True)
class Config:
    """Everything the server needs, compiled. Replaced whole on reload, never changed."""

    path: str | None
    listen: tuple[tuple[str, int], ...]
    udp_max_payload: int
    zones: ZoneSet  # the default scope of every zone
    variants: Mapping[tuple[Name, str], Zone]  # (origin, scope) → Zone; "default" included
    policy: Policy
    seed: int | None
    chaos: Mapping[str, str]  # lowercase qname without trailing dot → TXT text; empty: REFUSED
    files: tuple[str, ...]  # every file read, for reload watching
    digest: str  # sha256 over the files' contents
    timezone: str = "UTC"  # default time zone of time windows
    trusted_proxies: PrefixSet = field(default_factory=PrefixSet)  # PROXY v2 accepted from
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT  # s without a message on a connection
    tcp_max_connections: int = DEFAULT_TCP_MAX_CONNECTIONS  # the server's total, all workers
    tcp_message_timeout: float = DEFAULT_TCP_MESSAGE_TIMEOUT  # from a message's first byte
    tcp_max_per_source: int = DEFAULT_TCP_MAX_PER_SOURCE  # per IPv4 address / IPv6 /64; 0: off
    tcp_max_per_network: int = DEFAULT_TCP_MAX_PER_NETWORK  # per IPv4 /24 / IPv6 /56; 0: off
    cache_entries: int = DEFAULT_CACHE_ENTRIES  # bound of each answer/decision cache
    metrics: tuple[str, int] | None = None  # Prometheus listener; None: off
    rate_limit: RateLimit | None = None  # response-rate limiting; None: off
    nsid: bytes = b""  # RFC 5001 identity given to queries that ask; empty: none
    cookies: CookieConfig | None = None  # server cookies (RFC 7873/9018); None: off (``false``)
    control: str | None = None  # the control socket (``dnspol ctl``); "none": off; None: default
    warnings: tuple[str, ...] = ()  # "warning: file:line: …", e.g. shadowed rules
    reload_timeout: float = LIMITS["reload_timeout"].default  # seconds; then abandoned

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
    schema = _policy_json_schema()
    server = schema["anyOf"][0]["properties"]["server"]["properties"]
    for name, limit in LIMITS.items():
        kind = "integer" if isinstance(limit.default, int) else "number"
        server[name] = {
            "type": kind,
            "minimum": limit.minimum,
            "maximum": limit.maximum,
            "default": limit.default,
            "description": limit.what,
        }
    return schema


# --- building --------------------------------------------------------------------------------


@dataclass
class _Server:
    listen: tuple[tuple[str, int], ...] = DEFAULT_LISTEN
    udp_max_payload: int = DEFAULT_UDP_MAX_PAYLOAD
    trusted_resolvers: PrefixSet = field(default_factory=PrefixSet)
    trusted_proxies: PrefixSet = field(default_factory=PrefixSet)
    seed: int | None = None
    chaos: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT
    tcp_max_connections: int = DEFAULT_TCP_MAX_CONNECTIONS
    tcp_message_timeout: float = DEFAULT_TCP_MESSAGE_TIMEOUT
    tcp_max_per_source: int = DEFAULT_TCP_MAX_PER_SOURCE
    tcp_max_per_network: int = DEFAULT_TCP_MAX_PER_NETWORK
    cache_entries: int = DEFAULT_CACHE_ENTRIES
    metrics: tuple[str, int] | None = None
    rate_limit: RateLimit | None = None
    nsid: bytes = b""
    cookies: CookieConfig | None = field(default_factory=CookieConfig)  # on, as in BIND
    control: str | None = None
    limits: dict[str, float] = field(
        default_factory=lambda: {name: limit.default for name, limit in LIMITS.items()}
    )

    def zone_limits(self) -> ZoneLimits:
        names = ("zone_max_bytes", "zone_max_records", "generate_max_records")
        return ZoneLimits(**{name: int(self.limits[name]) for name in names})


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
        self.zone_limits = server.zone_limits()
        zones, variants, scopes = self._zones(top.get("zones"), root)
        policy = self._policy(top.get("rules"), subnets, scopes, server)
        self.problems[:] = sort_problems(self.problems)
        self.warnings[:] = sort_problems(self.warnings)
        if self.problems:
            return self.problems, self.warnings, None
        config = _assemble(
            self.path, server, zones, variants, policy, self.files, tuple(self.warnings)
        )
        return self.problems, self.warnings, config

    # --- server: ---------------------------------------------------------------------------

    def _server(self, node: Node | None, subnets: Mapping[str, PrefixSet]) -> _Server:
        server = _Server()
        if node is None:
            return server
        entries = self.reader.mapping(node, "server", SERVER_KEYS) or {}
        read = self.reader
        if "listen" in entries:
            server.listen = self._listen(entries["listen"])
        if "udp_max_payload" in entries:
            value = read.integer(
                entries["udp_max_payload"], "udp_max_payload", minimum=512, maximum=65535
            )
            server.udp_max_payload = value or DEFAULT_UDP_MAX_PAYLOAD
        for key in ("trusted_resolvers", "trusted_proxies"):
            if key in entries:
                compiled = compile_addresses(entries[key], key, read, subnets)
                setattr(server, key, compiled[0] if compiled else PrefixSet())
        if "seed" in entries and not entries["seed"].is_null:
            server.seed = read.integer(entries["seed"], "seed")
        if "chaos" in entries:
            server.chaos = self._chaos(entries["chaos"])
        if "timezone" in entries:
            tz = read.convert(entries["timezone"], "timezone", time_zone)
            server.timezone = tz.key if tz is not None else "UTC"
        if "tcp_idle_timeout" in entries:
            value = read.number(entries["tcp_idle_timeout"], "tcp_idle_timeout")
            if value is not None and not 0 < value <= 3600:
                read.problem(entries["tcp_idle_timeout"], "tcp_idle_timeout must be 0-3600 s")
            server.tcp_idle_timeout = value or server.tcp_idle_timeout
        if "tcp_max_connections" in entries:
            value = read.integer(
                entries["tcp_max_connections"], "tcp_max_connections", minimum=1, maximum=1_000_000
            )
            server.tcp_max_connections = value or server.tcp_max_connections
        self._tcp_abuse_limits(entries, server)
        if "cache_entries" in entries:
            value = read.integer(
                entries["cache_entries"], "cache_entries", minimum=0, maximum=100_000_000
            )
            server.cache_entries = value if value is not None else server.cache_entries
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
        if "control" in entries and not entries["control"].is_null:
            text = read.text(entries["control"], "control")
            if text is not None:
                server.control = _control_path(text, self.base_dir)
        self._limits(entries, server.limits)
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

    def _limits(self, entries: Mapping[str, Node], limits: dict[str, float]) -> None:
        for name, limit in LIMITS.items():
            if name not in entries:
                continue
            node = entries[name]
            if isinstance(limit.default, int):
                value = self.reader.integer(
                    node, name, minimum=int(limit.minimum), maximum=int(limit.maximum)
                )
            else:
                value = self.reader.number(node, name)
                if value is not None and not limit.minimum <= value <= limit.maximum:
                    self.reader.problem(
                        node, f"{name} must be between {limit.minimum:g} and "
                        f"{limit.maximum:g}, not {value:g}"
                    )  # fmt: skip
                    value = None
            if value is not None:
                limits[name] = value

    def _tcp_abuse_limits(self, entries: Mapping[str, Node], server: _Server) -> None:
        """``tcp_message_timeout``, ``tcp_max_per_source``, ``tcp_max_per_network``."""
        read = self.reader
        if "tcp_message_timeout" in entries:
            node = entries["tcp_message_timeout"]
            value = read.number(node, "tcp_message_timeout")
            if value is not None and not 0 < value <= 60:
                read.problem(node, "tcp_message_timeout must be 0-60 s")
            server.tcp_message_timeout = value or server.tcp_message_timeout
        for key in ("tcp_max_per_source", "tcp_max_per_network"):
            if key in entries:
                value = read.integer(entries[key], key, minimum=0, maximum=1_000_000)
                if value is not None:
                    setattr(server, key, value)

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
    ) -> Policy:
        source = RuleSource(subnets, scopes, zoneinfo.ZoneInfo(server.timezone))
        max_bytes = int(server.limits["rule_file_max_bytes"])
        compiler = RuleCompiler(source, self.reader, self.files, max_file_bytes=max_bytes)
        compiler.compile_list(node, self.base_dir)
        self.warnings.extend(source.warnings)
        self.warnings.extend(shadowed_rule_warnings(compiler.rules, bool(server.trusted_resolvers)))
        return Policy(compiler.rules, server.trusted_resolvers)


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
    keys = (
        "udp_max_payload",
        "seed",
        "tcp_idle_timeout",
        "tcp_max_connections",
        "tcp_message_timeout",
        "tcp_max_per_source",
        "tcp_max_per_network",
        "cache_entries",
    )
    for key in keys:
        if key in settings:
            setattr(server, key, settings[key])
    for key in LIMITS:
        if key in settings:
            server.limits[key] = settings[key]  # type: ignore[assignment]
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
) -> Config:
    all_variants = {(origin, "default"): zone for origin, zone in zones.items()}
    all_variants.update(variants)
    unique_files = tuple(dict.fromkeys(files))
    return Config(
        path=path,
        listen=server.listen,
        udp_max_payload=server.udp_max_payload,
        zones=ZoneSet(zones.values()),
        variants=MappingProxyType(all_variants),
        policy=policy,
        seed=server.seed,
        chaos=MappingProxyType(dict(server.chaos)),
        files=unique_files,
        digest=files_digest(unique_files),
        timezone=server.timezone,
        trusted_proxies=server.trusted_proxies,
        tcp_idle_timeout=server.tcp_idle_timeout,
        tcp_max_connections=server.tcp_max_connections,
        tcp_message_timeout=server.tcp_message_timeout,
        tcp_max_per_source=server.tcp_max_per_source,
        tcp_max_per_network=server.tcp_max_per_network,
        cache_entries=server.cache_entries,
        metrics=server.metrics,
        rate_limit=server.rate_limit if server.rate_limit and server.rate_limit.enabled else None,
        nsid=server.nsid,
        cookies=server.cookies,
        control=server.control,
        warnings=warnings,
        reload_timeout=float(server.limits["reload_timeout"]),
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
