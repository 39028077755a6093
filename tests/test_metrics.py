"""Metrics: folding the hot-path dicts, totals across workers, the exposition, the ops port."""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dnspol import metrics
from dnspol.config import load_config
from dnspol.handler import Handler, Listener
from dnspol.health import OpsServer
from dnspol.metrics import Exporter, Folder, Totals, WorkerFiles
from dnspol.observe import Observed
from dnspol.querylog import QueryLog
from dnspol.server import ReloadStats
from dnspol.state import ServerState, snapshot_from_config
from dnspol.stats import AnswerLabel, Stats

UDP = Listener("127.0.0.1", 53, "udp")
TCP = Listener("::1", 53, "tcp")
S4, S6 = "dns://127.0.0.1:53", "dns://[::1]:53"  # the server label, as CoreDNS spells it
WWW = (S4, "example.com.", "default", "udp", "1", "A")  # a dnspol_dns_requests_total key

ZONE = """\
$ORIGIN example.com.
$TTL 300
@    SOA ns1 hostmaster 2026010101 7200 900 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.10
"""
INTERNAL = """\
$ORIGIN example.com.
www  300 A 10.0.0.10
"""
CONFIG = """\
subnets:
  office: [10.0.0.0/8]
  blocked: [198.51.100.0/24]
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {overlay: example.com.internal.zone}
rules:
  - name: drop-blocked
    match: {client: blocked}
    action: drop
  - name: office
    zone: example.com
    match: {client: office}
    answer: internal
  - name: coin
    zone: example.com
    match: {qname: coin.example.com}
    answer: {weighted: {default: 1, internal: 1}}
"""


@pytest.fixture
def handler(tmp_path) -> Handler:
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "example.com.internal.zone").write_text(INTERNAL)
    (tmp_path / "dnspol.yaml").write_text(CONFIG)
    snap = snapshot_from_config(load_config(tmp_path / "dnspol.yaml"))
    return Handler(ServerState(snap), seed=1)


def query(name: str, qtype: str = "A", ecs: str | None = None) -> bytes:
    q = DNSRecord.question(name, qtype)
    if ecs is not None:
        address, length = ecs.split("/")
        data = bytes([0, 1, int(length), 0]) + bytes(map(int, address.split(".")))[:3]
        q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, data)]))
    return bytes(q.pack())


def series(totals: Totals, name: str) -> dict:
    return dict(totals.values.get(name, {}))


# -- folding -------------------------------------------------------------------


def test_fold_counts_requests_rules_and_sizes(handler) -> None:
    asks = [
        (query("www.example.com"), ("192.0.2.7", 1), UDP),  # no rule: default
        (query("www.example.com"), ("10.1.2.3", 1), UDP),  # office
        (query("www.example.com"), ("10.1.2.3", 1), UDP),  # office again: fast path
        (query("www.example.com", "AAAA"), ("10.1.2.3", 1), TCP),
        (query("www.example.com", ecs="192.0.2.0/24"), ("192.0.2.7", 1), UDP),
        (query("nothere.example.org"), ("192.0.2.7", 1), UDP),  # not served: REFUSED
        (query("www.example.com"), ("198.51.100.9", 1), UDP),  # dropped by policy
    ]
    for wire, peer, listener in asks:
        handler.handle(wire, peer, listener)
    folder = Folder(handler.stats)
    folder.fold()
    totals = folder.totals
    assert series(totals, "dnspol_dns_requests_total") == {
        (S4, "example.com.", "default", "udp", "1", "A"): 2,
        (S4, "example.com.", "internal", "udp", "1", "A"): 2,
        (S6, "example.com.", "internal", "tcp", "2", "AAAA"): 1,
        (S4, "dropped", "", "udp", "1", "A"): 1,  # CoreDNS's zone for none served
    }
    assert series(totals, "dnspol_dns_responses_total") == {
        (S4, "example.com.", "default", "NOERROR"): 2,
        (S4, "example.com.", "internal", "NOERROR"): 2,
        (S6, "example.com.", "internal", "NOERROR"): 1,
        (S4, "dropped", "", "REFUSED"): 1,
    }
    assert series(totals, "dnspol_policy_rule_matches_total") == {
        ("office", "answer", "internal"): 3,
        ("drop-blocked", "drop", ""): 1,  # drops count per rule too; no scope answered
    }
    assert series(totals, "dnspol_policy_no_match_total") == {
        ("example.com.",): 2,
        ("dropped",): 1,
    }
    assert series(totals, "dnspol_dns_ecs_requests_total") == {("example.com.",): 1}
    assert series(totals, "dnspol_dns_dropped_total") == {("policy",): 1}
    default = totals.get("dnspol_dns_request_size_bytes", (S4, "example.com.", "default", "udp"))
    internal = totals.get("dnspol_dns_request_size_bytes", (S4, "example.com.", "internal", "udp"))
    sizes = [a + b for a, b in zip(default, internal, strict=True)]
    assert sum(sizes[:-1]) == 4  # four UDP queries to example.com., none above 100 bytes
    assert sizes[metrics.SIZE_BUCKETS.index(100)] == 4
    assert sizes[-1] == 3 * len(query("www.example.com")) + len(
        query("www.example.com", ecs="192.0.2.0/24")
    )


def test_fold_adds_only_what_grew(handler) -> None:
    folder = Folder(handler.stats)
    wire = query("www.example.com")
    for _ in range(3):
        handler.handle(wire, ("192.0.2.7", 1), UDP)
    folder.fold()
    folder.fold()  # nothing new
    handler.handle(wire, ("192.0.2.7", 1), UDP)
    folder.fold()
    assert series(folder.totals, "dnspol_dns_requests_total") == {WWW: 4}


def test_weighted_picks_by_rule_and_scope(handler) -> None:
    for _ in range(200):
        handler.handle(query("coin.example.com"), ("192.0.2.7", 1), UDP)
    folder = Folder(handler.stats)
    folder.fold()
    picks = series(folder.totals, "dnspol_policy_weighted_picks_total")
    assert set(picks) == {("coin", "default"), ("coin", "internal")}
    assert sum(picks.values()) == 200
    assert 60 < picks[("coin", "internal")] < 140


def test_large_hot_dict_is_swapped_and_late_increments_still_count(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "SWAP_AT", 10)
    stats = Stats()
    label = stats.intern(AnswerLabel(zone="example.com.", qtype="A", scope="default"))
    for size in range(20):
        stats.count(label, UDP.tag, 30 + size, 60)
    folder = Folder(stats)
    old = stats.answers
    folder.fold()
    assert stats.answers == {} and stats.answers is not old
    old[(label, UDP.tag, 30, 60)] += 1  # a thread that still held the old dict
    stats.count(label, UDP.tag, 30, 60)
    folder.fold()
    assert folder.totals.get("dnspol_dns_requests_total", WWW) == 22


def test_drops_by_rule_are_counted_once_the_handler_reports_them() -> None:
    stats = Stats()
    stats.rule_drops = {"drop-blocked": 3}  # type: ignore[attr-defined]
    folder = Folder(stats)
    folder.fold()
    stats.rule_drops["drop-blocked"] += 1  # type: ignore[attr-defined]
    folder.fold()
    assert series(folder.totals, "dnspol_policy_rule_matches_total") == {
        ("drop-blocked", "drop", ""): 4
    }


def test_durations_are_sampled_into_the_histogram(handler) -> None:
    observed = Observed(handler, sample_every=4)
    for _ in range(40):
        observed.handle(query("www.example.com"), ("192.0.2.7", 1), UDP)
    folder = Folder(handler.stats)
    folder.fold()
    key = (S4, "example.com.", "default", "udp", "A")  # CoreDNS's labels, and proto
    counts = folder.totals.get("dnspol_dns_request_duration_seconds", key)
    assert sum(counts[:-1]) == 10
    assert 0 < counts[-1] < 10  # the sum, in seconds


def test_durations_time_messages_64_128_and_so_on_dropped_ones_too(handler) -> None:
    """docs/operations.md says: the 64th, 128th, ... message a process handles, at a
    fixed step, a message without an answer counted under zone "dropped"."""
    observed = Observed(handler)
    assert metrics.SAMPLE_EVERY == 64
    for n in range(1, 129):
        client = "198.51.100.9" if n == 64 else "192.0.2.7"  # the 64th: a drop rule
        observed.handle(query("www.example.com"), (client, 1), UDP)
    folder = Folder(handler.stats)
    folder.fold()
    counts = {
        key: sum(value[:-1])
        for key, value in series(folder.totals, "dnspol_dns_request_duration_seconds").items()
    }
    assert counts == {
        (S4, "dropped", "", "udp", "other"): 1,
        (S4, "example.com.", "default", "udp", "A"): 1,
    }


def test_observed_stands_in_for_the_handler(handler) -> None:
    observed = Observed(handler, sample_every=1)
    assert observed.state is handler.state and observed.stats is handler.stats
    report: list = []
    wire = query("www.example.com")
    assert observed.handle(wire, ("192.0.2.7", 1), UDP, report) == handler.handle(
        wire, ("192.0.2.7", 1), UDP
    )
    assert len(report) == 1 and handler.stats.labels[report[0]].zone == "example.com."


def test_label_values_never_hold_names_or_addresses(handler) -> None:
    rng = random.Random(7)
    names = [f"q{rng.getrandbits(40):x}.example.com" for _ in range(300)]
    clients = [f"192.0.2.{rng.randrange(1, 250)}" for _ in range(300)]
    for name, client in zip(names, clients, strict=True):
        handler.handle(query(name, rng.choice(["A", "MX", "TYPE65000", "NAPTR"])), (client, 1), UDP)
    folder = Folder(handler.stats)
    folder.fold()
    text = generate_latest(metrics.registry(lambda: folder.totals)).decode()
    for value in names + clients:
        assert value not in text
    types = {labels[5] for labels in series(folder.totals, "dnspol_dns_requests_total")}
    assert types == {"A", "MX", "NAPTR", "other"}


# -- totals across processes ---------------------------------------------------


def test_totals_survive_json_and_merge_by_family() -> None:
    a, b = Totals(), Totals()
    a.add("dnspol_dns_requests_total", WWW, 5)
    b.add("dnspol_dns_requests_total", WWW, 7)
    a.observe("dnspol_dns_request_size_bytes", WWW[:4], 40, 5)
    b.observe("dnspol_dns_request_size_bytes", WWW[:4], 700, 1)
    a.set("dnspol_tcp_open_connections", (), 3)
    b.set("dnspol_tcp_open_connections", (), 4)
    a.set("dnspol_reloads_total", ("ok",), 2)
    b.set("dnspol_reloads_total", ("ok",), 2)
    a.set("dnspol_zone_serial", ("example.com.",), 5)
    b.set("dnspol_zone_serial", ("example.com.",), 6)
    merged = Totals.from_json(json.loads(json.dumps(a.to_json())))
    merged.merge(Totals.from_json(json.loads(json.dumps(b.to_json()))))
    assert merged.get("dnspol_dns_requests_total", WWW) == 12
    sizes = merged.get("dnspol_dns_request_size_bytes", WWW[:4])
    assert sizes[1] == 5 and sizes[6] == 1 and sizes[-1] == 900
    assert merged.get("dnspol_tcp_open_connections") == 7  # summed
    assert merged.get("dnspol_reloads_total", ("ok",)) == 2  # max: every worker reloads
    assert merged.get("dnspol_zone_serial", ("example.com.",)) == 6


def _write_worker(files: WorkerFiles, index: int, requests: int, open_tcp: int) -> None:
    totals = Totals()
    totals.add("dnspol_dns_requests_total", WWW, requests)
    totals.set("dnspol_tcp_open_connections", (), open_tcp)
    files.path(index).write_text(json.dumps({"totals": totals.to_json()}))


def test_worker_files_add_up_and_keep_counters_of_replaced_workers(tmp_path) -> None:
    files = WorkerFiles(tmp_path)
    _write_worker(files, 0, 10, 1)
    _write_worker(files, 1, 20, 2)
    key = WWW
    assert files.totals().get("dnspol_dns_requests_total", key) == 30
    files.retire(1)  # worker 1 died; its replacement starts from zero
    _write_worker(files, 1, 3, 0)
    totals = files.totals()
    assert totals.get("dnspol_dns_requests_total", key) == 33
    assert totals.get("dnspol_tcp_open_connections") == 1  # gauges are not kept
    (tmp_path / "worker-2.json").write_text("{half a fi")  # mid-write garbage is skipped
    assert files.totals().get("dnspol_dns_requests_total", key) == 33


# -- the exporter: gauges read from the server ----------------------------------


def fake_server(handler: Handler) -> SimpleNamespace:
    return SimpleNamespace(
        handler=handler,
        state=handler.state,
        conns=SimpleNamespace(open={object(), object()}),
        reloads=ReloadStats(ok=3, failed=1, last_ok=1_700_000_000.0),
        ready=True,
    )


def test_exporter_reads_gauges_and_counts_reference_answers(handler) -> None:
    server = fake_server(handler)
    snap = handler.state.snapshot
    for i in range(5):
        handler.handle(query(f"n{i}.example.com"), ("192.0.2.7", 1), UDP)  # compiled
    handler.handle(query("example.com", "ANY"), ("192.0.2.7", 1), UDP)  # reference path
    exporter = Exporter(server)
    totals = exporter.totals()
    assert totals.get("dnspol_reference_answers_total") == 1
    exact, names = snap.tables.sizes()
    assert totals.get("dnspol_answer_table_entries", ("exact",)) == exact > 0
    assert totals.get("dnspol_answer_table_entries", ("names",)) == names > 0
    assert totals.get("dnspol_tcp_open_connections") == 2
    assert totals.get("dnspol_reloads_total", ("failed",)) == 1
    assert totals.get("dnspol_config", ("sha256", snap.digest)) == 1
    assert totals.get("dnspol_zone_serial", ("example.com.",)) == 2026010101


def test_worker_exporter_writes_its_file(handler, tmp_path) -> None:
    path = tmp_path / "worker-0.json"
    exporter = Exporter(fake_server(handler), path=str(path))
    handler.handle(query("www.example.com"), ("192.0.2.7", 1), UDP)
    exporter.write()
    data = json.loads(path.read_text())
    assert data["ready"] is True
    totals = WorkerFiles(tmp_path).totals()
    assert totals.get("dnspol_dns_requests_total", WWW) == 1


def test_exposition_parses_and_has_every_family(handler) -> None:
    handler.handle(query("www.example.com"), ("10.0.0.1", 1), UDP)
    exporter = Exporter(fake_server(handler))
    text = generate_latest(metrics.registry(exporter.totals)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, family in metrics.FAMILIES.items():
        base = {"counter": name.removesuffix("_total"), "info": name + "_info"}.get(
            family.kind, name
        )
        assert base in families, name
    reasons = {s.labels["reason"] for s in families["dnspol_dns_dropped"].samples}
    assert reasons == set(metrics.DROP_REASONS)
    assert "sampled" in families["dnspol_dns_request_duration_seconds"].documentation
    assert (
        'dnspol_policy_rule_matches_total{action="answer",rule="office",scope="internal"} 1.0'
        in (text)
    )


# -- the operations port -------------------------------------------------------


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_ops_port_health_ready_and_metrics(handler) -> None:
    ready = threading.Event()
    exporter = Exporter(fake_server(handler))
    ops = OpsServer(
        ("127.0.0.1", 0),
        metrics.registry(exporter.totals),
        lambda: (True, "") if ready.is_set() else (False, "not listening"),
    ).start()
    try:
        assert get(ops.url + "/health") == (200, "OK\n")
        assert get(ops.url + "/ready") == (503, "not ready: not listening\n")
        ready.set()
        assert get(ops.url + "/ready") == (200, "OK\n")
        handler.handle(query("www.example.com"), ("192.0.2.7", 1), UDP)
        status, body = get(ops.url + "/metrics")
        assert status == 200
        assert (
            'dnspol_dns_requests_total{family="1",proto="udp",server="dns://127.0.0.1:53",'
            'type="A",view="default",zone="example.com."} 1.0' in body
        )
        assert get(ops.url + "/nope")[0] == 404
    finally:
        ops.stop()


# -- scope labels of answers no scope gave ---------------------------------------

REFUSING = CONFIG.replace(
    "rules:\n",
    "rules:\n"
    "  - name: no-secret\n"
    "    match: {qname: secret.example.com}\n"
    "    action: refuse\n"
    "  - name: gone\n"
    "    match: {qname: gone.example.com}\n"
    "    action: nxdomain\n",
)


@pytest.mark.parametrize("fast_path", [True, False])
def test_answers_no_scope_gave_are_not_labelled_default(tmp_path, fast_path: bool) -> None:
    """REFUSED outside every zone, a refuse, nxdomain or drop rule, FORMERR: no scope's
    data answered, so neither the metrics nor the query log may say "default"."""
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "example.com.internal.zone").write_text(INTERNAL)
    (tmp_path / "dnspol.yaml").write_text(REFUSING)
    snap = snapshot_from_config(load_config(tmp_path / "dnspol.yaml"))
    handler = Handler(ServerState(snap), seed=1)
    handler.fast_path = fast_path
    asks = [
        query("nothere.example.org"),  # outside every zone: REFUSED
        query("secret.example.com"),  # refuse rule
        query("gone.example.com"),  # nxdomain rule
        query("www.example.com")[:14],  # cut short: FORMERR
    ]
    reports: list = []
    for wire in asks:
        handler.handle(wire, ("192.0.2.7", 1), UDP, reports)
    handler.handle(query("www.example.com"), ("198.51.100.9", 1), UDP)  # drop rule
    handler.handle(query("www.example.com"), ("192.0.2.7", 1), UDP)  # answered: default
    answered = [handler.stats.labels[key] for key in reports]
    assert [label.scope for label in answered] == ["", "", "", ""]
    log = QueryLog("-", labels=handler.stats.labels)
    for wire, key in zip(asks, reports, strict=True):
        record = json.loads(log.format(0.0, ("192.0.2.7", 1), wire, key, "udp", 0.0))
        assert record["scope"] is None, record
    folder = Folder(handler.stats)
    folder.fold()
    assert series(folder.totals, "dnspol_policy_rule_matches_total") == {
        ("no-secret", "refuse", ""): 1,
        ("gone", "nxdomain", ""): 1,
        ("drop-blocked", "drop", ""): 1,
    }
