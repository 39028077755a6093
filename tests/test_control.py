"""The control channel without a DNS server: the protocol (``answer``), argument checks,
the socket's place and permissions, the peer check, the client, and the reports."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnspol import __version__, control
from dnspol.config import load_config
from dnspol.control import ControlError


class FakeBackend:
    """Records what the channel asked; answers like a server would."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.clock = 1_800_000_000.0

    def status(self) -> dict:
        self.calls.append(("status",))
        return {"version": __version__, "zones": []}

    def reload(self) -> dict:
        self.calls.append(("reload",))
        return control.ReloadRecord(0.0, "ctl", False, ["a.zone:3: bad"]).reply()

    def set_time(self, epoch, seconds) -> dict:
        self.calls.append(("set_time", epoch, seconds))
        self.clock = control.check_epoch(epoch if epoch is not None else self.clock + seconds)
        return {"ok": True, "clock": control.iso(self.clock)}


def ask(message: dict | bytes, backend=None) -> dict:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return control.answer(data, backend or FakeBackend())


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    ("request_bytes", "error"),
    [
        (b"not json", "not a JSON request"),
        (b"[1, 2]", "unknown request"),
        (b'{"command": "halt"}', "unknown request: the commands are status, reload"),
        (b'{"command": "set-time", "time": "soon"}', "'time' must be a number"),
        (b'{"command": "set-time", "time": true}', "'time' must be a number"),
        (b'{"command": "set-time"}', "set-time needs 'time'"),
        (b'{"command": "advance"}', "advance needs 'seconds'"),
        (b"\xff\xfe", "not a JSON request"),
    ],
)
def test_bad_requests_get_an_error_reply(request_bytes: bytes, error: str) -> None:
    backend = FakeBackend()
    reply = ask(request_bytes, backend)
    assert reply["ok"] is False
    assert error in reply["error"]
    assert backend.calls == []


def test_requests_reach_the_backend() -> None:
    backend = FakeBackend()
    assert ask({"command": "status"}, backend) == {
        "ok": True,
        "version": __version__,
        "zones": [],
    }
    rejected = ask({"command": "reload"}, backend)
    assert rejected["ok"] is False and rejected["problems"] == ["a.zone:3: bad"]
    assert rejected["outcome"] == "rejected"
    assert ask({"command": "set-time", "time": 0}, backend)["clock"] == "1970-01-01T00:00:00+00:00"
    assert ask({"command": "advance", "seconds": 60}, backend)["clock"].startswith(
        "1970-01-01T00:01"
    )
    assert [c[0] for c in backend.calls] == ["status", "reload", "set_time", "set_time"]


@pytest.mark.parametrize(
    "message",
    [
        {"command": "set-time", "time": 1e20},
        {"command": "set-time", "time": -1},
        {"command": "set-time", "time": 253402300800},  # year 10000
        {"command": "advance", "seconds": 1e300},
    ],
)
def test_clocks_outside_1970_to_9999_are_refused_with_the_reason(message: dict) -> None:
    reply = ask(message)
    assert reply == {"ok": False, "error": reply["error"]}
    assert "only times from 1970-01-01 to 9999-12-31" in reply["error"] or "nan" in reply["error"]


def test_a_backend_failure_is_a_reply_not_a_dead_channel() -> None:
    class Broken(FakeBackend):
        def status(self) -> dict:
            raise RuntimeError("boom")

    reply = ask({"command": "status"}, Broken())
    assert reply == {"ok": False, "error": "internal error: boom"}


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-28T02:00:00+01:00", 1795827600.0),
        ("1795827600", 1795827600.0),
        ("1970-01-01T00:00:00Z", 0.0),
    ],
)
def test_parse_time(text: str, epoch: float) -> None:
    assert control.parse_time(text) == epoch


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2026-11-28T02:00:00", "has no UTC offset"),
        ("tomorrow", "is not a time"),
        ("nan", "not a number of seconds"),
        ("inf", "not a finite time"),
        ("1e12", "only times from 1970-01-01 to 9999-12-31"),
    ],
)
def test_parse_time_refuses(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        control.parse_time(text)


@pytest.mark.parametrize(("text", "seconds"), [("60", 60.0), ("-3600", -3600.0), ("1.5", 1.5)])
def test_parse_seconds(text: str, seconds: float) -> None:
    assert control.parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "nan", "inf", "-inf", "1e300"])
def test_parse_seconds_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        control.parse_seconds(text)


# --------------------------------------------------------------------------- who may connect


def test_peer_check_lets_the_servers_user_and_root_in() -> None:
    assert control.peer_refusal(1000, 1000) is None
    assert control.peer_refusal(0, 1000) is None
    assert control.peer_refusal(None, 1000) is None  # no SO_PEERCRED: the file mode decides
    refusal = control.peer_refusal(1001, 1000)
    assert refusal is not None and "uid 1001" in refusal and "uid 1000" in refusal


def test_peer_uid_is_the_connecting_process_user(tmp_path: Path) -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert control.peer_uid(left) == os.geteuid()


@pytest.mark.parametrize(
    ("env", "euid", "path"),
    [
        ({"RUNTIME_DIRECTORY": "/run/dnspol-a"}, 0, "/run/dnspol-a/control.sock"),
        ({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, 1000, "/run/a/control.sock"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 0, "/run/dnspol/control.sock"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/dnspol/control.sock"),
        ({}, 1000, "/tmp/dnspol-1000/control.sock"),
        ({"TMPDIR": "/var/tmp"}, 1000, "/var/tmp/dnspol-1000/control.sock"),
    ],
)
def test_default_path(env: dict, euid: int, path: str) -> None:
    assert control.default_path(env, euid) == path


def test_parse_path() -> None:
    assert control.parse_path(None) is None
    assert control.parse_path("none") == "none"
    assert control.parse_path("NONE") == "none"
    assert control.parse_path("/run/x.sock") == "/run/x.sock"


def test_the_socket_is_0600_in_a_directory_made_0700(tmp_path: Path) -> None:
    path = tmp_path / "private" / "control.sock"
    sock = control.bind(str(path))
    with sock:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_stale_socket_is_replaced_a_live_one_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nothing listens: a server that died
    live = control.bind(str(path))
    with live, pytest.raises(ControlError, match=f"another server is listening.*{path}"):
        control.bind(str(path))


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("mine")
    with pytest.raises(ControlError, match="is not a socket"):
        control.bind(str(path))
    assert path.read_text() == "mine"


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ControlError, match="can be written by others"):
        control.bind(str(shared / "control.sock"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, 12345)
    with pytest.raises(ControlError, match="belongs to uid 12345"):
        control.bind(str(theirs / "control.sock"))


def test_a_long_path_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = deep / "control.sock"
    assert len(str(path)) > 108  # more than sun_path holds
    server = control.ControlServer(control.bind(str(path)), str(path), FakeBackend()).start()
    try:
        assert control.request(str(path), {"command": "status"})["ok"] is True
    finally:
        server.stop()
    assert not path.exists()


# --------------------------------------------------------------------------- the socket


@pytest.fixture
def served(tmp_path: Path):
    path = str(tmp_path / "control.sock")
    backend = FakeBackend()
    server = control.ControlServer(control.bind(path), path, backend).start()
    yield path, backend
    server.stop()


def test_request_and_reply_over_the_socket(served) -> None:
    path, backend = served
    assert control.request(path, {"command": "status"})["version"] == __version__
    assert control.request(path, {"command": "advance", "seconds": 1})["ok"] is True
    assert [c[0] for c in backend.calls] == ["status", "set_time"]


def test_stop_removes_the_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    server = control.ControlServer(control.bind(str(path)), str(path), FakeBackend()).start()
    server.stop()
    assert not path.exists()
    with pytest.raises(ControlError, match="no control socket at"):
        control.request(str(path), {"command": "status"})


def test_an_oversized_request_is_refused_and_the_channel_goes_on(served) -> None:
    path, backend = served
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        with pytest.raises(OSError):  # refused after the limit: the rest is never read
            sock.sendall(b"x" * (control.MAX_REQUEST + 1024) * 8)
        reply = sock.recv(65536)
        assert b"longer than" in reply or reply == b""
    assert control.request(path, {"command": "status"})["ok"] is True


def test_a_silent_client_is_dropped_after_the_read_timeout(served, monkeypatch) -> None:
    monkeypatch.setattr(control, "READ_TIMEOUT", 0.2)
    path, _ = served
    with socket.socket(socket.AF_UNIX) as silent:
        silent.settimeout(5)
        silent.connect(path)
        began = time.monotonic()
        reply = silent.recv(65536)  # says nothing; the server gives up on it
        assert time.monotonic() - began < 3
        assert b"bad request" in reply
    assert control.request(path, {"command": "status"})["ok"] is True


def test_a_client_sending_a_byte_now_and_then_is_cut_at_the_read_timeout(
    served, monkeypatch
) -> None:
    monkeypatch.setattr(control, "READ_TIMEOUT", 0.3)
    path, backend = served
    with socket.socket(socket.AF_UNIX) as slow:
        slow.settimeout(5)
        slow.connect(path)
        began = time.monotonic()
        reply = b""
        for _ in range(40):  # 4 s of trickle unless cut
            try:
                slow.sendall(b" ")
            except OSError:
                break
            time.sleep(0.1)
            with contextlib.suppress(BlockingIOError):
                reply = slow.recv(65536, socket.MSG_DONTWAIT)
                break
        assert b"bad request" in reply
        assert time.monotonic() - began < 2
    assert backend.calls == []


def test_a_fork_holding_the_connection_does_not_hold_the_reply(tmp_path: Path) -> None:
    """A reload forks a generation while the connection is open; the client must still
    see the reply end (the server shuts the connection down, it does not only close it)."""
    path = str(tmp_path / "control.sock")
    held: list[socket.socket] = []

    class Forky(FakeBackend):
        def status(self) -> dict:
            return {"zones": []}

    backend = Forky()
    server = control.ControlServer(control.bind(path), path, backend)
    original = server._talk

    def talk_and_keep(conn: socket.socket) -> None:
        held.append(socket.socket(fileno=os.dup(conn.fileno())))  # a forked child's copy
        original(conn)

    server._talk = talk_and_keep  # type: ignore[method-assign]
    server.start()
    try:
        began = time.monotonic()
        assert control.request(path, {"command": "status"}, timeout=5)["ok"] is True
        assert time.monotonic() - began < 2
    finally:
        server.stop()
        for sock in held:
            sock.close()


def test_client_errors_name_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.sock")
    with pytest.raises(ControlError, match=f"no control socket at {missing}"):
        control.request(missing, {"command": "status"})
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    with pytest.raises(ControlError, match="nothing listens on"):
        control.request(str(dead), {"command": "status"})


def test_a_reply_that_is_not_json_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "odd.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def odd_server() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"hello\n")
        conn.close()

    thread = threading.Thread(target=odd_server)
    thread.start()
    try:
        with pytest.raises(ControlError, match="not JSON"):
            control.request(path, {"command": "status"}, timeout=5)
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_another_user_is_refused_by_the_file_mode_and_by_the_peer_check(tmp_path: Path) -> None:
    import tempfile

    reachable = Path(tempfile.mkdtemp(prefix="dnspol-ctl-", dir="/tmp"))  # pytest's is 0700
    reachable.chmod(0o755)
    path = reachable / "control.sock"
    backend = FakeBackend()
    server = control.ControlServer(control.bind(str(path)), str(path), backend).start()
    as_nobody = textwrap.dedent(
        f"""
        import os
        from dnspol import control  # first: the interpreter's files may be root's only
        os.setgid(65534); os.setuid(65534)
        try:
            print(control.request({str(path)!r}, {{"command": "status"}}))
        except control.ControlError as exc:
            print("ControlError:", exc)
        """
    )

    def run_as_nobody() -> str:
        env = {**os.environ, "PYTHONPATH": str(Path(control.__file__).parents[1])}
        done = subprocess.run(
            [sys.executable, "-c", as_nobody], capture_output=True, text=True, env=env, timeout=30
        )
        return done.stdout + done.stderr

    try:
        assert "permission denied" in run_as_nobody()  # mode 0600
        path.chmod(0o666)  # as if the mode were wrong: the peer check still refuses
        out = run_as_nobody()
        assert "'ok': False" in out and "refused: uid 65534" in out, out
        assert backend.calls == []
    finally:
        server.stop()
        reachable.rmdir()


# --------------------------------------------------------------------------- reports


def test_needs_restart_lists_start_only_settings_the_config_changed() -> None:
    running = {"listen": "127.0.0.1:53", "seed": "None", "tcp_idle_timeout": "10"}
    wanted = {"listen": "127.0.0.1:54", "seed": "7", "tcp_idle_timeout": "10"}
    assert control.needs_restart(running, wanted) == [
        "server.listen: 127.0.0.1:53 -> 127.0.0.1:54 (needs restart)",
        "server.seed: None -> 7 (needs restart)",
    ]
    # what the command line set, the configuration does not change
    assert control.needs_restart(running, wanted, fixed={"listen", "seed"}) == []


def test_restart_settings_of_a_config(tmp_path: Path) -> None:
    (tmp_path / "a.zone").write_text(ZONE)
    (tmp_path / "dnspol.yaml").write_text(
        "server:\n  listen: ['[::1]:5300', 127.0.0.1:5300]\n  metrics: 127.0.0.1:9153\n"
        "  control: run/ctl.sock\n  tcp_max_connections: 9\n"
        "  dnstap: {socket: /run/tap.sock, sample: 0.5}\nzones:\n  a.test: a.zone\n"
    )
    config = load_config(tmp_path / "dnspol.yaml")
    assert config.control == str(tmp_path / "run" / "ctl.sock")
    assert control.restart_settings(config) == {
        "listen": "[::1]:5300, 127.0.0.1:5300",
        "metrics": "127.0.0.1:9153",
        "control": str(tmp_path / "run" / "ctl.sock"),
        "seed": "None",
        "tcp_idle_timeout": "10",
        "tcp_max_connections": "9",
        "dnstap": "socket /run/tap.sock, sample 0.5, queue 10000",
    }


def test_server_control_none_and_bad_values(tmp_path: Path) -> None:
    from dnspol.errors import ConfigError

    (tmp_path / "a.zone").write_text(ZONE)
    (tmp_path / "off.yaml").write_text("server:\n  control: none\nzones:\n  a.test: a.zone\n")
    assert load_config(tmp_path / "off.yaml").control == "none"
    (tmp_path / "bad.yaml").write_text("server:\n  control: [1]\nzones:\n  a.test: a.zone\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: .*control"):
        load_config(tmp_path / "bad.yaml")


def test_zone_report_counts_records(tmp_path: Path) -> None:
    (tmp_path / "a.zone").write_text(ZONE)
    (tmp_path / "in.zone").write_text("www 60 IN A 10.0.0.1\n")
    (tmp_path / "dnspol.yaml").write_text(
        "zones:\n  a.test:\n    file: a.zone\n    scopes: {inside: {overlay: in.zone}}\n"
    )
    report = control.zone_report(load_config(tmp_path / "dnspol.yaml"))
    assert report == [{"name": "a.test.", "serial": 7, "records": 5, "scopes": ["inside"]}]


def test_generation_report_is_rewritten_only_when_workers_change(tmp_path: Path) -> None:
    report = control.GenerationReport(tmp_path, 3)
    report.failed(["a.zone:1: bad"])
    assert control.read_report(tmp_path, 3) == {"problems": ["a.zone:1: bad"]}
    report.content = {"digest": "d"}
    report.workers([(10, False), (11, True)])
    first = control.report_path(tmp_path, 3).stat().st_mtime_ns
    assert control.read_report(tmp_path, 3)["workers"] == [
        {"pid": 10, "state": "starting"},
        {"pid": 11, "state": "listening"},
    ]
    time.sleep(0.01)
    report.workers([(10, False), (11, True)])
    assert control.report_path(tmp_path, 3).stat().st_mtime_ns == first
    assert control.read_report(tmp_path, 4) == {}


def test_supervisor_reload_waits_for_a_generation_forked_after_the_request(tmp_path) -> None:
    """An outcome of a generation that was already loading is not the answer; the next
    one is, failed or not."""
    sup = SimpleNamespace(
        workdir=tmp_path,
        current=None,
        pending=None,
        leaving=[],
        reload_wanted=False,
        reload_cause="",
        resolved=[],
        metrics_listen=None,
    )
    backend = control.SupervisorBackend(sup, None)
    replies: list[dict] = []
    waiter = threading.Thread(target=lambda: replies.append(backend.reload()))
    old = SimpleNamespace(number=4, started=time.monotonic())
    time.sleep(0.01)
    waiter.start()
    deadline = time.monotonic() + 5
    while not sup.reload_wanted:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    backend.finished(old, ok=True)  # forked before the request
    time.sleep(0.05)
    assert replies == []
    control.GenerationReport(tmp_path, 5).failed(["a.zone:9: bad"])
    mine = SimpleNamespace(number=5, started=time.monotonic())
    backend.forked(mine)
    sup.reload_cause = "SIGHUP"  # asked while generation 5 loads: for the next one
    backend.finished(mine, ok=False, why="exit 3")
    waiter.join(5)
    assert replies[0]["ok"] is False and replies[0]["problems"] == ["a.zone:9: bad"]
    assert replies[0]["cause"] == "ctl"
    assert backend.last is not None and backend.last.generation == 5


def test_format_reply() -> None:
    ok = {"ok": True, "generation": 3, "digest": "ab", "needs_restart": ["server.seed: x"]}
    assert control.format_reply("reload", ok) == (
        ["reloaded: generation 3, config sha256 ab"],
        ["server.seed: x"],
    )
    rejected = control.ReloadRecord(0.0, "ctl", False, ["a:1: x", "b:2: y"]).reply()
    out, err = control.format_reply("reload", rejected)
    assert out == ["a:1: x", "b:2: y"] and "previous configuration keeps serving" in err[0]
    assert control.format_reply("advance", {"ok": False, "error": "no"}) == (
        [],
        ["dnspol ctl advance: no"],
    )
    status = {
        "ok": True,
        "version": "1",
        "pid": 2,
        "uptime": 3725.5,
        "config": {"digest": "ab", "files": ["c.yaml"]},
        "generation": 2,
        "workers": [{"pid": 5, "state": "listening"}],
        "zones": [{"name": "a.", "serial": 1, "records": 4, "scopes": ["x"]}],
        "listeners": {"dns": ["127.0.0.1:53"], "metrics": None, "control": "/run/c"},
        "last_reload": None,
    }
    text = "\n".join(control.format_status(status))
    assert "up 1h02m05s" in text and "a. serial 1, 4 records, scopes x" in text
    assert "5 listening" in text and "last reload: none" in text


def test_epoch_bounds() -> None:
    assert control.check_epoch(0.0) == 0.0
    assert control.check_epoch(control.EPOCH_MAX) == control.EPOCH_MAX
    for bad in (math.nan, math.inf, -math.inf, -0.5, control.EPOCH_MAX + 1):
        with pytest.raises(ValueError):
            control.check_epoch(bad)


ZONE = """$ORIGIN a.test.
$TTL 60
@   IN SOA ns hostmaster 7 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.10
www IN A   192.0.2.11
"""
