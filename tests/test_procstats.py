"""procstats: the whole server's figures from a /proc laid out as Linux lays it out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dnspol import procstats

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BOOTED = 1_700_000_000


def fake_process(
    proc: Path,
    pid: int,
    ppid: int,
    cpu_ticks: tuple[int, int, int, int],
    rss_pages: int,
    fds: int,
    start_ticks: int,
    children: list[int] | None,
    pss_kb: int | None = 100,
) -> None:
    """/proc/<pid>: stat (with a command name holding ') ' to trip a naive split), fd/,
    task/<pid>/children (None: a kernel without them), smaps_rollup."""
    base = proc / str(pid)
    (base / "fd").mkdir(parents=True)
    for fd in range(fds):
        (base / "fd" / str(fd)).touch()
    utime, stime, cutime, cstime = cpu_ticks
    fields = ["S", ppid, 1, 1, 0, -1, 0, 0, 0, 0, 0, utime, stime, cutime, cstime, 20, 0, 1, 0]
    fields += [start_ticks, 1 << 20, rss_pages]
    (base / "stat").write_text(f"{pid} (dnspol ) x) " + " ".join(map(str, fields)) + " 0 0\n")
    task = base / "task" / str(pid)
    task.mkdir(parents=True)
    if children is not None:
        (task / "children").write_text(" ".join(map(str, children)) + (" " if children else ""))
    if pss_kb is not None:
        (base / "smaps_rollup").write_text(f"Rss: 1 kB\nPss:  {pss_kb} kB\n")


@pytest.mark.parametrize("children_files", [True, False])
def test_a_supervisor_its_generation_and_workers_add_up(tmp_path, children_files) -> None:
    (tmp_path / "stat").write_text(f"cpu 1 2 3\nbtime {BOOTED}\n")
    tree = {10: [11], 11: [12, 13], 12: [], 13: []}
    parents = {11: 10, 12: 11, 13: 11, 10: 1}
    for pid, kids in tree.items():
        fake_process(
            tmp_path,
            pid,
            parents[pid],
            (pid, 1, 2 if pid == 11 else 0, 0),
            pid,
            pid - 5,
            start_ticks=5 * TICKS + pid,
            children=kids if children_files else None,
        )
    fake_process(tmp_path, 99, 1, (500, 0, 0, 0), 500, 50, 0, [])  # not the server's
    figures = procstats.server(10, proc=str(tmp_path))
    assert figures is not None
    assert figures.processes == {"main": 1, "generation": 1, "worker": 2}
    assert figures.cpu_seconds == pytest.approx((10 + 11 + 12 + 13 + 4 + 2) / TICKS)
    assert figures.resident_bytes == (10 + 11 + 12 + 13) * PAGE
    assert figures.proportional_bytes == 4 * 100 * 1024
    assert figures.open_fds == 5 + 6 + 7 + 8
    assert figures.start_time == pytest.approx(BOOTED + 5 + 10 / TICKS)


def test_a_process_that_is_gone_is_left_out(tmp_path) -> None:
    (tmp_path / "stat").write_text(f"btime {BOOTED}\n")
    fake_process(tmp_path, 10, 1, (1, 1, 0, 0), 1, 3, 0, [11], pss_kb=None)  # 11 exited
    figures = procstats.server(10, proc=str(tmp_path))
    assert figures is not None and figures.processes["worker"] == 0
    assert figures.proportional_bytes is None  # no smaps_rollup: no sum that lies
    assert procstats.server(12345, proc=str(tmp_path)) is None
    assert procstats.server(10, proc=str(tmp_path / "nothing")) is None
