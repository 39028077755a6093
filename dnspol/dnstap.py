"""dnstap: sampled queries and their answers as AUTH_QUERY / AUTH_RESPONSE messages.

dnstap (https://dnstap.info) is the query log BIND, Knot, NSD, PowerDNS, CoreDNS and
unbound write: protobuf ``Dnstap`` messages carried in Frame Streams, read by
``fstrm_capture``, ``dnstap-ldns``, the Go ``dnstap`` tool, Vector and others. This
module owns all of it for dnspol:

* ``server.dnstap`` in the configuration: ``read_config`` → ``DnstapConfig`` and its
  part of ``dnspol schema`` (``json_schema``), declared once in ``SETTINGS``;
* the encoding (``encode``): the schema is small and fixed (dnstap.proto's ``Dnstap``
  and ``Message``), so its few varint, fixed32 and length-delimited fields are written
  here rather than by a protobuf library, and Frame Streams' frames (``data_frame``,
  ``control_frame``);
* ``Tap``, the observer ``dnspol.observe.Observed`` hands sampled queries to. The
  answering side only appends a tuple to a bounded queue (``offer``); a thread encodes
  and writes. When the collector is absent, restarting or slower than the queries,
  the queue fills and further messages are dropped and counted (``dropped``), so
  dnstap never holds up an answer.

Outputs. ``socket: PATH``: a collector's Unix socket, with Frame Streams' handshake
(READY, ACCEPT, START … STOP, FINISH), as libfstrm's writers do; when the collector
goes away the tap reconnects with backoff. Each worker process has its own
connection (as BIND's and unbound's threads do). ``file: PATH``: a Frame Streams file
(START … STOP), replaced when the server starts; with several workers each worker
writes its own file, ``PATH.PID``, since one stream cannot have two writers.

The decision is carried in the ``extra`` field: ``rule=NAME scope=SCOPE`` (``rule=-``
when no rule matched), with `` action=ACTION`` when the rule did not answer.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from dnspol import __version__
from dnspol.policy.yamlnodes import Node, Reader
from dnspol.stats import AnswerLabel

log = logging.getLogger("dnspol.dnstap")

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"

# --- server.dnstap: the one declaration -------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type  # int or float
    default: int | float
    minimum: int | float
    maximum: int | float
    help: str
    above: bool = False  # the minimum itself is out of range


SETTINGS: tuple[Setting, ...] = (
    Setting("sample", float, 1.0, 0, 1,
            "fraction of queries sent (each with its answer), e.g. 0.01; 1: all", above=True),
    Setting("queue", int, 10_000, 1, 100_000,
            "queries waiting for the writer, per worker; beyond it they are dropped and "
            "counted"),
)  # fmt: skip
TEXTS = {
    "socket": "a collector's Unix socket (fstrm_capture -u, dnstap -u, Vector): each "
    "worker connects, and reconnects when the collector restarts",
    "file": "a Frame Streams file, replaced at start; with several workers, PATH.PID each",
    "identity": "the identity field (default: this machine's name)",
    "version": "the version field (default: dnspol and its version)",
}
KEYS = tuple(TEXTS) + tuple(s.key for s in SETTINGS)


@dataclass(frozen=True)
class DnstapConfig:
    """The compiled ``server.dnstap`` section: exactly one of ``socket`` and ``file``."""

    socket: str | None = None
    file: str | None = None
    identity: bytes = b""
    version: bytes = b""
    sample: float = 1.0
    queue: int = 10_000

    @property
    def target(self) -> str:
        """The output as the logs and ``dnspol ctl status`` say it."""
        return f"socket {self.socket}" if self.socket else f"file {self.file}"


def default_identity() -> bytes:
    return socket.gethostname().encode()


def default_version() -> bytes:
    return f"dnspol {__version__}".encode()


def read_config(node: Node, reader: Reader, base_dir: str) -> DnstapConfig | None:
    """``server.dnstap``; paths are relative to the configuration file."""
    entries = reader.mapping(node, "dnstap", KEYS)
    if entries is None:
        return None
    values: dict[str, Any] = {}
    for key in ("socket", "file"):
        if key in entries:
            text = reader.text(entries[key], f"dnstap.{key}")
            if text is not None:
                values[key] = os.path.join(base_dir, text)
    for key in ("identity", "version"):
        if key in entries:
            text = reader.text(entries[key], f"dnstap.{key}")
            if text is not None:
                values[key] = text.encode()
    for setting in SETTINGS:
        if setting.key in entries:
            value = _read_number(setting, entries[setting.key], reader)
            if value is not None:
                values[setting.key] = value
    if sum(key in entries for key in ("socket", "file")) != 1:
        reader.problem(node, "dnstap needs exactly one of 'socket' or 'file'")
        return None
    if "socket" not in values and "file" not in values:
        return None  # the path's problem is recorded
    values.setdefault("identity", default_identity())
    values.setdefault("version", default_version())
    return DnstapConfig(**values)


def _read_number(setting: Setting, node: Node, reader: Reader) -> int | float | None:
    what = f"dnstap.{setting.key}"
    if setting.kind is int:
        low, high = int(setting.minimum), int(setting.maximum)
        return reader.integer(node, what, minimum=low, maximum=high)
    value = reader.number(node, what)
    if value is None:
        return None
    low_ok = value > setting.minimum if setting.above else value >= setting.minimum
    if not (low_ok and value <= setting.maximum):
        low = "above" if setting.above else "at least"
        reader.problem(
            node,
            f"{what} must be {low} {setting.minimum:g} and at most {setting.maximum:g}, "
            f"not {value:g}",
        )
        return None
    return value


def json_schema() -> dict:
    """The ``server.dnstap`` part of ``dnspol schema``."""
    props: dict[str, dict] = {
        key: {"type": "string", "minLength": 1, "description": text} for key, text in TEXTS.items()
    }
    for s in SETTINGS:
        kind = "integer" if s.kind is int else "number"
        props[s.key] = {
            "type": kind,
            "exclusiveMinimum" if s.above else "minimum": s.minimum,
            "maximum": s.maximum,
            "default": s.default,
            "description": s.help,
        }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "oneOf": [{"required": ["socket"]}, {"required": ["file"]}],
    }


# --- encoding: protobuf (dnstap.proto) and Frame Streams ---------------------------------------

# dnstap.proto's numbers
DNSTAP_MESSAGE = 1  # Dnstap.Type MESSAGE
AUTH_QUERY, AUTH_RESPONSE = 1, 2  # Message.Type
INET, INET6 = 1, 2  # SocketFamily
PROTOCOLS = {"udp": 1, "tcp": 2}  # SocketProtocol
# Frame Streams control frames
ACCEPT, START, STOP, READY, FINISH = 1, 2, 3, 4, 5
FIELD_CONTENT_TYPE = 1
MAX_CONTROL = 512  # libfstrm's limit on a control frame


_SMALL = [bytes((n,)) for n in range(0x80)]  # one-byte varints: most lengths, every key


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _SMALL[number << 3 | wire_type]  # every field number here is below 16


def _uint(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _bytes(number: int, value: bytes) -> bytes:
    return _key(number, 2) + _varint(len(value)) + value


def _fixed32(number: int, value: int) -> bytes:
    return _key(number, 5) + struct.pack("<I", value)


@dataclass(frozen=True)
class Endpoints:
    """The socket fields of a Message: who asked (query_*), who answered (response_*)."""

    family: int
    protocol: int
    client: bytes  # packed address
    client_port: int
    server: bytes | None  # None: the listener's family differs (not said, rather than wrong)
    server_port: int

    @classmethod
    def of(cls, peer: tuple, address: str, port: int, transport: str) -> Endpoints:
        host = str(peer[0]).split("%")[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_host = address.split("%")[0]
        server_family = socket.AF_INET6 if ":" in server_host else socket.AF_INET
        server = socket.inet_pton(family, server_host) if server_family == family else None
        return cls(
            INET6 if family == socket.AF_INET6 else INET,
            PROTOCOLS.get(transport, 1),
            socket.inet_pton(family, host),
            int(peer[1]),
            server,
            port,
        )

    def fields(self) -> bytes:
        out = _uint(2, self.family) + _uint(3, self.protocol) + _bytes(4, self.client)
        if self.server is not None:
            out += _bytes(5, self.server)
        return out + _uint(6, self.client_port) + _uint(7, self.server_port)


def _time(sec_field: int, nanoseconds: int) -> bytes:
    sec, nsec = divmod(nanoseconds, 1_000_000_000)
    return _uint(sec_field, sec) + _fixed32(sec_field + 1, nsec)


def messages(
    ends: Endpoints, query_ns: int, query: bytes, response_ns: int, response: bytes | None
) -> list[bytes]:
    """The ``Message`` AUTH_QUERY with the query, and AUTH_RESPONSE with both times and the
    answer (the query's time too, so a reader sees how long the answer took) when there
    is one."""
    common = ends.fields() + _time(8, query_ns)
    out = [_uint(1, AUTH_QUERY) + common + _bytes(10, query)]
    if response is not None:
        out.append(_uint(1, AUTH_RESPONSE) + common + _time(12, response_ns) + _bytes(14, response))
    return out


def header(identity: bytes, version: bytes) -> bytes:
    """The fields every ``Dnstap`` of one server starts with."""
    return (_bytes(1, identity) if identity else b"") + (_bytes(2, version) if version else b"")


def encode(head: bytes, extra: bytes, body: bytes) -> bytes:
    """A ``Dnstap`` around one ``Message``; ``head`` from ``header``."""
    return head + (_bytes(3, extra) if extra else b"") + _bytes(14, body) + _TYPE_MESSAGE


_TYPE_MESSAGE = _uint(15, DNSTAP_MESSAGE)


def data_frame(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


def control_frame(kind: int, content_type: bytes | None = CONTENT_TYPE) -> bytes:
    """An escape (a zero length), the control frame's length, its type and fields."""
    body = struct.pack("!I", kind)
    if content_type is not None and kind in (ACCEPT, START, READY):
        body += struct.pack("!II", FIELD_CONTENT_TYPE, len(content_type)) + content_type
    return struct.pack("!II", 0, len(body)) + body


def parse_control(body: bytes) -> tuple[int, list[bytes]]:
    """A control frame's body (after the escape and length): its type and content types."""
    if len(body) < 4:
        raise ValueError("short control frame")
    (kind,) = struct.unpack_from("!I", body)
    types, at = [], 4
    while at + 8 <= len(body):
        field, size = struct.unpack_from("!II", body, at)
        at += 8
        if field == FIELD_CONTENT_TYPE:
            types.append(body[at : at + size])
        at += size
    return kind, types


def extra_text(label: AnswerLabel | None, dropped: str | None = None) -> bytes:
    """``rule=NAME scope=SCOPE``, and ``action=`` when not an answer."""
    if label is None:
        return f"rule=- scope=- action=drop reason={dropped or 'malformed'}".encode()
    text = f"rule={label.rule or '-'} scope={label.scope or '-'}"
    if label.action != "answer":
        text += f" action={label.action}"
    return text.encode()


def _size(record: tuple) -> int:
    """Bytes a queued record holds: the query and the answer (``Tap.offer``)."""
    wire, out = record[4], record[5]
    return len(wire) + (len(out) if out is not None else 0)


# --- the tap: queue, writer thread, outputs ---------------------------------------------------

WRITE_INTERVAL = 0.05  # seconds the writer waits when the queue is empty
BATCH = 500  # queries taken per write
# what the queue may hold whatever its length: TCP messages of 64 KiB each would make
# the longest queue gigabytes
QUEUE_BYTES = 32 * 2**20
SEND_TIMEOUT = 2.0  # a collector that takes no bytes this long is dropped and reconnected
HANDSHAKE_TIMEOUT = 2.0
RETRY_FIRST, RETRY_MOST = 0.5, 10.0  # reconnect backoff, seconds


class SocketOutput:
    """A collector's Unix socket, bidirectional Frame Streams (READY/ACCEPT/START)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            sock.connect(self.path)
            sock.sendall(control_frame(READY))
            try:
                kind, types = parse_control(_read_control(sock))
            except ValueError as exc:
                raise OSError(errno.EPROTO, f"the collector's answer: {exc}") from None
            if kind != ACCEPT or (types and CONTENT_TYPE not in types):
                raise OSError(errno.EPROTO, f"the collector did not accept {CONTENT_TYPE!r}")
            sock.sendall(control_frame(START))
            sock.settimeout(SEND_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def alive(self) -> bool:
        """False when the collector has closed its end (it stopped or restarted): a
        collector sends nothing more after ACCEPT until FINISH, so anything readable
        means the stream is over. Checked before each batch, so the batch waits for the
        next connection instead of going into a socket no one reads."""
        assert self.sock is not None
        poller = select.poll()  # not select(): a busy server's descriptors pass 1024
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        """STOP, and a short wait for FINISH, so the collector closes its file cleanly."""
        if self.sock is None:
            return
        try:
            self.sock.settimeout(0.5)
            self.sock.sendall(control_frame(STOP))
            _read_control(self.sock)
        except OSError:
            pass
        finally:
            self.sock.close()
            self.sock = None

    def abandon(self) -> None:
        """Without STOP: after a failed send the stream may end mid-frame."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _read_control(sock: socket.socket) -> bytes:
    head = _read_exactly(sock, 8)
    escape, size = struct.unpack("!II", head)
    if escape != 0 or size > MAX_CONTROL:
        raise OSError(errno.EPROTO, "the collector did not answer with a control frame")
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError(errno.ECONNRESET, "the collector closed the connection")
        data += chunk
    return data


class FileOutput:
    """A Frame Streams file: START, data frames, STOP."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        self.send(control_frame(START))

    def send(self, data: bytes) -> None:
        assert self.fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # a full disk: the reader sees the stream end
            self.send(control_frame(STOP))
        os.close(self.fd)
        self.fd = None


class Tap:
    """dnstap for one process; ``offer`` never blocks.

    ``per_process``: several workers share the configuration; a file output then gets
    this process's id appended (one stream has one writer).
    """

    def __init__(
        self,
        config: DnstapConfig,
        labels: list[AnswerLabel] | None = None,
        per_process: bool = False,
    ) -> None:
        self.config = config
        self.sample = config.sample
        self.labels = labels if labels is not None else []  # Stats.labels: key -> AnswerLabel
        self.limit = config.queue
        self.queue: collections.deque = collections.deque()
        # bytes of the queued messages: each counter has one writer (the answering
        # thread adds, the writer thread takes away), so neither loses an update
        self.bytes_in = 0
        self.bytes_out = 0
        self.written = 0  # dnstap messages written
        self.full = 0  # messages dropped at the queue (answering side)
        self.lost = 0  # messages the writer could not deliver
        self.connects = 0  # connections made (a reconnect counts)
        self._head = header(config.identity, config.version)
        if config.socket:
            self.output: SocketOutput | FileOutput = SocketOutput(config.socket)
        else:
            assert config.file is not None
            path = f"{config.file}.{os.getpid()}" if per_process else config.file
            self.output = FileOutput(path)
        self._connected = False
        self._retry_at = 0.0
        self._backoff = RETRY_FIRST
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        return self.full + self.lost

    # -- the answering side --------------------------------------------------
    def offer(
        self,
        query_ns: int,
        response_ns: int,
        peer: tuple,
        listener: Any,
        wire: bytes,
        out: bytes | None,
        label: object,
    ) -> None:
        """Queue one query and its answer; drop (and count) them when the writer is behind."""
        size = len(wire) + (len(out) if out is not None else 0)
        if len(self.queue) >= self.limit or self.bytes_in - self.bytes_out + size > QUEUE_BYTES:
            self.full += 1 if out is None else 2
            return
        self.bytes_in += size
        self.queue.append((query_ns, response_ns, peer, listener, wire, out, label))

    # -- the writer ----------------------------------------------------------
    def start(self) -> None:
        """A file is opened here (errors surface at start); a socket is connected by the
        writer, so a collector that starts later is found."""
        if isinstance(self.output, FileOutput):
            self.output.open()
            self._connected = True
        self._thread = threading.Thread(target=self._run, name="dnstap", daemon=True)
        self._thread.start()
        log.info("dnstap to %s", self.output_name())

    def output_name(self) -> str:
        out = self.output
        return f"socket {out.path}" if isinstance(out, SocketOutput) else f"file {out.path}"

    def stop(self, timeout: float = 1.0) -> None:
        """Write what is queued (for at most ``timeout``), then STOP and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # stuck in a send; a daemon thread, it ends with the process

    def _run(self) -> None:
        try:
            while True:
                try:
                    if not self._step():
                        break
                except Exception:  # noqa: BLE001 - the tap must outlive one bad turn
                    log.exception("dnstap writer failed; going on")
                    self._stop.wait(1.0)
        finally:
            self._drop_queue()
            if self._connected:
                self.output.close()
                self._connected = False

    def _step(self) -> bool:
        """Connect if need be, then write one batch; False when it is time to end."""
        stopping = self._stop.is_set()
        if not self._connected and not self._connect(stopping):
            if stopping:
                return False
            self._stop.wait(min(WRITE_INTERVAL * 4, self._retry_at - time.monotonic()))
            return True
        if not self._still_connected():
            return True
        batch = self._take()
        if batch:
            self._write(batch)
        elif stopping:
            return False
        else:
            self._stop.wait(WRITE_INTERVAL)
        return True

    def _connect(self, stopping: bool) -> bool:
        if stopping or time.monotonic() < self._retry_at:
            return False
        try:
            self.output.open()
        except OSError as exc:
            if self._backoff == RETRY_FIRST:  # the first failure of a run, not every retry
                log.warning("dnstap: cannot connect to %s: %s; retrying", self.output_name(), exc)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, RETRY_MOST)
            return False
        self._connected = True
        self.connects += 1
        if self._backoff != RETRY_FIRST:
            log.info("dnstap: connected to %s again", self.output_name())
        self._backoff = RETRY_FIRST
        return True

    def _still_connected(self) -> bool:
        if not self.queue or not isinstance(self.output, SocketOutput) or self.output.alive():
            return True
        log.warning("dnstap: %s closed the connection; reconnecting", self.output_name())
        self.output.abandon()
        self._connected = False
        self._retry_at = time.monotonic() + self._backoff
        return False

    def _take(self) -> list[tuple]:
        batch = []
        popleft = self.queue.popleft
        for _ in range(BATCH):
            try:
                batch.append(popleft())
            except IndexError:
                break
        self.bytes_out += sum(_size(record) for record in batch)
        return batch

    def _write(self, batch: list[tuple]) -> None:
        frames, count = [], 0
        for record in batch:
            try:
                encoded = self.frames(*record)
            except Exception:  # noqa: BLE001 - one odd record must not end the tap
                log.exception("dnstap record failed")
                continue
            frames.extend(encoded)
            count += len(encoded)
        try:
            self.output.send(b"".join(frames))
        except OSError as exc:
            self.lost += count
            self._failed(exc)
            return
        self.written += count

    def _failed(self, exc: OSError) -> None:
        """A socket is dropped and connected again (the stream may end mid-frame); a
        file is kept (reopening would replace it) and written on after a pause."""
        if isinstance(self.output, SocketOutput):
            log.warning("dnstap: lost %s: %s; reconnecting", self.output_name(), exc)
            self.output.abandon()
            self._connected = False
            self._retry_at = time.monotonic() + self._backoff
        else:
            log.error("dnstap: cannot write to %s: %s", self.output_name(), exc)
            self._stop.wait(1.0)  # do not spin on a full disk

    def _drop_queue(self) -> None:
        while self.queue:
            record = self.queue.popleft()
            self.bytes_out += _size(record)
            self.lost += 1 if record[5] is None else 2

    def frames(
        self,
        query_ns: int,
        response_ns: int,
        peer: tuple,
        listener: Any,
        wire: bytes,
        out: bytes | None,
        label: object,
    ) -> list[bytes]:
        """The AUTH_QUERY frame, and the AUTH_RESPONSE frame when an answer was sent."""
        ends = Endpoints.of(peer, listener.address, listener.port, listener.transport)
        extra = self._extra(label)
        head = self._head
        return [
            data_frame(encode(head, extra, body))
            for body in messages(ends, query_ns, wire, response_ns, out)
        ]

    def _extra(self, label: object) -> bytes:
        if isinstance(label, int) and 0 <= label < len(self.labels):
            answer = self.labels[label]
            if answer.dropped:
                text = extra_text(answer).decode() + f" dropped={answer.dropped}"
                return text.encode()
            return extra_text(answer)
        return extra_text(None, "policy" if label is None else "malformed")
