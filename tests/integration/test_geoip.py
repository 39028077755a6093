"""GeoIP rules served for real: clients on loopback addresses (``dig -b 127.x.y.z``) and
ECS addresses from a trusted resolver get their country's or continent's answer, with the
matched database network's prefix length as SCOPE; ``dnspol check`` and ``explain`` on
GeoIP rules; a reload with a changed database switches answers.

The databases are written by the test (``dnspol.testing.geoip``) with 127.0.0.0/8 networks
of known prefix lengths, so every query stays on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnspol.testing import Server
from dnspol.testing.geoip import place, write_mmdb

ROOT = Path(__file__).resolve().parents[2]
NETWORKS = {
    "127.1.0.0/24": place("DE", "EU"),
    "127.1.1.0/25": place("FR", "EU"),
    "127.2.0.0/16": place("US", "NA"),
    "198.51.100.0/22": place("JP", "AS"),
    "198.51.101.0/24": place("DE", "EU"),  # cuts JP's /22 into a /24, this and a /23
    "2001:db8:1::/48": place("DE", "EU"),
}
ZONE = """\
$ORIGIN example.com.
$TTL 60
@    SOA ns1 hostmaster 1 3600 900 604800 60
     NS  ns1
ns1  A   192.0.2.53
www  A   192.0.2.1
"""
CONFIG = """\
server:
  trusted_resolvers: [127.0.0.1/32]
  geoip:
    city: geo.mmdb
zones:
  example.com:
    file: example.com.zone
    scopes:
      germany: {overlay: germany.zone}
      europe: {overlay: europe.zone}
rules:
  - name: germany
    zone: example.com
    match: {country: DE}
    answer: germany
  - name: europe
    zone: example.com
    match: {continent: EU}
    answer: europe
"""
GERMANY, EUROPE, DEFAULT = "192.0.2.49", "192.0.2.150", "192.0.2.1"


def write_site(workdir: Path, networks: dict = NETWORKS) -> Path:
    write_mmdb(workdir / "geo.mmdb", networks)
    (workdir / "example.com.zone").write_text(ZONE)
    (workdir / "germany.zone").write_text(f"$TTL 60\nwww A {GERMANY}\n")
    (workdir / "europe.zone").write_text(f"$TTL 60\nwww A {EUROPE}\n")
    config = workdir / "dnspol.yaml"
    config.write_text(CONFIG)
    return config


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("geoip")
    with Server(config=write_site(workdir)) as srv:
        yield srv


@pytest.mark.parametrize(
    "source, expected",
    [
        ("127.1.0.9", GERMANY),  # DE
        ("127.1.1.100", EUROPE),  # FR
        ("127.1.1.200", DEFAULT),  # 127.1.1.128/25: no record
        ("127.2.7.7", DEFAULT),  # US
    ],
)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_clients_get_their_countrys_answer(site, source, expected, tcp) -> None:
    result = site.dig("www.example.com", source=source, tcp=tcp)
    assert result.rcode == "NOERROR" and result.addresses == [expected]


@pytest.mark.parametrize(
    "subnet, expected, scope",
    [
        ("127.1.0.0/24", GERMANY, 24),  # DE's /24
        ("127.1.0.77/32", GERMANY, 24),
        ("127.1.1.0/28", EUROPE, 25),  # FR's /25
        ("127.1.0.0/16", GERMANY, 16),  # clamped to SOURCE
        ("198.51.102.0/24", DEFAULT, 23),  # JP: 23 bits keep it apart from 198.51.101.0/24
        ("198.51.101.0/24", GERMANY, 24),
        ("2001:db8:1:ab00::/56", GERMANY, 48),
    ],
)
def test_ecs_from_a_trusted_resolver_is_geolocated_with_the_networks_scope(
    site, subnet: str, expected: str, scope: int
) -> None:
    result = site.dig("www.example.com", f"+subnet={subnet}")
    assert result.addresses == [expected]
    assert result.edns is not None
    assert result.edns.option("CLIENT-SUBNET") == f"{subnet}/{scope}"


def test_ecs_from_an_untrusted_resolver_is_not_geolocated(site) -> None:
    result = site.dig("www.example.com", "+subnet=127.1.0.0/24", source="127.2.0.1")
    assert result.addresses == [DEFAULT]  # the resolver's own address, in the US
    assert result.edns is not None and result.edns.option("CLIENT-SUBNET") == "127.1.0.0/24/0"


def dnspol(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dnspol", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_check_names_the_rule_that_needs_a_missing_database(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    (tmp_path / "geo.mmdb").unlink()
    done = dnspol("check", "--config", str(config))
    assert done.returncode == 1
    lines = CONFIG.splitlines()
    rule_line = lines.index("    match: {country: DE}") + 1
    geoip_line = lines.index("    city: geo.mmdb") + 1
    assert (
        f"{config}:{rule_line}: rule 'germany': country DE needs the GeoIP database "
        f"{tmp_path}/geo.mmdb (server.geoip.city, {config}:{geoip_line}): no such file"
    ) in done.stdout + done.stderr


def test_check_reports_an_unreadable_database(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    (tmp_path / "geo.mmdb").write_bytes(os.urandom(4096))
    done = dnspol("check", "--config", str(config))
    assert done.returncode == 1
    assert "continent EU needs the GeoIP database" in done.stdout + done.stderr
    assert "not a readable MaxMind DB file" in done.stdout + done.stderr


def test_explain_shows_the_geoip_record_that_matched(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    done = dnspol("explain", "--config", str(config), "--client", "127.1.1.100", "www.example.com")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "client 127.1.1.100 is not in country DE: GeoIP geo.mmdb network 127.1.1.0/25" in out
    assert "client matched continent EU: GeoIP geo.mmdb network 127.1.1.0/25: " in out
    assert "continent EU, country FR" in out
    assert "decision: answer from scope 'europe', by rule 'europe'" in out


def test_a_reload_with_a_changed_database_switches_answers(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    with Server(config=config) as srv:
        assert srv.dig("www.example.com", source="127.1.1.100").addresses == [EUROPE]
        moved = {**NETWORKS, "127.1.1.0/25": place("DE", "EU")}  # FR's network now DE
        write_mmdb(tmp_path / "geo.new", moved)
        os.replace(tmp_path / "geo.new", tmp_path / "geo.mmdb")  # as updaters do
        assert srv.reload() == "ok"
        result = srv.dig("www.example.com", "+subnet=127.1.1.0/28", source="127.0.0.1")
        assert result.addresses == [GERMANY]
        assert srv.dig("www.example.com", source="127.1.1.100").addresses == [GERMANY]


def test_the_server_lists_the_database_among_its_watched_files(site) -> None:
    files = site.ctl("status")["config"]["files"]
    assert any(path.endswith("geo.mmdb") for path in files), files
