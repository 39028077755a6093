"""A dnspol server in a child process: ``Server``, from start to stop.

This module owns the server's process and what is asked of it through its
control socket: starting ``sys.executable -m dnspol serve`` on a free loopback
port (UDP and TCP) with ``--fake-time`` and its own control socket, waiting
until it listens, its log, signals, the clock (``now``, ``set_time``,
``advance``), synchronous reloads, and stopping it. Nothing outlives the run:
each server runs in its own session and process group, every server still
running is stopped at interpreter exit (and by the pytest plugin at the end of
the session), and on Linux the kernel kills a server whose parent dies.

It also keeps the register of servers this process started (``live_servers``,
``recent_servers``): the plugin reads it to attach logs to failing tests.
What the server serves is written by ``dnspol.testing.files``; asking it
questions is ``dnspol.testing.client``.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.edns
import dns.message

import dnspol
from dnspol.testing.client import DigResult, dig, exchange, query
from dnspol.testing.errors import ControlError, ReloadError, ServerError, StartError
from dnspol.testing.files import ScopeSource, ServedFiles, ZoneSource

__all__ = [
    "Server",
    "TimeLike",
    "live_servers",
    "next_seq",
    "recent_servers",
    "stop_all",
]

START_TIMEOUT = 10.0  # seconds to wait for READY before giving up
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
CONTROL_TIMEOUT = 30.0  # a synchronous reload of a big zone may take a while

TimeLike = datetime | str | int | float


# --------------------------------------------------------------------------- the register


_registry_lock = threading.Lock()
_live: list[Server] = []  # running servers, oldest first
_stopped: collections.deque[Server] = collections.deque(maxlen=64)  # for failing tests' logs
_next_seq = 1


def live_servers() -> list[Server]:
    """The servers running now, oldest first."""
    with _registry_lock:
        return list(_live)


def recent_servers() -> list[Server]:
    """The running servers and the last ones stopped (whose logs a report may still need)."""
    with _registry_lock:
        return list(_live) + [s for s in _stopped if s not in _live]


def next_seq() -> int:
    """The ``seq`` the next server will have: every server made later has one at least as big."""
    with _registry_lock:
        return _next_seq


def stop_all() -> None:
    """Stop every running server, the newest first."""
    for srv in reversed(live_servers()):
        with contextlib.suppress(Exception):
            srv.stop()


atexit.register(stop_all)


def _take_seq() -> int:
    global _next_seq
    with _registry_lock:
        seq, _next_seq = _next_seq, _next_seq + 1
    return seq


def _started(srv: Server) -> None:
    with _registry_lock:
        _live.append(srv)


def _stopped_now(srv: Server) -> None:
    with _registry_lock:
        if srv in _live:
            _live.remove(srv)
            _stopped.append(srv)


# --------------------------------------------------------------------------- the process


def _die_with_parent_preexec(parent: int):
    """A preexec_fn that asks Linux to SIGKILL the child when the starting thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec
        _hold_signals()
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _hold_signals() -> None:
    """Block HUP, TERM and INT across exec: the server unblocks them once its handlers
    are in place, so a signal a test sends at once is never fatal (dnspol.signals)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGHUP, signal.SIGTERM, signal.SIGINT))


def _to_epoch(when: TimeLike) -> float:
    if isinstance(when, int | float):
        return float(when)
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, ISO 8601 text or epoch seconds, not {when!r}")
    if when.tzinfo is None:
        raise ValueError(f"{when.isoformat()} has no UTC offset; add one (e.g. tzinfo=UTC)")
    return when.timestamp()


class Server:
    """A dnspol server in a child process, for one test, a session or a script.

    What it serves, all given as text (or ``pathlib.Path`` objects, read once):

    * ``zone_text``: one zone file (origin from its first ``$ORIGIN``, or ``origin=``);
    * ``zones``: ``{"example.com": text, ...}``, more zones;
    * ``scopes``: ``{"example.com": {"internal": overlay_text}}``, the zone variants
      rules answer from (a text is an ``overlay``; ``{"file": text}`` a whole zone);
    * ``policies``: the rules, as config-file YAML (``rules:``, ``subnets:``,
      ``server:``; see policies/README.md); the kit adds the ``zones:`` section;
    * ``files``: ``{"lists/blocked.txt": text}``, anything else the YAML names,
      by paths relative to the config file;
    * or ``config``: an existing config file, run as it is (no other sources).

    The kit writes these into ``workdir`` (a temporary directory by default) as
    ``dnspol.yaml`` plus zone files, so ``reload()`` can rewrite them.
    ``fake_time`` is where the server's clock starts (default: now); ``seed``
    makes weighted answers repeatable; ``listen`` is the loopback address
    (``"127.0.0.1"``, ``"::1"``). The server starts on construction unless
    ``start=False``; use it as a context manager or call ``stop()``.
    """

    __test__ = False

    def __init__(
        self,
        zone_text: str | None = None,
        *,
        origin: str | None = None,
        zones: Mapping[str, ZoneSource] | None = None,
        scopes: Mapping[str, Mapping[str, ScopeSource]] | None = None,
        policies: ZoneSource | None = None,
        files: Mapping[str, ZoneSource] | None = None,
        config: str | os.PathLike[str] | None = None,
        fake_time: TimeLike | None = None,
        seed: int | None = None,
        listen: str = "127.0.0.1",
        workdir: str | os.PathLike[str] | None = None,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        start: bool = True,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if config is not None and any(
            x is not None for x in (zone_text, zones, scopes, policies, files)
        ):
            raise ValueError("config= runs a config file as it is: give no zones or policies")
        self.listen = listen
        self.seed = seed
        self.fake_time = _to_epoch(fake_time) if fake_time is not None else time.time()
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="dnspol-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a directory the kit made goes with the object too: a server never started,
        # or one whose arguments were refused, leaves nothing behind
        self._remove_workdir = weakref.finalize(
            self, shutil.rmtree, self.workdir, ignore_errors=True
        )
        if not self._own_workdir:
            self._remove_workdir.detach()
        self.log_path = self.workdir / "server.log"
        self.ready_path = self.workdir / "ready"
        self.config_path = self.workdir / "dnspol.yaml"
        self.control_path = self.workdir / "control.sock"  # ``dnspol ctl --control``
        self.zone_paths: dict[str, Path] = {}  # "example.com." → its default zone file
        self.host = listen
        self.port = 0
        self.seq = _take_seq()
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._final_log: str | None = None
        self._served = ServedFiles()
        self._user_config = config is not None
        try:
            if config is not None:
                self.config_path = Path(config).resolve()
            else:
                self._served.update(zone_text, origin, zones, scopes, policies, files)
                if not self._served.serves_something():
                    raise ValueError("nothing to serve: give zone_text=, zones= or config=")
                self._write_files()
        except BaseException:
            self._remove_workdir()
            raise
        if start:
            self.start()

    # -- files ---------------------------------------------------------------
    def _write_files(self) -> None:
        self.zone_paths = self._served.write(self.workdir, self.config_path)

    def _argv(self) -> list[str]:
        fake = datetime.fromtimestamp(self.fake_time, UTC).isoformat()
        bracket = f"[{self.listen}]" if ":" in self.listen else self.listen
        argv = [sys.executable, "-m", "dnspol", "serve", "--config", str(self.config_path)]
        argv += [
            "--listen",
            f"{bracket}:0",
            "--fake-time",
            fake,
            "--ready-file",
            str(self.ready_path),
            "--control",
            str(self.control_path),
            "--no-watch",
        ]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        return argv + self.extra_args

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Server:
        """Start the child and wait until it listens; raises ``StartError`` with its log."""
        if self.running:
            return self
        with contextlib.suppress(FileNotFoundError):
            self.ready_path.unlink()
        env = os.environ.copy()
        env.update(self.env)
        # run the dnspol this process imported, installed or not
        package_root = str(Path(dnspol.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        # the supervisor's work directory inside ours: removed with it even when the
        # server had to be killed outright (stop's last resort)
        env.setdefault("TMPDIR", str(self.workdir))
        in_main = threading.current_thread() is threading.main_thread()
        preexec = (_die_with_parent_preexec(os.getpid()) if in_main else None) or _hold_signals
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.workdir),
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 - prctl and sigmask, async-signal-safe enough
            )
        _started(self)
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, began: float) -> None:
        assert self.proc is not None
        deadline = began + self.start_timeout
        delay = 0.002
        while True:
            try:
                host, port = self.ready_path.read_text().split()
                self.host, self.port = host, int(port)
                return
            except (FileNotFoundError, ValueError):
                pass
            code = self.proc.poll()
            if code is not None:
                raise StartError(
                    f"dnspol exited with status {code} before listening; its log:\n{self.log}"
                )
            if time.monotonic() > deadline:
                raise StartError(
                    f"dnspol did not listen within {self.start_timeout:.0f}s; its log:\n{self.log}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def signal(self, signum: int) -> None:
        """Send a signal to the server (``signal.SIGHUP`` reloads from the files)."""
        if not self.running:
            raise ServerError("the server is not running")
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, then SIGKILL its process group. Returns the exit status."""
        proc = self.proc
        code = None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                if not _exited(proc, timeout):
                    _kill_group(proc)
                # the exited leader still holds its group id: no stranger can have it yet
                _kill_group(proc)  # anything the server left in its session
                proc.wait()
            code = proc.returncode
        _stopped_now(self)
        if self._own_workdir and self.workdir.exists():
            self._final_log = self.log
            self._remove_workdir()
        return code

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<dnspol.testing.Server {self.address} {state}>"

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # -- the log ---------------------------------------------------------------
    @property
    def log(self) -> str:
        """Everything the server wrote (stderr and stdout) so far."""
        if self._final_log is not None and not self.log_path.exists():
            return self._final_log
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return self._final_log or ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return len((self._final_log or "").encode())

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return (self._final_log or "").encode()[offset:].decode("utf-8", "replace")

    def wait_for_log(self, text: str, timeout: float = 5.0, since: int = 0) -> str:
        """Wait until ``text`` appears in the log (after byte ``since``); returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.log_since(since)
            if text in seen:
                return seen
            if time.monotonic() > deadline:
                raise ServerError(f"{text!r} did not appear in the log within {timeout}s")
            time.sleep(0.02)

    # -- asking it things ------------------------------------------------------
    def dig(
        self,
        name: str,
        qtype: str = "A",
        *options: str,
        source: str | None = None,
        tcp: bool | None = None,
        timeout: float = 2.0,
    ) -> DigResult:
        """``dig @server -p port name qtype options...``, parsed (see ``dnspol.testing.dig``)."""
        return dig(
            self.host, self.port, name, qtype, *options, source=source, tcp=tcp, timeout=timeout
        )

    def query(
        self,
        name: str,
        qtype: str | int = "A",
        *,
        source: str | None = None,
        ecs: str | dns.edns.ECSOption | None = None,
        tcp: bool = False,
        rd: bool = False,
        do: bool = False,
        cd: bool = False,
        edns: bool = True,
        payload: int = 1232,
        options: tuple[dns.edns.Option, ...] = (),
        rdclass: str | int = "IN",
        timeout: float = 2.0,
    ) -> dns.message.Message:
        """One question asked with dnspython; the reply as a ``dns.message.Message``
        (see ``dnspol.testing.query``). Raises ``QueryError`` when none comes."""
        return query(
            self.host,
            self.port,
            name,
            qtype,
            source=source,
            ecs=ecs,
            tcp=tcp,
            rd=rd,
            do=do,
            cd=cd,
            edns=edns,
            payload=payload,
            options=options,
            rdclass=rdclass,
            timeout=timeout,
        )

    def exchange(
        self,
        wire: bytes,
        *,
        tcp: bool = False,
        timeout: float = 2.0,
        source: str | None = None,
    ) -> bytes | None:
        """Send raw message bytes; return the raw reply, or None when none came.

        Over TCP the kit adds and strips the 2-byte length; None means the
        server closed the connection (or stayed silent) without answering.
        """
        return exchange(self.host, self.port, wire, tcp=tcp, timeout=timeout, source=source)

    def ctl(self, command: str, **arguments: float | str) -> dict:
        """One request on the server's control socket (what ``dnspol ctl`` sends), e.g.
        ``srv.ctl("status")``; returns the reply. Raises ``ControlError`` when the server
        cannot be reached or refuses."""
        from dnspol import control

        if not self.running:
            raise ServerError(f"the server is not running (exit {self.returncode})")
        try:
            reply = control.request(
                str(self.control_path), {"command": command, **arguments}, CONTROL_TIMEOUT
            )
        except control.ControlError as exc:
            raise ControlError(str(exc)) from None
        if not reply.get("ok") and not reply.get("problems"):
            raise ControlError(f"{command}: {reply.get('error', reply)}")
        return reply

    # -- health checks ---------------------------------------------------------
    def set_health(self, check: str, up: bool | None) -> dict:
        """Force a health check (``checks:``) up (True) or down (False), or let its probes
        decide again (None), as ``dnspol ctl set-health`` does: answers that depend on it
        have switched when this returns. Returns the check's state."""
        state = "auto" if up is None else ("up" if up else "down")
        return self.ctl("set-health", check=check, state=state)["check"]

    def checks(self) -> dict[str, dict]:
        """Every health check's state as ``dnspol ctl status`` reports it, by name."""
        return {item["name"]: item for item in self.ctl("status").get("checks", [])}

    # -- the clock -------------------------------------------------------------
    def now(self) -> datetime:
        """The server's clock (UTC)."""
        return _utc(self.ctl("status").get("clock", ""))

    def set_time(self, when: TimeLike) -> datetime:
        """Set the server's clock: an aware ``datetime``, ISO 8601 text or epoch seconds.

        The server keeps whole seconds (fractions are dropped); returns the clock after.
        A time the clock cannot show (nan, inf, before 1970, after 9999) raises
        ValueError with the server's reason, and the clock keeps its time.
        """
        epoch = _to_epoch(when)
        whole = int(epoch // 1) if math.isfinite(epoch) else epoch  # nan, inf: refused there
        return self._clock_command("set-time", time=whole)

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the server's clock by whole seconds (negative: back); returns the clock after.

        Past 9999 or before 1970 raises ValueError with the server's reason.
        """
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if not math.isfinite(seconds) or seconds != int(seconds):
            raise ValueError(f"advance() takes whole seconds, not {seconds}")
        return self._clock_command("advance", seconds=int(seconds))

    def _clock_command(self, command: str, **arguments: float) -> datetime:
        """A clock move; the server's refusal (a time it cannot show) is a ValueError."""
        try:
            return _utc(self.ctl(command, **arguments)["clock"])
        except ControlError as exc:
            if "clock" in str(exc) or "time" in str(exc):
                raise ValueError(str(exc).split(": ", 1)[-1]) from None
            raise

    # -- configuration -----------------------------------------------------------
    def reload(
        self,
        zones: Mapping[str, ZoneSource | None] | None = None,
        policies: ZoneSource | None = None,
        *,
        zone_text: str | None = None,
        origin: str | None = None,
        scopes: Mapping[str, Mapping[str, ScopeSource | None]] | None = None,
        files: Mapping[str, ZoneSource] | None = None,
        check: bool = True,
    ) -> str:
        """Rewrite the given zones, scopes, policies or files, then reload synchronously.

        What is not named keeps its file; a zone or scope given as None is
        removed; a new origin adds a zone. The reload is done when this returns.
        Returns the server's answer (``"ok"``); raises ``ReloadError`` with the
        first problem when the server kept the old configuration, unless
        ``check=False``.
        """
        if self._user_config and any(
            x is not None for x in (zones, policies, zone_text, scopes, files)
        ):
            raise ValueError("this server runs a config file you gave: edit it, then reload()")
        if not self._user_config:
            self._served.update(zone_text, origin, zones, scopes, policies, files)
            self._write_files()
        reply = self.ctl("reload")
        answer = "ok" if reply["ok"] else "failed: " + "; ".join(reply["problems"][:3])
        if check and answer != "ok":
            raise ReloadError(f"reload rejected, old configuration kept: {answer}")
        return answer


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` for ``proc`` to exit, without reaping it (``WNOWAIT``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:  # never signal a group whose leader was reaped
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _utc(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise ControlError(f"the server's clock answered {text!r}, not ISO 8601") from None
