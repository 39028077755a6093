"""A flood of mutated packets, then the checks that the server is unharmed (issue 13 floor).

Serves the bundled example (policies/dnspol.yaml, default workers) on a free port,
then:

* sends ``--udp`` mutated UDP packets (default 1,000,000) at ``--pps`` (default
  20,000) from a spread of loopback sources: real queries (plain, EDNS, ECS, COOKIE,
  NSID, many names and types) with random bytes flipped, cut short, extended, or with
  their counts and lengths changed;
* then sends ``--tcp-messages`` (default 200,000) over ``--tcp-connections`` (default
  1,000) TCP connections, pipelined, a mix of well-formed and mutated messages (at least
  12 bytes each: a shorter frame rightly ends its connection), from
  sources spread over many /24s (so per-source limits do not refuse them), reading
  every answer;
* and reports: tracebacks in the server's log, whether the example's answers are still
  right (public and internal views), and the memory of the whole process tree (RSS,
  summed) before and after, with their ratio.

    python bench/abuse_flood.py [--udp N] [--pps N] [--tcp-messages N] [--tcp-connections N]

Exits 1 if a traceback was logged, an answer is wrong, or RSS grew more than 1.3x.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dnslib import EDNS0, DNSRecord, EDNSOption

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["www.example.com", "example.com", "mail.example.com", "nope.example.com",
         "api.example.com", "x.y.example.com", "www.example.org", "version.bind"]  # fmt: skip
TYPES = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "ANY", "CNAME", "SRV", "AXFR", "DS"]


def base_queries(rng: random.Random, count: int = 400) -> list[bytes]:
    out = []
    for _ in range(count):
        q = DNSRecord.question(rng.choice(NAMES), rng.choice(TYPES))
        kind = rng.randrange(5)
        if kind:
            opts = []
            if kind == 2:
                opts.append(EDNSOption(8, bytes([0, 1, 24, 0, 10, 1, 2])))  # ECS 10.1.2.0/24
            if kind == 3:
                opts.append(EDNSOption(10, os.urandom(8)))  # a client cookie
            if kind == 4:
                opts.append(EDNSOption(3, b""))  # NSID
            q.add_ar(EDNS0(udp_len=rng.choice([512, 1232, 4096]), opts=opts))
        out.append(bytes(q.pack()))
    return out


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randrange(1, 4)):
        how = rng.randrange(6)
        if how == 0 and data:  # flip bytes
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 1:  # cut short
            del data[rng.randrange(len(data) + 1) :]
        elif how == 2:  # trailing garbage
            data += os.urandom(rng.randrange(1, 64))
        elif how == 3 and len(data) >= 12:  # counts
            struct.pack_into("!H", data, rng.choice((4, 6, 8, 10)), rng.randrange(65536))
        elif how == 4 and len(data) > 13:  # a label length
            data[12] = rng.randrange(256)
        elif how == 5 and len(data) >= 4:  # flags, opcode, QR
            data[2], data[3] = rng.randrange(256), rng.randrange(256)
    return bytes(data)


def framed_mutation(rng: random.Random, bases: list[bytes]) -> bytes:
    """A mutated message still as long as a header: a shorter frame ends the connection
    (RFC 7766 §8, after the answers made), which would leave the rest unsent."""
    wire = mutate(rng, rng.choice(bases))
    return wire + bytes(max(0, 12 - len(wire)))


def tree_rss_kb(pid: int) -> int:
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
            with open(f"/proc/{current}/task/{current}/children") as fh:
                pids += [int(p) for p in fh.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def start(workdir: Path) -> tuple[subprocess.Popen, int]:
    ready = workdir / "ready"
    argv = [sys.executable, "-m", "dnspol", "serve", "--config", str(ROOT / "policies/dnspol.yaml")]
    argv += ["--listen", "127.0.0.1:0", "--ready-file", str(ready), "--no-watch"]
    argv += ["--control", "none"]
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((workdir / "server.log").read_text())
        time.sleep(0.05)
    return proc, int(ready.read_text().split()[1])


def udp_flood(port: int, total: int, pps: int, rng: random.Random, bases: list[bytes]) -> float:
    socks = []
    for i in range(16):  # 16 sources in 16 /24s
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.90.{i}.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    target = ("127.0.0.1", port)
    began = time.monotonic()
    batch = 200
    for sent in range(0, total, batch):
        for j in range(batch):
            sock = socks[(sent + j) & 15]
            with contextlib.suppress(OSError):
                sock.sendto(mutate(rng, rng.choice(bases)), target)
        for sock in socks:  # read and discard answers
            try:
                while sock.recv(65535):
                    pass
            except OSError:
                pass
        pause = began + (sent + batch) / pps - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    for sock in socks:
        sock.close()
    return total / (time.monotonic() - began)


def tcp_flood(port: int, messages: int, connections: int, rng: random.Random, bases) -> dict:
    """``connections`` connections in waves of 250, ``messages / connections`` each."""
    per = messages // connections
    counts = {"answers": 0, "closed_by_server": 0, "connect_failed": 0}
    wave = 250
    for first in range(0, connections, wave):
        sel = selectors.DefaultSelector()
        for n in range(first, min(first + wave, connections)):
            source = f"127.91.{n // 20}.{n % 20 + 1}"  # 20 per /24: under the limits
            try:
                sock = socket.create_connection(("127.0.0.1", port), 5, (source, 0))
            except OSError:
                counts["connect_failed"] += 1
                continue
            out = b"".join(
                struct.pack("!H", len(m)) + m
                for m in (
                    framed_mutation(rng, bases) if rng.random() < 0.3 else rng.choice(bases)
                    for _ in range(per)
                )
            )
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, [out, b""])
        deadline = time.monotonic() + 60
        while sel.get_map() and time.monotonic() < deadline:
            for key, events in sel.select(1.0):
                sock, state = key.fileobj, key.data
                if events & selectors.EVENT_WRITE and state[0]:
                    try:
                        sent = sock.send(state[0][:65536])
                        state[0] = state[0][sent:]
                    except OSError:
                        state[0] = b""
                    if not state[0]:
                        sock.shutdown(socket.SHUT_WR)
                        sel.modify(sock, selectors.EVENT_READ, state)
                if events & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        counts["closed_by_server"] += bool(state[0])
                        sel.unregister(sock)
                        sock.close()
                        continue
                    buf = state[1] + chunk
                    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                        buf = buf[2 + struct.unpack("!H", buf[:2])[0] :]
                        counts["answers"] += 1
                    state[1] = buf
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()
    return counts


def dig(port: int, name: str, source: str = "127.0.0.1") -> list[str]:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "-b", source, name, "+short", "+tries=2"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return out.stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--udp", type=int, default=1_000_000)
    parser.add_argument("--pps", type=int, default=20_000)
    parser.add_argument("--tcp-messages", type=int, default=200_000)
    parser.add_argument("--tcp-connections", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    bases = base_queries(rng)
    workdir = Path(tempfile.mkdtemp(prefix="dnspol-flood-"))
    proc, port = start(workdir)
    try:
        for _ in range(50):  # warm: every kind of answer once
            dig(port, "www.example.com")
            break
        before = tree_rss_kb(proc.pid)
        rate = udp_flood(port, args.udp, args.pps, rng, bases)
        print(f"UDP: {args.udp:,} mutated packets at {rate:,.0f} pps")
        tcp = tcp_flood(port, args.tcp_messages, args.tcp_connections, rng, bases)
        print(
            f"TCP: {args.tcp_messages:,} messages over {args.tcp_connections:,} connections: {tcp}"
        )
        time.sleep(2)
        after = tree_rss_kb(proc.pid)
        public = dig(port, "www.example.com")
        internal = dig(port, "www.example.com", "127.0.0.2")
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
    log = (workdir / "server.log").read_text()
    tracebacks = log.count("Traceback")
    ratio = after / before
    print(f"server alive after: {alive}; tracebacks in its log: {tracebacks}")
    print(f"answers after: public {public}, internal {internal}")
    print(f"RSS of the process tree: {before / 1024:.0f} MB before, {after / 1024:.0f} MB after "
          f"({ratio:.2f}x)")  # fmt: skip
    ok = alive and not tracebacks and public == ["192.0.2.10"] and internal == ["10.0.0.10"]
    ok = ok and ratio <= 1.3
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
