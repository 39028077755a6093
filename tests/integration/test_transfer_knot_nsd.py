"""Knot DNS and NSD as secondaries of dnspol: each loads the zone by AXFR signed with
TSIG, then answers generated questions as dnspol does."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from subprocess import STDOUT, Popen

import pytest
from itkit import free_port, need, stop_process
from xfrkit import SECRET, compare, generated_zone, start_primary, wait_loaded


@pytest.fixture(scope="module")
def zone_text() -> str:
    return generated_zone(random.Random(1995))


@pytest.fixture(scope="module")
def primary(zone_text):
    with start_primary(zone_text) as server:
        yield server


def run(argv: list[str], workdir: Path, log_name: str) -> Popen:
    log = open(workdir / log_name, "w")  # noqa: SIM115 - closed with the process
    return Popen(argv, stdout=log, stderr=STDOUT, start_new_session=True)


def test_knot_loads_the_zone_by_signed_axfr_and_answers_as_dnspol(primary, zone_text, tmp_path):
    knotd = shutil.which("knotd") or need("knotd", "knot")
    port = free_port()
    (tmp_path / "knot.conf").write_text(
        f"""server:
    rundir: "{tmp_path}"
    listen: 127.0.0.1@{port}
database:
    storage: "{tmp_path}"
log:
  - target: stdout
    any: info
key:
  - id: fleet
    algorithm: hmac-sha256
    secret: {SECRET}
remote:
  - id: dnspol
    address: 127.0.0.1@{primary.port}
    key: fleet
template:
  - id: default
    storage: "{tmp_path}"
zone:
  - domain: example.com
    master: dnspol
"""
    )
    proc = run([knotd, "-c", str(tmp_path / "knot.conf")], tmp_path, "knot.log")
    try:
        wait_loaded(port)
        assert compare(primary, port, zone_text, "127.0.0.1") >= 200
    finally:
        stop_process(proc)
    log = (tmp_path / "knot.log").read_text()
    assert "AXFR, incoming" in log and "finished" in log, log[-2000:]


def test_nsd_loads_the_zone_by_signed_axfr_and_answers_as_dnspol(primary, zone_text, tmp_path):
    nsd = shutil.which("nsd") or need("nsd", "nsd")
    port = free_port()
    (tmp_path / "nsd.conf").write_text(
        f"""server:
    ip-address: 127.0.0.1@{port}
    zonesdir: "{tmp_path}"
    pidfile: "{tmp_path}/nsd.pid"
    xfrdfile: "{tmp_path}/xfrd.state"
    zonelistfile: "{tmp_path}/zone.list"
    xfrdir: "{tmp_path}"
    database: ""
    username: ""
    logfile: "{tmp_path}/nsd.log"
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
    request-xfr: AXFR 127.0.0.1@{primary.port} fleet
"""
    )
    proc = run([nsd, "-d", "-c", str(tmp_path / "nsd.conf")], tmp_path, "nsd.out")
    try:
        wait_loaded(port)
        assert compare(primary, port, zone_text, "127.0.0.1") >= 200
    finally:
        stop_process(proc)
