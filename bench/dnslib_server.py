"""Baseline: the zone served by dnslib's own ``DNSServer`` + ``ZoneResolver``.

This is what a Python user would otherwise write in ten lines.  ``glob=True`` is needed for
the ``*.wild`` wildcard to match at all.  Only error logging is on (per-query logging would
make it slower still).  Serves UDP and TCP on the same port until SIGTERM/SIGINT.

Known differences from a real authoritative server (they do not matter for speed, but show
up in the rcode counts): NODATA is answered as NXDOMAIN, negative answers carry no SOA, the
ENT is NXDOMAIN, and every lookup is a linear scan over all records of the zone.

Usage: python bench/dnslib_server.py --zone ZONEFILE --port PORT [--address 127.0.0.1]
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver


def build_servers(zone_text: str, address: str, port: int) -> list[DNSServer]:
    resolver = ZoneResolver(zone_text, glob=True)
    logger = DNSLogger("-request,-reply,-truncated", prefix=False)
    return [
        DNSServer(resolver, address=address, port=port, tcp=tcp, logger=logger)
        for tcp in (False, True)
    ]


def wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()
    servers = build_servers(args.zone.read_text(), args.address, args.port)
    for server in servers:
        server.start_thread()
    print(f"dnslib ZoneResolver serving {args.zone} on {args.address}:{args.port}", flush=True)
    wait_for_signal()
    # Exit at once: a graceful server.stop() can take seconds while a backlog of
    # per-request threads competes for the GIL.
    os._exit(0)


if __name__ == "__main__":
    main()
