"""AXFR out: dnspol beside BIND 9 serving the same generated zone, in the same run.

    python bench/axfr.py [RECORDS] [--tsig]

Starts dnspol (one worker, ``dnspol.testing.Server``) and BIND (``named -g -n 1``) as
primaries of one zone of RECORDS A records (default 100,000), transfers it from each
back to back for two seconds (three times at least) over TCP from this process
(reading the bytes, parsing nothing), and prints the best time of each, their ratio,
the records and bytes received, dnspol's resident memory before the transfers and at
its peak during them (sampled every 5 ms), and the p99 of UDP queries answered by each
while idle and while it transfers (measured by a separate process, so the transfer
reader here does not delay the probe's clock). Loopback only.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.tsig

from dnspol.testing import Server

SECRET = base64.b64encode(b"bench-secret-0123456789abcdef012").decode()
KEY = dns.tsig.Key("bench.", SECRET, dns.tsig.HMAC_SHA256)


def zone_text(records: int) -> str:
    head = "$ORIGIN bench.example.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 900 1209600 300\n"
    head += "@ NS ns1\nns1 A 192.0.2.1\n"
    body = "".join(
        f"h{i} A 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}\n" for i in range(records)
    )
    return head + body


def transfer(port: int, tsig: bool, expected: int) -> tuple[float, int, int]:
    """(seconds, records, bytes) of one AXFR of ``expected`` records (counted from each
    message's ANCOUNT: the zone's SOA, NS, glue, the A records, the closing SOA)."""
    query = dns.message.make_query("bench.example.", "AXFR")
    if tsig:
        query.use_tsig(KEY)
    wire = query.to_wire()
    began = time.perf_counter()
    records = size = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        reader = sock.makefile("rb", buffering=1 << 20)
        while records < expected:
            length = struct.unpack("!H", reader.read(2))[0]
            message = reader.read(length)
            if message[3] & 0x0F:
                raise OSError(f"rcode {message[3] & 0x0F}")
            size += length + 2
            records += struct.unpack_from("!H", message, 6)[0]
    return time.perf_counter() - began, records, size


def rss_kb(pid: int) -> int:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def run_named(workdir: Path, zone: str, tsig: bool) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (workdir / "zone.db").write_text(zone)
    allow = 'key "bench"' if tsig else "any"
    (workdir / "named.conf").write_text(
        f"""options {{ directory "{workdir}"; pid-file "{workdir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion no; allow-transfer {{ {allow}; }}; }};
controls {{ }};
key "bench" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "bench.example" {{ type primary; file "{workdir}/zone.db"; }};
"""
    )
    named = shutil.which("named") or "/usr/sbin/named"
    proc = subprocess.Popen(
        [named, "-g", "-n", "1", "-c", str(workdir / "named.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            transfer(port, tsig, 1)
            return proc, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("BIND did not start")


def udp_probe(port: int, stop, conn) -> None:
    """In a process of its own (the transfer reader in this one would hold the GIL and
    delay the probe's own clock): query every 2 ms until ``stop``, send the times back."""
    query = dns.message.make_query("h1.bench.example.", "A").to_wire()
    times: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        while not stop.is_set():
            began = time.perf_counter()
            sock.sendto(query, ("127.0.0.1", port))
            sock.recv(512)
            times.append(time.perf_counter() - began)
            time.sleep(0.002)
    conn.send(times)


def probed(port: int, work) -> tuple[list[float], object]:
    """UDP answer times measured by a separate process while ``work()`` runs."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    ours, theirs = context.Pipe()
    prober = context.Process(target=udp_probe, args=(port, stop, theirs))
    prober.start()
    time.sleep(0.2)  # the prober's first queries
    result = work()
    stop.set()
    times = ours.recv()
    prober.join()
    return times, result


def transfers_for(port: int, tsig: bool, expected: int, seconds: float) -> list:
    """Transfers back to back for at least ``seconds`` (three at least)."""
    runs = []
    began = time.monotonic()
    while len(runs) < 3 or time.monotonic() - began < seconds:
        runs.append(transfer(port, tsig, expected))
    return runs


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)] if values else float("nan")


def latency_line(name: str, idle: list[float], during: list[float]) -> str:
    return (
        f"{name}: UDP p99 idle {p99(idle) * 1e3:.2f} ms ({len(idle)} queries), during "
        f"transfers {p99(during) * 1e3:.2f} ms ({len(during)} queries), "
        f"ratio {p99(during) / p99(idle):.2f}"
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tsig = "--tsig" in sys.argv
    records = int(args[0]) if args else 100_000
    zone = zone_text(records)
    policies = (
        "keys:\n  bench: {secret_file: bench.key}\ntransfers:\n  - name: bench\n"
        f"    match: {{client: 127.0.0.1{', key: bench' if tsig else ''}}}\n    action: allow\n"
    )
    results, lines = {}, []
    with Server(
        zones={"bench.example.": zone},
        policies=policies,
        files={"bench.key": SECRET},
        start_timeout=600,
    ) as server:
        before = rss_kb(server.pid)
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kb(server.pid))
                time.sleep(0.005)

        idle, _ = probed(server.port, lambda: time.sleep(2))
        sampler = threading.Thread(target=sample)
        sampler.start()
        during, runs = probed(
            server.port, lambda: transfers_for(server.port, tsig, records + 4, 2.0)
        )
        done.set()
        sampler.join()
        results["dnspol"] = min(runs)
        lines.append(f"dnspol: RSS {before / 1024:.1f} MB before, peak {peak / 1024:.1f} MB during")
        lines.append(latency_line("dnspol", idle, during))
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = run_named(Path(tmp), zone, tsig)
        try:
            idle, _ = probed(port, lambda: time.sleep(2))
            during, runs = probed(port, lambda: transfers_for(port, tsig, records + 4, 2.0))
            results["bind"] = min(runs)
            lines.append(latency_line("bind", idle, during))
        finally:
            os.killpg(proc.pid, 15)
            proc.wait()
    for line in lines:
        print(line)
    for name, (seconds, got, size) in results.items():
        print(f"{name}: AXFR of {got} records, {size} bytes: {seconds:.3f} s (best run)")
    ratio = results["dnspol"][0] / results["bind"][0]
    print(f"dnspol / BIND time: {ratio:.2f}")


if __name__ == "__main__":
    main()
