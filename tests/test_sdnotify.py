"""The sd_notify protocol: addresses, message format, and a socket that is gone."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time

import pytest

from dnspol import sdnotify


@pytest.fixture
def receiver():
    """A Unix datagram socket bound where systemd's would be (a short path: sun_path
    holds 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="sd-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@dnspol-test", b"\0dnspol-test"),
        ("", None),
        (None, None),
        ("vsock:2:1234", None),  # a VM's host: not spoken here
        ("relative/path", None),
    ],
)
def test_socket_address(value, address) -> None:
    assert sdnotify.socket_address(value) == address


def test_no_notify_socket_sends_nothing() -> None:
    notifier = sdnotify.Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    assert not sdnotify.Notifier.from_environment(None).enabled  # a worker: never


def test_ready_reloading_stopping_and_status_lines(receiver) -> None:
    sock, path = receiver
    notifier = sdnotify.Notifier.from_environment({"NOTIFY_SOCKET": path})
    notifier.ready("serving generation 1:\n2 zone(s)")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving generation 1: 2 zone(s)"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading("reloading (SIGHUP)")
    lines = sock.recv(4096).decode().split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1" and lines[2] == "STATUS=reloading (SIGHUP)"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    notifier.status("reload failed")
    assert sock.recv(4096) == b"STATUS=reload failed"


def test_an_abstract_socket() -> None:
    name = f"dnspol-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        assert sdnotify.Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_a_socket_that_is_gone_is_said_once_and_never_raises(caplog) -> None:
    notifier = sdnotify.Notifier("/nonexistent/dnspol/notify")
    with caplog.at_level(logging.WARNING, logger="dnspol.sdnotify"):
        assert notifier.send("READY=1") is False
        assert notifier.send("STOPPING=1") is False
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "/nonexistent/dnspol/notify" in said[0], said


def test_an_unusable_notify_socket_value_is_said(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dnspol.sdnotify"):
        notifier = sdnotify.Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:9"})
    assert not notifier.enabled
    assert "vsock:2:9" in caplog.text
