"""One client asking back to back while the server reloads: counts old-after-new answers.

It alternates UDP and a kept TCP connection (opened again when a finishing
generation closes it), asking for the zone's SOA; every reload in bench/reload.sh
raises the serial, so a serial lower than one already seen is an answer from an
older configuration sent after a newer one. Prints one line of counts at the end.

    python bench/switch_probe.py PORT SECONDS [NAME]
"""

from __future__ import annotations

import socket
import struct
import sys
import time

from dnslib import QTYPE, DNSRecord


def main() -> int:
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    name = sys.argv[3] if len(sys.argv) > 3 else "example.com"
    query = DNSRecord.question(name, "SOA")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(2.0)
    tcp: socket.socket | None = None
    highest = answers = old_after_new = lost = retried = connections = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        query.header.id = (query.header.id + 1) & 0xFFFF
        wire = query.pack()
        replies = []
        try:
            udp.sendto(wire, ("127.0.0.1", port))
            replies.append(udp.recv(4096))
        except OSError:
            lost += 1
        for attempt in range(2):  # a connection a finishing generation closed: ask again
            try:
                if tcp is None:
                    tcp = socket.create_connection(("127.0.0.1", port), timeout=2)
                    connections += 1
                replies.append(_tcp_exchange(tcp, wire))
                break
            except (OSError, EOFError):
                if tcp is not None:
                    tcp.close()
                tcp = None
                if attempt:
                    lost += 1
                else:
                    retried += 1
        for reply in replies:
            serial = _serial(reply)
            answers += 1
            if serial < highest:
                old_after_new += 1
            highest = max(highest, serial)
    print(
        f"probe: {answers} answers, {old_after_new} old-after-new, {lost} lost, "
        f"{retried} TCP questions asked again on a new connection ({connections} connections), "
        f"last serial {highest}"
    )
    return 0


def _tcp_exchange(sock: socket.socket, wire: bytes) -> bytes:
    sock.sendall(struct.pack("!H", len(wire)) + wire)
    size = struct.unpack("!H", _recv_exact(sock, 2))[0]
    return _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _serial(reply: bytes) -> int:
    for rr in DNSRecord.parse(reply).rr:
        if rr.rtype == QTYPE.SOA:
            return rr.rdata.times[0]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
