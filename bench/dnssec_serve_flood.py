"""A random-subdomain flood against a signed zone, in process (``Handler.handle``).

A zone of ``--names`` A records is signed by BIND's dnssec-signzone with NSEC and with
NSEC3 (no salt, no extra iterations, RFC 9276); every query is a new random name under
the apex, with DO. Prints µs per query for the unsigned zone (DO and not), the NSEC3 and
the NSEC zone, the ratios to the unsigned zone with DO, and the CPU time to compile each
zone's answer tables. Rounds are interleaved and the best of each kept (a shared machine).

    PYTHONPATH=. .venv/bin/python bench/dnssec_serve_flood.py [--names 10000] [--queries 5000]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time

from dnslib import EDNS0, DNSRecord

from dnspol.answers import compile_tables
from dnspol.handler import Handler, Listener
from dnspol.state import ServerState, Snapshot
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import ZoneSet

ORIGIN = "flood.test."
UDP = Listener("127.0.0.1", 53, "udp")


def zone_text(names: int) -> str:
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 300", "@ SOA ns1 hostmaster 1 3600 600 86400 60"]
    lines += ["@ NS ns1", "ns1 A 192.0.2.1"]
    lines += [f"h{i} A 192.0.2.{i % 250 + 1}" for i in range(names)]
    return "\n".join(lines) + "\n"


def signed(text: str, work: str, *flags: str) -> str:
    path = os.path.join(work, "zone")
    with open(path, "w") as file:
        file.write(text)
    done = subprocess.run(
        ["dnssec-signzone", "-q", "-z", "-K", work, "-S", *flags, "-o", ORIGIN, "-f", "-", path],
        check=True,
        capture_output=True,
        text=True,
        cwd=work,
    )
    return done.stdout


def queries(count: int, do: bool) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for _ in range(count):
        query = DNSRecord.question(f"r{rng.randrange(10**9)}.{ORIGIN}", "A")
        query.add_ar(EDNS0(udp_len=1232, flags="do" if do else ""))
        out.append(bytes(query.pack()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    text = zone_text(args.names)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            ["dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "-K", work, ORIGIN],
            check=True,
            capture_output=True,
        )
        texts = {
            "unsigned": text,
            "NSEC3": signed(text, work, "-3", "-", "-H", "0"),
            "NSEC": signed(text, work),
        }
    zones = {label: load_zone_text(body, ORIGIN) for label, body in texts.items()}
    for label, zone in zones.items():
        start = time.process_time()
        compile_tables(ZoneSet([zone]), {})
        print(f"compile {label:9s} {time.process_time() - start:.2f} s CPU")
    runs = [
        ("unsigned DO=0", zones["unsigned"], False),
        ("unsigned DO=1", zones["unsigned"], True),
        ("NSEC3 DO=1", zones["NSEC3"], True),
        ("NSEC DO=1", zones["NSEC"], True),
    ]
    prepared = []
    for label, zone, do in runs:
        handler = Handler(ServerState(Snapshot(zones=ZoneSet([zone]))))
        prepared.append((label, handler, queries(args.queries, do)))
    best = {label: float("inf") for label, _, _ in prepared}
    for _ in range(args.rounds):
        for label, handler, wires in prepared:
            start = time.perf_counter()
            for wire in wires:
                handler.handle(wire, ("192.0.2.9", 5353), UDP)
            spent = (time.perf_counter() - start) / len(wires) * 1e6
            best[label] = min(best[label], spent)
    for label, handler, _ in prepared:
        print(f"{label:14s} {best[label]:6.2f} µs/query  reference path: {handler.stats.reference}")
    base = best["unsigned DO=1"]
    nsec3, nsec = best["NSEC3 DO=1"] / base, best["NSEC DO=1"] / base
    print(f"NSEC3/unsigned {nsec3:.2f}  NSEC/unsigned {nsec:.2f}")


if __name__ == "__main__":
    main()
