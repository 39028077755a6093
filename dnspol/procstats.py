"""The server's processes as Linux's /proc shows them: CPU time, memory, open files.

One dnspol server is several processes: the supervisor, a generation process per
configuration, and the workers each generation forks (or a single process without
``--workers``). The process that serves ``/metrics`` reads, at each scrape, its own
figures and those of every process below it, so the ``dnspol_process_*`` series
describe the whole server, not the one process that happens to answer HTTP.

CPU time counts the processes that have exited too: a parent that waited for a
child adds the child's time to its own ``cutime``/``cstime`` (proc(5)), so the sum of
``utime + stime + cutime + cstime`` over the living processes covers every process
the server ever ran (a replaced worker, an old generation). Resident memory is summed
as each process reports it, so pages the workers share with their generation (the
configuration, forked copy-on-write) count once per process; the proportional set
size (Pss, from ``smaps_rollup``) shares each page out between the processes that map
it, and its sum is the memory the server really holds.

Nothing here runs on the answering path. Outside Linux there is no /proc: ``read``
returns None and no process series are exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True)
class ProcessFigures:
    """One process, read from /proc/<pid>."""

    pid: int
    ppid: int
    cpu_seconds: float  # user and system time, its own and its waited-for children's
    resident_bytes: int
    proportional_bytes: int | None  # Pss; None where smaps_rollup cannot be read
    open_fds: int
    start_time: float  # Unix time


@dataclass(frozen=True)
class ServerFigures:
    """Every process of one server, added up."""

    processes: dict[str, int]  # role (main, generation, worker) -> processes
    cpu_seconds: float
    resident_bytes: int
    proportional_bytes: int | None
    open_fds: int
    start_time: float  # of the main process


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def boot_time(proc: str = PROC) -> float:
    """When the machine booted (Unix time): /proc/<pid>/stat counts from there."""
    with open(f"{proc}/stat") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError(f"no btime in {proc}/stat")


def read(pid: int, proc: str = PROC, booted: float | None = None) -> ProcessFigures | None:
    """One process's figures; None when it is gone (or there is no /proc)."""
    try:
        with open(f"{proc}/{pid}/stat") as fh:
            stat = fh.read()
        fds = len(os.listdir(f"{proc}/{pid}/fd"))
        booted = boot_time(proc) if booted is None else booted
    except OSError:
        return None
    # the command name, in parentheses, may hold spaces and parentheses itself
    fields = stat.rsplit(")", 1)[1].split()
    ticks = _ticks()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcessFigures(
        pid=pid,
        ppid=int(fields[1]),
        cpu_seconds=(utime + stime + cutime + cstime) / ticks,
        resident_bytes=int(fields[21]) * _page_size(),
        proportional_bytes=_pss(pid, proc),
        open_fds=fds,
        start_time=booted + int(fields[19]) / ticks,
    )


def _pss(pid: int, proc: str) -> int | None:
    try:
        with open(f"{proc}/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def children(pid: int, proc: str = PROC) -> list[int]:
    """The processes ``pid`` started (from any of its threads) that still run."""
    try:
        tasks = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    try:
        for task in tasks:
            with open(f"{proc}/{pid}/task/{task}/children") as fh:
                out += (int(x) for x in fh.read().split())
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: look at every ppid
        return _children_by_scan(pid, proc)
    except OSError:
        pass
    return out


def _children_by_scan(pid: int, proc: str) -> list[int]:
    out = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            try:
                with open(f"{proc}/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


ROLES = ("main", "generation", "worker")  # by depth below the process serving /metrics


def server(root: int | None = None, proc: str = PROC) -> ServerFigures | None:
    """``root`` (this process by default) and every process below it, added up."""
    root = os.getpid() if root is None else root
    try:
        booted = boot_time(proc)
    except OSError:
        return None
    main = read(root, proc, booted)
    if main is None:
        return None
    found = [(main, 0)]
    queue = [(root, 0)]
    while queue:
        pid, depth = queue.pop()
        for child in children(pid, proc):
            figures = read(child, proc, booted)
            if figures is not None:
                found.append((figures, depth + 1))
                queue.append((child, depth + 1))
    roles = dict.fromkeys(ROLES, 0)
    for _, depth in found:
        roles[ROLES[min(depth, len(ROLES) - 1)]] += 1
    pss = [f.proportional_bytes for f, _ in found]
    return ServerFigures(
        processes=roles,
        cpu_seconds=sum(f.cpu_seconds for f, _ in found),
        resident_bytes=sum(f.resident_bytes for f, _ in found),
        proportional_bytes=None if None in pss else sum(pss),  # type: ignore[arg-type]
        open_fds=sum(f.open_fds for f, _ in found),
        start_time=main.start_time,
    )
