"""The server's log: one line per event, as text or JSON, each naming its process.

This module owns how a log line looks and which process it says wrote it. With
several workers, one server is a supervisor, one process per configuration (a
*generation*) and its workers; every line carries which of them wrote it
(``[supervisor]``, ``[gen 3]``, ``[gen 3 worker 1]``; in JSON ``process``,
``generation`` and ``worker``). A single process is ``[gen N]``, N counting its
good reloads. Each process says which it is once, after it is forked
(``set_origin``); a filter on the handler stamps every record with it.

``--log-format json`` writes one JSON object per line: ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, ``process``, ``pid``, ``generation``,
``worker``, plus the structured fields a call passed in ``extra=`` (a reload's
``event``, ``cause``, ``outcome``, ``duration_seconds``, ``problems``...).

Under systemd, when stderr is the journal (``JOURNAL_STREAM`` names it), a text
line starts with its syslog priority (``<3>`` for ERROR, which journald reads, so
``journalctl -p err`` finds it) and leaves the time to the journal.

The reload line itself is written here (``reload_finished``), so the one process
that decides about a reload (the supervisor, or the single server) says it the
same way either way.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
PROBLEMS_SHOWN = 20  # of a rejected reload, in the text of its line (JSON has them all)

# what every LogRecord has; anything else on a record came from ``extra=``
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "origin", "role", "generation", "worker", "taskName"}


@dataclass
class Origin:
    """Which process this is. ``role``: supervisor, generation, worker, server, or
    empty for the commands that do not serve."""

    role: str = ""
    generation: int | None = None
    worker: int | None = None

    def text(self) -> str:
        if self.role == "supervisor":
            return "[supervisor] "
        if self.generation is None:
            return ""
        if self.worker is None:
            return f"[gen {self.generation}] "
        return f"[gen {self.generation} worker {self.worker}] "


_origin = Origin()


def set_origin(role: str, generation: int | None = None, worker: int | None = None) -> None:
    """Say which process this is, from now on in every line it logs."""
    _origin.role, _origin.generation, _origin.worker = role, generation, worker


def origin() -> Origin:
    return _origin


def next_generation() -> int:
    """A single server loaded a new configuration: its lines say the next generation."""
    _origin.generation = (_origin.generation or 1) + 1
    return _origin.generation


class OriginFilter(logging.Filter):
    """Stamps each record with the process that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.origin = _origin.text()
        record.role = _origin.role or None
        record.generation = _origin.generation
        record.worker = _origin.worker
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(origin)s%(message)s"
JOURNAL_FORMAT = "<%(priority)d>%(levelname)s %(origin)s%(message)s"  # journald stamps time
PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}  # syslog's


class JournalFormatter(logging.Formatter):
    """Text with the syslog priority prefix journald reads (``SyslogLevelPrefix=``)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.priority = PRIORITIES.get(record.levelname, 6)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the structured fields given in ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": getattr(record, "role", None),
            "pid": record.process,
            "generation": getattr(record, "generation", None),
            "worker": getattr(record, "worker", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def setup(level: str = "info", form: str = "text", stream: IO[str] | None = None) -> None:
    """The root logger's one handler, on stderr: ``form`` is ``text`` or ``json``."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(OriginFilter())
    if form == "json":
        handler.setFormatter(JsonFormatter())
    elif writes_to_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def writes_to_journal(stream: IO[str], environ: dict[str, str] | None = None) -> bool:
    """``stream`` is the journal: systemd sets ``JOURNAL_STREAM=DEVICE:INODE`` of the
    stderr it connected, and a redirected stderr no longer matches it."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


# --------------------------------------------------------------------------- events


def reload_started(log: logging.Logger, cause: str) -> None:
    log.info("reloading (%s)", cause, extra={"event": "reload_start", "cause": cause})


def reload_finished(
    log: logging.Logger,
    cause: str,
    seconds: float,
    *,
    generation: int | None = None,
    serving: str = "",
    problems: list[str] | None = None,
    after: str = "",
) -> None:
    """The one line of a reload: ``reload ok (CAUSE, 0.42 s): generation 3 serving ...``
    or ``reload failed (CAUSE, 0.05 s): still serving the previous configuration: ...``
    with its problems (``file:line: what``); ``after`` is said at the end."""
    fields: dict[str, Any] = {
        "event": "reload",
        "cause": cause,
        "duration_seconds": round(seconds, 3),
    }
    if problems is None:
        fields |= {"outcome": "ok", "serving_generation": generation}
        text = f"generation {generation} serving {serving}" + (f"; {after}" if after else "")
        log.info("reload ok (%s, %.2f s): %s", cause, seconds, text, extra=fields)
        return
    fields |= {"outcome": "failed", "problems": list(problems)}
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    more = len(problems) - PROBLEMS_SHOWN
    shown += f"; and {more} more" if more > 0 else ""
    log.error(
        "reload failed (%s, %.2f s): still serving the previous configuration: %s",
        cause,
        seconds,
        shown,
        extra=fields,
    )


def config_warnings(log: logging.Logger, warnings: tuple[str, ...] | list[str]) -> None:
    """What ``dnspol check`` prints as ``warning: file:line: ...`` (a rule that can never
    match, a setting without effect), one WARNING line each."""
    for warning in warnings:
        log.warning("%s", warning.removeprefix("warning: "), extra={"event": "config_warning"})
