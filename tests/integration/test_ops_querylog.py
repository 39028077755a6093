"""The query log to standard output with several workers: every line whole.

Worker processes share one standard output. A pipe keeps a write whole only up to
PIPE_BUF (4096 bytes); a longer one can be split where the pipe fills, and another
worker's write lands in the middle of a line. The reader here stays away while the
queries arrive, so the pipe fills and the workers' writes wait in it side by side.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from itkit import DATA, make_query

QUERIES = 4000


def _start(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    ready = tmp_path / "ready"
    argv = [sys.executable, "-m", "dnspol", "serve", "--zone", str(DATA / "example.zone")]
    argv += ["--workers", "2", "--query-log", "-", "--no-watch", "--control", "none"]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(ready)]
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.02)
    return proc, int(ready.read_text().split()[1])


def _flood(port: int) -> int:
    """QUERIES queries, a burst at a time; returns how many were answered."""
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(0.5)
        for start in range(0, QUERIES, 200):
            for i in range(start, start + 200):
                sock.sendto(make_query(f"n{i}.example.", ident=i & 0xFFFF), ("127.0.0.1", port))
            for _ in range(200):
                try:
                    sock.recv(4096)
                except TimeoutError:
                    break
                answered += 1
    return answered


def test_workers_never_break_a_line_on_stdout(tmp_path) -> None:
    proc, port = _start(tmp_path)
    try:
        answered = _flood(port)
        time.sleep(0.5)  # the writers' next batches, into a full pipe
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert answered > QUERIES // 2, (tmp_path / "stderr").read_text()[-2000:]
    lines = [line for line in out.decode().splitlines() if not line.startswith("READY ")]
    broken = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            broken.append(line)
    assert len(lines) > 1000, f"only {len(lines)} lines logged"
    assert broken == [], f"{len(broken)} of {len(lines)} lines broken, e.g. {broken[:2]}"
