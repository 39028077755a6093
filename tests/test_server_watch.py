"""The configuration file watcher: ``FileWatch`` and the one-process server's loop."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

import dnspol.server
from dnspol.server import FileWatch, Server


def test_a_file_replaced_with_the_same_size_and_time_is_a_change(tmp_path) -> None:
    path = tmp_path / "zone"
    path.write_text("www A 192.0.2.10\n")
    watch = FileWatch([str(path)], time.time_ns())
    old = path.stat()
    new = tmp_path / "zone.new"
    new.write_text("www A 192.0.2.20\n")
    os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.rename(new, path)
    assert watch.changed([str(path)])
    assert not watch.changed([str(path)])


def test_a_file_that_goes_or_comes_back_is_a_change(tmp_path) -> None:
    path = tmp_path / "zone"
    path.write_text("a")
    watch = FileWatch([str(path)], time.time_ns())
    path.unlink()
    assert watch.changed([str(path)])
    path.write_text("a")
    assert watch.changed([str(path)])


def test_a_file_a_reload_adds_to_the_list_is_taken_as_read(tmp_path) -> None:
    """A reload that reads one more file (a new include) is not followed by a second
    reload for that file alone; a later change to it is seen."""
    first, added = tmp_path / "dnspol.yaml", tmp_path / "rules.yaml"
    first.write_text("a")
    added.write_text("b")
    watch = FileWatch([str(first)], time.time_ns())
    assert not watch.changed([str(first), str(added)])
    added.write_text("bb")
    assert watch.changed([str(first), str(added)])


def test_a_file_changed_after_the_first_load_began_is_a_change_once(tmp_path) -> None:
    """Written after the server started: read before or after the change, who knows."""
    path = tmp_path / "dnspol.yaml"
    began = time.time_ns()
    path.write_text("a")
    watch = FileWatch([str(path)], began)
    assert watch.changed([str(path)])
    assert not watch.changed([str(path)])


def test_a_change_while_a_reload_reads_the_files_brings_another_reload(
    tmp_path, monkeypatch
) -> None:
    """The watcher keeps the stamps it saw before the reload: a file written while the
    reload ran (after it read that file) differs from them, so it reloads again."""
    monkeypatch.setattr(dnspol.server, "WATCH_INTERVAL", 0.01)
    path = tmp_path / "dnspol.yaml"
    path.write_text("v1")
    monkeypatch.setattr(dnspol.server, "STARTED_NS", time.time_ns())  # read after v1
    reloads: list[str] = []

    async def reload_off_loop(cause: str = "SIGHUP") -> bool:
        reloads.append(path.read_text())
        if len(reloads) == 1:
            path.write_text("v3 written during the reload")
        return True

    server = SimpleNamespace(
        state=SimpleNamespace(snapshot=SimpleNamespace(files=(str(path),))),
        reload_off_loop=reload_off_loop,
    )

    async def scenario() -> None:
        watcher = asyncio.create_task(Server._watch_files(server))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        path.write_text("v2")
        async with asyncio.timeout(2):
            while len(reloads) < 2:
                await asyncio.sleep(0.01)
        watcher.cancel()

    asyncio.run(scenario())
    assert reloads[:2] == ["v2", "v3 written during the reload"]
