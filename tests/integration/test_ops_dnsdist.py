"""dnsdist in front of two dnspol replicas, as docker-compose.yml's "dnsdist" profile runs them.

Debian's dnsdist runs deploy/dnsdist.conf unchanged (addresses from the environment)
on loopback, in front of two dnspol processes running deploy/dnspol-replica.yaml with
the compose network's dnsdist address swapped for 127.0.0.1. dnsdist passes each
client's address in a PROXY v2 header, so the split-horizon rule still sees the
client: from 127.0.0.2 (the "lab" subnet) the internal answer, from 127.0.0.1 the
external one, over UDP and TCP, and still after one replica goes away.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from itkit import make_query, need

import dnspol.testing

ROOT = Path(__file__).resolve().parents[2]
INTERNAL, EXTERNAL = ["10.0.0.10"], ["192.0.2.10"]
COMPOSE_DNSDIST = "172.28.0.2/32"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise OSError("no free port")


def replica_config(tmp_path: Path) -> Path:
    text = (ROOT / "deploy" / "dnspol-replica.yaml").read_text()
    assert COMPOSE_DNSDIST in text, "the replica config no longer trusts dnsdist's address"
    (tmp_path / "policies").symlink_to(ROOT / "policies")
    path = tmp_path / "replica.yaml"
    path.write_text(text.replace(COMPOSE_DNSDIST, "127.0.0.1/32"))
    return path


@pytest.fixture
def setup(tmp_path):
    exe = need("dnsdist", "dnsdist")
    config = replica_config(tmp_path)
    replicas = []
    dnsdist = None
    try:
        for name in ("a", "b"):
            log = tmp_path / f"queries-{name}.jsonl"
            replicas.append(
                dnspol.testing.Server(
                    config=config,
                    workdir=tmp_path / f"replica-{name}",
                    extra_args=["--query-log", str(log)],
                )
            )
        port, web = free_port(), free_port()
        env = dict(os.environ)
        env["DNSDIST_LISTEN"] = f"127.0.0.1:{port}"
        env["DNSPOL_BACKENDS"] = ",".join(r.address for r in replicas)
        env["DNSDIST_WEBSERVER"] = f"127.0.0.1:{web}"
        argv = [exe, "--supervised", "--disable-syslog", "-C", str(ROOT / "deploy/dnsdist.conf")]
        out = open(tmp_path / "dnsdist.log", "w")  # noqa: SIM115 - closed with the process
        dnsdist = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        out.close()
        front = SimpleFront(port, web, dnsdist, tmp_path / "dnsdist.log")
        front.wait_backends_up(len(replicas))
        yield front, replicas, tmp_path
    finally:
        if dnsdist is not None:
            dnsdist.terminate()
            try:
                dnsdist.wait(10)
            except subprocess.TimeoutExpired:
                dnsdist.kill()
                dnsdist.wait()
        for replica in replicas:
            replica.stop()


class SimpleFront:
    """The running dnsdist: where to ask, and its view of the backends."""

    def __init__(self, port: int, web: int, proc: subprocess.Popen, log: Path) -> None:
        self.port, self.web, self.proc, self.log = port, web, proc, log

    def dig(self, name: str, source: str, tcp: bool = False) -> list[str]:
        result = dnspol.testing.dig("127.0.0.1", self.port, name, source=source, tcp=tcp)
        assert result.rcode == "NOERROR", result
        return result.addresses

    def backends_up(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web}/metrics", timeout=2) as r:
            text = r.read().decode()
        return sum(
            1 for line in text.splitlines() if re.match(r"dnsdist_server_status\{.*\} 1$", line)
        )

    def wait_backends_up(self, want: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"dnsdist exited:\n{self.log.read_text()}"
            try:
                if self.backends_up() == want:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"backends never {want} up:\n{self.log.read_text()}"
            time.sleep(0.1)


def test_subnet_rules_see_the_real_client_through_dnsdist(setup) -> None:
    front, replicas, tmp_path = setup
    for tcp in (False, True):
        assert front.dig("www.example.com", source="127.0.0.2", tcp=tcp) == INTERNAL
        assert front.dig("www.example.com", source="127.0.0.1", tcp=tcp) == EXTERNAL
    deadline = time.monotonic() + 5
    while len(logged := _logged(tmp_path, "www.example.com.")) < 4:
        assert time.monotonic() < deadline, logged
        time.sleep(0.05)
    clients = sorted((r["client"], r["proto"], r["scope"]) for r in logged)
    assert clients == [
        ("127.0.0.1", "tcp", "default"),
        ("127.0.0.1", "udp", "default"),
        ("127.0.0.2", "tcp", "internal"),
        ("127.0.0.2", "udp", "internal"),
    ]


def _logged(tmp_path: Path, qname: str) -> list[dict]:
    """The replicas' query log records for ``qname`` (dnsdist's health checks left out)."""
    out = []
    for path in tmp_path.glob("queries-*.jsonl"):
        out += [json.loads(x) for x in path.read_text().splitlines() if f'"{qname}"' in x]
    return out


def test_only_the_trusted_proxy_must_send_proxy_headers(setup) -> None:
    _, replicas, _ = setup
    replica = replicas[0]
    query = make_query("www.example.com.")
    # 127.0.0.1 is the trusted proxy: without a PROXY header its packets are not answered
    assert replica.exchange(query, source="127.0.0.1", timeout=0.5) is None
    # anyone else is an ordinary client, asked directly
    assert replica.dig("www.example.com", source="127.0.0.2").addresses == INTERNAL


def test_one_replica_gone_the_other_answers(setup) -> None:
    front, replicas, _ = setup
    replicas[0].stop()
    front.wait_backends_up(1)
    for _ in range(5):
        assert front.dig("www.example.com", source="127.0.0.2") == INTERNAL
        assert front.dig("www.example.com", source="127.0.0.1") == EXTERNAL
