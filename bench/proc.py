"""Small process/network helpers for bench/run.sh.

python bench/proc.py cpu PID    -> CPU seconds (user+system) used so far by PID, its
                                   reaped children, and its live descendants
python bench/proc.py cpus PID   -> "pid:seconds ..." for each live process of that tree
python bench/proc.py freeport   -> a port that is free on 127.0.0.1 for both UDP and TCP
python bench/proc.py core N|all -> "task total steal idle irq" seconds of CPU N (all: every CPU)
python bench/proc.py udp-drops  -> UDP receive-buffer drops so far (all sockets)
python bench/proc.py rss PID    -> "rss_kb peak_kb pss_kb": resident memory now, at its
                                   peak, and proportional (shared pages split between
                                   the processes sharing them), summed over PID's tree
python bench/proc.py timed OUT -- CMD...  -> run CMD, write "wall user system" to OUT
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the ``comm`` field (which may contain spaces)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def own_ticks(pid: int, with_children: bool) -> int:
    # After comm: [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
    fields = stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    children = parent_map()
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of the process tree rooted at ``pid`` (all threads of every process)."""
    ticks = own_ticks(pid, with_children=True)
    for child in descendants(pid):
        try:
            ticks += own_ticks(child, with_children=False)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return ticks / CLK_TCK


def cpu_by_process(pid: int) -> dict[int, float]:
    """CPU seconds of each live process in the tree rooted at ``pid`` (own time only)."""
    out: dict[int, float] = {}
    for member in [pid, *descendants(pid)]:
        try:
            out[member] = own_ticks(member, with_children=False) / CLK_TCK
        except (OSError, ValueError, IndexError):
            continue
    return out


def memory_kb(pid: int) -> tuple[int, int, int]:
    """(VmRSS, VmHWM, Pss) in kB of the process tree rooted at ``pid``, summed.

    RSS and its peak count pages that forked workers share once in each; PSS splits them."""
    now = peak = pss = 0
    for member in [pid, *descendants(pid)]:
        try:
            status = _kb_fields(PROC / str(member) / "status")
            rollup = _kb_fields(PROC / str(member) / "smaps_rollup")
        except OSError:
            continue
        now += status.get("VmRSS", 0)
        peak += status.get("VmHWM", 0)
        pss += rollup.get("Pss", 0)
    return now, peak, pss


def _kb_fields(path: Path) -> dict[str, int]:
    """``Name:   123 kB`` lines as {name: 123}."""
    out = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name] = int(parts[0])
    return out


def free_port() -> int:
    """A port currently free on 127.0.0.1 for UDP and TCP alike."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def snmp_counter(path: Path, section: str, counter: str) -> int:
    """One counter from /proc/net/snmp (header/value line pairs) or snmp6 ("name value")."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    for header, values in zip(lines, lines[1:], strict=False):
        if header.startswith(f"{section}:") and values.startswith(f"{section}:"):
            fields = dict(zip(header.split()[1:], values.split()[1:], strict=True))
            return int(fields.get(counter, 0))
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == f"{section}6{counter}":
            return int(parts[1])
    return 0


def udp_rcvbuf_drops() -> int:
    """Datagrams the kernel dropped because a socket's receive buffer was full."""
    v4 = snmp_counter(PROC / "net" / "snmp", "Udp", "RcvbufErrors")
    v6 = snmp_counter(PROC / "net" / "snmp6", "Udp", "RcvbufErrors")
    return v4 + v6


def core_seconds(cpu: int | None) -> tuple[float, ...]:
    """(user+nice+system, all states, steal, idle+iowait, irq+softirq) seconds spent by one
    CPU (None: all CPUs, summed) since boot. Interrupt time -- on loopback most of the packet
    delivery runs as softirq -- is charged to no process."""
    label = "cpu" if cpu is None else f"cpu{cpu}"
    for line in (PROC / "stat").read_text().splitlines():
        name, *values = line.split()
        if name == label:
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            task = sum(ticks[0:3])
            idle = ticks[3] + ticks[4]
            irq = ticks[5] + ticks[6]
            return tuple(v / CLK_TCK for v in (task, sum(ticks), ticks[7], idle, irq))
    raise ValueError(f"{label} not in /proc/stat")


def run_timed(out: Path, cmd: list[str]) -> int:
    """Run ``cmd``; record its wall and CPU seconds (from wait4's rusage) in ``out``."""
    started: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if not started:
            raise SystemExit(128 + signum)
        started[0].send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    start = time.monotonic()
    child = subprocess.Popen(cmd)
    started.append(child)
    while True:
        try:
            _, status, usage = os.wait4(child.pid, 0)
            break
        except InterruptedError:
            continue
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    out.write_text(f"{wall:.3f} {usage.ru_utime:.3f} {usage.ru_stime:.3f}\n")
    code = child.returncode
    return code if code >= 0 else 128 - code


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "cpu":
        print(f"{cpu_seconds(int(argv[1])):.2f}")
        return 0
    if len(argv) == 2 and argv[0] == "cpus":
        print(" ".join(f"{p}:{sec:.2f}" for p, sec in cpu_by_process(int(argv[1])).items()))
        return 0
    if len(argv) == 2 and argv[0] == "core":
        cpu = None if argv[1] == "all" else int(argv[1])
        print(" ".join(f"{v:.2f}" for v in core_seconds(cpu)))
        return 0
    if len(argv) == 2 and argv[0] == "rss":
        print(*memory_kb(int(argv[1])))
        return 0
    if argv == ["udp-drops"]:
        print(udp_rcvbuf_drops())
        return 0
    if len(argv) >= 4 and argv[0] == "timed" and argv[2] == "--":
        return run_timed(Path(argv[1]), argv[3:])
    if argv == ["freeport"]:
        print(free_port())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
