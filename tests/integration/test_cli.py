"""The command line: ``dnspol --version``, ``dnspol check``, ``dnspol serve`` and its signals."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dnslib
import pytest
from itkit import DATA, EXAMPLE, children, process_tree, serve_deployed, wait_gone, workers

import dnspol
import dnspol.testing

POLICIES = Path(__file__).resolve().parents[2] / "policies"
ZONE_V1 = """$ORIGIN reload.test.
$TTL 60
@   IN SOA ns hostmaster 1 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.10
"""
ZONE_V2 = ZONE_V1.replace(" 1 7200", " 2 7200").replace("192.0.2.10", "192.0.2.20")
ZONE_BROKEN = ZONE_V2.replace(" 2 7200", " 3 7200") + "bad IN A 999.1.2.3\n"


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnspol", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"dnspol {dnspol.__version__}"


@pytest.mark.parametrize(
    "command", [["schema"], ["explain", "--zone", str(DATA / "example.zone"), "example."]]
)
def test_a_reader_that_went_away_is_no_traceback(command) -> None:
    """``dnspol schema | head -1``: the reader closes the pipe; dnspol stops quietly."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first write, so every write fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dnspol", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_check_good_zones() -> None:
    done = run_cli(
        "check", "--zone", str(DATA / "example.zone"), "--zone", str(DATA / "sub2.example.zone")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout
    assert "example." in done.stdout and "2024010101" in done.stdout


@pytest.mark.parametrize("config", ["dnspol.yaml", "failover/dnspol.yaml"])
def test_check_works_on_a_host_without_system_time_zone_data(tmp_path, config) -> None:
    """Slim containers have no /usr/share/zoneinfo: the declared ``tzdata`` package
    serves ``zoneinfo`` instead (PEP 615), with or without time rules."""
    (tmp_path / "zoneinfo").mkdir()
    env = {**os.environ, "PYTHONTZPATH": str(tmp_path / "zoneinfo")}
    done = subprocess.run(
        [sys.executable, "-m", "dnspol", "check", "--config", str(POLICIES / config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ZoneInfoNotFoundError" not in done.stderr


@pytest.mark.parametrize(
    "bad, line",
    [
        ("www IN A 999.1.2.3\n", 7),
        ("www IN CNAME other\n", 7),  # CNAME beside the A at www
        ("out.example.net. IN A 192.0.2.1\n", 7),  # outside the zone
    ],
    ids=["bad-address", "cname-and-data", "outside-zone"],
)
def test_check_bad_zone_names_file_and_line(tmp_path, bad, line) -> None:
    text = ZONE_V1.replace("reload.test.", "bad.test.") + bad
    path = tmp_path / "bad.test.zone"
    path.write_text(text)
    done = run_cli("check", "--zone", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert re.search(rf"{re.escape(str(path))}:{line}:", out), out


def test_check_missing_file(tmp_path) -> None:
    done = run_cli("check", "--zone", str(tmp_path / "nope.zone"))
    assert done.returncode == 1
    assert "nope.zone" in done.stdout + done.stderr


def test_serve_bad_zone_exits_1(tmp_path) -> None:
    path = tmp_path / "bad.test.zone"
    path.write_text("$ORIGIN bad.test.\nwww IN A 192.0.2.1\n")
    done = run_cli("serve", "--zone", str(path), "--listen", "127.0.0.1:0", timeout=20)
    assert done.returncode == 1
    assert "bad.test.zone" in done.stderr


def test_sighup_reloads_changed_zone(dnspol) -> None:
    srv = dnspol(zone=ZONE_V1)
    assert srv.dig("www.reload.test.").addresses == ["192.0.2.10"]
    srv.zone_paths["reload.test."].write_text(ZONE_V2)
    mark = srv.log_size()
    srv.signal(signal.SIGHUP)
    srv.wait_for_log("serial 2", since=mark)
    assert _serial(srv) == 2
    assert srv.dig("www.reload.test.").addresses == ["192.0.2.20"]


def test_broken_zone_on_reload_keeps_old_answers(dnspol) -> None:
    srv = dnspol(zone=ZONE_V1)
    srv.zone_paths["reload.test."].write_text(ZONE_BROKEN)
    mark = srv.log_size()
    srv.signal(signal.SIGHUP)
    log = srv.wait_for_log("reload failed", since=mark)
    assert "reload.test.zone:7:" in log  # the problem names file:line
    assert _serial(srv) == 1
    assert srv.dig("www.reload.test.").addresses == ["192.0.2.10"]
    assert srv.running


def test_sigterm_exits_0(dnspol) -> None:
    srv = dnspol(zone=EXAMPLE)
    assert srv.dig("www.example.").addresses == ["192.0.2.1"]
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 5
    assert "shutting down" in srv.log


def test_sigterm_with_open_tcp_connection_exits_0(dnspol) -> None:
    import socket

    srv = dnspol(zone=EXAMPLE)
    with socket.create_connection((srv.host, srv.port)):
        assert srv.stop() == 0


@pytest.mark.parametrize("workers_arg", ["1", "2"])
def test_production_serve_reload_and_stop(tmp_path, workers_arg) -> None:
    """``dnspol serve`` as deployed (no --fake-time, workers): SIGHUP reloads, SIGTERM exits 0."""
    zone = tmp_path / "reload.test.zone"
    zone.write_text(ZONE_V1)
    proc, host, port = _start(tmp_path, zone, workers_arg=workers_arg)
    try:
        ask = lambda *a: dnspol.testing.dig(host, port, *a)  # noqa: E731
        assert ask("www.reload.test.").addresses == ["192.0.2.10"]
        # test controls exist only with --fake-time
        assert ask("clock.dnspol.", "TXT", "-c", "CH").rcode == "REFUSED"
        assert ask("reload.dnspol.", "TXT", "-c", "CH").rcode == "REFUSED"
        first_workers = workers(proc.pid)
        zone.write_text(ZONE_V2)
        proc.send_signal(signal.SIGHUP)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while seen[-6:] != ["192.0.2.20"] * 6:  # every worker has the new zone
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            seen.append(ask("www.reload.test.", "A", "+tcp").addresses[0])
            seen.append(ask("www.reload.test.").addresses[0])
        if workers_arg == "1":
            assert process_tree(proc.pid) == []
        else:  # a new generation of workers; the old one has finished
            deadline = time.monotonic() + 30
            while len(workers(proc.pid)) != 2 or set(workers(proc.pid)) & set(first_workers):
                assert time.monotonic() < deadline, (tmp_path / "log").read_text()
                time.sleep(0.05)
        children = process_tree(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "log").read_text()
        assert wait_gone(children) == []
    finally:
        _stop(proc)


def _start(
    tmp_path, zone, *extra: str, workers_arg: str = "2"
) -> tuple[subprocess.Popen, str, int]:
    """``dnspol serve`` as deployed (no --fake-time), in its own process group."""
    return serve_deployed(tmp_path, "--zone", str(zone), "--workers", workers_arg, *extra)


@contextlib.contextmanager
def _served(tmp_path, text: str, file: str):
    """``dnspol serve --no-watch`` of one zone file holding ``text``; stopped at the end.
    Yields the process, its address and port, and the zone file's path."""
    zone = tmp_path / file
    zone.write_text(text)
    proc, host, port = _start(tmp_path, zone, "--no-watch")
    try:
        yield proc, host, port, zone
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _shared_dirty_kb(pid: int) -> int:
    """Written memory this process shares with others: what a fork shares, an exec never."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    return int(fields["Shared_Dirty"].split()[0])


def _big_zone(serial: int, hosts: int = 60_000) -> str:
    lines = "".join(
        f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(hosts)
    )
    return ("$ORIGIN big.test.\n$TTL 60\n"
            f"@ IN SOA ns hm {serial} 7200 900 1209600 60\n"
            f"@ IN NS ns\nns IN A 192.0.2.1\nserial IN TXT {serial}\n" + lines)  # fmt: skip


def _tree_pss_kb(pid: int) -> int:
    total = 0
    for member in [pid, *process_tree(pid)]:
        with open(f"/proc/{member}/smaps_rollup") as fh:
            total += sum(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
    return total


def test_workers_share_the_configuration_and_a_reload_leaves_one_copy(tmp_path) -> None:
    """Forked workers share the loaded zone, so do the ones a reload starts, and after
    the reload the server holds as much memory as before it, not one copy more."""
    with _served(tmp_path, _big_zone(1), "big.test.zone") as served:
        proc, host, port, zone = served
        assert dnspol.testing.dig(host, port, "h59999.big.test.").addresses == ["10.0.234.95"]
        first = workers(proc.pid)
        assert len(first) == 2
        # some 40 MB of zone data: each worker still shares most of it with the other
        shared = [_shared_dirty_kb(pid) for pid in first]
        assert min(shared) > 20_000, shared
        before = _tree_pss_kb(proc.pid)
        zone.write_text(_big_zone(2))
        proc.send_signal(signal.SIGHUP)
        _wait_for_log(tmp_path / "log", "(serial 2)")
        deadline = time.monotonic() + 30
        while set(workers(proc.pid)) & set(first) or len(workers(proc.pid)) != 2:
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.05)
        for _ in range(6):  # new source ports: both workers
            assert dnspol.testing.dig(host, port, "serial.big.test.", "TXT").answer[0].data == '"2"'
        shared = [_shared_dirty_kb(pid) for pid in workers(proc.pid)]
        assert min(shared) > 20_000, shared
        time.sleep(1)  # the old generation's memory is gone with its processes
        after = _tree_pss_kb(proc.pid)
        assert after < before * 1.25, (before, after)


def test_a_bad_file_on_reload_keeps_the_workers_and_their_answers(tmp_path) -> None:
    with _served(tmp_path, ZONE_V1, "reload.test.zone") as served:
        proc, host, port, zone = served
        first = workers(proc.pid)
        zone.write_text(ZONE_BROKEN)
        proc.send_signal(signal.SIGHUP)
        log = _wait_for_log(tmp_path / "log", "still serving the previous configuration")
        assert "reload.test.zone:7:" in log  # the problem names file:line
        assert sorted(workers(proc.pid)) == sorted(first)
        for _ in range(6):
            assert dnspol.testing.dig(host, port, "www.reload.test.").addresses == ["192.0.2.10"]


def test_a_restarted_worker_serves_the_loaded_configuration(tmp_path) -> None:
    """Forked again from its generation's snapshot: the files changed on disk since are
    not read until a reload is asked for, so every worker answers alike."""
    with _served(tmp_path, ZONE_V1, "reload.test.zone") as served:
        proc, host, port, zone = served
        zone.write_text(ZONE_V2)  # not reloaded: --no-watch and no SIGHUP
        first = workers(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while first[1] not in workers(proc.pid) or len(set(workers(proc.pid)) - {first[0]}) < 2:
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.05)
        # new source ports spread over both workers (a 2**-40 chance of missing one)
        answers = {dnspol.testing.dig(host, port, "www.reload.test.").addresses[0]
                   for _ in range(40)}  # fmt: skip
        assert answers == {"192.0.2.10"}


def test_reloads_under_load_lose_no_query(tmp_path) -> None:
    """Three reloads while 16 clients keep asking: every query gets its answer, from the
    old workers or the new ones (the sockets outlive the workers)."""
    zone = tmp_path / "reload.test.zone"
    zone.write_text(ZONE_V1)
    proc, host, port = _start(tmp_path, zone, "--no-watch")
    sent, lost, answers = 0, 0, set()
    stop = threading.Event()

    def ask_forever() -> None:
        nonlocal sent, lost
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
        for client in clients:
            client.settimeout(3)
        query = dnslib.DNSRecord.question("www.reload.test.").pack()
        while not stop.is_set():
            for client in clients:
                client.sendto(query, (host, port))
                sent += 1
            for client in clients:
                try:
                    answers.add(str(dnslib.DNSRecord.parse(client.recv(512)).a.rdata))
                except TimeoutError:
                    lost += 1
        for client in clients:
            client.close()

    asker = threading.Thread(target=ask_forever)
    asker.start()
    try:
        for serial in (2, 3, 4):
            address = f"192.0.2.{serial}0"
            zone.write_text(ZONE_V1.replace(" 1 7200", f" {serial} 7200")
                            .replace("192.0.2.10", address))  # fmt: skip
            proc.send_signal(signal.SIGHUP)
            _wait_for_log(tmp_path / "log", f"(serial {serial})")
            time.sleep(0.5)  # the old workers finish while the queries go on
    finally:
        stop.set()
        asker.join()
        _stop(proc)
    assert lost == 0, f"{lost} of {sent} queries lost"
    assert sent > 1_000
    assert {"192.0.2.10", "192.0.2.40"} <= answers


def test_sigterm_while_a_reload_loads_stops_everything(tmp_path) -> None:
    with _served(tmp_path, _big_zone(1), "big.test.zone") as served:
        proc, host, port, zone = served
        zone.write_text(_big_zone(2))
        proc.send_signal(signal.SIGHUP)
        _wait_for_log(tmp_path / "log", "reloading")
        everyone = process_tree(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "log").read_text()
        assert wait_gone(everyone + process_tree(proc.pid)) == []


def test_a_burst_of_sighups_ends_on_the_last_files(tmp_path) -> None:
    """SIGHUPs sent while a generation loads fold into one more reload."""
    with _served(tmp_path, ZONE_V1, "reload.test.zone") as served:
        proc, host, port, zone = served
        for serial in range(2, 12):
            zone.write_text(ZONE_V1.replace(" 1 7200", f" {serial} 7200"))
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.01)
        deadline = time.monotonic() + 30
        while {_serial_at(host, port) for _ in range(8)} != {11}:
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.1)
        log = (tmp_path / "log").read_text()
        assert 1 <= log.count("the previous one is finishing") < 10, log
        assert "reload failed" not in log


def test_a_generation_that_dies_is_started_again_from_the_files(tmp_path) -> None:
    with _served(tmp_path, ZONE_V1, "reload.test.zone") as served:
        proc, host, port, zone = served
        (head,) = children(proc.pid)
        first = workers(proc.pid)
        os.kill(head, signal.SIGKILL)  # its workers get SIGTERM (parent-death signal)
        deadline = time.monotonic() + 30
        while len(workers(proc.pid)) != 2 or set(workers(proc.pid)) & set(first):
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.05)
        assert wait_gone(first) == []
        for _ in range(6):
            assert dnspol.testing.dig(host, port, "www.reload.test.").addresses == ["192.0.2.10"]
        assert "generation 1 ended" in (tmp_path / "log").read_text()


def _serial_at(host: str, port: int) -> int:
    res = dnspol.testing.dig(host, port, "reload.test.", "SOA")
    return int(res.answer[0].data.split()[2])


def test_one_busy_client_keeps_every_worker_busy(tmp_path) -> None:
    """All queries from one socket (one source port): with a UDP socket per worker and
    SO_REUSEPORT they would all hash to one worker; the shared socket spreads them."""
    with _served(tmp_path, ZONE_V1 + "*   IN A   192.0.2.99\n", "reload.test.zone") as served:
        proc, host, port, zone = served
        running = workers(proc.pid)
        before = {pid: _cpu_ticks(pid) for pid in running}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            for batch in range(200):  # distinct names: every answer is worked out
                for i in range(50):
                    name = f"n{batch}-{i}.reload.test."
                    client.sendto(dnslib.DNSRecord.question(name).pack(), (host, port))
                for _ in range(50):
                    client.recv(512)
        used = {pid: _cpu_ticks(pid) - before[pid] for pid in running}
        assert min(used.values()) > 0.2 * sum(used.values()), used


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _wait_for_log(path, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := path.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    return log


def _serial(srv) -> int:
    res = srv.dig(next(iter(srv.zone_paths)), "SOA")
    return int(res.answer[0].data.split()[2])


# --------------------------------------------------------------------------- explain


def explain_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("explain", *args)


def test_explain_prints_ecs_as_dig_does() -> None:
    """dig prints ``; CLIENT-SUBNET: ADDRESS/SOURCE/SCOPE``; so does explain, not option bytes."""
    config = str(POLICIES / "split-horizon" / "dnspol.yaml")
    done = explain_cli("--config", config, "--ecs", "10.1.2.0/24", "www.example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "; CLIENT-SUBNET: 10.1.2.0/24/8" in lines, done.stdout
    assert ";; OPT PSEUDOSECTION:" in lines
    assert "; EDNS: version: 0, flags:; udp: 1232" in lines
    assert "code: 8" not in done.stdout


def test_explain_prints_ede_as_dig_does() -> None:
    config = str(POLICIES / "dnspol.yaml")
    done = explain_cli(
        "--config", config, "--client", "127.0.0.66", "--ecs", "10.1.2.0/24", "www.example.com"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: REFUSED" in done.stdout
    assert "; EDE: 18 (Prohibited)" in done.stdout.splitlines(), done.stdout


def test_explain_prints_a_record_with_empty_rdata(tmp_path) -> None:
    """RFC 3597 allows RDATA of length 0 for a type dnslib does not know; dnslib refuses to
    parse such a reply, so explain printed a traceback."""
    zone = tmp_path / "example.zone"
    zone.write_text(
        "$ORIGIN example.\n$TTL 300\n"
        "@ SOA ns hostmaster 1 3600 900 604800 300\n@ NS ns\nns A 192.0.2.53\n"
        "e TYPE65280 \\# 0\n"
    )
    done = explain_cli("--zone", str(zone), "e.example.", "TYPE65280")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "status: NOERROR" in done.stdout
    record = re.compile(r"^e\.example\.\s+300\s+IN\s+TYPE65280\s+\\# 0$", re.M)
    assert record.search(done.stdout), done.stdout


BAD_TIMES = [
    "tomorrow",
    "2026-05-09T01:30:00",  # no UTC offset
    "2026-02-30T00:00:00+00:00",
    "",
    "nan",
    "1969-12-31T23:00:00+00:00",  # before the clock's first second
]


@pytest.mark.parametrize("value", BAD_TIMES)
def test_explain_bad_time_is_one_line_not_a_traceback(value) -> None:
    config = str(POLICIES / "failover" / "dnspol.yaml")
    done = explain_cli("--config", config, "--time", value, "app.example.org")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("dnspol explain: --time: "), done.stderr
    if value == "tomorrow":
        assert "e.g. 2026-" in done.stderr  # says what a good value looks like


@pytest.mark.parametrize("value", BAD_TIMES)
def test_serve_bad_fake_time_is_one_line_not_a_traceback(value) -> None:
    config = str(POLICIES / "failover" / "dnspol.yaml")
    done = run_cli(
        "serve",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--control",
        "none",
        "--fake-time",
        value,
        timeout=20,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("dnspol serve: --fake-time: "), done.stderr


def test_explain_time_accepts_an_offset_or_z() -> None:
    config = str(POLICIES / "failover" / "dnspol.yaml")
    for value in ("2026-05-09T01:30:00+02:00", "2026-05-08T23:30:00Z"):
        done = explain_cli("--config", config, "--time", value, "app.example.org")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "198.51.100.10" in done.stdout


def test_an_overlay_without_ttl_says_it_needs_its_own(tmp_path) -> None:
    """An overlay is a file of its own: the zone file's $TTL does not reach it."""
    (tmp_path / "z.zone").write_text(ZONE_V1)
    (tmp_path / "inside.zone").write_text("$ORIGIN reload.test.\nwww IN A 10.0.0.10\n")
    (tmp_path / "dnspol.yaml").write_text(
        "zones:\n  reload.test:\n    file: z.zone\n    scopes:\n"
        "      inside: {overlay: inside.zone}\n"
    )
    done = run_cli("check", "--config", str(tmp_path / "dnspol.yaml"))
    assert done.returncode == 1
    (problem,) = done.stdout.splitlines()
    assert problem.startswith(f"{tmp_path}/inside.zone:2: bad record 'www IN A 10.0.0.10': ")
    assert "$TTL" in problem and "overlay" in problem, problem
