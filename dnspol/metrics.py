"""Every Prometheus series dnspol exports, and the folding that feeds them.

Answering never touches a Prometheus object: it counts into the plain dicts of
``dnspol.stats`` (one increment per query). This module turns those counts into
series off the hot path, in three steps:

* ``Folder`` copies the hot dicts (a dict copy is atomic under the GIL), adds
  what grew since the last copy to cumulative ``Totals``, and swaps the hot dict
  for an empty one when it holds too many keys. It runs on a 1 s thread and
  again at every scrape, so a scrape sees every query answered before it.
* ``Totals`` are plain, JSON-able numbers per family and label values. A worker
  process writes its totals to a file every second (``Exporter``); the
  supervisor adds up every worker's file (``WorkerFiles``), so one scrape covers
  all cores.
* ``TotalsCollector`` builds the metric families from totals when Prometheus
  scrapes.

``FAMILIES`` declares every series: name, type, help, label names, and how the
values of several worker processes combine. Label values come from bounded sets
only: served zone names, a fixed list of query types, rcodes, the rule and
scope names of the configuration — never a query name or a client address.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from dnspol import __version__, procstats
from dnspol.stats import AnswerLabel, Stats

log = logging.getLogger("dnspol.metrics")

# CoreDNS's size buckets (plugin/metrics/vars: coredns_dns_request_size_bytes)
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
# finer than CoreDNS's (250 µs and up): a cached answer takes a few µs here
DURATION_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
DURATION_SUM = "sum"  # Stats.durations[(transport, DURATION_SUM)]: seconds, sampled queries
# a probe's time: a local connect takes ~0.1 ms, a remote HTTPS check tens of ms
CHECK_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
DROP_REASONS = ("malformed", "policy", "proxy", "rate_limit")
SAMPLE_EVERY = 64  # one query in this many is timed (dnspol.observe)
FOLD_INTERVAL = 1.0
# Snapshot attributes, one AnswerCache each
SWAP_AT = 50_000  # keys in Stats.answers before the hot dict is swapped for an empty one
NEVER_REACHED_POLICY = frozenset({"FORMERR", "NOTIMP", "BADVERS"})
# the zone label of queries no served zone holds (and of those that never got as far as
# a zone): CoreDNS's "dropped", which has no closing dot so no zone can be named so
UNMATCHED_ZONE = "dropped"
DROPPED_LABEL = AnswerLabel()  # a timed query that got no answer, or no label

SUM, MAX = "sum", "max"


@dataclass(frozen=True)
class Family:
    """One exported series: what Prometheus sees, and how workers' values combine."""

    name: str
    kind: str  # counter | gauge | histogram | info
    help: str
    labels: tuple[str, ...] = ()
    merge: str = SUM  # across worker processes
    buckets: tuple[float, ...] = ()

    @property
    def cumulative(self) -> bool:
        """Counters and histograms: kept when a worker is replaced (``WorkerFiles``)."""
        return self.kind in ("counter", "histogram")


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "dnspol_dns_requests_total",
            "counter",
            "Queries answered, by listener (server), zone (dropped: none served), scope "
            "(view), transport, address family (1: IPv4, 2: IPv6) and query type; as "
            "coredns_dns_requests_total. Packets dropped: dnspol_dns_dropped_total.",
            ("server", "zone", "view", "proto", "family", "type"),
        ),
        Family(
            "dnspol_dns_responses_total",
            "counter",
            "Responses sent, by listener, zone, scope and rcode; as coredns_dns_responses_total.",
            ("server", "zone", "view", "rcode"),
        ),
        Family(
            "dnspol_dns_request_size_bytes",
            "histogram",
            "Size of the queries answered, in bytes (TCP: without the length prefix).",
            ("server", "zone", "view", "proto"),
            buckets=SIZE_BUCKETS,
        ),
        Family(
            "dnspol_dns_response_size_bytes",
            "histogram",
            "Size of the responses sent, in bytes (TCP: without the length prefix).",
            ("server", "zone", "view", "proto"),
            buckets=SIZE_BUCKETS,
        ),
        Family(
            "dnspol_dns_request_duration_seconds",
            "histogram",
            f"Time to answer a query, sampled: in each worker process one query in "
            f"{SAMPLE_EVERY} is timed, from the bytes received to the bytes to send "
            "(socket time not included). Packets dropped count under zone dropped.",
            ("server", "zone", "view", "proto", "type"),
            buckets=DURATION_BUCKETS,
        ),
        Family(
            "dnspol_dns_ecs_requests_total",
            "counter",
            "Queries answered that carried EDNS Client Subnet, by zone.",
            ("zone",),
        ),
        Family(
            "dnspol_dns_truncated_responses_total",
            "counter",
            "Responses sent truncated (TC=1), by zone.",
            ("zone",),
        ),
        Family(
            "dnspol_dns_dropped_total",
            "counter",
            "Packets that got no answer, by reason: malformed, policy (a drop rule), "
            "proxy (bad PROXY header from a trusted proxy), rate_limit.",
            ("reason",),
        ),
        Family(
            "dnspol_rate_limited_responses_total",
            "counter",
            "UDP answers over the response-rate limit, by action: slip (sent truncated), "
            "drop, and with log_only, would_slip and would_drop (sent whole).",
            ("action",),
        ),
        Family(
            "dnspol_policy_rule_matches_total",
            "counter",
            "Queries answered as a policy rule decided, by rule name, action and scope.",
            ("rule", "action", "scope"),
        ),
        Family(
            "dnspol_policy_no_match_total",
            "counter",
            "Queries answered from the default scope because no rule matched (every "
            "query when no rules are configured), by zone.",
            ("zone",),
        ),
        Family(
            "dnspol_policy_weighted_picks_total",
            "counter",
            "Weighted answers, by the rule that drew and the scope it picked.",
            ("rule", "scope"),
        ),
        Family(
            "dnspol_transfers_total",
            "counter",
            "Zone transfer requests, by zone, scope sent, type (AXFR, IXFR) and result: ok, "
            "incremental (IXFR from the journal), up_to_date (IXFR at our serial), use_tcp "
            "(IXFR over UDP: our SOA alone), refused, dropped, notauth (no such zone), "
            "badkey, badsig, badtime (TSIG), aborted (the connection ended first), failed.",
            ("zone", "scope", "type", "result"),
        ),
        Family(
            "dnspol_notify_total",
            "counter",
            "NOTIFY messages to secondaries, by zone and result: sent (each try), acked, "
            "failed (given up, or answered with an error). Sent and counted by the one "
            "server process, or with several workers by the generation that loaded the zones.",
            ("zone", "result"),
        ),
        Family(
            "dnspol_tcp_open_connections",
            "gauge",
            "TCP connections open now.",
        ),
        Family(
            "dnspol_answer_table_entries",
            "gauge",
            "Answers compiled at load, over every zone and scope: exact (owner and type) "
            "and names (the names queries are matched against).",
            ("table",),
        ),
        Family(
            "dnspol_reference_answers_total",
            "counter",
            "Queries answered on the reference path (decoded and built) because the "
            "compiled tables leave them out: other shapes of query, ANY, DNAME, "
            "other classes, policy actions other than answer.",
        ),
        Family(
            "dnspol_reloads_total",
            "counter",
            "Configuration reloads, by result (ok, failed). With several worker "
            "processes, the supervisor's count: it reloads, and forks new workers.",
            ("result",),
            merge=MAX,
        ),
        Family(
            "dnspol_reload_last_success_timestamp_seconds",
            "gauge",
            "When the configuration in use was loaded (Unix time).",
            merge=MAX,
        ),
        Family(
            "dnspol_config",
            "info",
            "The configuration in use: a hash over its files' names and contents.",
            ("hash", "value"),
            merge=MAX,
        ),
        Family(
            "dnspol_zone_serial",
            "gauge",
            "SOA serial of each zone served (default scope).",
            ("zone",),
            merge=MAX,
        ),
        Family(
            "dnspol_query_log_written_total",
            "counter",
            "Query log records written.",
        ),
        Family(
            "dnspol_query_log_dropped_total",
            "counter",
            "Query log records dropped because the log's output could not keep up.",
        ),
        # the whole server's processes (``dnspol.procstats``), read by the process that
        # serves /metrics at each scrape; workers never write these to their files
        Family(
            "dnspol_processes",
            "gauge",
            "Processes of the server, by role: main (the supervisor, or the one process "
            "without workers), generation (one per configuration loaded), worker.",
            ("role",),
        ),
        Family(
            "dnspol_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of every process of the server, those that exited included.",
        ),
        Family(
            "dnspol_process_resident_memory_bytes",
            "gauge",
            "Resident memory summed over every process of the server (pages the workers "
            "share are counted once per process: see the proportional figure).",
        ),
        Family(
            "dnspol_process_proportional_memory_bytes",
            "gauge",
            "Proportional set size (Pss) summed over every process of the server: each "
            "shared page divided between the processes that map it.",
        ),
        Family(
            "dnspol_process_open_fds",
            "gauge",
            "Open file descriptors summed over every process of the server.",
        ),
        Family(
            "dnspol_process_start_time_seconds",
            "gauge",
            "When the server's main process started (Unix time).",
        ),
        Family(
            "dnspol_dnstap_written_total",
            "counter",
            "dnstap messages written (AUTH_QUERY and AUTH_RESPONSE).",
        ),
        Family(
            "dnspol_dnstap_dropped_total",
            "counter",
            "dnstap messages dropped: the collector was absent or could not keep up.",
        ),
        Family(
            "dnspol_health_check_up",
            "gauge",
            "1 while a health check (checks:) passes, after hysteresis and any forced state.",
            ("check", "target"),
            merge=MAX,
        ),
        Family(
            "dnspol_health_check_transitions_total",
            "counter",
            "Health checks going up or down (after rise/fall), by check and new state (to).",
            ("check", "to"),
        ),
        Family(
            "dnspol_health_check_duration_seconds",
            "histogram",
            "Time each health-check probe took (a timeout counts its full time).",
            ("check",),
            buckets=CHECK_DURATION_BUCKETS,
        ),
    )
}
ALWAYS = {  # series present from the first scrape, so dashboards and alerts see zeros
    "dnspol_dns_dropped_total": [(r,) for r in DROP_REASONS],
    "dnspol_rate_limited_responses_total": [("slip",), ("drop",)],  # zero while limiting is off
    "dnspol_reloads_total": [("ok",), ("failed",)],
    "dnspol_tcp_open_connections": [()],
    "dnspol_answer_table_entries": [("exact",), ("names",)],
    "dnspol_reference_answers_total": [()],
}


class Totals:
    """Numbers per family and label values: counters, gauges, and histograms.

    A histogram's value is a list: one count per bucket (the last for +Inf, not
    cumulative), then the sum of the observed values.
    """

    def __init__(self) -> None:
        self.values: dict[str, dict[tuple[str, ...], float | list[float]]] = {}

    def add(self, name: str, labels: tuple[str, ...], amount: float = 1) -> None:
        series = self.values.setdefault(name, {})
        series[labels] = series.get(labels, 0) + amount  # type: ignore[operator]

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self.values.setdefault(name, {})[labels] = value

    def observe(self, name: str, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        """``count`` observations of ``value`` into a histogram."""
        counts = self._histogram(name, labels)
        counts[bisect.bisect_left(FAMILIES[name].buckets, value)] += count
        counts[-1] += value * count

    def add_bucket(self, name: str, labels: tuple[str, ...], index: int, count: float) -> None:
        """Observations already sorted into bucket ``index`` (-1: add to the sum)."""
        self._histogram(name, labels)[index] += count

    def _histogram(self, name: str, labels: tuple[str, ...]) -> list[float]:
        series = self.values.setdefault(name, {})
        counts = series.get(labels)
        if counts is None:
            counts = series[labels] = [0] * (len(FAMILIES[name].buckets) + 2)
        return counts  # type: ignore[return-value]

    def get(self, name: str, labels: tuple[str, ...] = ()) -> float | list[float] | None:
        return self.values.get(name, {}).get(labels)

    def merge(self, other: Totals, only_cumulative: bool = False) -> None:
        """Combine another process's totals into these, as each family says."""
        for name, series in other.values.items():
            family = FAMILIES.get(name)
            if family is None or (only_cumulative and not family.cumulative):
                continue
            mine = self.values.setdefault(name, {})
            for labels, value in series.items():
                have = mine.get(labels)
                if have is None:
                    mine[labels] = list(value) if isinstance(value, list) else value
                elif isinstance(have, list):
                    for i, v in enumerate(value):  # type: ignore[arg-type]
                        have[i] += v
                elif family.merge == MAX:
                    mine[labels] = max(have, value)  # type: ignore[type-var]
                else:
                    mine[labels] = have + value  # type: ignore[operator]

    def copy(self) -> Totals:
        out = Totals()
        out.merge(self)
        return out

    def to_json(self) -> dict:
        return {
            name: [[*labels, value] for labels, value in series.items()]
            for name, series in self.values.items()
        }

    @classmethod
    def from_json(cls, data: dict) -> Totals:
        out = cls()
        for name, rows in data.items():
            family = FAMILIES.get(name)
            if family is None:
                continue
            width = len(family.labels)
            out.values[name] = {tuple(row[:width]): row[width] for row in rows}
        return out


class Folder:
    """Adds what one process's ``Stats`` counted since the last fold to cumulative totals."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.totals = Totals()
        self._seen: dict = {}  # Stats.answers key -> count already folded
        self._retiring: tuple[dict, dict] | None = None  # a swapped-out hot dict, folded once more
        self._seen_durations: dict = {}
        self._seen_dropped: dict = {}
        self._seen_rate_limited: dict = {}
        self._seen_rule_drops: dict = {}
        self._seen_paths: dict = {}
        self._seen_transfers: dict = {}
        self._seen_notifies: dict = {}
        self._lock = threading.Lock()

    def fold(self) -> None:
        with self._lock:
            stats = self.stats
            if self._retiring is not None:  # increments that raced the swap landed there
                old, seen = self._retiring
                self._retiring = None
                self._fold_answers(dict(old), seen)
            hot = stats.answers
            current = dict(hot)
            self._fold_answers(current, self._seen)
            if len(current) > SWAP_AT:
                stats.answers = {}
                self._retiring = (hot, self._seen)
                self._seen = {}
            self._fold_simple(stats.dropped, self._seen_dropped, "dnspol_dns_dropped_total")
            self._fold_simple(
                stats.rate_limited, self._seen_rate_limited, "dnspol_rate_limited_responses_total"
            )
            self._fold_durations()
            for _, count in self._deltas(stats.paths, self._seen_paths):
                self.totals.add("dnspol_reference_answers_total", (), count)
            for labels, count in self._deltas(stats.transfers, self._seen_transfers):
                self.totals.add("dnspol_transfers_total", labels, count)
            for labels, count in self._deltas(stats.notifies, self._seen_notifies):
                self.totals.add("dnspol_notify_total", labels, count)
            rule_drops = getattr(stats, "rule_drops", None)  # rule name -> packets dropped
            if rule_drops is not None:
                for rule, count in self._deltas(rule_drops, self._seen_rule_drops):
                    self.totals.add("dnspol_policy_rule_matches_total", (rule, "drop", ""), count)

    @staticmethod
    def _deltas(hot: dict, seen: dict) -> Iterator[tuple]:
        for key, count in dict(hot).items():
            delta = count - seen.get(key, 0)
            if delta > 0:
                seen[key] = count
                yield key, delta

    def _fold_simple(self, hot: dict, seen: dict, name: str) -> None:
        for key, delta in self._deltas(hot, seen):
            self.totals.add(name, (str(key),), delta)

    def _fold_answers(self, current: dict, seen: dict) -> None:
        labels = self.stats.labels
        add = self.totals.add
        by_label: dict[tuple, int] = {}
        sizes: dict[tuple, int] = {}
        for key, count in current.items():
            delta = count - seen.get(key, 0)
            if delta <= 0:
                continue
            seen[key] = count
            label_key, tag, size_in, size_out = key
            lt = (label_key, tag)
            by_label[lt] = by_label.get(lt, 0) + delta
            for size_key in ((lt, True, size_in), (lt, False, size_out)):
                sizes[size_key] = sizes.get(size_key, 0) + delta
        for (label_key, (proto, family, server)), n in by_label.items():
            label = labels[label_key]
            zone, view = label.zone or UNMATCHED_ZONE, label.scope
            add("dnspol_dns_requests_total", (server, zone, view, proto, family, label.qtype), n)
            add("dnspol_dns_responses_total", (server, zone, view, label.rcode), n)
            if label.rule:
                add("dnspol_policy_rule_matches_total", (label.rule, label.action, label.scope), n)
            elif label.rcode not in NEVER_REACHED_POLICY:
                add("dnspol_policy_no_match_total", (zone,), n)
            if label.weighted:
                add("dnspol_policy_weighted_picks_total", (label.rule, label.scope), n)
            if label.ecs:
                add("dnspol_dns_ecs_requests_total", (zone,), n)
            if label.truncated:
                add("dnspol_dns_truncated_responses_total", (zone,), n)
        for ((label_key, (proto, _, server)), is_request, size), n in sizes.items():
            name = (
                "dnspol_dns_request_size_bytes" if is_request else "dnspol_dns_response_size_bytes"
            )
            label = labels[label_key]
            key = (server, label.zone or UNMATCHED_ZONE, label.scope, proto)
            self.totals.observe(name, key, size, n)

    def _fold_durations(self) -> None:
        name = "dnspol_dns_request_duration_seconds"
        labels = self.stats.labels
        durations = self._deltas(self.stats.durations, self._seen_durations)
        for ((proto, _, server), label_key, bucket), delta in durations:
            label = labels[label_key] if label_key is not None else DROPPED_LABEL
            key = (server, label.zone or UNMATCHED_ZONE, label.scope, proto, label.qtype)
            index = -1 if bucket == DURATION_SUM else bucket
            self.totals.add_bucket(name, key, index, delta)


def duration_bucket(seconds: float) -> int:
    """The index into ``DURATION_BUCKETS`` (len for +Inf) a duration is counted under."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)


class Exporter:
    """One process's metrics: folded counters plus the server's gauges, read now.

    In a worker (``path`` given) a thread also writes the totals to ``path``
    every second, atomically, for the supervisor to add up.
    """

    def __init__(self, server, query_log=None, path: str | None = None) -> None:
        self.server = server
        self.query_log = query_log
        self.path = path
        self.folder = Folder(server.handler.stats)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # scrapes and the writer thread may read at once

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Fold and write one last time (a worker's final second is not lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.path:
            self.write()

    def _run(self) -> None:
        while not self._stop.wait(FOLD_INTERVAL):
            try:
                if self.path:
                    self.write()
                else:
                    self.folder.fold()
            except Exception:  # noqa: BLE001 - metrics must never stop the server
                log.exception("folding metrics failed")

    def totals(self) -> Totals:
        """Cumulative counters as of now, with the gauges read now."""
        with self._lock:
            self.folder.fold()
            out = self.folder.totals.copy()
            self._read_server(out)
        return out

    def ready(self) -> bool:
        return bool(getattr(self.server, "ready", False))

    def write(self) -> None:
        assert self.path is not None
        write_totals(self.path, self.totals(), self.ready())

    def _read_server(self, out: Totals) -> None:
        server = self.server
        out.set("dnspol_tcp_open_connections", (), len(server.conns.open))
        reloads = server.reloads
        out.set("dnspol_reloads_total", ("ok",), reloads.ok)
        out.set("dnspol_reloads_total", ("failed",), reloads.failed)
        if reloads.last_ok:
            out.set("dnspol_reload_last_success_timestamp_seconds", (), reloads.last_ok)
        snap = server.state.snapshot
        if snap is not None:
            if snap.digest:
                out.set("dnspol_config", ("sha256", snap.digest), 1)
            for zone in snap.zones:
                out.set("dnspol_zone_serial", (zone.name,), zone.serial)
            exact, names = snap.tables.sizes()
            out.set("dnspol_answer_table_entries", ("exact",), exact)
            out.set("dnspol_answer_table_entries", ("names",), names)
        if self.query_log is not None:
            out.set("dnspol_query_log_written_total", (), self.query_log.written)
            out.set("dnspol_query_log_dropped_total", (), self.query_log.dropped)
        tap = getattr(server, "dnstap", None)
        if tap is not None:
            out.set("dnspol_dnstap_written_total", (), tap.written)
            out.set("dnspol_dnstap_dropped_total", (), tap.dropped)
        checker = getattr(server, "checker", None)  # health checks run in this process
        if checker is not None:
            checker.totals_into(out)


class WorkerFiles:
    """The supervisor's view: every worker's totals file, added up.

    A worker that is replaced (it died, or its generation was) is retired: its file
    is renamed, and the next ``totals`` keeps its cumulative counters and drops its
    gauges, so the sums never go backwards while workers come and go. Renaming
    works from any process: workers are started and retired by their generation's
    process, and their totals read by the supervisor.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.retired = Totals()
        self._lock = threading.Lock()

    def path(self, key: int | str) -> Path:
        return self.directory / f"worker-{key}.json"

    def retire(self, key: int | str) -> None:
        self._retire_file(self.path(key))

    def retire_generation(self, number: int) -> None:
        """Every file of a generation's workers (keys ``<number>.<slot>.<n>``)."""
        for path in self.directory.glob(f"worker-{number}.*.json"):
            self._retire_file(path)

    def _retire_file(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name("retired-" + path.name.removeprefix("worker-")))

    def totals(self) -> Totals:
        with self._lock:
            for path in sorted(self.directory.glob("retired-*.json")):
                data = _read_json(path)
                if data is not None:
                    self.retired.merge(
                        Totals.from_json(data.get("totals", {})), only_cumulative=True
                    )
                path.unlink(missing_ok=True)
            out = self.retired.copy()
            for path in sorted(self.directory.glob("worker-*.json")):
                data = _read_json(path)
                if data is not None:
                    out.merge(Totals.from_json(data.get("totals", {})))
        return out


def write_totals(path: str | os.PathLike[str], totals: Totals, ready: bool = True) -> None:
    """A process's totals file, which ``WorkerFiles`` adds up: written whole, then renamed."""
    data = {"pid": os.getpid(), "time": time.time(), "ready": ready, "totals": totals.to_json()}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, separators=(",", ":"))
    os.replace(tmp, path)


def notify_totals(counts: dict) -> Totals:
    """``dnspol.notify.Notifier.counts`` as totals (a generation's NOTIFYs)."""
    out = Totals()
    for labels, count in counts.items():
        out.add("dnspol_notify_total", labels, count)
    return out


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def registry(source: Callable[[], Totals]) -> CollectorRegistry:
    """A registry holding only dnspol's series, read from ``source`` at each scrape."""
    out = CollectorRegistry(auto_describe=False)
    out.register(TotalsCollector(source))
    return out


class TotalsCollector(Collector):
    """Builds every family in ``FAMILIES`` from totals read at scrape time, with the
    figures of this process and every process below it (the whole server)."""

    def __init__(self, source: Callable[[], Totals]) -> None:
        self.source = source
        self._cpu_seconds = 0.0  # the highest sum reported: a counter never goes back

    def describe(self) -> Iterable:
        return []  # unchecked collector: families are only known at scrape time

    def collect(self) -> Iterator:
        totals = self.source()
        self._read_processes(totals)
        build = InfoMetricFamily(
            "dnspol_build", "Versions of dnspol, Python and the DNS libraries.", labels=BUILD
        )
        build.add_metric(build_versions(), {})
        yield build
        for name, family in FAMILIES.items():
            series = dict.fromkeys(ALWAYS.get(name, ()), 0)
            series.update(totals.values.get(name, {}))
            if not series and family.kind == "info":
                continue
            yield _family(family, series)

    def _read_processes(self, out: Totals) -> None:
        figures = procstats.server()
        if figures is None:  # no /proc: no process series
            return
        for role, count in figures.processes.items():
            out.set("dnspol_processes", (role,), count)
        # a child read just before its parent reaped it is counted twice for one scrape
        self._cpu_seconds = max(self._cpu_seconds, figures.cpu_seconds)
        out.set("dnspol_process_cpu_seconds_total", (), self._cpu_seconds)
        out.set("dnspol_process_resident_memory_bytes", (), figures.resident_bytes)
        if figures.proportional_bytes is not None:
            out.set("dnspol_process_proportional_memory_bytes", (), figures.proportional_bytes)
        out.set("dnspol_process_open_fds", (), figures.open_fds)
        out.set("dnspol_process_start_time_seconds", (), figures.start_time)


BUILD = ("version", "python", "dnslib", "dnspython")


@functools.cache
def build_versions() -> tuple[str, ...]:
    """``dnspol_build_info``'s label values, in ``BUILD``'s order (read once: reading
    installed packages' metadata takes milliseconds)."""
    return (__version__, platform.python_version(), _installed("dnslib"), _installed("dnspython"))


def _installed(package: str) -> str:
    import importlib.metadata  # here: the server starts without it

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _family(family: Family, series: dict):
    labels = list(family.labels)
    if family.kind == "counter":
        out = CounterMetricFamily(family.name, family.help, labels=labels)
    elif family.kind == "gauge":
        out = GaugeMetricFamily(family.name, family.help, labels=labels)
    elif family.kind == "info":
        out = InfoMetricFamily(family.name, family.help, labels=labels)
        for values in sorted(series):
            out.add_metric(list(values), {})
        return out
    else:
        out = HistogramMetricFamily(family.name, family.help, labels=labels)
        for values, counts in sorted(series.items()):
            out.add_metric(list(values), _cumulative(family.buckets, counts), counts[-1])
        return out
    for values, value in sorted(series.items()):
        out.add_metric(list(values), value)
    return out


def _cumulative(bounds: tuple[float, ...], counts: list[float]) -> list[tuple[str, float]]:
    out, running = [], 0.0
    for bound, count in zip((*bounds, float("inf")), counts[:-1], strict=True):
        running += count
        out.append((floatToGoString(bound), running))
    return out
