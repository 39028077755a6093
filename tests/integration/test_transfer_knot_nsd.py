"""Knot DNS and NSD as secondaries of dnspol: each loads the zone by AXFR signed with
TSIG and answers generated questions as dnspol does; after a reload with a new serial,
dnspol's NOTIFY brings each up to date by IXFR within 5 s."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from subprocess import STDOUT, Popen

import pytest
from itkit import free_port, need, stop_process
from xfrkit import (
    SECRET,
    SERIAL,
    compare,
    generated_zone,
    notifying_primary,
    reload_and_wait,
    wait_loaded,
)


@pytest.fixture(scope="module")
def zone_text() -> str:
    return generated_zone(random.Random(1995))


def run(argv: list[str], workdir: Path, log_name: str) -> Popen:
    log = open(workdir / log_name, "w")  # noqa: SIM115 - closed with the process
    return Popen(argv, stdout=log, stderr=STDOUT, start_new_session=True)


def knot_conf(workdir: Path, port: int, primary_port: int) -> str:
    return f"""server:
    rundir: "{workdir}"
    listen: 127.0.0.1@{port}
database:
    storage: "{workdir}"
log:
  - target: stdout
    any: info
key:
  - id: fleet
    algorithm: hmac-sha256
    secret: {SECRET}
remote:
  - id: dnspol
    address: 127.0.0.1@{primary_port}
    key: fleet
acl:
  - id: notify-from-dnspol
    address: 127.0.0.1
    key: fleet
    action: notify
template:
  - id: default
    storage: "{workdir}"
zone:
  - domain: example.com
    master: dnspol
    acl: notify-from-dnspol
"""


def nsd_conf(workdir: Path, port: int, primary_port: int) -> str:
    return f"""server:
    ip-address: 127.0.0.1@{port}
    zonesdir: "{workdir}"
    pidfile: "{workdir}/nsd.pid"
    xfrdfile: "{workdir}/xfrd.state"
    zonelistfile: "{workdir}/zone.list"
    xfrdir: "{workdir}"
    database: ""
    username: ""
    logfile: "{workdir}/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
key:
    name: fleet
    algorithm: hmac-sha256
    secret: "{SECRET}"
zone:
    name: example.com
    zonefile: example.com.zone
    request-xfr: 127.0.0.1@{primary_port} fleet
    allow-notify: 127.0.0.1 fleet
"""


@pytest.mark.parametrize("server", ["knot", "nsd"])
def test_a_secondary_loads_answers_as_dnspol_and_follows_a_reload(server, zone_text, tmp_path):
    port = free_port()
    primary_dir = tmp_path / "primary"
    secondary_dir = tmp_path / server
    secondary_dir.mkdir()
    with notifying_primary(primary_dir, zone_text, port) as primary:
        if server == "knot":
            knotd = shutil.which("knotd") or need("knotd", "knot")
            (secondary_dir / "knot.conf").write_text(knot_conf(secondary_dir, port, primary.port))
            argv = [knotd, "-c", str(secondary_dir / "knot.conf")]
        else:
            nsd = shutil.which("nsd") or need("nsd", "nsd")
            (secondary_dir / "nsd.conf").write_text(nsd_conf(secondary_dir, port, primary.port))
            argv = [nsd, "-d", "-c", str(secondary_dir / "nsd.conf")]
        proc = run(argv, secondary_dir, "out.log")
        try:
            wait_loaded(port)
            assert compare(primary, port, zone_text, "127.0.0.1") >= 200
            new, seconds = reload_and_wait(primary, primary_dir, zone_text, port)
            print(f"{server}: serial {SERIAL + 1} {seconds:.2f} s after the reload")
            compare(primary, port, new, "127.0.0.1", count=200)
        finally:
            stop_process(proc)
        primary.wait_for_log(f"NOTIFY example.com. serial {SERIAL + 1} to 127.0.0.1:{port}: acked")
        assert "transfer ok: AXFR example.com. scope default" in primary.log
        assert "transfer incremental: IXFR example.com. scope default" in primary.log
