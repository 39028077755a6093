"""One immutable snapshot of what the server answers from, and the swap on reload.

A query reads ``ServerState.snapshot`` once and uses that object from start to
end, so a reload (build, check, then one reference assignment) can never show
a query half of the old configuration and half of the new.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from dnspol.answers import AnswerTables, compile_tables
from dnspol.collector import collector_paused
from dnspol.cookies import CookieConfig
from dnspol.dnstap import DnstapConfig
from dnspol.names import Name
from dnspol.policy.decide import Decider
from dnspol.policy.transfers import TransferPolicy
from dnspol.ratelimit import RateLimit
from dnspol.settings import RUNTIME, RuntimeSettings, settings_of
from dnspol.transfer import TransferSetup, compile_transfers
from dnspol.transport.proxy import ProxyTrust
from dnspol.zones.model import Zone, ZoneSet


@dataclass(frozen=True, kw_only=True)
class Snapshot(RuntimeSettings):
    """What a query is answered from. The settings serving reads (``udp_max_payload``,
    ``tcp_idle_timeout`` …, ``dnspol.settings.RUNTIME``) are fields too."""

    zones: ZoneSet
    variants: Mapping[tuple[Name, str], Zone] = field(default_factory=lambda: MappingProxyType({}))
    policy: object | None = None  # dnspol.policy Policy; None or rule-less: no evaluation
    chaos: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    digest: str = ""
    files: tuple[str, ...] = ()
    listen: tuple[tuple[str, int], ...] = ()
    warnings: tuple[str, ...] = ()
    proxy: ProxyTrust = field(default_factory=ProxyTrust)  # PROXY v2 senders
    metrics: tuple[str, int] | None = None  # where /metrics, /health, /ready listen
    control: str | None = None  # the config's control socket path ("none": off)
    rate_limit: RateLimit | None = None  # UDP response-rate limiting (``dnspol.ratelimit``)
    nsid: bytes = b""  # RFC 5001: given to queries that ask for it
    cookies: CookieConfig | None = None  # server cookies (``dnspol.cookies``); None: off
    dnstap: DnstapConfig | None = None  # read when the server starts (``dnspol.dnstap``)
    # TSIG keys, transfer rules, NOTIFY targets, the journal; compiled zones added below
    transfer: TransferSetup = field(default_factory=TransferSetup)
    resign_at: float | None = None  # epoch seconds the signatures need a new load; None: unsigned

    has_rules: bool = field(init=False)  # False: no policy to evaluate, ever
    proxied: bool = field(init=False)  # True: some peers may send PROXY v2 headers
    # every answer of every zone and scope, compiled once here (``dnspol.answers``)
    tables: AnswerTables = field(init=False, compare=False, repr=False)
    # the rules compiled to lookups (``dnspol.policy.decide``); None without rules
    decider: Decider | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # plain attributes, not properties: both are read for every packet
        rules = self.policy is not None and bool(getattr(self.policy, "has_rules", False))
        object.__setattr__(self, "has_rules", rules)
        object.__setattr__(self, "proxied", bool(self.proxy.networks))
        object.__setattr__(self, "tables", compile_tables(self.zones, self.variants))
        object.__setattr__(self, "decider", Decider.build(self.policy) if rules else None)
        setup = self.transfer
        compiled = compile_transfers(self.zones, self.variants, setup.policy, setup.keys)
        object.__setattr__(self, "transfer", replace(setup, compiled=MappingProxyType(compiled)))


class ServerState:
    """Holds the current snapshot; ``swap`` is the only way to change it."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot
        self._lock = threading.Lock()  # serialises reloads, never queries

    def swap(self, snapshot: Snapshot) -> Snapshot | None:
        with self._lock:
            old, self.snapshot = self.snapshot, snapshot
            return old


def snapshot_loader(config: str | None = None, zone_args: list[str] | None = None):
    """A function that builds a fresh snapshot each time it is called (start, reload)."""
    if config:
        return lambda: _paused(lambda: snapshot_from_config(_load_config(config)))
    args = list(zone_args or [])
    return lambda: _paused(lambda: snapshot_from_zone_args(args))


def _paused(load):  # noqa: ANN001, ANN202 - a thunk and what it returns
    """``load()`` with the collector paused, from the first zone read to the last table
    compiled (``dnspol.collector``)."""
    with collector_paused():
        return load()


def _load_config(path: str):
    from dnspol.config import load_config

    return load_config(path)


def snapshot_from_config(cfg) -> Snapshot:
    # every scope of each signed zone gets its keys, denial chain and RRSIGs before the
    # answers are compiled from it (``dnspol.dnssec.sign``, imported only then: it
    # brings dnspython and cryptography, which a server without dnssec: never loads)
    zones, variants, resign_at = cfg.zones, cfg.variants, None
    if cfg.dnssec:
        from dnspol.dnssec.sign import sign_all

        signed = sign_all(cfg.zones, cfg.variants, cfg.dnssec, workers=cfg.sign_workers)
        zones, variants, resign_at = signed.zones, signed.variants, signed.resign_at
    return Snapshot(
        **settings_of(cfg, RUNTIME),
        zones=zones,
        variants=variants,
        resign_at=resign_at,
        policy=cfg.policy,
        chaos=cfg.chaos,
        digest=cfg.digest,
        files=tuple(cfg.files),
        listen=tuple(cfg.listen),
        warnings=tuple(getattr(cfg, "warnings", ())),
        proxy=ProxyTrust(getattr(cfg, "proxy_trusted", ())),
        metrics=getattr(cfg, "metrics", None),
        control=getattr(cfg, "control", None),
        rate_limit=getattr(cfg, "rate_limit", None),
        nsid=getattr(cfg, "nsid", b""),
        cookies=getattr(cfg, "cookies", None),
        dnstap=getattr(cfg, "dnstap", None),
        transfer=TransferSetup(
            keys=getattr(cfg, "keys", MappingProxyType({})),
            policy=getattr(cfg, "transfers", None) or TransferPolicy(),
            notify=getattr(cfg, "notify", MappingProxyType({})),
            journal=getattr(cfg, "journal", None),
        ),
    )


def snapshot_from_zone_args(args: list[str]) -> Snapshot:
    """``--zone [ORIGIN=]FILE`` arguments: zones served as they are, no rules."""
    import hashlib

    from dnspol.errors import ConfigError
    from dnspol.zones.loader import load_zone_file

    zones: list[Zone] = []
    problems: list[str] = []
    digest = hashlib.sha256()
    for arg in args:
        origin, _, path = arg.rpartition("=") if "=" in arg else (None, "", arg)
        try:
            zone = load_zone_file(path, origin or None)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        zones.append(zone)
        with open(path, "rb") as fh:
            digest.update(fh.read())
    if problems:
        raise ConfigError(problems)
    files = tuple(sorted({z.source for z in zones} | set(_included(zones))))
    return Snapshot(
        zones=ZoneSet(zones), digest=digest.hexdigest(), files=files, cookies=CookieConfig()
    )


def _included(zones: list[Zone]) -> list[str]:
    return [f for z in zones for f in z.extras.get("files", ())]  # type: ignore[union-attr]
