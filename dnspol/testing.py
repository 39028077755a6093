"""Real dnspol servers for other people's tests: the ``dnspol`` pytest fixtures and ``Server``.

This module owns running a dnspol server as a child process for a test and
talking to it the way the code under test will: with real ``dig`` (parsed into
``DigResult``), raw wire bytes (``Server.exchange``), the test clock
(``set_time`` / ``advance``) and reloads with new zones or rules.

With pytest nothing needs importing: installing dnspol registers this module as
a plugin (entry point ``pytest11``), which provides two factory fixtures,
``dnspol`` (servers stop when the test ends) and ``dnspol_session`` (servers
live for the whole run), and attaches each server's log to the report of a
failing test::

    def test_www(dnspol):
        srv = dnspol(zone=ZONE_TEXT)
        assert srv.dig("www.example.com").addresses == ["192.0.2.1"]

Without pytest (unittest, scripts)::

    with dnspol.testing.Server(zone_text=ZONE_TEXT) as srv:
        srv.dig("www.example.com")

Every server runs ``sys.executable -m dnspol serve`` on a free loopback port,
UDP and TCP, with ``--fake-time`` (so the test clock can be driven), in its own
session. Nothing outlives the run: servers stop in fixture finalizers, at
interpreter exit, and (on Linux) die with the process that started them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "ControlError",
    "DigError",
    "DigResult",
    "Edns",
    "Question",
    "Record",
    "ReloadError",
    "Server",
    "ServerError",
    "StartError",
    "TestingError",
    "dig",
    "parse_dig",
    "txt_strings",
]

START_TIMEOUT = 10.0  # seconds to wait for READY before giving up
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
CONTROL_TIMEOUT = 30.0  # a synchronous reload of a big zone may take a while
LOG_SECTION_LINES = 400  # at most this many log lines in a failing test's report

TimeLike = datetime | str | int | float


# --------------------------------------------------------------------------- errors


class TestingError(Exception):
    """Root of the errors this module raises."""

    __test__ = False  # not a test class, whatever pytest's name patterns say


class StartError(TestingError):
    """The server did not start; the message ends with its log."""


class ServerError(TestingError):
    """The server is not running or answered a control query unexpectedly."""


class ControlError(ServerError):
    """A clock or reload control query was not answered as expected."""


class ReloadError(ControlError):
    """The server rejected the new configuration and kept the old one."""


class DigError(TestingError):
    """``dig`` got no answer (timeout, connection refused) or could not run."""

    def __init__(self, message: str, raw: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.returncode = returncode


# --------------------------------------------------------------------------- dig results


class Record(NamedTuple):
    """One resource record as dig prints it; ``data`` is the presentation text."""

    name: str
    ttl: int
    rclass: str
    type: str
    data: str


class Question(NamedTuple):
    name: str
    rclass: str
    type: str


@dataclass(frozen=True)
class Edns:
    """The OPT pseudo-section of a response."""

    version: int
    flags: frozenset[str]
    udp: int
    options: tuple[tuple[str, str], ...] = ()  # (NAME, text) as dig prints them

    def option(self, name: str) -> str | None:
        """Text of the first option called ``name`` (``"EDE"``, ``"CLIENT-SUBNET"``), or None."""
        for key, text in self.options:
            if key.upper() == name.upper():
                return text
        return None


@dataclass(frozen=True)
class DigResult:
    """A parsed dig response; ``raw`` is dig's whole output."""

    raw: str = field(repr=False)
    id: int
    opcode: str
    rcode: str
    flags: frozenset[str]
    question: tuple[Question, ...]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    edns: Edns | None
    size: int | None = None  # MSG SIZE rcvd
    transport: str | None = None  # "UDP" | "TCP", from dig's SERVER line
    truncated_retry: bool = False  # dig got TC=1 over UDP and asked again over TCP

    @property
    def aa(self) -> bool:
        return "aa" in self.flags

    @property
    def tc(self) -> bool:
        return "tc" in self.flags

    @property
    def rd(self) -> bool:
        return "rd" in self.flags

    @property
    def ra(self) -> bool:
        return "ra" in self.flags

    @property
    def addresses(self) -> list[str]:
        """A and AAAA data in the answer section, in answer order."""
        return [r.data for r in self.answer if r.type in ("A", "AAAA")]

    @property
    def texts(self) -> list[str]:
        """TXT records of the answer section, each record's strings joined."""
        return ["".join(txt_strings(r.data)) for r in self.answer if r.type == "TXT"]

    def records(self, rtype: str, section: str = "answer") -> list[Record]:
        """Records of one type in a section (``answer``, ``authority``, ``additional``)."""
        return [r for r in getattr(self, section) if r.type == rtype.upper()]

    def data(self, rtype: str | None = None) -> list[str]:
        """Answer data strings, optionally of one type only."""
        return [r.data for r in self.answer if rtype is None or r.type == rtype.upper()]

    def __str__(self) -> str:
        return self.raw


_HEADER_RE = re.compile(r";; ->>HEADER<<- opcode: (\S+), status: (\S+), id: (\d+)")
_FLAGS_RE = re.compile(r";; flags:([^;]*);")
_EDNS_RE = re.compile(r"; EDNS: version: (\d+), flags:([^;]*); udp: (\d+)")
_SIZE_RE = re.compile(r";; MSG SIZE\s+rcvd: (\d+)")
_SERVER_RE = re.compile(r";; SERVER: \S+ \((UDP|TCP)\)")
_SECTIONS = {
    "QUESTION": "question",
    "ANSWER": "answer",
    "AUTHORITY": "authority",
    "ADDITIONAL": "additional",
    "OPT PSEUDOSECTION": "opt",
}


def parse_dig(raw: str) -> DigResult:
    """Parse dig's default output; with several replies (TC then TCP) the last one counts."""
    starts = [m.start() for m in re.finditer(r"^;; Got answer:", raw, re.MULTILINE)]
    if not starts:
        raise DigError(_dig_failure(raw), raw)
    text = raw[starts[-1] :]
    header = _HEADER_RE.search(text)
    flags_m = _FLAGS_RE.search(text)
    if header is None or flags_m is None:
        raise DigError("cannot read dig's header line", raw)
    sections: dict[str, list[str]] = {k: [] for k in _SECTIONS.values()}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(";; ") and line.rstrip().endswith("SECTION:"):
            title = line[3:].rstrip()[:-1].removesuffix(" SECTION")
            current = _SECTIONS.get(title)
            continue
        if not line.strip() or (line.startswith(";;") and current != "opt"):
            current = None if not line.strip() else current
            continue
        if current is not None:
            sections[current].append(line)
    size = _SIZE_RE.search(text)
    server = _SERVER_RE.search(text)
    return DigResult(
        raw=raw,
        id=int(header.group(3)),
        opcode=header.group(1),
        rcode=header.group(2),
        flags=frozenset(flags_m.group(1).split()),
        question=tuple(_question(line) for line in sections["question"]),
        answer=tuple(_record(line) for line in sections["answer"]),
        authority=tuple(_record(line) for line in sections["authority"]),
        additional=tuple(_record(line) for line in sections["additional"]),
        edns=_edns(sections["opt"]),
        size=int(size.group(1)) if size else None,
        transport=server.group(1) if server else None,
        truncated_retry=";; Truncated, retrying in TCP mode." in raw,
    )


def _question(line: str) -> Question:
    parts = line.lstrip(";").split()
    if len(parts) < 3:
        raise DigError(f"cannot read question line {line!r}")
    return Question(parts[0], parts[1], parts[2])


def _record(line: str) -> Record:
    parts = line.split(None, 4)
    if len(parts) < 4:
        raise DigError(f"cannot read record line {line!r}")
    data = parts[4].strip() if len(parts) > 4 else ""
    return Record(parts[0], int(parts[1]), parts[2], parts[3], data)


def _edns(lines: list[str]) -> Edns | None:
    if not lines:
        return None
    head = _EDNS_RE.search(lines[0])
    if head is None:
        return None
    options = []
    for line in lines[1:]:
        name, _, text = line.lstrip("; ").partition(":")
        options.append((name.strip(), text.strip()))
    return Edns(
        version=int(head.group(1)),
        flags=frozenset(head.group(2).split()),
        udp=int(head.group(3)),
        options=tuple(options),
    )


def _dig_failure(raw: str) -> str:
    lines = [line for line in raw.splitlines() if line.startswith(";;") or "error" in line]
    return "dig got no answer: " + (" / ".join(lines[-3:]) if lines else raw.strip()[-300:])


def txt_strings(data: str) -> list[str]:
    """The character-strings of TXT presentation data (``"a b" "c"`` → ``["a b", "c"]``)."""
    out: list[str] = []
    i = 0
    while i < len(data):
        if data[i].isspace():
            i += 1
            continue
        buf = bytearray()
        quoted = data[i] == '"'
        i += quoted
        while i < len(data):
            ch = data[i]
            if quoted and ch == '"':
                i += 1
                break
            if not quoted and ch.isspace():
                break
            if ch == "\\" and i + 1 < len(data):
                if data[i + 1 : i + 4].isdigit() and len(data[i + 1 : i + 4]) == 3:
                    buf.append(int(data[i + 1 : i + 4]))
                    i += 4
                    continue
                buf += data[i + 1].encode()
                i += 2
                continue
            buf += ch.encode()
            i += 1
        out.append(buf.decode("utf-8", "replace"))
    return out


def dig(
    server: str,
    port: int,
    name: str,
    qtype: str = "A",
    *options: str,
    source: str | None = None,
    tcp: bool | None = None,
    timeout: float = 2.0,
) -> DigResult:
    """Run the real ``dig @server -p port name qtype options...`` and parse its output.

    ``options`` are dig's own (``"+norec"``, ``"+bufsize=512"``, ``"-c"``, ``"CH"``);
    they come after the kit's defaults (``+time``, ``+tries=1``), so they win.
    ``source`` sends from that address (``dig -b``); ``tcp=True`` adds ``+tcp`` and
    ``tcp=False`` adds ``+notcp`` (last, so they win); None leaves it to dig.
    Raises ``DigError`` when dig gets no answer.
    """
    exe = shutil.which("dig")
    if exe is None:
        raise DigError("dig is not installed (Debian/Ubuntu: apt-get install bind9-dnsutils)")
    wait = max(1, round(timeout))
    argv = [exe, "-r", f"@{server}", "-p", str(port)]
    if source:
        argv += ["-b", source]
    argv += [name, qtype, f"+time={wait}", "+tries=1", *options]
    if tcp is not None:
        argv.append("+tcp" if tcp else "+notcp")
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=max(60, wait * 3 + 5), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DigError(f"dig did not finish: {' '.join(argv)}") from exc
    raw = done.stdout + (done.stderr if done.stderr.strip() else "")
    if done.returncode == 0 and ";; Got answer:" not in raw:
        raise DigError(
            "dig answered in a format the kit does not read: leave out options such as "
            "+short, +noall, +yaml or +multiline (the result has every section anyway)",
            raw,
            0,
        )
    if done.returncode != 0 and ";; Got answer:" not in raw:
        raise DigError(
            f"{_dig_failure(raw)} (dig exit {done.returncode}: {' '.join(argv[1:])})",
            raw,
            done.returncode,
        )
    return parse_dig(raw)


# --------------------------------------------------------------------------- wire helpers


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# --------------------------------------------------------------------------- the server


_registry_lock = threading.Lock()
_live: list[Server] = []  # running servers, oldest first
_stopped: collections.deque[Server] = collections.deque(maxlen=64)  # for failing tests' logs
_next_seq = 1


def _take_seq() -> int:
    global _next_seq
    with _registry_lock:
        seq, _next_seq = _next_seq, _next_seq + 1
    return seq


def _stop_all() -> None:
    with _registry_lock:
        servers = list(_live)
    for srv in reversed(servers):
        with contextlib.suppress(Exception):
            srv.stop()


atexit.register(_stop_all)


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


_FIRST_ORIGIN = re.compile(r"^\$ORIGIN[ \t]+([^\s;]+)", re.IGNORECASE | re.MULTILINE)


def _origin_of(text: str) -> str | None:
    match = _FIRST_ORIGIN.search(text)
    if match and match.group(1).endswith("."):
        return match.group(1)
    return None


def _text_of(value: str | os.PathLike[str]) -> str:
    """A file's text, or text written in a test (common indentation removed)."""
    if isinstance(value, os.PathLike):
        return Path(value).read_text(encoding="utf-8")
    return textwrap.dedent(value)


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.rstrip(".") or "root")


def _dotted(origin: str) -> str:
    return origin.rstrip(".").lower() + "."


def _top_keys(yaml_text: str | None) -> set[str]:
    """Top-level keys of a YAML mapping (empty when it is not one)."""
    if not yaml_text:
        return set()
    import yaml

    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError:
        return set()  # the server will say what is wrong, with line numbers
    return set(data) if isinstance(data, dict) else set()


ZoneSource = str | os.PathLike[str]
ScopeSource = ZoneSource | Mapping[str, ZoneSource]  # text/path (an overlay) or {"file": …}


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
        self.listen = listen
        self.seed = seed
        self.fake_time = _to_epoch(fake_time) if fake_time is not None else time.time()
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="dnspol-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
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
        self._zones: dict[str, str] = {}
        self._scopes: dict[str, dict[str, tuple[str, str]]] = {}
        self._policies: str | None = None
        self._files: dict[str, str] = {}
        self._user_config = config is not None
        if config is not None:
            if any(x is not None for x in (zone_text, zones, scopes, policies, files)):
                raise ValueError("config= runs a config file as it is: give no zones or policies")
            self.config_path = Path(config).resolve()
        else:
            self._update(zone_text, origin, zones, scopes, policies, files)
            if not self._zones and "zones" not in _top_keys(self._policies):
                raise ValueError("nothing to serve: give zone_text=, zones= or config=")
            self._write_files()
        if start:
            self.start()

    # -- files ---------------------------------------------------------------
    def _update(self, zone_text, origin, zones, scopes, policies, files) -> None:
        if zone_text is not None:
            zone_text = _text_of(zone_text)
            name = origin or _origin_of(zone_text)
            if name is None:
                raise ValueError("zone text has no absolute $ORIGIN: pass origin='example.com'")
            self._zones[_dotted(name)] = zone_text
        elif origin is not None:
            raise ValueError("origin= goes with zone_text=")
        for name, value in (zones or {}).items():
            if value is None:
                self._zones.pop(_dotted(name), None)
                self._scopes.pop(_dotted(name), None)
            else:
                self._zones[_dotted(name)] = _text_of(value)
        for name, variants in (scopes or {}).items():
            into = self._scopes.setdefault(_dotted(name), {})
            for scope, value in variants.items():
                if value is None:
                    into.pop(scope, None)
                elif isinstance(value, Mapping):
                    if len(value) != 1 or next(iter(value)) not in ("file", "overlay"):
                        raise ValueError(f"scope {scope!r}: give {{'file': text}} or an overlay")
                    kind, text = next(iter(value.items()))
                    into[scope] = (kind, _text_of(text))
                else:
                    into[scope] = ("overlay", _text_of(value))
        if policies is not None:
            self._policies = _text_of(policies)
        for rel, value in (files or {}).items():
            self._files[rel] = value if isinstance(value, str) else _text_of(value)
        if self._zones and "zones" in _top_keys(self._policies):
            raise ValueError(
                "policies= has its own 'zones:'; give zones there or in zones=, not both"
            )

    def _write_files(self) -> None:
        """Zone, scope and other files, then the config naming them (policies/README.md)."""
        zone_dir = self.workdir / "zones"
        zone_dir.mkdir(parents=True, exist_ok=True)
        lines = ["zones:"] if self._zones else []
        self.zone_paths = {}
        for origin, text in self._zones.items():
            stem = _safe_stem(origin)
            path = zone_dir / f"{stem}.zone"
            _atomic_write(path, text)
            self.zone_paths[origin] = path
            lines.append(f"  {_yaml_str(origin.rstrip('.') or '.')}:")
            lines.append(f"    file: {_yaml_str(f'zones/{path.name}')}")
            variants = self._scopes.get(origin, {})
            if variants:
                lines.append("    scopes:")
            for scope, (kind, scope_text) in variants.items():
                scope_path = zone_dir / f"{stem}.{_safe_stem(scope)}.zone"
                _atomic_write(scope_path, scope_text)
                entry = f"{{{kind}: {_yaml_str(f'zones/{scope_path.name}')}}}"
                lines.append(f"      {_yaml_str(scope)}: {entry}")
        for rel, text in self._files.items():
            target = (self.workdir / rel).resolve()
            if self.workdir.resolve() not in target.parents:
                raise ValueError(f"files: {rel!r} is not a path inside the work directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, text)
        head = self._policies or ""
        if head and not head.endswith("\n"):
            head += "\n"
        if head and lines:
            head += "\n# added by dnspol.testing: the zones given to the kit\n"
        _atomic_write(self.config_path, head + "\n".join(lines) + ("\n" if lines else ""))

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
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
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
        with _registry_lock:
            _live.append(self)
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
        with _registry_lock:
            if self in _live:
                _live.remove(self)
                _stopped.append(self)
        if self._own_workdir and self.workdir.exists():
            self._final_log = self.log
            shutil.rmtree(self.workdir, ignore_errors=True)
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
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        with socket.socket(family, kind) as sock:
            sock.settimeout(timeout)
            if source:
                sock.bind((source, 0))
            try:
                if tcp:
                    sock.connect((self.host, self.port))
                    sock.sendall(len(wire).to_bytes(2, "big") + wire)
                    head = _recv_exact(sock, 2)
                    if head is None:
                        return None
                    return _recv_exact(sock, int.from_bytes(head, "big"))
                sock.sendto(wire, (self.host, self.port))
                return sock.recv(65535)
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                return None

    def ctl(self, command: str, **arguments: float) -> dict:
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
            self._update(zone_text, origin, zones, scopes, policies, files)
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- pytest plugin

try:
    import pytest
except ImportError:  # the kit works without pytest; only the fixtures need it
    pytest = None  # type: ignore[assignment]


@dataclass
class _Factory:
    """What the ``dnspol`` fixtures return: call it to start a server."""

    base: Path
    servers: list[Server] = field(default_factory=list)

    def __call__(self, zone: str | None = None, **kwargs) -> Server:
        if zone is not None:
            kwargs["zone_text"] = zone
        kwargs.setdefault("workdir", self.base / f"server{len(self.servers) + 1}")
        srv = Server(**kwargs)
        self.servers.append(srv)
        return srv

    def close(self) -> None:
        for srv in reversed(self.servers):
            with contextlib.suppress(Exception):
                srv.stop()


if pytest is not None:
    _OFFSETS = pytest.StashKey[dict]()
    _SEQ_AT_START = pytest.StashKey[int]()

    @pytest.fixture
    def dnspol(tmp_path_factory):
        """Start dnspol servers for this test: ``srv = dnspol(zone=TEXT)``; they stop after it."""
        factory = _Factory(tmp_path_factory.mktemp("dnspol"))
        yield factory
        factory.close()

    @pytest.fixture(scope="session")
    def dnspol_session(tmp_path_factory):
        """Like ``dnspol``, but the servers live until the end of the test run."""
        factory = _Factory(tmp_path_factory.mktemp("dnspol-session"))
        yield factory
        factory.close()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(item) -> None:
        with _registry_lock:
            live = list(_live)
        item.stash[_OFFSETS] = {id(s): s.log_size() for s in live}
        item.stash[_SEQ_AT_START] = _next_seq

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        if not report.failed:
            return
        for title, text in _log_sections(item):
            report.sections.append((title, text))

    def pytest_sessionfinish(session, exitstatus) -> None:
        _stop_all()


def _log_sections(item) -> list[tuple[str, str]]:
    """The log each server wrote while ``item`` ran (servers it started or shared)."""
    offsets: dict[int, int] = item.stash.get(_OFFSETS, {})
    first_new = item.stash.get(_SEQ_AT_START, 1 << 62)
    with _registry_lock:
        candidates = list(_live) + [s for s in _stopped if s not in _live]
    out = []
    for srv in sorted(candidates, key=lambda s: s.seq):
        if id(srv) not in offsets and srv.seq < first_new:
            continue
        text = srv.log_since(offsets.get(id(srv), 0))
        lines = text.splitlines()
        if not lines:
            continue
        if len(lines) > LOG_SECTION_LINES:
            lines = [f"... {len(lines) - LOG_SECTION_LINES} earlier lines omitted"] + lines[
                -LOG_SECTION_LINES:
            ]
        where = srv.address if srv.port else "(never listened)"
        out.append((f"dnspol server {where} log", "\n".join(lines)))
    return out
