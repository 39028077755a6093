"""A real Prometheus (Debian's ``prometheus``) scrapes dnspol and sees its counters rise."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from itkit import EXAMPLE, need

SCRAPE_CONFIG = """\
global:
  scrape_interval: 500ms
  scrape_timeout: 500ms
scrape_configs:
  - job_name: dnspol
    static_configs:
      - targets: ["{target}"]
"""


def api(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(what: str, check, timeout: float = 30.0, proc=None):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (OSError, urllib.error.URLError, ValueError):
            result = None
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"prometheus exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def query_value(base: str, promql: str) -> float | None:
    result = api(base, "/api/v1/query", query=promql)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_dnspol(dnspol, tmp_path) -> None:
    exe = need("prometheus", "prometheus")
    srv = dnspol(zone=EXAMPLE, extra_args=["--metrics-listen", "127.0.0.1:0"])
    found = re.search(r"metrics and health on http://(\S+) ", srv.wait_for_log("metrics and"))
    assert found, srv.log
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(target=found.group(1)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        exe,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        "--log.level=warn",
    ]
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait("prometheus to start", lambda: urllib.request.urlopen(base + "/-/ready"), proc=proc)

        def target_up() -> bool:
            targets = api(base, "/api/v1/targets")["data"]["activeTargets"]
            return any(t["labels"]["job"] == "dnspol" and t["health"] == "up" for t in targets)

        wait("the dnspol target to be up", target_up, proc=proc)
        assert query_value(base, 'up{job="dnspol"}') == 1
        promql = 'sum(dnspol_dns_requests_total{zone="example."})'
        before = query_value(base, promql) or 0
        for _ in range(5):
            assert srv.dig("www.example.").addresses == ["192.0.2.1"]
        wait(
            "the request counter to rise in prometheus",
            lambda: (query_value(base, promql) or 0) >= before + 5,
            proc=proc,
        )
        assert query_value(base, 'dnspol_zone_serial{zone="example."}') == 2024010101
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
