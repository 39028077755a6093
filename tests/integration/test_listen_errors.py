"""A port that cannot be had: the error names the address and the likely fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ZONE = "$ORIGIN e.test.\n@ 60 SOA ns hm 1 7200 900 1209600 60\n@ 60 NS ns\nns 60 A 192.0.2.1\n"


def serve(zone: Path, listen: str, workers: str, user: str | None = None):
    argv = [sys.executable, "-m", "dnspol", "serve", "--zone", str(zone), "--listen", listen]
    argv += ["--workers", workers, "--control", "none", "--no-watch"]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_named_with_what_to_do(tmp_path, workers) -> None:
    zone = tmp_path / "e.test.zone"
    zone.write_text(ZONE)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = serve(zone, f"127.0.0.1:{port}", workers)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in done.stderr
    assert "another DNS server" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_53_without_the_privilege_says_how_to_get_it(workers) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # readable by the unprivileged user
        os.chmod(tmp, 0o755)
        zone = Path(tmp) / "e.test.zone"
        zone.write_text(ZONE)
        os.chmod(zone, 0o644)
        done = serve(zone, "127.0.0.1:53", workers, user="65534")
    assert done.returncode == 1, done.stderr
    assert "cannot listen on 127.0.0.1:53: permission denied" in done.stderr
    assert "CAP_NET_BIND_SERVICE" in done.stderr
