"""The server's log, read from the real process's stderr: one line per event, each line
naming the process that wrote it, text or JSON (``--log-format``), and the warnings
``dnspol check`` prints at the start and on every reload."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from itkit import serve_deployed, stop_process

ROOT = Path(__file__).resolve().parents[2]
ZONE = """$ORIGIN logs.test.
$TTL 60
@   IN SOA ns hostmaster {serial} 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.{serial}
"""
BROKEN = ZONE.format(serial=9) + "bad IN A 999.1.2.3\n"
SHADOWED = """\
subnets:
  corp: [10.0.0.0/8]
rules:
  - {name: one, match: {client: corp, qtype: A}, action: drop}
  - {name: two, match: {qtype: A, client: corp}, action: refuse}
"""
# a text line: time, level, [which process] message
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\[(supervisor|gen \d+|gen \d+ worker \d+)\] \S"
)


def log_lines(text: str) -> list[str]:
    """The log's lines, without the ``READY host port`` line the server prints on stdout."""
    return [line for line in text.splitlines() if line and not line.startswith("READY ")]


def wait_for(path: Path, pattern: str, since: int = 0, timeout: float = 15.0) -> str:
    """The log after byte ``since`` once ``pattern`` (a regular expression) appears in it."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_bytes()[since:].decode()
        if re.search(pattern, text):
            return text
        assert time.monotonic() < deadline, f"{pattern!r} not logged:\n{path.read_text()}"
        time.sleep(0.02)


def serve(tmp_path: Path, *args: str, zone: str = ZONE.format(serial=1)) -> tuple:
    zone_path = tmp_path / "logs.test.zone"
    zone_path.write_text(zone)
    proc, host, port = serve_deployed(tmp_path, "--zone", str(zone_path), *args)
    return proc, zone_path, tmp_path / "log"


def rewrite(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the command line the README shows -------------------------------------------------


def test_every_serve_option_the_readme_shows_is_accepted_by_serve() -> None:
    readme = (ROOT / "README.md").read_text()
    options = readme.split("`serve` options:", 1)[1].split("\nSignals:", 1)[0]
    shown = set(re.findall(r"`(--[a-z][a-z-]*)", options))
    assert "--log-level" in shown and "--workers" in shown
    done = subprocess.run(
        [sys.executable, "-m", "dnspol", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    listed = set(re.findall(r"(--[a-z][a-z-]*)", done.stdout))
    assert shown - listed == set(), done.stdout


def test_every_option_the_readme_command_table_shows_is_taken() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Command line", 1)[1].split("`serve` options:", 1)[0]
    rows = re.findall(r"^\| `dnspol (\w+)[^|]*\|", table, re.MULTILINE)
    assert {"serve", "check", "explain", "schema", "ctl"} <= set(rows)
    for row in re.findall(r"^\| (`dnspol \w+.*?) \|", table, re.MULTILINE):
        command = row.split()[1].strip("`")
        shown = set(re.findall(r"(--[a-z][a-z-]*)", row))
        done = subprocess.run(
            [sys.executable, "-m", "dnspol", command, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr
        assert shown - set(re.findall(r"(--[a-z][a-z-]*)", done.stdout)) == set(), row


@pytest.mark.parametrize("where", ["after", "before"])
def test_log_level_debug_is_taken_before_or_after_serve(tmp_path, where) -> None:
    zone = tmp_path / "logs.test.zone"
    zone.write_text(ZONE.format(serial=1))
    serve = ["serve", "--zone", str(zone), "--listen", "127.0.0.1:0", "--workers", "2"]
    serve += ["--control", "none", "--no-watch"]
    level = ["--log-level", "debug"]
    argv = serve + level if where == "after" else level + serve
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dnspol", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = wait_for(tmp_path / "log", r"DEBUG \[gen 1 worker \d\]|error|Error")
        assert proc.poll() is None, text
        assert "DEBUG [gen 1 worker" in text, text
    finally:
        stop_process(proc)


# -- which process wrote a line ----------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_line_names_the_process_that_wrote_it(tmp_path, workers) -> None:
    proc, zone, log = serve(
        tmp_path, "--workers", workers, "--no-watch", "--log-level", "debug", "--control", "none"
    )
    try:
        proc.send_signal(signal.SIGHUP)
        wait_for(log, "reload ok")
    finally:
        stop_process(proc)
    lines = log_lines(log.read_text())
    assert lines and [line for line in lines if not TEXT_LINE.match(line)] == []
    if workers == "2":
        assert any("[supervisor] reload ok" in line for line in lines), lines
        assert any(re.search(r"\[gen 2 worker [01]\]", line) for line in lines), lines
    else:
        assert any("[gen 2] reload ok" in line for line in lines), lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_lines_carry_the_process_and_the_event_fields(tmp_path, workers) -> None:
    proc, zone, log = serve(
        tmp_path, "--workers", workers, "--no-watch", "--log-format", "json", "--control", "none"
    )
    try:
        proc.send_signal(signal.SIGHUP)
        wait_for(log, "reload ok")
    finally:
        stop_process(proc)
    records = [json.loads(line) for line in log_lines(log.read_text())]
    for record in records:
        assert {"time", "level", "logger", "message", "worker", "generation"} <= set(record)
        assert record["time"].endswith("Z") and record["level"] in ("INFO", "WARNING")
    (reload,) = [r for r in records if r.get("event") == "reload"]
    assert reload["cause"] == "SIGHUP" and reload["outcome"] == "ok"
    assert 0 < reload["duration_seconds"] < 15
    assert reload["serving_generation"] == 2
    assert reload["message"].startswith("reload ok (SIGHUP")


# -- a reload is one line, from the process that decides -----------------------------------


def reload_by(how: str, proc, zone: Path, serial: int, tmp_path: Path) -> None:
    rewrite(zone, ZONE.format(serial=serial))
    if how == "SIGHUP":
        proc.send_signal(signal.SIGHUP)
    elif how == "ctl":
        control = tmp_path / "control.sock"
        done = subprocess.run(
            [sys.executable, "-m", "dnspol", "ctl", "--control", str(control), "reload"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr


CAUSES = {"SIGHUP": "SIGHUP", "ctl": "ctl", "file": "a changed file"}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("how", ["SIGHUP", "ctl", "file"])
def test_a_reload_is_one_line_with_its_cause_outcome_and_duration(tmp_path, workers, how) -> None:
    control = ["--control", str(tmp_path / "control.sock")]
    watch = [] if how == "file" else ["--no-watch"]
    proc, zone, log = serve(tmp_path, "--workers", workers, *control, *watch)
    try:
        time.sleep(0.05)  # a file changed within the same tick as the start looks unchanged
        mark = log.stat().st_size
        reload_by(how, proc, zone, 2, tmp_path)
        text = wait_for(log, r"reload ok", since=mark)
        time.sleep(0.6)  # the old generation finishes: it must not say anything
        text = log.read_bytes()[mark:].decode()
    finally:
        stop_process(proc)
    lines = log_lines(text)
    done = [line for line in lines if "reload ok" in line]
    who = "[supervisor]" if workers == "2" else "[gen 2]"  # gen 2 once it serves
    assert len(done) == 1, lines
    assert f"{who} reload ok ({CAUSES[how]}, " in done[0], done
    assert re.search(r"\d+\.\d\d s\): generation 2 serving 1 zone\(s\): logs\.test\. \(serial 2\)",
                     done[0]), done  # fmt: skip
    # besides the outcome, only the start of the reload: nothing from any other process
    starter = "[supervisor]" if workers == "2" else "[gen 1]"
    others = [line for line in lines if line not in done]
    assert len(others) == 1, lines
    assert others[0].endswith(f"INFO {starter} reloading ({CAUSES[how]})"), lines
    assert not any("shutting down" in line for line in lines), lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_rejected_reload_is_one_line_with_every_problem(tmp_path, workers) -> None:
    proc, zone, log = serve(tmp_path, "--workers", workers, "--no-watch", "--control", "none")
    try:
        mark = log.stat().st_size
        rewrite(zone, BROKEN)
        proc.send_signal(signal.SIGHUP)
        text = wait_for(log, r"reload failed", since=mark)
        time.sleep(0.3)
        text = log.read_bytes()[mark:].decode()
    finally:
        stop_process(proc)
    lines = log_lines(text)
    failed = [line for line in lines if "reload failed" in line]
    assert len(failed) == 1, lines
    assert "ERROR [supervisor]" in failed[0] if workers == "2" else "ERROR [gen 1]" in failed[0]
    assert "reload failed (SIGHUP, " in failed[0]
    assert "still serving the previous configuration" in failed[0]
    assert "logs.test.zone:7:" in failed[0]
    assert len(lines) == 2, lines  # "reloading (SIGHUP)" and the outcome


def test_sigterm_with_workers_is_one_shutting_down_line_from_the_supervisor(tmp_path) -> None:
    proc, zone, log = serve(tmp_path, "--workers", "2", "--no-watch", "--control", "none")
    mark = log.stat().st_size
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    lines = log_lines(log.read_bytes()[mark:].decode())
    stopping = [line for line in lines if "shutting down" in line]
    assert len(stopping) == 1 and "[supervisor] shutting down" in stopping[0], lines


def test_workers_starting_do_not_each_say_the_server_serves(tmp_path) -> None:
    proc, zone, log = serve(tmp_path, "--workers", "2", "--no-watch", "--control", "none")
    stop_process(proc)
    serving = [line for line in log_lines(log.read_text()) if " serving " in line]
    assert len(serving) == 1, serving
    assert "[supervisor] dnspol" in serving[0] and "2 workers" in serving[0], serving
    assert "1 zone(s): logs.test. (serial 1)" in serving[0], serving


# -- the warnings dnspol check prints --------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_logs_shadowed_rules_at_the_start_and_on_every_reload(tmp_path, workers) -> None:
    (tmp_path / "logs.test.zone").write_text(ZONE.format(serial=1))
    config = tmp_path / "dnspol.yaml"
    config.write_text(SHADOWED + f"zones:\n  logs.test: {tmp_path / 'logs.test.zone'}\n")
    checked = subprocess.run(
        [sys.executable, "-m", "dnspol", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    (warning,) = [line for line in checked.stdout.splitlines() if line.startswith("warning: ")]
    proc, _, port = serve_deployed(
        tmp_path, "--config", str(config), "--workers", workers, "--no-watch", "--control", "none"
    )
    log = tmp_path / "log"
    try:
        started = log_lines(log.read_text())
        mark = log.stat().st_size
        proc.send_signal(signal.SIGHUP)
        reloaded = log_lines(wait_for(log, "reload ok", since=mark))
    finally:
        stop_process(proc)
    said = warning.removeprefix("warning: ")
    for lines in (started, reloaded):
        shown = [line for line in lines if line.endswith(said)]
        assert len(shown) == 1 and " WARNING " in shown[0], lines
