"""The file watcher follows a Kubernetes ConfigMap update.

Kubelet mounts a ConfigMap as a directory of symlinks: ``dnspol.yaml`` →
``..data/dnspol.yaml``, ``..data`` → ``..2026_11_27_10_00_00.123``, a timestamped
directory holding the files. An update writes a whole new timestamped directory,
points a new ``..data_tmp`` symlink at it, renames that over ``..data`` (the one
atomic step), then removes the old directory (``atomic_writer.go`` in kubelet).
The path the server watches never changes; the file behind it does, and may have
the old one's size and modification time. These tests lay out such a volume, start
the real server on it (one process, and a supervisor with workers: each has its
own watcher), swap the files exactly so, and expect the new answer within a few
watch intervals: the configuration file, a zone file and the file it ``$INCLUDE``s
(reached through a symlinked directory, as a ConfigMap item with a ``path:`` in a
subdirectory is), and an included rules file.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from itkit import serve_deployed

import dnspol.testing
from dnspol.server import WATCH_INTERVAL

CONFIG = """\
zones:
  k8s.test:
    file: zones/k8s.test.zone
rules:
  - include: rules.yaml
"""
ZONE = """\
$ORIGIN k8s.test.
$TTL 60
@   IN SOA ns hostmaster 1 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
$INCLUDE hosts.inc
"""
HOSTS = "www IN A 192.0.2.10\n"
RULES = """\
rules:
  - name: blocked
    match: {client: 127.0.0.9/32}
    action: refuse
"""
FIRST = {
    "dnspol.yaml": CONFIG,
    "rules.yaml": RULES,
    "rulez.yaml": RULES.replace("127.0.0.9/32", "127.0.0.1/32"),  # the config may switch
    "zones/k8s.test.zone": ZONE,
    "zones/hosts.inc": HOSTS,
}
# Each change keeps every file's size: only the file's identity tells it apart.
CHANGES = {
    "zone file": ("zones/k8s.test.zone", " 1 7200", " 2 7200"),
    "$INCLUDEd file": ("zones/hosts.inc", "192.0.2.10", "192.0.2.20"),
    "included rules": ("rules.yaml", "127.0.0.9/32", "127.0.0.1/32"),
    "config file": ("dnspol.yaml", "rules.yaml", "rulez.yaml"),
}
ANSWERS = {  # www.k8s.test from 127.0.0.1 after each change: rcode, addresses, SOA serial
    "zone file": ("NOERROR", ["192.0.2.10"], 2),
    "$INCLUDEd file": ("NOERROR", ["192.0.2.20"], 1),
    "included rules": ("REFUSED", [], 0),
    "config file": ("REFUSED", [], 0),
}
DEADLINE = 3 * WATCH_INTERVAL + 5  # a few looks, and a reload (a fork with workers)


class ConfigMapVolume:
    """A directory laid out and updated as kubelet does for a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.current: Path | None = None

    def write(self, files: Mapping[str, str], keep_times_of: Path | None = None) -> None:
        """Publish ``files`` (path → text) as the volume's new content. With
        ``keep_times_of``, each new file gets the modification time its namesake
        has there (kubelet's files may share a second, or a coarse clock, with the
        old ones)."""
        stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        new = Path(tempfile.mkdtemp(prefix=stamp, dir=self.root))
        new.chmod(0o755)
        for rel, text in files.items():
            path = new / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if keep_times_of is not None and (keep_times_of / rel).exists():
                old = (keep_times_of / rel).stat()
                os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.symlink(new.name, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")  # the atomic switch
        for top in {rel.split("/")[0] for rel in files}:  # user-visible names
            if not (self.root / top).is_symlink():
                os.symlink(f"..data/{top}", self.root / top)
        old, self.current = self.current, new
        if old is not None:
            for dirpath, _dirs, names in os.walk(old, topdown=False):
                for name in names:
                    os.unlink(os.path.join(dirpath, name))
                os.rmdir(dirpath)


@pytest.fixture(params=["1", "2"], ids=["one-process", "supervisor"])
def served(request, tmp_path) -> Iterator[tuple[ConfigMapVolume, str, int]]:
    """The server on a ConfigMap-style volume holding ``FIRST``, watching it."""
    volume = ConfigMapVolume(tmp_path / "config")
    volume.write(FIRST)
    config = str(volume.root / "dnspol.yaml")
    proc, host, port = serve_deployed(
        tmp_path, "--config", config, "--workers", request.param, "--control", "none"
    )
    try:
        yield volume, host, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def answer(host: str, port: int) -> tuple[str, list[str], int]:
    """rcode, addresses and SOA serial of www.k8s.test as asked from 127.0.0.1."""
    www = dnspol.testing.dig(host, port, "www.k8s.test.")
    soa = dnspol.testing.dig(host, port, "k8s.test.", "SOA")
    serial = int(soa.answer[0].data.split()[2]) if soa.rcode == "NOERROR" else 0
    return www.rcode, www.addresses, serial


def wait_for(host: str, port: int, wanted: tuple[str, list[str], int], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    seen = answer(host, port)
    while seen != wanted:
        assert time.monotonic() < deadline, f"still {seen}, wanted {wanted}\n{log.read_text()}"
        time.sleep(0.1)
        seen = answer(host, port)


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_configmap_swap_with_the_same_size_and_time_is_followed(served, change) -> None:
    volume, host, port = served
    log = volume.root.parent / "log"
    assert answer(host, port) == ("NOERROR", ["192.0.2.10"], 1)
    rel, old, new = CHANGES[change]
    files = dict(FIRST)
    assert old in files[rel]
    files[rel] = files[rel].replace(old, new)
    assert len(files[rel]) == len(FIRST[rel])
    assert volume.current is not None
    first = (volume.current / rel).stat()
    volume.write(files, keep_times_of=volume.current)
    now = (volume.root / rel).stat()
    assert (now.st_size, now.st_mtime_ns) == (first.st_size, first.st_mtime_ns)
    assert (now.st_dev, now.st_ino) != (first.st_dev, first.st_ino)
    wait_for(host, port, ANSWERS[change], log)


def test_a_configmap_update_with_a_new_time_is_followed(served) -> None:
    """The plain case (a new modification time), and a second update after the first."""
    volume, host, port = served
    log = volume.root.parent / "log"
    files = dict(FIRST, **{"zones/hosts.inc": HOSTS.replace("192.0.2.10", "192.0.2.30")})
    volume.write(files)
    wait_for(host, port, ("NOERROR", ["192.0.2.30"], 1), log)
    files["zones/hosts.inc"] = HOSTS.replace("192.0.2.10", "192.0.2.40")
    volume.write(files)
    wait_for(host, port, ("NOERROR", ["192.0.2.40"], 1), log)


def test_a_new_configmap_key_an_include_pattern_matches_is_read(served) -> None:
    """A key added to the ConfigMap is a file no one watched, and no watched file's
    content changes; kubelet's update still puts every file in a new directory, so
    the watched ones are new files and the reload reads the include pattern again."""
    volume, host, port = served
    log = volume.root.parent / "log"
    files = {
        "dnspol.yaml": CONFIG.replace("rules.yaml", "rules.d/*.yaml"),
        "rules.d/a.yaml": RULES,
        "zones/k8s.test.zone": ZONE,
        "zones/hosts.inc": HOSTS.replace("192.0.2.10", "192.0.2.30"),
    }
    volume.write(files)
    wait_for(host, port, ("NOERROR", ["192.0.2.30"], 1), log)
    files["rules.d/b.yaml"] = RULES.replace("127.0.0.9", "127.0.0.1").replace("blocked", "b")
    volume.write(files)
    wait_for(host, port, ("REFUSED", [], 0), log)
