"""The container files hold together, checked by the tools that will read them.

No Docker engine runs here, so ``docker-compose config`` validates the compose file
(both profiles) and the test checks that its pieces agree: the address dnsdist gets
is the one the replicas trust, dnsdist's backends are the replicas, every config a
container runs passes ``dnspol check``, dnsdist's and Prometheus's own checkers
accept their files. test_ops_dnsdist.py runs the same dnsdist configuration for real.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from itkit import need

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def compose(*profiles: str) -> dict:
    exe = need("docker-compose", "docker-compose")
    args = [a for p in profiles for a in ("--profile", p)]
    return yaml.safe_load(run(exe, "-f", str(ROOT / "docker-compose.yml"), *args, "config"))


def test_compose_file_is_valid_and_profiles_split_the_services() -> None:
    services = compose("dnsdist")["services"]
    by_profile = {name: tuple(svc.get("profiles", ())) for name, svc in services.items()}
    assert by_profile == {
        "dnspol": (),
        "prometheus": (),
        "dnsdist": ("dnsdist",),
        "replica-a": ("dnsdist",),
        "replica-b": ("dnsdist",),
    }
    dnspol = services["dnspol"]
    published = {(p["published"], p["target"], p["protocol"]) for p in dnspol["ports"]}
    assert published == {(53, 5353, "udp"), (53, 5353, "tcp")}
    assert "0.0.0.0:5353" in dnspol["command"]
    assert compose()["services"]  # valid without the profile too


def test_dnsdist_sends_to_the_replicas_and_they_trust_it() -> None:
    services = compose("dnsdist")["services"]
    dnsdist_ip = services["dnsdist"]["networks"]["dns"]["ipv4_address"]
    replica_ips = [
        services[r]["networks"]["dns"]["ipv4_address"] for r in ("replica-a", "replica-b")
    ]
    backends = services["dnsdist"]["environment"]["DNSPOL_BACKENDS"].split(",")
    assert backends == [f"{ip}:5353" for ip in replica_ips]
    replica = yaml.safe_load((ROOT / "deploy" / "dnspol-replica.yaml").read_text())
    assert replica["server"]["trusted_proxies"] == [f"{dnsdist_ip}/32"]
    for name in ("replica-a", "replica-b"):
        command = services[name]["command"]
        assert command[command.index("--config") + 1] == "/etc/dnspol/replica.yaml"


def test_every_config_a_container_runs_passes_dnspol_check(tmp_path) -> None:
    check = [sys.executable, "-m", "dnspol", "check", "--config"]
    assert "ok:" in run(*check, str(ROOT / "policies" / "dnspol.yaml"))  # the image's default
    (tmp_path / "policies").symlink_to(ROOT / "policies")  # as the replicas mount it
    shutil.copy(ROOT / "deploy" / "dnspol-replica.yaml", tmp_path / "replica.yaml")
    assert "ok:" in run(*check, str(tmp_path / "replica.yaml"))


def test_dnsdist_and_prometheus_accept_their_files() -> None:
    dnsdist = need("dnsdist", "dnsdist")
    assert "OK" in run(dnsdist, "--check-config", "-C", str(ROOT / "deploy" / "dnsdist.conf"))
    promtool = need("promtool", "prometheus")
    assert "SUCCESS" in run(promtool, "check", "config", str(ROOT / "deploy" / "prometheus.yml"))


def test_image_runs_as_a_user_on_an_unprivileged_port() -> None:
    lines = [x.strip() for x in (ROOT / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    users = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(x.startswith("EXPOSE ") and "5353/udp" in x for x in lines)
