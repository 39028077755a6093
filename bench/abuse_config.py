"""Configuration bombs and the slow-header attack on the operations port, timed.

python bench/abuse_config.py [--tree DIR] [--limit-mb MB] [--timeout S] [--only PROBE...]

Runs each probe against the dnspol found in DIR (default: this checkout), each in a
fresh process capped at --limit-mb of address space and --timeout seconds, and prints
one line per probe: wall time, peak memory (ru_maxrss) and how it ended.

  alias-bomb   ``dnspol check`` on a config of 342 bytes: nine levels of nine aliases
  self-alias   ``dnspol check`` on ``a: &a [*a]``
  many-values  ``dnspol check`` on 4 MB of YAML: one list of 2,000,000 values
  diamond      ``dnspol check``: rule files 15 levels deep, each including both files of
               the next level (2**15 paths to one leaf)
  generate     ``dnspol check``: a zone with ``$GENERATE 0-4294967295``
  slow-headers ``dnspol serve --metrics-listen``: 100 connections send half a header and
               stall; then how long one GET /metrics takes, and the server's threads

The caps keep a probe of old code from taking the machine: a probe that hits one is
reported as "killed" or "out of memory", with what it had used by then.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ZONE = """\
$TTL 300
@ SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.2
"""


def write_probes(root: Path) -> dict[str, Path]:
    """The probe configurations, written under ``root``; name → config file."""
    (root / "example.zone").write_text(ZONE)
    zones = "zones:\n  example.: example.zone\n"
    probes = {}

    levels = "".join(
        f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + levels
    probes["alias-bomb"] = root / "bomb.yaml"
    probes["alias-bomb"].write_text(bomb)

    probes["self-alias"] = root / "self.yaml"
    probes["self-alias"].write_text("a: &a [*a]\n" + zones)

    probes["many-values"] = root / "values.yaml"
    probes["many-values"].write_text("a: [" + "1," * 2_000_000 + "]\n" + zones)

    rules = root / "rules"
    rules.mkdir()
    for level in range(15):
        below = f"[d{level + 1}a.yaml, d{level + 1}b.yaml]" if level < 14 else "[]"
        for side in "ab":
            text = f"rules:\n  - include: {below}\n" if level < 14 else "rules: []\n"
            (rules / f"d{level}{side}.yaml").write_text(text)
    probes["diamond"] = root / "diamond.yaml"
    probes["diamond"].write_text("rules:\n  - include: rules/d0a.yaml\n" + zones)

    (root / "generate.zone").write_text(ZONE + "$GENERATE 0-4294967295 h$ A 192.0.2.3\n")
    probes["generate"] = root / "generate.yaml"
    probes["generate"].write_text("zones:\n  example.: generate.zone\n")
    return probes


def run_capped(argv: list[str], tree: Path, limit_mb: int, timeout: float) -> tuple:
    """(seconds, peak MB, how it ended, last line of its output)."""
    env = dict(os.environ, PYTHONPATH=str(tree))

    def cap() -> None:
        limit = limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=env, cwd=tree, stdout=out, stderr=subprocess.STDOUT, preexec_fn=cap
        )
        ended = ""
        while True:  # os.wait4 gives this child's own peak memory
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                ended = f"killed after {timeout:g} s"
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
    if not ended:
        ended = "out of memory" if "MemoryError" in text else f"exit {proc.returncode}"
    lines = text.splitlines() or [""]
    said = lines[-1] if lines[0].startswith("Traceback") else lines[0]  # the problem, or why
    return seconds, usage.ru_maxrss / 1024, ended, said[:150]


def slow_headers(tree: Path, root: Path, timeout: float) -> str:
    ready = root / "ready"
    log = root / "serve.log"
    argv = [sys.executable, "-m", "dnspol", "serve", "--zone", str(root / "example.zone")]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(ready), "--no-watch"]
    argv += ["--metrics-listen", "127.0.0.1:0"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=tree, stdout=out, stderr=subprocess.STDOUT)
    stalled: list[socket.socket] = []
    try:
        deadline = time.monotonic() + timeout
        found = None
        while found is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                return "the server did not start"
            time.sleep(0.05)
            found = re.search(r"metrics and health on http://([\d.]+):(\d+)", log.read_text())
        address = (found.group(1), int(found.group(2)))
        threads_before = _threads(proc.pid)
        for _ in range(100):
            sock = socket.create_connection(address, timeout=2)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: sl")
            stalled.append(sock)
        time.sleep(0.3)
        threads = _threads(proc.pid)
        asked = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=10):
                answer = f"GET /metrics {time.monotonic() - asked:.3f} s"
        except OSError as exc:
            answer = f"GET /metrics failed after {time.monotonic() - asked:.1f} s ({exc})"
        closed = _closed_within(stalled, 8.0)
        return (
            f"threads {threads_before} -> {threads} with 100 stalled; {answer}; "
            f"{closed}/100 closed by the server within 8 s"
        )
    finally:
        for sock in stalled:
            sock.close()
        proc.terminate()
        proc.wait(10)


def _closed_within(connections: list[socket.socket], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    closed = 0
    for sock in connections:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(100) == b"":
                closed += 1
        except OSError:
            pass
    return closed


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, default=HERE, help="checkout whose dnspol to run")
    parser.add_argument("--limit-mb", type=int, default=1500, help="address-space cap per probe")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per probe")
    parser.add_argument("--only", nargs="*", help="run these probes only")
    args = parser.parse_args()
    print(f"dnspol from {args.tree}; each probe capped at {args.limit_mb} MB, {args.timeout:g} s")
    with tempfile.TemporaryDirectory(prefix="dnspol-abuse-") as temp:
        root = Path(temp)
        for name, config in write_probes(root).items():
            if args.only and name not in args.only:
                continue
            argv = [sys.executable, "-m", "dnspol", "check", "--config", str(config)]
            seconds, peak, ended, last = run_capped(argv, args.tree, args.limit_mb, args.timeout)
            print(f"{name:12} {seconds:7.2f} s {peak:7.0f} MB  {ended:20} {last}")
        if not args.only or "slow-headers" in args.only:
            print(f"{'slow-headers':12} {slow_headers(args.tree, root, args.timeout)}")


if __name__ == "__main__":
    main()
