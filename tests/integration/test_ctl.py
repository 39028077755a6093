"""``dnspol ctl`` against the real server, one process and a supervisor with workers, and
the CHAOS clock controls documented for clients that can only speak DNS."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import itkit
import pytest
from itkit import need

from dnspol import __version__ as dnspol_version
from dnspol.config import files_digest
from dnspol.testing import ReloadError, StartError

DOCS = Path(__file__).resolve().parents[2] / "docs"

ZONE_V1 = """$ORIGIN ctl.test.
$TTL 60
@   IN SOA ns hostmaster 1 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.10
"""


def _doc_dig_lines() -> list[str]:
    """The ``dig`` lines of the shell recipe in docs/testing.md's CHAOS section."""
    text = (DOCS / "testing.md").read_text()
    section = text.split("### CHAOS queries", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/testing.md: no sh block under '### CHAOS queries'"
    return [line for line in block.group(1).splitlines() if line.startswith("dig ")]


def test_the_docs_ctl_recipe_works(dnspol) -> None:
    text = (DOCS / "testing.md").read_text()
    section = text.split("### How the test controls work", 1)[1].split("###", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.startswith("dnspol ctl ")]
    assert len(lines) >= 4
    srv = dnspol(zone=ZONE_V1, fake_time="2026-11-28T02:00:00+01:00")
    for line in lines:
        argv = shlex.split(line.split("#")[0].replace("./control.sock", str(srv.control_path)))
        done = subprocess.run(
            [sys.executable, "-m", "dnspol", *argv[1:]], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
    assert srv.now().isoformat().startswith("2026-11-28T02:01:0")  # 03:00+01:00, then 60 s


def test_the_docs_chaos_recipe_works_with_real_dig(dnspol) -> None:
    need("dig", "bind9-dnsutils")
    srv = dnspol(zone=ZONE_V1, fake_time="2026-11-28T02:00:00+01:00")
    lines = _doc_dig_lines()
    assert len(lines) >= 3
    printed = []
    for line in lines:
        argv = shlex.split(line.replace("-p 5300", f"-p {srv.port}"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip(), f"{line!r} printed nothing"
        printed.append(done.stdout.strip().strip('"'))
    set_line = next(i for i, line in enumerate(lines) if ".set.clock." in line)
    epoch = int(re.search(r"(\d+)\.set\.clock", lines[set_line]).group(1))
    moved = datetime.fromisoformat(printed[set_line]) - datetime.fromtimestamp(epoch, UTC)
    assert 0 <= moved.total_seconds() < 5  # the clock runs on from where it was set
    assert "ok" in printed


ZONE_V2 = ZONE_V1.replace(" 1 7200", " 2 7200").replace("192.0.2.10", "192.0.2.20")
ZONE_BROKEN = ZONE_V2.replace(" 2 7200", " 3 7200") + "bad IN A 999.1.2.3\n"
WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])


def ctl(srv, *args: str, control: str | None = None) -> subprocess.CompletedProcess[str]:
    """``dnspol ctl`` as an operator runs it."""
    path = control or str(srv.control_path)
    return subprocess.run(
        [sys.executable, "-m", "dnspol", "ctl", "--control", path, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ctl_json(srv, *args: str) -> dict:
    done = ctl(srv, "--json", *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return json.loads(done.stdout)


def serve(dnspol, workers: int, **kwargs):
    return dnspol(zone=ZONE_V1, extra_args=["--workers", str(workers)], **kwargs)


def ready_workers(srv, count: int) -> dict:
    """``ctl status`` once every worker of the current generation listens."""
    deadline = time.monotonic() + 20
    while True:
        status = ctl_json(srv, "status")
        states = [w["state"] for w in status["workers"]]
        if states == ["listening"] * count:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


@WORKERS
def test_status(dnspol, workers: int) -> None:
    srv = serve(dnspol, workers)
    status = ready_workers(srv, workers)
    assert status["ok"] is True
    assert status["version"] == dnspol_version
    assert status["pid"] == srv.pid
    assert 0 <= status["uptime"] < 60
    assert status["config"]["digest"] == files_digest(status["config"]["files"])
    assert str(srv.config_path) in status["config"]["files"]
    assert str(srv.zone_paths["ctl.test."]) in status["config"]["files"]
    assert status["generation"] == 1
    assert len({w["pid"] for w in status["workers"]}) == workers
    if workers > 1:
        assert set(w["pid"] for w in status["workers"]) == set(itkit.workers(srv.pid))
    assert status["zones"] == [{"name": "ctl.test.", "serial": 1, "records": 4, "scopes": []}]
    assert status["listeners"] == {
        "dns": [srv.address],
        "metrics": None,
        "control": str(srv.control_path),
    }
    assert status["last_reload"] is None
    text = ctl(srv, "status")
    assert text.returncode == 0, text.stderr
    assert "ctl.test. serial 1, 4 records" in text.stdout
    assert f"udp+tcp {srv.address}" in text.stdout


@WORKERS
def test_reload_good_then_bad(dnspol, workers: int) -> None:
    srv = serve(dnspol, workers)
    before = ready_workers(srv, workers)["config"]["digest"]
    assert srv.dig("www.ctl.test.").addresses == ["192.0.2.10"]

    srv.zone_paths["ctl.test."].write_text(ZONE_V2)
    done = ctl(srv, "reload")
    assert done.returncode == 0, done.stdout + done.stderr
    status = ctl_json(srv, "status")
    assert status["config"]["digest"] != before
    assert f"config sha256 {status['config']['digest']}" in done.stdout
    assert status["zones"][0]["serial"] == 2
    # serving on every worker when ctl returned: ask from many source ports
    for _ in range(6):
        assert srv.dig("www.ctl.test.").addresses == ["192.0.2.20"]
        assert srv.dig("www.ctl.test.", tcp=True).addresses == ["192.0.2.20"]
    assert status["last_reload"]["cause"] == "ctl"
    assert status["last_reload"]["outcome"] == "ok"

    srv.zone_paths["ctl.test."].write_text(ZONE_BROKEN)
    done = ctl(srv, "reload")
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"ctl\.test\.zone:7: ", done.stdout), done.stdout
    assert "previous configuration keeps serving" in done.stderr
    assert srv.dig("www.ctl.test.").addresses == ["192.0.2.20"]
    after = ctl_json(srv, "status")
    assert after["config"]["digest"] == status["config"]["digest"]
    assert after["last_reload"]["outcome"] == "rejected"
    assert any("ctl.test.zone:7:" in p for p in after["last_reload"]["problems"])


@WORKERS
def test_reload_json_and_needs_restart(dnspol, workers: int) -> None:
    srv = serve(dnspol, workers)
    ready_workers(srv, workers)
    reply = ctl_json(srv, "reload")
    assert reply["ok"] is True and reply["outcome"] == "ok" and reply["needs_restart"] == []
    assert reply["digest"] == ctl_json(srv, "status")["config"]["digest"]
    srv.reload(policies="server:\n  seed: 7\n  tcp_idle_timeout: 5\n  tcp_max_connections: 20\n")
    done = ctl(srv, "reload")
    assert done.returncode == 0
    assert "server.seed:" in done.stderr and "(needs restart)" in done.stderr
    assert "tcp_" not in done.stderr  # TCP limits follow a reload
    # what the command line set (--listen, --control) is not the configuration's to change
    srv.reload(policies="server:\n  listen: 127.0.0.1:5399\n  control: elsewhere.sock\n")
    reply = ctl_json(srv, "reload")
    assert reply["ok"] is True
    assert [line.split(":")[0] for line in reply["needs_restart"]] == []
    assert "needs restart" in srv.log


def test_kit_reload_goes_through_the_supervisor(dnspol) -> None:
    srv = serve(dnspol, 2)
    srv.reload(zone_text=ZONE_V2)
    for _ in range(6):
        assert srv.dig("www.ctl.test.").addresses == ["192.0.2.20"]
    with pytest.raises(ReloadError, match="ctl.test.zone:7"):
        srv.reload(zone_text=ZONE_BROKEN)
    assert srv.dig("www.ctl.test.").addresses == ["192.0.2.20"]


def test_a_chaos_reload_is_not_done_by_one_worker_alone(dnspol) -> None:
    srv = serve(dnspol, 2)
    srv.zone_paths["ctl.test."].write_text(ZONE_V2)
    answer = srv.dig("reload.dnspol.", "TXT", "-c", "CH").texts
    assert answer == ["failed: with workers, reload with SIGHUP or 'dnspol ctl reload'"]
    for _ in range(6):
        assert srv.dig("www.ctl.test.").addresses == ["192.0.2.10"]


def test_clock_moves_with_fake_time(dnspol) -> None:
    srv = serve(dnspol, 1, fake_time="2026-11-28T00:59:00+01:00")
    done = ctl(srv, "set-time", "2026-11-28T02:00:00+01:00")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2026-11-28T01:00:0")  # UTC
    done = ctl(srv, "advance", "3600")
    assert done.returncode == 0 and done.stdout.startswith("2026-11-28T02:00:0")
    assert ctl_json(srv, "status")["clock"].startswith("2026-11-28T02:00:0")
    assert srv.now().hour == 2
    reply = ctl_json(srv, "set-time", "0")
    assert reply["clock"].startswith("1970-01-01T00:00:0")
    bad = ctl(srv, "set-time", "10000-01-01T00:00:00+00:00")
    assert bad.returncode == 2 and "not a time" in bad.stderr
    far = ctl(srv, "advance", "-2000000000")  # before 1970
    assert far.returncode == 1 and "only times from 1970-01-01 to 9999-12-31" in far.stderr


def test_clock_is_refused_with_workers(dnspol) -> None:
    srv = serve(dnspol, 2)
    done = ctl(srv, "advance", "60")
    assert done.returncode == 1
    assert "single process" in done.stderr


def test_clock_is_refused_without_fake_time(tmp_path) -> None:
    zone = tmp_path / "ctl.test.zone"
    zone.write_text(ZONE_V1)
    control = tmp_path / "control.sock"
    ready = tmp_path / "ready"
    argv = [sys.executable, "-m", "dnspol", "serve", "--zone", str(zone), "--workers", "1"]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(ready), "--control", str(control)]
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            log_text = (tmp_path / "log").read_text()
            assert proc.poll() is None and time.monotonic() < deadline, log_text
            time.sleep(0.02)
        done = ctl(None, "set-time", "2030-01-01T00:00:00+00:00", control=str(control))
        assert done.returncode == 1
        assert "only when started with --fake-time" in done.stderr
        assert ctl(None, "status", control=str(control)).returncode == 0
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    assert not control.exists()  # removed on the way out


@WORKERS
def test_socket_mode_and_a_second_server_on_the_same_path(dnspol, workers: int) -> None:
    srv = serve(dnspol, workers)
    mode = srv.control_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    path = str(srv.control_path)
    taken = f"another server is listening on the control socket {path}"
    with pytest.raises(StartError, match=taken):
        dnspol(zone=ZONE_V1, extra_args=["--workers", str(workers), "--control", path])
    assert ctl(srv, "status").returncode == 0  # the first one is untouched


def test_a_stale_socket_is_replaced(dnspol, tmp_path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    srv = dnspol(zone=ZONE_V1, extra_args=["--control", str(path)])
    assert ctl(srv, "status", control=str(path)).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run ctl as another user")
def test_another_user_cannot_use_ctl(dnspol) -> None:
    srv = serve(dnspol, 1)
    done = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, str(srv.control_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "permission denied" in done.stderr


def test_ctl_without_a_server_says_where_it_looked(tmp_path) -> None:
    missing = str(tmp_path / "none.sock")
    done = ctl(None, "status", control=missing)
    assert done.returncode == 2
    assert f"no control socket at {missing}" in done.stderr


AS_NOBODY = """
import os, sys
from dnspol import cli  # imported first: the interpreter's files may be root's only
os.setgid(65534)
os.setuid(65534)
sys.exit(cli.main(["ctl", "--control", sys.argv[1], "status"]))
"""


def test_two_servers_on_the_default_path(tmp_path) -> None:
    """The default path taken by a live server: the second runs without a control channel
    (and says so); an explicitly chosen path taken is an error (tested above)."""
    env = {**os.environ, "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    zone = tmp_path / "ctl.test.zone"
    zone.write_text(ZONE_V1)
    procs = []
    try:
        for n in (1, 2):
            ready = tmp_path / f"ready{n}"
            argv = [sys.executable, "-m", "dnspol", "serve", "--zone", str(zone), "--workers"]
            argv += [str(n), "--listen", "127.0.0.1:0", "--ready-file", str(ready)]
            log = open(tmp_path / f"log{n}", "w")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()
            deadline = time.monotonic() + 20
            while not ready.exists():
                assert procs[-1].poll() is None, (tmp_path / f"log{n}").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.02)
        path = tmp_path / "run" / "control.sock"
        status = subprocess.run(
            [sys.executable, "-m", "dnspol", "ctl", "--json", "status"],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert json.loads(status.stdout)["pid"] == procs[0].pid
        second_log = (tmp_path / "log2").read_text()
        assert f"another server is listening on the control socket {path}" in second_log
        assert "running without a control channel" in second_log
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(20) == 0
