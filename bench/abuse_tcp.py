"""Abusive TCP clients against a DNS server, and what legitimate clients see meanwhile.

Two probes of issue 13 (abuse resistance), at the issue's scale by default:

* **hoarders**: connections that pipeline megabytes of queries and never read an
  answer. Figures: the server's RSS before, at its peak and after; how many of
  the connections the server ended (reset) and how soon.
* **lock-out**: idle connections, drippers (one byte of a query per second) and
  slow pipeliners (a whole query, then one byte of the next kept pending), from
  many loopback sources (127.100.x.y, one connection per address, a few per /24,
  so per-source limits are not what protects the server). Meanwhile a legitimate
  TCP client (a new connection per query) and a UDP client ask every 100 ms;
  figures: how many were answered and their latency.

Usage (a dnspol server is started for the run; the attackers run in a child process
so the probes' timing is not theirs)::

    python bench/abuse_tcp.py                      # both probes, the issue's scale
    python bench/abuse_tcp.py --probe lockout --seconds 20
    python bench/abuse_tcp.py --probe hoard --hoarders 40 --hoard-mb 10
    python bench/abuse_tcp.py swarm --target 127.0.0.1:5353 --idle 10 --seconds 5
    python bench/abuse_tcp.py --checkout ../other-checkout   # that checkout's server

``swarm`` runs only the attackers (any server); the tests in tests/abuse/ use it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import itertools
import json
import os
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ZONE = """\
$ORIGIN example.com.
@ 300 SOA ns1 hostmaster 1 7200 900 1209600 300
@ 300 NS ns1
ns1 300 A 192.0.2.1
www 300 A 192.0.2.10
"""
# an answer of about 4 KB to a 33-byte query: what a hoarder asks for
BIG = "".join(f'big 300 TXT "{i:02d}{"x" * 198}"\n' for i in range(20))

DRIP_INTERVAL = 1.0  # seconds between two bytes of a dripper
PIPELINE_INTERVAL = 1.5  # a slow pipeliner completes its pending query this often
RETRY_DELAY = 0.05  # an attacker whose connection ended reconnects this much later (default)


def query(name: str = "www.example.com.", ident: int = 0x4242, qtype: int = 1) -> bytes:
    """A query (A by default), unframed."""
    wire = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split("."))
    head = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    return head + wire + b"\x00" + struct.pack("!HH", qtype, 1)


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def source_address(index: int) -> str:
    """The index-th attacker source: 127.100.X.Y, 250 /24s filled round-robin."""
    return f"127.100.{index % 250}.{1 + index // 250}"


# --- the attackers -----------------------------------------------------------------------------


@dataclass
class Attacker:
    kind: str  # "idle" | "drip" | "pipeline"
    source: str
    sock: socket.socket | None = None
    sent: int = 0  # bytes of the current stream sent (drip) / queries completed (pipeline)
    connects: int = 0
    epoch: int = 0  # bumped when a connection ends: its pending timers are void


@dataclass
class SwarmStats:
    connects: dict[str, int] = field(default_factory=dict)
    ended_by_server: dict[str, int] = field(default_factory=dict)
    answers_bytes: int = 0
    connect_errors: int = 0


class Swarm:
    """Non-blocking attackers on one selector; an attacker whose connection ends
    reconnects (after ``RETRY_DELAY``) and starts again."""

    def __init__(
        self, target: tuple[str, int], counts: dict[str, int], retry_delay: float = RETRY_DELAY
    ) -> None:
        self.target = target
        self.retry_delay = retry_delay
        self.selector = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, int, Attacker]] = []
        self.seq = itertools.count()
        self.stats = SwarmStats()
        self.stream = framed(query()) * 2  # what drippers and pipeliners send, cycled
        self.one = len(framed(query()))
        kinds = [kind for kind, n in counts.items() for _ in range(n)]
        self.attackers = [Attacker(kind, source_address(i)) for i, kind in enumerate(kinds)]

    def run(self, seconds: float) -> SwarmStats:
        now = time.monotonic()
        for attacker in self.attackers:
            self._at(now, attacker)
        end = now + seconds
        while time.monotonic() < end:
            for key, _ in self.selector.select(timeout=0.01):
                self._readable(key.data)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, epoch, attacker = heapq.heappop(self.timers)
                if epoch == attacker.epoch:
                    self._act(attacker, now)
        for attacker in self.attackers:
            if attacker.sock is not None:
                attacker.sock.close()
        return self.stats

    def _at(self, when: float, attacker: Attacker) -> None:
        heapq.heappush(self.timers, (when, next(self.seq), attacker.epoch, attacker))

    def _act(self, attacker: Attacker, now: float) -> None:
        if attacker.sock is None:
            self._connect(attacker, now)
            return
        if attacker.kind == "drip":
            data = self.stream[attacker.sent % self.one : attacker.sent % self.one + 1]
            if self._send(attacker, data, now):
                attacker.sent += 1
                self._at(now + DRIP_INTERVAL, attacker)
        elif attacker.kind == "pipeline":
            # the rest of the pending query (the whole first one), then one byte of the next
            data = self.stream[1 : self.one + 1] if attacker.sent else self.stream[: self.one + 1]
            if self._send(attacker, data, now):
                attacker.sent += 1
                self._at(now + PIPELINE_INTERVAL, attacker)

    def _connect(self, attacker: Attacker, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((attacker.source, 0))
        except OSError:
            sock.close()
            self.stats.connect_errors += 1
            self._at(now + 1.0, attacker)
            return
        code = sock.connect_ex(self.target)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.stats.connect_errors += 1
            self._at(now + self.retry_delay, attacker)
            return
        attacker.sock, attacker.sent = sock, 0
        attacker.connects += 1
        self.stats.connects[attacker.kind] = self.stats.connects.get(attacker.kind, 0) + 1
        self.selector.register(sock, selectors.EVENT_READ, attacker)
        if attacker.kind != "idle":
            self._at(now + 0.02, attacker)  # first bytes once the handshake is through

    def _send(self, attacker: Attacker, data: bytes, now: float) -> bool:
        assert attacker.sock is not None
        try:
            attacker.sock.send(data)
            return True
        except (BlockingIOError, InterruptedError):
            self._at(now + 0.05, attacker)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:  # handshake not through yet
                self._at(now + 0.05, attacker)
            else:
                self._ended(attacker, now)
        return False

    def _readable(self, attacker: Attacker) -> None:
        assert attacker.sock is not None
        try:
            data = attacker.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.stats.answers_bytes += len(data)
            return
        self._ended(attacker, time.monotonic())

    def _ended(self, attacker: Attacker, now: float) -> None:
        assert attacker.sock is not None
        kind = attacker.kind
        self.stats.ended_by_server[kind] = self.stats.ended_by_server.get(kind, 0) + 1
        self.selector.unregister(attacker.sock)
        attacker.sock.close()
        attacker.sock = None
        attacker.epoch += 1
        self._at(now + self.retry_delay, attacker)  # the timer restarts the attacker


def swarm_main(args: argparse.Namespace) -> int:
    host, _, port = args.target.rpartition(":")
    counts = {"idle": args.idle, "drip": args.drippers, "pipeline": args.pipeliners}
    raise_open_files_limit()
    stats = Swarm((host.strip("[]"), int(port)), counts, args.retry_delay).run(args.seconds)
    print(json.dumps(stats.__dict__), flush=True)
    return 0


def start_swarm(
    target: tuple[str, int],
    idle: int,
    drippers: int,
    pipeliners: int,
    seconds: float,
    retry_delay: float = RETRY_DELAY,
) -> subprocess.Popen[str]:
    """The attackers in a child process (``swarm``); its last stdout line is its stats."""
    argv = [sys.executable, str(Path(__file__).resolve()), "swarm"]
    argv += ["--target", f"{target[0]}:{target[1]}", "--seconds", str(seconds)]
    argv += ["--idle", str(idle), "--drippers", str(drippers), "--pipeliners", str(pipeliners)]
    argv += ["--retry-delay", str(retry_delay)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603


def raise_open_files_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the legitimate clients --------------------------------------------------------------------


def tcp_probe(target: tuple[str, int], timeout: float = 1.0) -> float | None:
    """Seconds from connect to a whole answer on a new connection; None: not answered."""
    started = time.monotonic()
    try:
        with socket.create_connection(target, timeout=timeout) as sock:
            sock.sendall(framed(query(ident=7)))
            want, got = None, b""
            while want is None or len(got) < want:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                got += chunk
                if want is None and len(got) >= 2:
                    want = 2 + int.from_bytes(got[:2], "big")
    except OSError:
        return None
    return time.monotonic() - started


def udp_probe(target: tuple[str, int], timeout: float = 1.0) -> float | None:
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query(ident=9), target)
            sock.recv(4096)
        except OSError:
            return None
    return time.monotonic() - started


@dataclass
class Probes:
    tcp: list[float | None] = field(default_factory=list)
    udp: list[float | None] = field(default_factory=list)

    def summary(self, limit: float = 0.050) -> dict[str, str]:
        return {"tcp": _latencies(self.tcp, limit), "udp": _latencies(self.udp, limit)}


def _latencies(values: list[float | None], limit: float) -> str:
    answered = sorted(v for v in values if v is not None)
    if not answered:
        return f"0/{len(values)} answered"
    fast = sum(1 for v in answered if v <= limit)
    return (
        f"{len(answered)}/{len(values)} answered, {fast} within {limit * 1000:.0f} ms; "
        f"median {statistics.median(answered) * 1000:.1f} ms, "
        f"max {answered[-1] * 1000:.1f} ms"
    )


def probe_for(target: tuple[str, int], seconds: float, every: float = 0.1) -> Probes:
    probes = Probes()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick = time.monotonic()
        probes.tcp.append(tcp_probe(target))
        probes.udp.append(udp_probe(target))
        time.sleep(max(0.0, every - (time.monotonic() - tick)))
    return probes


# --- the server's memory -----------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: field 0 is the state."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()


def group(pid: int) -> list[int]:
    """``pid`` and every process of its process group (a supervisor's workers; the kit
    starts the server in a session of its own)."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            with contextlib.suppress(OSError):
                if int(_stat(int(entry))[2]) == pid:
                    found.append(int(entry))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of the server (all its processes)."""
    total = 0
    for member in group(pid):
        with contextlib.suppress(OSError):
            fields = _stat(member)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of the server (all its processes), in MB."""
    total = 0
    for member in group(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclass
class HoardResult:
    rss_before: float
    rss_peak: float
    rss_after: float
    sent_mb: float
    reset: int  # connections the server ended (reset or closed)
    seconds_to_end: float | None  # from the last byte sent until every hoarder had ended


def hoard(
    target: tuple[str, int], pid: int, connections: int, megabytes: float, seconds: float
) -> HoardResult:
    """``connections`` clients each send up to ``megabytes`` of pipelined queries for up
    to ``seconds`` and never read; then wait (up to ``seconds`` more) for the server to
    end them. The server's RSS is sampled throughout."""
    rss_before = rss_mb(pid)
    peak = rss_before
    one = framed(query("big.example.com.", qtype=16))
    payload = one * int(megabytes * 1024 * 1024 / len(one))
    socks = []
    for i in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source_address(i), 0))
        sock.connect(target)
        sock.setblocking(False)
        socks.append(sock)
    offsets = [0] * connections
    ended: set[int] = set()
    end = time.monotonic() + seconds
    last_sent = time.monotonic()
    while time.monotonic() < end and any(
        offsets[i] < len(payload) for i in range(connections) if i not in ended
    ):
        for i, sock in enumerate(socks):
            if i in ended or offsets[i] >= len(payload):
                continue
            try:
                offsets[i] += sock.send(payload[offsets[i] : offsets[i] + 65536])
                last_sent = time.monotonic()
            except BlockingIOError:
                pass
            except OSError:
                ended.add(i)
        peak = max(peak, rss_mb(pid))
        time.sleep(0.01)
    deadline = time.monotonic() + seconds
    while len(ended) < connections and time.monotonic() < deadline:
        for i, sock in enumerate(socks):
            if i not in ended and ended_by_server(sock):
                ended.add(i)
        peak = max(peak, rss_mb(pid))
        time.sleep(0.05)
    seconds_to_end = time.monotonic() - last_sent if len(ended) == connections else None
    for sock in socks:
        sock.close()
    time.sleep(0.5)
    return HoardResult(
        rss_before,
        peak,
        rss_mb(pid),
        sum(offsets) / 1024 / 1024,
        len(ended),
        seconds_to_end,
    )


def ended_by_server(sock: socket.socket) -> bool:
    """Has the server reset or closed this connection? (Answers waiting are not read:
    a reset shows at once, a close only after what is queued.)"""
    try:
        sock.send(b"")
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        return True
    if error:
        return True
    with contextlib.suppress(OSError):
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        return info[0] in (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT
    return False


# --- the whole run -----------------------------------------------------------------------------


def run_main(args: argparse.Namespace) -> int:
    sys.path.insert(0, args.checkout)
    from dnspol.testing import Server  # runs the server from the same checkout

    raise_open_files_limit()
    settings = ""
    if args.max_connections:
        settings = f"server:\n  tcp_max_connections: {args.max_connections}\n"
    extra = ["--workers", str(args.workers)] if args.workers else []
    with Server(zone_text=ZONE + BIG, policies=settings or None, extra_args=extra) as srv:
        target = (srv.host, srv.port)
        assert srv.pid is not None
        print(
            f"server pid {srv.pid} on {srv.host}:{srv.port}, {args.workers or 1} worker(s);"
            f" {settings.strip() or 'defaults'}"
        )
        if args.probe in ("all", "hoard"):
            result = hoard(target, srv.pid, args.hoarders, args.hoard_mb, args.hoard_seconds)
            print(
                f"hoard: {args.hoarders} connections sent {result.sent_mb:.0f} MB of queries,"
                f" never read; server RSS {result.rss_before:.0f} MB before, peak"
                f" {result.rss_peak:.0f} MB, {result.rss_after:.0f} MB after;"
                f" {result.reset}/{args.hoarders} ended by the server"
                + (
                    f" {result.seconds_to_end:.1f} s after the last byte"
                    if result.seconds_to_end is not None
                    else f" (the rest still open {args.hoard_seconds:.0f} s after)"
                )
            )
        if args.probe in ("all", "lockout"):
            swarm = start_swarm(
                target, args.idle, args.drippers, args.pipeliners, args.seconds, args.retry_delay
            )
            time.sleep(args.warmup)
            cpu_before, began = cpu_seconds(srv.pid), time.monotonic()
            probes = probe_for(target, args.seconds - args.warmup - 1)
            cpu = (cpu_seconds(srv.pid) - cpu_before) / (time.monotonic() - began)
            stats = json.loads(swarm.communicate()[0].strip().splitlines()[-1])
            summary = probes.summary()
            print(
                f"lockout: {args.idle} idle + {args.drippers} drippers +"
                f" {args.pipeliners} slow pipeliners for {args.seconds:.0f} s, reconnecting"
                f" {args.retry_delay * 1000:.0f} ms after the server ends them"
            )
            print(f"  legitimate TCP: {summary['tcp']}")
            print(f"  legitimate UDP: {summary['udp']}")
            connects = sum(stats["connects"].values())
            print(
                f"  attackers: {connects} connections ({connects / args.seconds:.0f}/s),"
                f" ended by the server {stats['ended_by_server']}; server CPU {cpu:.0%}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    swarm = sub.add_parser("swarm", help="only the attackers, against --target")
    swarm.add_argument("--target", required=True, help="HOST:PORT")
    for p in (parser, swarm):
        p.add_argument("--idle", type=int, default=1000)
        p.add_argument("--drippers", type=int, default=400)
        p.add_argument("--pipeliners", type=int, default=320)
        p.add_argument("--seconds", type=float, default=25.0)
        p.add_argument(
            "--retry-delay",
            type=float,
            default=RETRY_DELAY,
            help="seconds before an attacker whose connection ended reconnects",
        )
    parser.add_argument("--probe", choices=("all", "hoard", "lockout"), default="all")
    parser.add_argument("--warmup", type=float, default=3.0, help="before the probes start")
    parser.add_argument(
        "--max-connections", type=int, help="tcp_max_connections (default: the server's)"
    )
    parser.add_argument(
        "--checkout",
        default=str(Path(__file__).resolve().parent.parent),
        help="the dnspol checkout to run (default: this one), e.g. an older one for figures",
    )
    parser.add_argument("--workers", type=int, help="dnspol serve --workers (default: 1)")
    parser.add_argument("--hoarders", type=int, default=40)
    parser.add_argument("--hoard-mb", type=float, default=10.0)
    parser.add_argument("--hoard-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.command == "swarm":
        return swarm_main(args)
    return run_main(args)


if __name__ == "__main__":
    sys.exit(main())
