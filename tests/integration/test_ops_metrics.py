"""The operations port and the query log on a real server: /metrics, /health, /ready.

One process serves its own counters; with several workers the supervisor adds up
the workers' files, keeps a replaced worker's counters (after a crash or a
reload), counts the reloads itself, and holds /ready while a worker is down.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from itkit import DATA, EXAMPLE, process_tree, serve_deployed, wait_gone, workers
from prometheus_client.parser import text_string_to_metric_families

import dnspol.testing
from dnspol import __version__
from dnspol.state import Snapshot

METRICS_LINE = re.compile(r"metrics and health on (http://\S+) ")


def ops_url(log_text: str) -> str:
    found = METRICS_LINE.search(log_text)
    assert found, f"no metrics address in the log:\n{log_text}"
    return found.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    status, text = get(url + "/metrics")
    assert status == 200, text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, have), value in samples.items()
        if sample == name and set(labels.items()) <= set(have)
    )


def test_one_process_counts_what_it_answered(dnspol) -> None:
    srv = dnspol(zone=EXAMPLE, extra_args=["--metrics-listen", "127.0.0.1:0"])
    url = ops_url(srv.wait_for_log("metrics and health on"))
    assert get(url + "/health") == (200, "OK\n")
    assert get(url + "/ready") == (200, "OK\n")
    for _ in range(5):
        assert srv.dig("www.example.").addresses == ["192.0.2.1"]
    srv.dig("mail.example.", "AAAA", tcp=True)
    srv.dig("www.example.", "A", "+subnet=198.51.100.0/24")
    assert srv.exchange(b"\x12\x34\x81\x00" + b"\x00" * 8, timeout=0.5) is None  # QR=1: dropped
    with socket.create_connection((srv.host, srv.port)):
        time.sleep(0.1)
        samples = scrape(url)
        assert total(samples, "dnspol_tcp_open_connections") == 1
    requests = "dnspol_dns_requests_total"
    assert total(samples, requests, zone="example.", proto="udp", type="A") == 6
    assert total(samples, requests, zone="example.", proto="tcp", type="AAAA") == 1
    assert total(samples, "dnspol_dns_responses_total", rcode="NOERROR") == 7
    assert total(samples, "dnspol_dns_ecs_requests_total", zone="example.") == 1
    assert total(samples, "dnspol_dns_dropped_total", reason="malformed") == 1
    assert total(samples, "dnspol_dns_request_size_bytes_count", proto="udp") == 6
    assert total(samples, "dnspol_zone_serial", zone="example.") == 2024010101
    assert any(name == "dnspol_config_info" for name, _ in samples)


def test_labels_are_spelled_as_coredns_spells_them(dnspol) -> None:
    """server, zone (dropped: none served), view (the scope; "" when none answered),
    proto, family (1: IPv4, 2: IPv6), type: the labels of coredns_dns_requests_total."""
    srv = dnspol(zone=EXAMPLE, extra_args=["--metrics-listen", "127.0.0.1:0"])
    url = ops_url(srv.wait_for_log("metrics and health on"))
    srv.dig("www.example.")
    srv.dig("www.example.", "TXT", tcp=True)
    assert srv.dig("elsewhere.invalid.").rcode == "REFUSED"
    samples = scrape(url)
    server = f"dns://{srv.host}:{srv.port}"
    requests = {
        dict(labels)["zone"]: dict(labels)
        for (name, labels), value in samples.items()
        if name == "dnspol_dns_requests_total" and dict(labels)["proto"] == "udp"
    }
    common = {"server": server, "proto": "udp", "family": "1", "type": "A"}
    assert requests == {
        "example.": {**common, "zone": "example.", "view": "default"},
        "dropped": {**common, "zone": "dropped", "view": ""},
    }
    by_rcode = {
        dict(labels)["rcode"]: dict(labels)
        for (name, labels), value in samples.items()
        if name == "dnspol_dns_responses_total"
    }
    assert by_rcode["REFUSED"] == {
        "server": server,
        "zone": "dropped",
        "view": "",
        "rcode": "REFUSED",
    }
    for name in ("dnspol_dns_request_size_bytes_count", "dnspol_dns_response_size_bytes_count"):
        assert total(samples, name, server=server, zone="example.", view="default", proto="tcp")


def test_query_log_records_the_real_client(dnspol, tmp_path) -> None:
    path = tmp_path / "queries.jsonl"
    srv = dnspol(zone=EXAMPLE, extra_args=["--query-log", str(path)])
    srv.dig("www.example.", source="127.0.0.2")
    srv.dig("www.example.", "MX", "+subnet=198.51.100.0/24", tcp=True)
    deadline = time.monotonic() + 5
    while len(_lines(path)) < 2:
        assert time.monotonic() < deadline, f"query log has {_lines(path)}"
        time.sleep(0.05)
    first, second = _lines(path)
    assert first["client"] == "127.0.0.2" and first["qname"] == "www.example."
    assert first["proto"] == "udp" and first["rcode"] == "NOERROR" and first["ecs"] is None
    assert second["qtype"] == "MX" and second["proto"] == "tcp"
    assert second["ecs"] == "198.51.100.0/24"
    assert second["duration_ms"] >= 0


def test_query_log_to_stdout(dnspol) -> None:
    srv = dnspol(zone=EXAMPLE, extra_args=["--query-log", "-"])
    srv.dig("www.example.")
    log = srv.wait_for_log('"qname": "www.example."')
    line = next(x for x in log.splitlines() if x.startswith("{"))
    assert json.loads(line)["qtype"] == "A"


def test_metrics_address_from_the_config(dnspol) -> None:
    carried = {field.name for field in dataclasses.fields(Snapshot)}
    if "metrics" not in carried:
        pytest.fail(
            "dnspol.state.Snapshot does not carry the config's server.metrics: add "
            "`metrics: tuple[str, int] | None = None` and pass cfg.metrics in snapshot_from_config"
        )
    port = _free_port()
    srv = dnspol(zone=EXAMPLE, policies=f"server:\n  metrics: 127.0.0.1:{port}\n")
    assert f"127.0.0.1:{port}" in ops_url(srv.wait_for_log("metrics and health on"))
    assert get(f"http://127.0.0.1:{port}/ready") == (200, "OK\n")


def test_supervisor_adds_up_workers_and_holds_ready_while_one_restarts(tmp_path) -> None:
    log_path = tmp_path / "log"
    zone = tmp_path / "example.zone"
    zone.write_text((DATA / "example.zone").read_text())
    args = ("--zone", str(zone), "--no-watch", "--workers", "2")
    proc, host, port = serve_deployed(tmp_path, *args, "--metrics-listen", "127.0.0.1:0")
    try:
        url = ops_url(log_path.read_text())
        assert get(url + "/ready") == (200, "OK\n")
        sent = 60
        for i in range(sent):  # dig uses a new source port each time: both workers answer
            dnspol.testing.dig(host, int(port), f"n{i}.example.")
        samples = _wait_for(url, "dnspol_dns_requests_total", sent)
        assert total(samples, "dnspol_dns_responses_total", zone="example.") == sent
        running = workers(proc.pid)
        assert len(running) == 2
        os.kill(running[0], signal.SIGKILL)
        seen = _wait_ready_states(url)
        assert seen[-2:] == [503, 200], seen
        # the replaced worker's counters are kept: the sum never goes backwards
        assert total(scrape(url), "dnspol_dns_requests_total") >= sent
        dnspol.testing.dig(host, int(port), "www.example.")
        _wait_for(url, "dnspol_dns_requests_total", sent + 1)
        # reloads are the supervisor's: counted once, and the old workers' counters stay
        # after they are gone
        old_generation = process_tree(proc.pid)
        proc.send_signal(signal.SIGHUP)
        samples = _wait_for(url, "dnspol_reloads_total", 1)
        assert total(samples, "dnspol_reloads_total", result="ok") == 1
        assert wait_gone(old_generation) == []
        time.sleep(0.5)  # the supervisor notices on its next tick
        assert total(scrape(url), "dnspol_dns_requests_total") >= sent + 1
        zone.write_text(zone.read_text() + "broken IN A 999.1.2.3\n")
        proc.send_signal(signal.SIGHUP)
        samples = _wait_for(url, "dnspol_reloads_total", 2)
        assert total(samples, "dnspol_reloads_total", result="failed") == 1
        assert get(url + "/ready") == (200, "OK\n")
        everyone = process_tree(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
        assert wait_gone(everyone) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(url: str, name: str, want: float, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if total(samples, name) >= want:
            return samples
        assert time.monotonic() < deadline, f"{name} is {total(samples, name)}, not {want}"
        time.sleep(0.2)


def _wait_ready_states(url: str, timeout: float = 30) -> list[int]:
    """/ready's answers from now until it is 200 again after having been 503."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = get(url + "/ready")
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == 200 and 503 in seen:
            break
        time.sleep(0.01)
    return seen


def _lines(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_reload_that_takes_too_long_is_abandoned(tmp_path) -> None:
    """server.reload_timeout: a generation still loading then is killed, the old one serves.

    The new configuration's rule file is a FIFO nobody writes to: its load never ends.
    """
    (tmp_path / "example.zone").write_text((DATA / "example.zone").read_text())
    (tmp_path / "slow.yaml").write_text("rules: []\n")
    config = tmp_path / "dnspol.yaml"
    config.write_text(
        "server: {reload_timeout: 1}\nzones: {example.: example.zone}\n"
        "rules:\n  - include: slow.yaml\n"
    )
    log_path = tmp_path / "log"
    args = ("--config", str(config), "--no-watch", "--workers", "2")
    proc, host, port = serve_deployed(tmp_path, *args, "--metrics-listen", "127.0.0.1:0")
    try:
        url = ops_url(log_path.read_text())
        (tmp_path / "slow.yaml").unlink()
        os.mkfifo(tmp_path / "slow.yaml")
        started = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        samples = _wait_for(url, "dnspol_reloads_total", 1, timeout=10)
        assert total(samples, "dnspol_reloads_total", result="failed") == 1
        assert time.monotonic() - started < 5
        assert "reload abandoned after 1 s (server.reload_timeout is 1 s)" in log_path.read_text()
        answer = dnspol.testing.dig(host, int(port), "www.example.")
        assert answer.addresses == ["192.0.2.1"]
        (tmp_path / "slow.yaml").unlink()
        (tmp_path / "slow.yaml").write_text("rules: []\n")
        proc.send_signal(signal.SIGHUP)  # a later reload is not blocked by the abandoned one
        samples = _wait_for(url, "dnspol_reloads_total", 2, timeout=10)
        assert total(samples, "dnspol_reloads_total", result="ok") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_stalled_connections_neither_block_a_scrape_nor_hold_threads(dnspol) -> None:
    """100 connections that send half a header and stall: the port still answers at once,
    the process gains no thread per connection, and each is closed after 5 s."""
    srv = dnspol(zone=EXAMPLE, extra_args=["--metrics-listen", "127.0.0.1:0"])
    url = ops_url(srv.wait_for_log("metrics and health on"))
    assert get(url + "/health") == (200, "OK\n")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    threads_before = _threads(srv.pid)
    stalled = []
    try:
        started = time.monotonic()
        for _ in range(100):
            sock = socket.create_connection((host, int(port)), timeout=2)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: sl")
            stalled.append(sock)
        asked = time.monotonic()
        status, body = get(url + "/metrics")
        assert status == 200 and "dnspol_dns_requests_total" in body
        assert time.monotonic() - asked < 1.0
        assert _threads(srv.pid) <= threads_before + 16  # the port's answering threads at most
        for sock in stalled:
            sock.settimeout(max(0.1, started + 8 - time.monotonic()))
            assert sock.recv(100) == b""  # closed by the server, nothing answered
        assert time.monotonic() - started > 4.5  # not before the header timeout (5 s)
    finally:
        for sock in stalled:
            sock.close()


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))


# -- the whole server's processes ------------------------------------------------


def _proc_stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _proc_cpu(pids: list[int]) -> float:
    """utime + stime + cutime + cstime (waited-for children) over ``pids``, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(sum(int(x) for x in _proc_stat(pid)[11:15]) for pid in pids) / ticks


def _proc_rss(pids: list[int]) -> int:
    """VmRSS from /proc/<pid>/status (another file than the server reads), in bytes."""
    total_kb = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as fh:
            total_kb += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return total_kb * 1024


def _proc_fds(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def _send_udp(host: str, port: int, count: int) -> None:
    """``count`` queries, each answered before the next is sent (bounded: 2 s each)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for i in range(count):
            sock.sendto(_a_query(i), (host, port))
            sock.recv(4096)


def _a_query(i: int) -> bytes:
    name = b"".join(bytes([len(p)]) + p for p in (f"n{i}".encode(), b"example")) + b"\0"
    return i.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\0\1\0\1"


def test_process_metrics_add_up_every_process_of_the_server(tmp_path) -> None:
    """--workers 2: the supervisor, the generation and both workers, compared with /proc;
    CPU time stays counted when a worker is killed and replaced."""
    zone = tmp_path / "example.zone"
    zone.write_text((DATA / "example.zone").read_text())
    args = ("--zone", str(zone), "--no-watch", "--workers", "2")
    started = time.time()
    proc, host, port = serve_deployed(tmp_path, *args, "--metrics-listen", "127.0.0.1:0")
    try:
        url = ops_url((tmp_path / "log").read_text())
        _send_udp(host, port, 1500)  # CPU time for the workers to have spent
        everyone = [proc.pid, *process_tree(proc.pid)]
        assert len(everyone) == 4  # supervisor, generation, two workers
        cpu_before, rss_before, fds_before = (
            _proc_cpu(everyone),
            _proc_rss(everyone),
            _proc_fds(everyone),
        )
        samples = scrape(url)
        cpu_after, rss_after = _proc_cpu(everyone), _proc_rss(everyone)
        processes = {
            dict(labels)["role"]: value
            for (name, labels), value in samples.items()
            if name == "dnspol_processes"
        }
        assert processes == {"main": 1, "generation": 1, "worker": 2}
        cpu = total(samples, "dnspol_process_cpu_seconds_total")
        assert cpu_before - 1e-9 <= cpu <= cpu_after + 1e-9  # sums of the same ticks
        rss = total(samples, "dnspol_process_resident_memory_bytes")
        assert 0.9 * min(rss_before, rss_after) <= rss <= 1.1 * max(rss_before, rss_after)
        pss = total(samples, "dnspol_process_proportional_memory_bytes")
        assert 0 < pss < rss  # the workers share their generation's pages
        # the scrape's own connection and the listing of /proc/<pid>/fd are open meanwhile
        assert fds_before <= total(samples, "dnspol_process_open_fds") <= fds_before + 3
        start = total(samples, "dnspol_process_start_time_seconds")
        assert started - 1.5 <= start <= time.time()  # btime is whole seconds

        worker_cpu = {pid: _proc_cpu([pid]) for pid in workers(proc.pid)}
        busiest = max(worker_cpu, key=worker_cpu.__getitem__)
        assert worker_cpu[busiest] > 0, worker_cpu  # it answered queries
        os.kill(busiest, signal.SIGKILL)
        assert wait_gone([busiest]) == []
        deadline = time.monotonic() + 10
        while len(workers(proc.pid)) != 2 or busiest in workers(proc.pid):
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.05)
        living = [proc.pid, *process_tree(proc.pid)]
        cpu_before = _proc_cpu(living)
        after_kill = scrape(url)
        cpu_after = _proc_cpu(living)
        # reaped by its generation, whose cutime now holds the killed worker's time: the
        # sum still counts it, and never goes back
        cpu_now = total(after_kill, "dnspol_process_cpu_seconds_total")
        assert cpu_before - 1e-9 <= cpu_now <= cpu_after + 1e-9
        assert cpu_now >= cpu
        assert total(after_kill, "dnspol_processes", role="worker") == 2
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_build_info_names_the_versions(dnspol) -> None:
    import importlib.metadata
    import platform

    srv = dnspol(zone=EXAMPLE, extra_args=["--metrics-listen", "127.0.0.1:0"])
    url = ops_url(srv.wait_for_log("metrics and health on"))
    (labels,) = [dict(labels) for name, labels in scrape(url) if name == "dnspol_build_info"]
    assert labels == {
        "version": __version__,
        "python": platform.python_version(),
        "dnslib": importlib.metadata.version("dnslib"),
        "dnspython": importlib.metadata.version("dnspython"),
    }
