"""dnspol/logs.py: which process wrote a line, the text, journal and JSON forms, a reload's line.

(Named apart from tests/integration/test_logs.py: pytest needs distinct basenames.)
"""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from dnspol import logs


@pytest.fixture
def captured():
    """The root logger writing into a string, as ``dnspol serve`` sets it up."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logs.origin().role, logs.origin().generation,
             logs.origin().worker)  # fmt: skip

    def setup(form: str) -> io.StringIO:
        stream = io.StringIO()
        logs.setup("debug", form, stream)
        return stream

    yield setup
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logs.set_origin(*saved[2:])


@pytest.mark.parametrize(
    ("role", "generation", "worker", "shown"),
    [
        ("supervisor", None, None, "[supervisor] "),
        ("generation", 3, None, "[gen 3] "),
        ("worker", 3, 1, "[gen 3 worker 1] "),
        ("server", 2, None, "[gen 2] "),
        ("", None, None, ""),  # check, explain, ctl
    ],
)
def test_each_line_names_its_process(captured, role, generation, worker, shown) -> None:
    stream = captured("text")
    logs.set_origin(role, generation, worker)
    logging.getLogger("dnspol.test").info("hello %s", "there")
    line = stream.getvalue()
    assert line.endswith(f" INFO {shown}hello there\n"), line


def test_json_lines_have_the_fields_and_the_event(captured) -> None:
    stream = captured("json")
    logs.set_origin("worker", 4, 0)
    log = logging.getLogger("dnspol.test")
    logs.reload_finished(log, "ctl", 0.1234, problems=["a.zone:7: bad", "b.zone:1: worse"])
    record = json.loads(stream.getvalue())
    assert record["time"].endswith("Z") and "T" in record["time"]
    assert record["level"] == "ERROR" and record["logger"] == "dnspol.test"
    assert record["process"] == "worker" and record["generation"] == 4 and record["worker"] == 0
    assert record["event"] == "reload" and record["cause"] == "ctl"
    assert record["outcome"] == "failed" and record["duration_seconds"] == 0.123
    assert record["problems"] == ["a.zone:7: bad", "b.zone:1: worse"]
    assert record["message"] == (
        "reload failed (ctl, 0.12 s): still serving the previous configuration: "
        "a.zone:7: bad; b.zone:1: worse"
    )


def test_json_keeps_an_exception_on_its_one_line(captured) -> None:
    stream = captured("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("dnspol.test").exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_a_rejected_reload_shows_the_first_problems_in_text(captured) -> None:
    stream = captured("text")
    problems = [f"z.zone:{n}: bad" for n in range(1, 31)]
    logs.reload_finished(logging.getLogger("dnspol.test"), "SIGHUP", 1.0, problems=problems)
    line = stream.getvalue()
    assert "z.zone:20: bad; and 10 more" in line and "z.zone:21:" not in line


def test_a_good_reload_line(captured) -> None:
    stream = captured("text")
    logs.set_origin("supervisor")
    log = logging.getLogger("dnspol.test")
    logs.reload_finished(log, "a changed file", 0.5, generation=3, serving="1 zone(s): x. "
                         "(serial 2)", after="switched in 1.0 ms")  # fmt: skip
    assert stream.getvalue().endswith(
        "INFO [supervisor] reload ok (a changed file, 0.50 s): generation 3 serving "
        "1 zone(s): x. (serial 2); switched in 1.0 ms\n"
    )


def test_config_warnings_lose_their_prefix(captured) -> None:
    stream = captured("text")
    logs.config_warnings(logging.getLogger("dnspol.test"), ["warning: a.yaml:3: rule 'x' ..."])
    assert stream.getvalue().endswith(" WARNING a.yaml:3: rule 'x' ...\n")


def test_the_journal_gets_priorities_and_no_time(tmp_path, monkeypatch, captured) -> None:
    with open(tmp_path / "stderr", "w+") as stream:
        st = os.fstat(stream.fileno())
        assert not logs.writes_to_journal(stream, {})
        assert not logs.writes_to_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:1"})
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.writes_to_journal(stream)
        logs.setup("info", "text", stream)
        logs.set_origin("supervisor")
        logging.getLogger("dnspol.test").error("reload failed")
        logging.getLogger("dnspol.test").info("serving")
        stream.seek(0)
        lines = stream.read().splitlines()
        assert lines == ["<3>ERROR [supervisor] reload failed", "<6>INFO [supervisor] serving"]
    assert not logs.writes_to_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})
