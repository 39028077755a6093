"""The control channel: ``dnspol ctl`` talking to a running server over a Unix socket.

This module owns both ends of it, as ``rndc``, ``knotc`` and ``unbound-control`` give
operators one: the socket (where it lives, who may connect), the protocol, the answers
(status, reload outcome, the test clock) and the client.

Protocol: one request per connection, one JSON object on one line (UTF-8, ending
``\\n``), answered by one JSON object on one line; ``answer(request, backend)`` is the
whole of it, without I/O. Requests::

    {"command": "status"}
    {"command": "reload"}                        waits for the outcome
    {"command": "set-time", "time": EPOCH}       only with --fake-time
    {"command": "advance", "seconds": SECONDS}   only with --fake-time
    {"command": "set-health", "check": NAME, "state": "up"|"down"|"auto"}

Every reply has ``"ok"``; a refusal or an error has ``"error"`` (text); a rejected
reload has ``"problems"`` (``file:line: problem`` each).

Who may connect: the socket file is mode 0600 in a directory no one else may write to
(created 0700; one owned by another user or writable by others is refused), and the peer's uid
(``SO_PEERCRED``) must be the server's or root's. One request is served at a time, a
request must arrive within ``READ_TIMEOUT`` and fit in ``MAX_REQUEST`` bytes.

The server side is a thread (``ControlServer``) calling a backend: ``ServerBackend``
for a single process (``dnspol.server.Server``, whose reload runs on its event loop)
and ``SupervisorBackend`` for several workers (``dnspol.supervisor``), which learns
about each generation from the small JSON file the generation writes
(``GenerationReport``) and about reload outcomes from ``SupervisorBackend.finished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import socket
import stat
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from dnspol import __version__
from dnspol.errors import DnspolError
from dnspol.handler import settable_time

log = logging.getLogger("dnspol.control")

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024  # bytes; the largest real request is under 100
MAX_REPLY = 256 * 1024 * 1024  # a status of 1,000,000 zones is ~100 MB
READ_TIMEOUT = 5.0  # seconds for a client to send its request
HEALTH_WAIT = 5.0  # seconds ``ctl set-health`` waits for a generation's checker to apply it
RELOAD_WAIT = 660.0  # seconds ``ctl reload`` waits (a generation gets 600 to load)
EPOCH_MIN = 0.0  # 1970-01-01T00:00:00Z
EPOCH_MAX = 253402300799.0  # 9999-12-31T23:59:59Z
COMMANDS = ("status", "reload", "set-time", "advance", "set-health")
HEALTH_STATES = {"up": True, "down": False, "auto": None}  # auto: the probes decide again
# settings read once at the start: a reload that changes them says "needs restart"
RESTART_SETTINGS = (
    "listen",
    "metrics",
    "control",
    "seed",
    "dnstap",
)


class ControlError(DnspolError):
    """The control channel cannot be opened, reached or understood."""


# --------------------------------------------------------------------------- where


def default_path(env: Mapping[str, str] | None = None, euid: int | None = None) -> str:
    """Where the socket is unless ``--control`` or ``server.control`` says otherwise.

    systemd's ``RuntimeDirectory=`` (``$RUNTIME_DIRECTORY``) first; then root's
    ``/run/dnspol``; then the user's ``$XDG_RUNTIME_DIR/dnspol``; else a directory of
    the user's own in the temporary directory.
    """
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if env.get("RUNTIME_DIRECTORY"):
        return os.path.join(env["RUNTIME_DIRECTORY"].split(":")[0], SOCKET_NAME)
    if euid == 0:
        return os.path.join("/run/dnspol", SOCKET_NAME)
    if env.get("XDG_RUNTIME_DIR"):
        return os.path.join(env["XDG_RUNTIME_DIR"], "dnspol", SOCKET_NAME)
    tmp = env.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, f"dnspol-{euid}", SOCKET_NAME)


def parse_path(text: str | None) -> str | None:
    """``--control`` / ``server.control``: a path, or ``none`` for no control channel."""
    if text is None:
        return None
    if text.strip().lower() in ("none", "off", ""):
        return "none"
    return text


@contextlib.contextmanager
def _sun_path(path: str) -> Iterator[str]:
    """A name ``bind``/``connect`` accept: ``sun_path`` holds 107 bytes, so a longer path
    is reached through its open directory (Linux: ``/proc/self/fd/N/NAME``)."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd = os.open(directory or "/", os.O_RDONLY | getattr(os, "O_PATH", 0))
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def _private_directory(directory: str) -> None:
    """Make ``directory`` (0700) or check that no one but us (or root) can write in it."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=False)
        return
    except FileExistsError:
        pass
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"control socket directory {directory} is not a directory")
    if info.st_uid not in (os.geteuid(), 0):
        raise ControlError(
            f"control socket directory {directory} belongs to uid {info.st_uid}, not to this "
            f"user ({os.geteuid()}): choose another with --control PATH"
        )
    others_write = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
    if others_write:
        raise ControlError(
            f"control socket directory {directory} can be written by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}): make it 0700 or choose another"
        )


def _is_live(path: str) -> bool:
    """True when a server answers on ``path``; a stale socket file refuses connections."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        with _sun_path(path) as name:
            probe.connect(name)
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return True


def bind(path: str) -> socket.socket:
    """A listening socket at ``path`` (mode 0600); a stale file from a dead server is
    replaced, a live server's socket is an error naming the path."""
    path = os.path.abspath(path)
    _private_directory(os.path.dirname(path))
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ControlError(f"{path} exists and is not a socket: not replacing it")
        if _is_live(path):
            raise ControlError(
                f"another server is listening on the control socket {path}: stop it, or "
                "give this one --control PATH"
            )
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_mask = os.umask(0o177)  # the file is created 0600, never more open for a moment
        try:
            with _sun_path(path) as name:
                sock.bind(name)
        finally:
            os.umask(old_mask)
        os.chmod(path, 0o600)
        sock.listen(8)
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot listen on the control socket {path}: {exc}") from exc
    return sock


# --------------------------------------------------------------------------- who


def peer_uid(conn: socket.socket) -> int | None:
    """The connecting process's uid (Linux ``SO_PEERCRED``); None where not available."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


def peer_refusal(uid: int | None, server_uid: int) -> str | None:
    """Why a peer is refused, or None when it may talk to the server."""
    if uid is None or uid in (server_uid, 0):
        return None
    return (
        f"refused: uid {uid} may not control this server (only uid {server_uid}, "
        "its own user, and root may)"
    )


# --------------------------------------------------------------------------- what


class Backend(Protocol):
    """What the control channel asks of a running server."""

    def status(self) -> dict[str, Any]: ...

    def reload(self) -> dict[str, Any]: ...

    def set_time(self, epoch: float | None, seconds: float | None) -> dict[str, Any]: ...

    def set_health(self, check: str, up: bool | None) -> dict[str, Any]: ...


def check_epoch(epoch: float) -> float:
    """A clock value the server can hold (the clock's own rule: ``handler.settable_time``)."""
    return settable_time(epoch)


def parse_time(text: str) -> float:
    """``set-time``'s argument: ISO 8601 with a UTC offset, or epoch seconds."""
    try:
        epoch = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a time: give ISO 8601 with an offset, e.g. "
                "2026-11-28T02:00:00+01:00, or epoch seconds"
            ) from None
        if when.tzinfo is None:
            raise ValueError(f"{text!r} has no UTC offset: e.g. {text}+00:00") from None
        epoch = when.timestamp()
    return check_epoch(epoch)


def parse_seconds(text: str) -> float:
    """``advance``'s argument: seconds, negative to go back."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or abs(seconds) > EPOCH_MAX:
        raise ValueError(f"{text!r} is not a usable number of seconds")
    return seconds


def decode_request(data: bytes) -> dict[str, Any]:
    """One request line → its object; ValueError says what is wrong with it."""
    try:
        request = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON request: {exc}") from None
    if not isinstance(request, dict) or request.get("command") not in COMMANDS:
        raise ValueError(f"unknown request: the commands are {', '.join(COMMANDS)}")
    if request["command"] == "set-health" and (
        not isinstance(request.get("check"), str) or request.get("state") not in HEALTH_STATES
    ):
        raise ValueError("set-health needs 'check' (a name) and 'state' (up, down or auto)")
    for key in ("time", "seconds"):
        if key in request and (
            isinstance(request[key], bool) or not isinstance(request[key], int | float)
        ):
            raise ValueError(f"{key!r} must be a number")
    return request


def answer(data: bytes, backend: Backend) -> dict[str, Any]:
    """The reply to one request (the protocol without the socket)."""
    try:
        request = decode_request(data)
        command = request["command"]
        if command == "status":
            return {"ok": True, **backend.status()}
        if command == "reload":
            return backend.reload()
        if command == "set-health":
            return backend.set_health(request["check"], HEALTH_STATES[request["state"]])
        if command == "set-time":
            if "time" not in request:
                raise ValueError("set-time needs 'time' (epoch seconds)")
            return backend.set_time(check_epoch(float(request["time"])), None)
        if "seconds" not in request:
            raise ValueError("advance needs 'seconds'")
        return backend.set_time(None, float(request["seconds"]))
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad request never ends the channel
        log.exception("control request failed")
        return {"ok": False, "error": f"internal error: {exc}"}


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


# --------------------------------------------------------------------------- the server


class ControlServer:
    """Accepts control connections on a thread and answers them one at a time."""

    def __init__(self, sock: socket.socket, path: str, backend: Backend) -> None:
        self.sock = sock
        self.path = os.path.abspath(path)
        self.backend = backend
        self.uid = os.geteuid()
        self._inode = os.stat(self.path).st_ino
        self.conn: socket.socket | None = None  # the connection being answered, if any
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dnspol-control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, remove the socket file (if it is still ours), let a request
        in hand finish (bounded)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.5)  # to see ``stop`` where shutdown does not wake accept
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            self.conn = conn
            try:
                self._talk(conn)
            except Exception:  # noqa: BLE001 - one client never ends the channel
                log.exception("control connection failed")
            finally:
                # shutdown, not only close: a generation forked meanwhile holds a copy
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                self.conn = None
                conn.close()

    def _talk(self, conn: socket.socket) -> None:
        refusal = peer_refusal(peer_uid(conn), self.uid)
        if refusal is not None:
            log.warning("control channel: %s", refusal)
            conn.sendall(encode({"ok": False, "error": refusal}))
            return
        try:
            data = _read_line(conn, MAX_REQUEST, time.monotonic() + READ_TIMEOUT)
        except (TimeoutError, ValueError) as exc:
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.sendall(encode({"ok": False, "error": f"bad request: {exc}"}))
            return
        reply = answer(data, self.backend)
        conn.settimeout(30.0)  # a reader that stops reading cannot hold the channel
        with contextlib.suppress(OSError):
            conn.sendall(encode(reply))


def _read_line(conn: socket.socket, limit: int, deadline: float | None = None) -> bytes:
    """Bytes up to the first newline; ValueError past ``limit`` or on early close,
    TimeoutError past ``deadline`` (for the whole line: a byte now and then is no escape)."""
    buf = bytearray()
    while b"\n" not in buf:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole request in time")
            conn.settimeout(left)
        chunk = conn.recv(65536)
        if not chunk:
            if buf:
                return bytes(buf)
            raise ValueError("the connection closed before a request came")
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"longer than {limit} bytes")
    return bytes(buf[: buf.index(b"\n")])


# --------------------------------------------------------------------------- the client


def request(path: str, message: Mapping[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the server at ``path``; its reply. ControlError when the
    server cannot be reached or answers something that is not a reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _sun_path(path) as name:
                sock.connect(name)
        except FileNotFoundError:
            raise ControlError(
                f"no control socket at {path}: is dnspol running, with this --control?"
            ) from None
        except ConnectionRefusedError:
            raise ControlError(f"nothing listens on {path}: the server has stopped") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}: only the server's user and root may use it"
            ) from None
        # refused before it read the request: the reply still says why
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode(message))
        try:
            data = _read_line(sock, MAX_REPLY)
        except TimeoutError:
            raise ControlError(f"no reply from {path} within {timeout:g} s") from None
        except ValueError as exc:
            raise ControlError(f"no reply from {path}: {exc}") from None
    except OSError as exc:
        raise ControlError(f"control socket {path}: {exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except json.JSONDecodeError:
        raise ControlError(f"{path} answered something that is not JSON: {data[:80]!r}") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError(f"{path} answered something that is not a reply: {data[:80]!r}")
    return reply


# --------------------------------------------------------------------------- reports


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _listen_text(addresses: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)


def restart_settings(snapshot: Any) -> dict[str, str]:
    """The settings of a configuration that only a restart changes, as texts."""
    metrics = getattr(snapshot, "metrics", None)
    return {
        "listen": _listen_text(getattr(snapshot, "listen", ())) or "(not set)",
        "metrics": _listen_text([tuple(metrics)]) if metrics else "(not set)",
        "control": getattr(snapshot, "control", None) or "(not set)",
        "seed": str(getattr(snapshot, "seed", None)),
        "tcp_idle_timeout": f"{snapshot.tcp_idle_timeout:g}",  # dnspol.settings
        "tcp_max_connections": str(snapshot.tcp_max_connections),
        "dnstap": _dnstap_text(getattr(snapshot, "dnstap", None)),
    }


def _dnstap_text(config: Any) -> str:
    if config is None:
        return "(not set)"
    return f"{config.target}, sample {config.sample:g}, queue {config.queue}"


def needs_restart(
    running: Mapping[str, str], wanted: Mapping[str, str], fixed: Iterable[str] = ()
) -> list[str]:
    """What a new configuration asks for that only a restart gives; settings the command
    line set (``fixed``) are not the configuration's to change."""
    skip = set(fixed)
    return [
        f"server.{key}: {running[key]} -> {wanted[key]} (needs restart)"
        for key in RESTART_SETTINGS
        if key not in skip and key in running and key in wanted and running[key] != wanted[key]
    ]


def zone_report(snapshot: Any) -> list[dict[str, Any]]:
    """Each zone's origin, serial, record count and scopes."""
    scopes: dict[str, list[str]] = {}
    for origin, scope in getattr(snapshot, "variants", {}):
        if scope != "default" and "~" not in scope:  # not the ones members: checks make
            scopes.setdefault(_name_text(origin), []).append(scope)
    return [
        {
            "name": zone.name,
            "serial": zone.serial,
            "records": count_records(zone),
            "scopes": sorted(scopes.get(zone.name, ())),
        }
        for zone in snapshot.zones
    ]


def _name_text(origin: Any) -> str:
    from dnspol.names import to_text

    return to_text(origin)


def count_records(zone: Any) -> int:
    return sum(len(rrset.rdatas) for node in zone.nodes.values() for rrset in node.values())


def config_report(snapshot: Any) -> dict[str, Any]:
    return {
        "digest": snapshot.digest,
        "files": list(snapshot.files),
        "zones": zone_report(snapshot),
        "settings": restart_settings(snapshot),
    }


@dataclass
class ReloadRecord:
    """One reload's outcome, for ``ctl reload`` and for ``ctl status``'s last reload."""

    time: float
    cause: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    digest: str = ""
    generation: int = 0

    def reply(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = iso(self.time)
        out["outcome"] = "ok" if self.ok else "rejected"
        if not self.ok:
            del out["digest"], out["generation"], out["needs_restart"]
            out["error"] = "reload rejected; the previous configuration keeps serving"
        return out


# --------------------------------------------------------------------------- one process


class ServerBackend:
    """``dnspol.server.Server`` running alone: reloads in its process, on its event loop
    (so they never overlap a SIGHUP or file-change reload)."""

    def __init__(self, server: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.started = time.time()
        self.generation = 1
        self._seen_ok = server.reloads.ok
        # counting a million records takes ~0.8 s: once per configuration, not per status
        self._report: tuple[weakref.ref[Any], dict[str, Any]] | None = None

    def status(self) -> dict[str, Any]:
        server = self.server
        snap = server.state.snapshot
        self._count_generations()
        if self._report is None or self._report[0]() is not snap:
            self._report = (weakref.ref(snap), config_report(snap))
        out = _common_status(self.started, self._report[1], self.generation)
        state = "listening" if server.ready else "starting"
        out["workers"] = [{"pid": os.getpid(), "state": state}]
        out["listeners"] = _listeners(server.bound, server.options.metrics_listen, self)
        last = self._last()
        out["last_reload"] = last.reply() if last is not None else None
        if server.options.test_control:
            out["clock"] = iso(server.clock.now())
        checker = getattr(server, "checker", None)
        out["checks"] = checker.report() if checker is not None else []
        return out

    def set_health(self, check: str, up: bool | None) -> dict[str, Any]:
        try:
            return {"ok": True, "check": self.server.set_health(check, up)}
        except KeyError as exc:
            return {"ok": False, "error": exc.args[0]}

    def reload(self) -> dict[str, Any]:
        future = asyncio.run_coroutine_threadsafe(self._reload(), self.loop)
        return future.result(RELOAD_WAIT).reply()

    async def _reload(self) -> ReloadRecord:
        await self.server.reload_off_loop(cause="ctl")
        return self._last()  # type: ignore[return-value]

    def _count_generations(self) -> None:
        ok = self.server.reloads.ok
        self.generation += ok - self._seen_ok
        self._seen_ok = ok

    def _last(self) -> ReloadRecord | None:
        record: ReloadRecord | None = getattr(self.server, "last_reload", None)
        if record is None:
            return None
        self._count_generations()
        if record.ok:
            snap = self.server.state.snapshot
            record.digest = snap.digest
            record.generation = self.generation
        return record

    def set_time(self, epoch: float | None, seconds: float | None) -> dict[str, Any]:
        server = self.server
        if not server.options.test_control:
            return {"ok": False, "error": "the clock moves only when started with --fake-time"}
        when = epoch if epoch is not None else server.clock.now() + (seconds or 0.0)
        server.clock.set(check_epoch(when))  # ValueError: the reply says why
        return {"ok": True, "clock": iso(server.clock.now())}

    @property
    def path(self) -> str:
        return self.server.options.control or ""


def _common_status(started: float, config: dict[str, Any], generation: int) -> dict[str, Any]:
    return {
        "version": __version__,
        "pid": os.getpid(),
        "started": iso(started),
        "uptime": round(time.time() - started, 3),
        "config": {"digest": config.get("digest", ""), "files": config.get("files", [])},
        "generation": generation,
        "zones": config.get("zones", []),
    }


def _listeners(
    dns: Iterable[tuple[str, int]], metrics: tuple[str, int] | None, backend: Any
) -> dict[str, Any]:
    return {
        "dns": [_listen_text([a]) for a in dns],
        "metrics": _listen_text([metrics]) if metrics else None,
        "control": backend.path,
    }


# --------------------------------------------------------------------------- several workers


class GenerationReport:
    """Written by a generation process beside its ready file, read by the supervisor: the
    configuration it loaded (or the problems that stopped it) and its workers."""

    def __init__(self, workdir: Path, number: int) -> None:
        self.path = report_path(workdir, number)
        self.content: dict[str, Any] = {}
        self._workers: list[tuple[int, bool]] = []

    def failed(self, problems: list[str]) -> None:
        self._write({"problems": list(problems)})

    def loaded(self, snapshot: Any) -> None:
        """Before the workers are forked: counting touches every record, which would copy
        the pages the workers share if done after."""
        self._write(config_report(snapshot))

    def workers(self, states: Iterable[tuple[int, bool]]) -> None:
        """(pid, listening) of each worker; written only when it changed."""
        states = list(states)
        if states != self._workers:
            self._workers = states
            self.content["workers"] = [
                {"pid": pid, "state": "listening" if up else "starting"} for pid, up in states
            ]
            self._write(self.content)

    def _write(self, content: dict[str, Any]) -> None:
        self.content = content
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(content))
        os.replace(tmp, self.path)


def report_path(workdir: Path, number: int) -> Path:
    return Path(workdir) / f"generation-{number}.json"


def read_report(workdir: Path, number: int) -> dict[str, Any]:
    try:
        return json.loads(report_path(workdir, number).read_text())
    except (OSError, ValueError):
        return {}


class SupervisorBackend:
    """``dnspol.supervisor.Supervisor``: a reload is a new generation; ``finished`` (called
    by the supervisor's loop) records each generation's outcome and wakes the waiters."""

    def __init__(
        self,
        supervisor: Any,
        path: str | None,
        fixed: Iterable[str] = (),
        default: bool = False,
    ) -> None:
        self.supervisor = supervisor
        self.path = os.path.abspath(path) if path else ""
        self.fixed = frozenset(fixed)
        self.default = default  # the path was not chosen: if it is taken, run without
        self.started = time.time()
        self.running: dict[str, str] = {}
        self.sock: socket.socket | None = None
        self.server: ControlServer | None = None
        self.last: ReloadRecord | None = None
        self._outcomes: deque[tuple[float, ReloadRecord]] = deque(maxlen=32)
        self._causes: dict[int, str] = {}  # generation number → why it was forked
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._health_lock = threading.Lock()  # one set-health writes the forced file at a time

    # -- the supervisor's hooks ------------------------------------------------------
    def bind(self) -> bool:
        """Open the socket before anything is forked (a live server there ends the start)."""
        if not self.path:
            return True
        try:
            self.sock = bind(self.path)
        except ControlError as exc:
            if not self.default:
                log.error("%s", exc)
                return False
            log.warning("%s; running without a control channel", exc)
            self.path = ""
        return True

    def sockets(self) -> list[socket.socket]:
        """What a forked generation must close: the socket, and the connection of a
        ``ctl reload`` that is waiting for it."""
        conn = self.server.conn if self.server is not None else None
        return [s for s in (self.sock, conn) if s is not None]

    def start(self) -> None:
        """Once the first generation listens: its settings are what runs."""
        head = self.supervisor.current
        if head is not None:
            self.running = read_report(self.supervisor.workdir, head.number).get("settings", {})
        if self.sock is not None:
            self.server = ControlServer(self.sock, self.path, self).start()

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:  # first: a reload waiting for an outcome gets this one
            self._outcomes.append((math.inf, _stopping_record()))
            self._changed.notify_all()
        if self.server is not None:
            self.server.stop()
        elif self.sock is not None:
            self.sock.close()

    def forked(self, head: Any) -> None:
        """A generation was forked: it answers the reload causes asked for until now."""
        sup = self.supervisor
        self._causes[head.number] = sup.reload_cause or ("start" if head.number == 1 else "")
        sup.reload_cause = ""

    def finished(self, head: Any, ok: bool, why: str = "") -> None:
        """A pending generation became current (``ok``) or ended without serving."""
        sup = self.supervisor
        report = read_report(sup.workdir, head.number)
        not_started = f"the new configuration was not started ({why})"
        problems = [] if ok else list(report.get("problems") or [not_started])
        record = ReloadRecord(
            time=time.time(),
            cause=self._causes.pop(head.number, "") or "SIGHUP or a changed file",
            ok=ok,
            problems=problems,
            needs_restart=needs_restart(self.running, report.get("settings", {}), self.fixed)
            if ok
            else [],
            digest=report.get("digest", ""),
            generation=head.number,
        )
        if not ok:
            report_path(sup.workdir, head.number).unlink(missing_ok=True)
        for old in range(head.number - 1, 0, -1):  # reports of generations gone
            gone = report_path(sup.workdir, old)
            if not gone.exists():
                break
            if not any(h is not None and h.number == old for h in _heads(sup)):
                gone.unlink(missing_ok=True)
        for line in record.needs_restart:
            log.warning("%s", line)
        with self._changed:
            self.last = record
            self._outcomes.append((head.started, record))
            self._changed.notify_all()

    # -- the backend -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        sup = self.supervisor
        head = sup.current
        number = head.number if head is not None else 0
        report = read_report(sup.workdir, number) if head is not None else {}
        out = _common_status(self.started, report, number)
        out["workers"] = report.get("workers", [])
        out["listeners"] = _listeners(sup.resolved, sup.metrics_listen, self)
        pending = sup.pending
        out["reloading"] = pending.number if pending is not None else None
        out["last_reload"] = self.last.reply() if self.last else None
        out["checks"] = _generation_checks(sup.workdir, number) if head is not None else []
        return out

    def set_health(self, check: str, up: bool | None) -> dict[str, Any]:
        """Through a file every generation's checker watches (forced states outlive
        reloads), then wait until the current generation's checker has applied it."""
        sup = self.supervisor
        head = sup.current
        checks = _generation_checks(sup.workdir, head.number) if head is not None else []
        if not any(item["name"] == check for item in checks):
            known = ", ".join(item["name"] for item in checks) or "none"
            return {"ok": False, "error": f"no check {check!r} (checks: {known})"}
        path = Path(sup.workdir) / "health-forced.json"
        with self._health_lock:
            try:
                forced = json.loads(path.read_text())
            except (OSError, ValueError):
                forced = {}
            if up is None:
                forced.pop(check, None)
            else:
                forced[check] = "up" if up else "down"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(forced))
            os.replace(tmp, path)
        wanted = None if up is None else ("up" if up else "down")
        deadline = time.monotonic() + HEALTH_WAIT
        while time.monotonic() < deadline:
            for item in _generation_checks(sup.workdir, head.number):  # type: ignore[union-attr]
                if item["name"] == check and item["forced"] == wanted:
                    return {"ok": True, "check": item}
            time.sleep(0.02)
        return {"ok": False, "error": "the checker did not confirm the change in time"}

    def reload(self) -> dict[str, Any]:
        sup = self.supervisor
        asked = time.monotonic()
        sup.reload_cause = "ctl"
        sup.reload_wanted = True
        deadline = asked + RELOAD_WAIT
        record = self._outcome_after(asked, deadline)
        if record is None:
            return {"ok": False, "error": "no reload outcome in time"}
        if record.ok:
            self._wait_previous_gone(record.generation, deadline)
        return record.reply()

    def _outcome_after(self, asked: float, deadline: float) -> ReloadRecord | None:
        """The outcome of the first generation forked after ``asked``."""
        with self._changed:
            while True:
                for started, record in self._outcomes:
                    if started > asked:
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def _wait_previous_gone(self, number: int, deadline: float) -> None:
        """Until older generations have ended: their workers read the shared UDP socket
        until they stop, so until then some answers still come from the old configuration.
        (The supervisor's loop sees them off; ``leaving`` is only read here.)"""
        sup = self.supervisor
        while time.monotonic() < deadline and not self._stopping.is_set():
            if not any(head.number < number for head in list(sup.leaving)):
                return
            self._stopping.wait(0.05)

    def set_time(self, epoch: float | None, seconds: float | None) -> dict[str, Any]:
        return {
            "ok": False,
            "error": "the clock can be moved only in a single process: start with "
            "--fake-time (and --workers 1)",
        }


def _generation_checks(workdir: Path, number: int) -> list[dict[str, Any]]:
    from dnspol.checker import read_state_file

    return read_state_file(Path(workdir) / f"checks-{number}.json")


def _heads(sup: Any) -> list[Any]:
    return [sup.current, sup.pending, *sup.leaving]


def _stopping_record() -> ReloadRecord:
    return ReloadRecord(time.time(), "", False, ["the server is shutting down"])


# --------------------------------------------------------------------------- output


def format_reply(command: str, reply: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What ``dnspol ctl`` prints: (lines for stdout, lines for stderr)."""
    if command == "status" and reply.get("ok"):
        return format_status(reply), []
    if command == "reload":
        if reply.get("problems"):
            return list(reply["problems"]), [reply.get("error", "reload rejected")]
        if reply.get("ok"):
            out = [
                f"reloaded: generation {reply.get('generation')}, "
                f"config sha256 {reply.get('digest')}"
            ]
            return out, list(reply.get("needs_restart") or [])
    if command == "set-health" and reply.get("ok"):
        return [_check_line(reply.get("check") or {})], []
    if reply.get("ok"):
        return [str(reply.get("clock", "ok"))], []
    return [], [f"dnspol ctl {command}: {reply.get('error', 'failed')}"]


def format_status(s: Mapping[str, Any]) -> list[str]:
    config = s.get("config") or {}
    files = config.get("files") or []
    listeners = s.get("listeners") or {}
    out = [
        f"dnspol {s.get('version')}, pid {s.get('pid')}, up {_duration(s.get('uptime', 0))} "
        f"(since {s.get('started')})",
        f"config: sha256 {config.get('digest')} ({len(files)} file(s))",
        *(f"  {name}" for name in files),
        f"generation: {s.get('generation')}"
        + (f" (loading {s['reloading']})" if s.get("reloading") else ""),
        "workers: " + ", ".join(f"{w.get('pid')} {w.get('state')}" for w in s.get("workers") or []),
        f"zones: {len(s.get('zones') or [])}",
        *(
            f"  {z['name']} serial {z['serial']}, {z['records']} records"
            + (f", scopes {', '.join(z['scopes'])}" if z.get("scopes") else "")
            for z in s.get("zones") or []
        ),
        "listeners: udp+tcp " + ", ".join(listeners.get("dns") or []),
        f"  metrics: {listeners.get('metrics') or 'off'}",
        f"  control: {listeners.get('control')}",
    ]
    last = s.get("last_reload")
    if last:
        outcome = last.get("outcome")
        out.append(f"last reload: {last.get('time')}, by {last.get('cause')}: {outcome}")
        out += [f"  {line}" for line in last.get("problems") or []]
        out += [f"  {line}" for line in last.get("needs_restart") or []]
    else:
        out.append("last reload: none")
    if s.get("clock"):
        out.append(f"clock: {s['clock']} (--fake-time)")
    checks = s.get("checks") or []
    if checks:
        out.append(f"checks: {len(checks)}")
        out += [f"  {_check_line(c)}" for c in checks]
    return out


def _check_line(c: Mapping[str, Any]) -> str:
    line = f"{c.get('name')} {c.get('state')} ({c.get('kind')} {c.get('target')})"
    if c.get("forced"):
        line += f", forced {c['forced']}; probes say {c.get('probed')}"
    if c.get("last_error"):
        line += f", last error: {c['last_error']}"
    return line


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{days}d{text}" if days else text


def run_command(
    path: str, command: str, argument: str | None, timeout: float | None
) -> tuple[int, dict[str, Any]]:
    """``dnspol ctl``: (exit status, reply). 0 done; 1 refused or rejected (a reload's
    problems are in the reply); ControlError when the server cannot be reached."""
    message: dict[str, Any] = {"command": command}
    if command == "set-time":
        message["time"] = parse_time(argument or "")
    elif command == "advance":
        message["seconds"] = parse_seconds(argument or "")
    elif command == "set-health":
        name, _, state = (argument or "").partition(" ")
        message["check"], message["state"] = name, state.strip()
    wait = timeout if timeout is not None else (RELOAD_WAIT if command == "reload" else 30.0)
    reply = request(path, message, wait)
    return (0 if reply.get("ok") else 1), reply
