"""deploy/grafana-dashboard.json asks only for series a running dnspol exports.

Every PromQL expression of the dashboard (panel targets and template variables) is
read for the metric names it selects; each must be a sample name in a real
server's /metrics after it has answered a few kinds of query. A renamed or dropped
metric then fails here, not on an operator's empty panel.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from itkit import EXAMPLE, need
from prometheus_client.parser import text_string_to_metric_families
from test_ops_prometheus import SCRAPE_CONFIG, api, free_port, query_value, wait

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json"

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
RANGE = re.compile(r"\[[^\]]*\]")
MATCHERS = re.compile(r"\{[^}]*\}")
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
# a name not inside a number (1e3, 5m) nor right after a dot
IDENTIFIER = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")
KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    ]
)
LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*),\s*\w+\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions
    or aggregations (followed by "("), keywords, label names, or inside strings."""
    found = LABEL_VALUES.match(expr)  # Grafana's label_values(selector, label)
    if found:
        expr = found.group(1)
    for pattern in (STRING, GRAFANA_VARIABLE, RANGE, MATCHERS, LABEL_LISTS):
        expr = pattern.sub(" ", expr)
    names = set()
    for match in IDENTIFIER.finditer(expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def expressions(dashboard: dict) -> list[str]:
    """Every PromQL text: panel targets (rows' nested panels too) and query variables."""
    out = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])
        out += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def unknown_names(dashboard: dict, exported: set[str]) -> dict[str, list[str]]:
    """Metric name -> the expressions that ask for it, for names not in ``exported``."""
    out: dict[str, list[str]] = {}
    for expr in expressions(dashboard):
        for name in metric_names(expr) - exported:
            out.setdefault(name, []).append(expr)
    return out


# -- the checker itself ---------------------------------------------------------


@pytest.mark.parametrize(
    "expr, names",
    [
        ("dnspol_tcp_open_connections", {"dnspol_tcp_open_connections"}),
        (
            'sum by (rcode) (rate(dnspol_dns_responses_total{job=~"$job"}[$__rate_interval]))',
            {"dnspol_dns_responses_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) "
            "(rate(dnspol_dns_request_duration_seconds_bucket[5m])))",
            {"dnspol_dns_request_duration_seconds_bucket"},
        ),
        (
            "sum(rate(a_sum[1m])) / sum(rate(a_count[1m])) > 1e3 and on (zone) b offset 5m",
            {"a_sum", "a_count", "b"},
        ),
        ('time() - max by (instance) (x{name="not_a_metric"})', {"x"}),
        ('label_values(dnspol_build_info{job=~"$job"}, instance)', {"dnspol_build_info"}),
        ("topk(10, sum without (view) (y))", {"y"}),
    ],
)
def test_metric_names_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_dashboard_asking_for_an_unknown_name_is_reported() -> None:
    dashboard = {
        "panels": [
            {"type": "row", "panels": [{"targets": [{"expr": "rate(dnspol_nope_total[5m])"}]}]},
            {"targets": [{"expr": "sum(rate(dnspol_dns_requests_total[5m]))"}]},
        ],
        "templating": {"list": [{"type": "query", "query": "label_values(gone_info, job)"}]},
    }
    exported = {"dnspol_dns_requests_total"}
    assert unknown_names(dashboard, exported) == {
        "dnspol_nope_total": ["rate(dnspol_nope_total[5m])"],
        "gone_info": ["label_values(gone_info, job)"],
    }


def test_the_dashboard_is_grafana_json_with_every_panel_querying() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "dnspol" and dashboard["panels"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel
    assert len(expressions(dashboard)) > 30


# -- against a running server ---------------------------------------------------

POLICIES = """\
rules:
  - name: no-secret
    match: {qname: secret.example}
    action: refuse
  - name: coin
    zone: example
    match: {qname: coin.example}
    answer: {weighted: {default: 1, lab: 1}}
  - name: lab-clients
    zone: example
    match: {client: [127.0.0.2/32]}
    answer: lab
"""


def busy_server(dnspol, tmp_path: Path):
    """A server that has answered each kind of query the dashboard shows: no rule, a
    scope, a weighted rule, a refuse rule, ECS, truncated, TCP, a dropped packet, and
    enough for the duration histogram (one in 64 timed); with a query log."""
    srv = dnspol(
        zone=EXAMPLE,
        scopes={"example.": {"lab": "www 60 IN A 10.0.0.10\n"}},
        policies=POLICIES,
        extra_args=["--metrics-listen", "127.0.0.1:0", "--query-log", str(tmp_path / "q.log")],
    )
    srv.dig("www.example.")  # no rule matches
    srv.dig("www.example.", source="127.0.0.2")  # a rule answers from a scope
    for _ in range(4):
        srv.dig("coin.example.")  # weighted
    assert srv.dig("secret.example.").rcode == "REFUSED"
    srv.dig("www.example.", "A", "+subnet=198.51.100.0/24")  # ECS
    srv.dig("big.example.", "TXT", "+noedns", "+ignore")  # truncated
    srv.dig("mail.example.", tcp=True)
    assert srv.exchange(b"\x12\x34\x81\x00" + b"\x00" * 8, timeout=0.5) is None  # dropped
    _udp_queries(srv.host, srv.port, 130)
    found = re.search(r"metrics and health on http://(\S+) ", srv.wait_for_log("metrics and"))
    assert found, srv.log
    return srv, found.group(1)


def test_every_metric_the_dashboard_asks_for_is_exported(dnspol, tmp_path) -> None:
    _, address = busy_server(dnspol, tmp_path)
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    dashboard = json.loads(DASHBOARD.read_text())
    assert unknown_names(dashboard, exported) == {}


def _udp_queries(host: str, port: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for i in range(count):
            qname = b"\x03www\x07example\x00"
            sock.sendto(
                i.to_bytes(2, "big") + b"\x01\x00\x00\x01" + bytes(6) + qname + b"\0\1\0\1",
                (host, port),
            )
            sock.recv(4096)


OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"
COREDNS_PANELS = [
    'sum by (rcode) (rate(coredns_dns_responses_total{job="as-coredns", zone="example."}[10s]))',
    'sum(rate(coredns_dns_requests_total{job="as-coredns", family="1", proto="udp"}[10s]))',
    "histogram_quantile(0.99, sum by (le) "
    '(rate(coredns_dns_request_duration_seconds_bucket{job="as-coredns"}[10s])))',
    'sum(rate(coredns_dns_response_size_bytes_count{job="as-coredns"}[10s]))',
]


def documented_relabel() -> dict:
    """The ``metric_relabel_configs`` docs/operations.md gives for CoreDNS's names."""
    found = re.search(r"```yaml\n(metric_relabel_configs:.*?)```", OPERATIONS.read_text(), re.S)
    assert found, "docs/operations.md has no metric_relabel_configs example"
    return yaml.safe_load(found.group(1))


GRAFANA_VALUES = {"$job": "dnspol", "$instance": ".*", "$__rate_interval": "10s"}


def as_prometheus_query(expr: str) -> str:
    """The expression as Grafana sends it, its variables replaced by values."""
    for variable, value in GRAFANA_VALUES.items():
        expr = expr.replace(variable, value)
    return expr


def test_a_real_prometheus_answers_every_panel_of_the_dashboard(dnspol, tmp_path) -> None:
    """Each target's PromQL parses and returns series from a Prometheus scraping dnspol."""
    exe = need("prometheus", "prometheus")
    _, address = busy_server(dnspol, tmp_path)
    config = tmp_path / "prometheus.yml"
    scrape = yaml.safe_load(SCRAPE_CONFIG.format(target=address))
    as_coredns = {**scrape["scrape_configs"][0], "job_name": "as-coredns", **documented_relabel()}
    scrape["scrape_configs"].append(as_coredns)
    config.write_text(yaml.safe_dump(scrape))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        exe,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        "--log.level=warn",
    ]
    targets = [
        t["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for t in panel.get("targets", [])
    ]
    with open(tmp_path / "prometheus.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait("prometheus to start", lambda: urllib.request.urlopen(base + "/-/ready"), proc=proc)
        scrapes = 'count_over_time(dnspol_dns_requests_total{job="dnspol"}[10s])'
        wait(
            "three scrapes after the queries",
            lambda: (query_value(base, scrapes) or 0) >= 3,
            proc=proc,
        )
        empty = []
        for expr in targets:
            reply = api(base, "/api/v1/query", query=as_prometheus_query(expr))
            assert reply["status"] == "success", (expr, reply)
            if not reply["data"]["result"]:
                empty.append(expr)
        assert empty == []
        for expr in COREDNS_PANELS:  # CoreDNS's queries, on the documented renaming
            assert query_value(base, expr) is not None, expr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
