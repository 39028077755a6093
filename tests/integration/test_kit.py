"""The test kit itself (``dnspol.testing``): servers, clock, reload, logs, cleanup."""

from __future__ import annotations

import ast
import gc
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from itkit import EXAMPLE, alive, wait_gone

import dnspol.testing
from dnspol.testing import (
    DigError,
    QueryError,
    ReloadError,
    Server,
    StartError,
    parse_dig,
    txt_strings,
)
from dnspol.testing.process import live_servers

SMALL = """$ORIGIN kit.test.
$TTL 300
@    IN SOA ns hostmaster 1 7200 900 1209600 60
     IN NS  ns
ns   IN A   192.0.2.1
www  IN A   192.0.2.10
"""


# -- starting, answering, stopping ----------------------------------------------------


def test_startup_to_first_answer(dnspol, record_property) -> None:
    """Measured, not asserted (a timed assertion flakes on a busy machine)."""
    from itkit import make_query

    began = time.monotonic()
    srv = dnspol(zone=SMALL)
    listening = time.monotonic() - began
    while srv.exchange(make_query("www.kit.test."), timeout=0.05) is None:
        pass
    first = time.monotonic() - began
    record_property("startup_seconds", round(first, 3))
    print(
        f"\ndnspol startup: listening after {listening * 1000:.0f} ms, "
        f"first answer after {first * 1000:.0f} ms"
    )


def test_zone_origin_from_text_or_argument(dnspol) -> None:
    assert dnspol(zone=SMALL).dig("www.kit.test.").addresses == ["192.0.2.10"]
    bare = SMALL.replace("$ORIGIN kit.test.\n", "")
    assert dnspol(zone=bare, origin="other.test").dig("www.other.test.").addresses == ["192.0.2.10"]
    with pytest.raises(ValueError, match="origin"):
        dnspol(zone=bare)
    indented = textwrap.indent(SMALL.replace("     IN NS", "\tIN NS"), "        ")
    assert dnspol(zone=indented).dig("www.kit.test.").addresses == ["192.0.2.10"]


def test_zones_dict_and_paths(dnspol, tmp_path) -> None:
    path = tmp_path / "kit.zone"
    path.write_text(SMALL)
    srv = dnspol(zones={"kit.test": path, "example": EXAMPLE})
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    assert srv.dig("www.example.").addresses == ["192.0.2.1"]
    assert srv.dig("www.example.org.").rcode == "REFUSED"


def test_several_servers_in_one_test(dnspol) -> None:
    one = dnspol(zone=SMALL)
    two = dnspol(zone=SMALL.replace("192.0.2.10", "192.0.2.20"))
    assert one.port != two.port
    assert one.dig("www.kit.test.").addresses == ["192.0.2.10"]
    assert two.dig("www.kit.test.").addresses == ["192.0.2.20"]
    one.stop()
    assert not one.running and two.running
    assert two.dig("www.kit.test.", tcp=True).addresses == ["192.0.2.20"]


def test_session_server_is_shared(core, dnspol_session) -> None:
    assert core in live_servers()
    assert core.running and core.dig("www.example.").addresses == ["192.0.2.1"]


def test_start_error_shows_the_problem(dnspol) -> None:
    with pytest.raises(StartError, match=r"kit\.test\.zone:7:"):
        dnspol(zone=SMALL + "bad IN A 300.1.2.3\n")


def test_standalone_server_without_pytest(tmp_path) -> None:
    script = textwrap.dedent(
        f"""
        import dnspol.testing
        ZONE = {SMALL!r}
        with dnspol.testing.Server(zone_text=ZONE) as srv:
            print("PID", srv.pid)
            print("ADDR", srv.dig("www.kit.test.").addresses)
            workdir = srv.workdir
        print("LOG", "serving 1 zone" in srv.log, workdir.exists())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["ADDR"] == "['192.0.2.10']"
    assert lines["LOG"] == "True False"  # log kept in memory, temporary files removed
    assert wait_gone([int(lines["PID"])]) == []


def test_servers_that_never_serve_leave_no_directory(tmp_path, monkeypatch) -> None:
    """A work directory the kit made is removed whatever happens to the server: rejected
    arguments, a zone that does not load, or a server made with start=False and dropped."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ValueError, match="config= runs a config file"):
        Server(zone_text=SMALL, config=tmp_path / "my.yaml")
    with pytest.raises(ValueError, match="nothing to serve"):
        Server()
    with pytest.raises(StartError):
        Server(zone_text=SMALL + "bad IN A 300.1.2.3\n")
    unstarted = Server(zone_text=SMALL, start=False)
    assert unstarted.workdir.is_dir()
    del unstarted
    gc.collect()
    assert list(tmp_path.iterdir()) == []


REPO = Path(__file__).resolve().parents[2]
CLEANUP_NAMES = {"rmtree", "rmdir", "cleanup"}


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _names(node: ast.AST) -> set[str]:
    """Every name and attribute used under ``node``: ``shutil.rmtree`` may be called or
    handed to ``weakref.finalize``."""
    return {
        getattr(part, "attr", None) or getattr(part, "id", "")
        for part in ast.walk(node)
        if isinstance(part, ast.Attribute | ast.Name)
    }


def _makes_a_temporary_name(node: ast.AST) -> str | None:
    """``tempfile.mkdtemp(...)`` or ``mkdtemp(...)`` (not pytest's ``tmp_path_factory.mktemp``)."""
    if not isinstance(node, ast.Call) or _called(node) not in {"mkdtemp", "mktemp"}:
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and getattr(func.value, "id", None) != "tempfile":
        return None
    return _called(node)


def _unremoved_temporary_directories(path: Path, root: Path = REPO) -> list[str]:
    """``mkdtemp`` / ``mktemp`` calls whose function (or class) never removes anything."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        made = _makes_a_temporary_name(node)
        if made is None:
            continue
        scope: ast.AST | None = None  # the outermost class, else the innermost function
        owner: ast.AST = node
        while owner in parents:
            owner = parents[owner]
            if isinstance(owner, ast.ClassDef) or (
                isinstance(owner, ast.FunctionDef | ast.AsyncFunctionDef) and scope is None
            ):
                scope = owner
        if made == "mktemp" or scope is None or not _names(scope) & CLEANUP_NAMES:
            found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}"))
    return [where for _, where in sorted(found)]


def test_tests_and_the_kit_remove_the_temporary_directories_they_make() -> None:
    """Every run used to leave /tmp/dnspol-fuzz-*: a temporary directory must be pytest's
    ``tmp_path``, a ``TemporaryDirectory`` block, or removed by the code that made it."""
    sources = sorted((REPO / "tests").rglob("*.py")) + sorted(
        (REPO / "dnspol" / "testing").glob("*.py")
    )
    found = [where for path in sources for where in _unremoved_temporary_directories(path)]
    assert found == []


def test_the_temporary_directory_check_finds_a_leak(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import shutil, tempfile\n"
        "def leaks():\n    return tempfile.mkdtemp()\n"
        "def cleans():\n    d = tempfile.mkdtemp()\n    shutil.rmtree(d)\n"
        "class Kit:\n    def __init__(self):\n        self.d = tempfile.mkdtemp()\n"
        "    def stop(self):\n        shutil.rmtree(self.d)\n"
        "made_at_import = tempfile.mkdtemp()\n"
    )
    assert _unremoved_temporary_directories(sample, tmp_path) == ["sample.py:3", "sample.py:12"]


def test_server_as_context_manager_in_process() -> None:
    with Server(zone_text=SMALL, start=False) as srv:
        assert srv.running
        pid = srv.pid
        assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    assert srv.returncode == 0
    assert wait_gone([pid]) == []


def test_ipv6_listener(dnspol) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    srv = dnspol(zone=SMALL, listen="::1")
    assert srv.host == "::1"
    assert srv.address == f"[::1]:{srv.port}"
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    assert srv.dig("www.kit.test.", tcp=True).addresses == ["192.0.2.10"]
    assert srv.dig("nope.kit.test.").rcode == "NXDOMAIN"


def test_dig_from_another_source_address(dnspol) -> None:
    srv = dnspol(zone=SMALL)
    assert srv.dig("www.kit.test.", source="127.0.0.2").addresses == ["192.0.2.10"]
    assert srv.exchange(_query("www.kit.test."), source="127.0.0.3") is not None


def _query(name: str) -> bytes:
    from itkit import make_query

    return make_query(name)


# -- srv.query: dnspython messages -------------------------------------------------------

SPLIT = """
server:
  trusted_resolvers: [127.0.0.1/32]
subnets:
  lab: [127.0.0.2/32, 10.0.0.0/8]
rules:
  - name: lab-view
    zone: kit.test
    match: {client: lab}
    answer: lab
"""


@pytest.fixture(scope="module")
def split():
    with Server(
        zone_text=SMALL, scopes={"kit.test": {"lab": "www 60 IN A 10.0.0.10\n"}}, policies=SPLIT
    ) as srv:
        yield srv


def _addresses(reply: dns.message.Message) -> list[str]:
    return [rr.address for rrset in reply.answer for rr in rrset]


def _ecs(reply: dns.message.Message) -> dns.edns.ECSOption | None:
    return next((o for o in reply.options if o.otype == dns.edns.OptionType.ECS), None)


def test_query_returns_a_dnspython_message(split) -> None:
    reply = split.query("www.kit.test", "A")
    assert isinstance(reply, dns.message.Message)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RD
    assert _addresses(reply) == ["192.0.2.10"]
    assert reply.edns == 0 and reply.payload == 1232  # EDNS by default, as dig
    assert split.query("nope.kit.test").rcode() == dns.rcode.NXDOMAIN
    assert split.query("www.kit.test", dns.rdatatype.AAAA).answer == []


def test_query_from_a_source_address_with_ecs_over_tcp(split) -> None:
    assert _addresses(split.query("www.kit.test", source="127.0.0.2")) == ["10.0.0.10"]
    inside = split.query("www.kit.test", ecs="10.1.2.0/24")
    assert _addresses(inside) == ["10.0.0.10"]
    ecs = _ecs(inside)
    assert ecs is not None and (ecs.address, ecs.srclen, ecs.scopelen) == ("10.1.2.0", 24, 8)
    assert _ecs(split.query("www.kit.test")) is None  # no ECS asked, none sent
    over_tcp = split.query("www.kit.test", source="127.0.0.2", tcp=True)
    assert _addresses(over_tcp) == ["10.0.0.10"]


def test_query_flags_and_edns(split) -> None:
    reply = split.query("www.kit.test", rd=True, do=True)
    assert reply.flags & dns.flags.RD  # copied
    assert reply.ednsflags & dns.flags.DO  # copied (RFC 3225)
    plain = split.query("www.kit.test", edns=False)
    assert plain.edns == -1 and plain.options == ()  # no OPT asked, none sent
    small = split.query("www.kit.test", "TXT", payload=512)
    assert small.rcode() == dns.rcode.NOERROR


def test_query_returns_a_truncated_answer_as_it_came(dnspol) -> None:
    big = "".join(f'big IN TXT "{"x" * 200} {n}"\n' for n in range(20))
    srv = dnspol(zone=SMALL + big)
    reply = srv.query("big.kit.test", "TXT", edns=False)
    assert reply.flags & dns.flags.TC and reply.answer == []
    assert len(srv.query("big.kit.test", "TXT", tcp=True).answer[0]) == 20


def test_query_raises_when_no_answer_comes(dnspol) -> None:
    srv = dnspol(
        zone=SMALL,
        policies="rules:\n  - name: silent\n    match: {qname: www.kit.test}\n    action: drop\n",
    )
    with pytest.raises(QueryError, match="no answer"):
        srv.query("www.kit.test", timeout=0.5)
    assert srv.query("ns.kit.test").rcode() == dns.rcode.NOERROR


# -- the clock ----------------------------------------------------------------------


def test_clock_starts_at_fake_time(dnspol) -> None:
    srv = dnspol(zone=SMALL, fake_time="2026-11-28T02:00:00+01:00")
    now = srv.now()
    assert datetime(2026, 11, 28, 1, 0, tzinfo=UTC) <= now
    assert now < datetime(2026, 11, 28, 1, 1, tzinfo=UTC)


def test_clock_set_and_advance(dnspol) -> None:
    srv = dnspol(zone=SMALL)
    berlin = timezone(timedelta(hours=1))
    after = srv.set_time(datetime(2027, 1, 2, 3, 4, 5, tzinfo=berlin))
    assert abs((after - datetime(2027, 1, 2, 2, 4, 5, tzinfo=UTC)).total_seconds()) < 5
    after = srv.set_time("2030-06-01T12:00:00+00:00")
    assert after.date().isoformat() == "2030-06-01"
    after = srv.set_time(0)
    assert after.year == 1970
    after = srv.advance(86400)
    assert after.date().isoformat() == "1970-01-02"
    after = srv.advance(timedelta(days=1))
    assert after.date().isoformat() == "1970-01-03"
    with pytest.raises(ValueError):
        srv.set_time(datetime(2030, 1, 1))  # naive: which zone?
    with pytest.raises(ValueError):
        srv.advance(0.5)


# -- reload ---------------------------------------------------------------------------


def test_reload_is_synchronous(dnspol) -> None:
    srv = dnspol(zone=SMALL)
    for n in range(2, 6):
        zone = SMALL.replace(" 1 7200", f" {n} 7200").replace("192.0.2.10", f"192.0.2.{n}")
        assert srv.reload(zone_text=zone) == "ok"
        assert srv.dig("www.kit.test.").addresses == [f"192.0.2.{n}"]  # no waiting


def test_reload_rejected_keeps_old_answers(dnspol) -> None:
    srv = dnspol(zone=SMALL)
    with pytest.raises(ReloadError, match=r"kit\.test\.zone:7:"):
        srv.reload(zones={"kit.test": SMALL + "bad IN A 300.1.2.3\n"})
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    answer = srv.reload(zones={"kit.test": SMALL + "bad IN A 300.1.2.3\n"}, check=False)
    assert answer.startswith("failed: ")


def test_reload_adds_and_removes_zones(dnspol) -> None:
    srv = dnspol(zone=SMALL)
    port = srv.port
    srv.reload(zones={"example": EXAMPLE})
    assert srv.port == port
    assert srv.dig("www.example.").addresses == ["192.0.2.1"]
    srv.reload(zones={"example": None})
    assert srv.dig("www.example.").rcode == "REFUSED"
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]


def test_policies_and_scopes(dnspol) -> None:
    srv = dnspol(
        zone=SMALL,
        scopes={"kit.test": {"lab": "www 60 IN A 10.0.0.10\n"}},
        policies="""
            subnets:
              lab: [127.0.0.2/32]
            rules:
              - name: lab-view
                zone: kit.test
                match: {client: lab}
                answer: lab
        """,
    )
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    assert srv.dig("www.kit.test.", source="127.0.0.2").addresses == ["10.0.0.10"]
    srv.reload(scopes={"kit.test": {"lab": "www 60 IN A 10.0.0.11\n"}})
    assert srv.dig("www.kit.test.", source="127.0.0.2").addresses == ["10.0.0.11"]


def test_files_for_the_policies(dnspol) -> None:
    srv = dnspol(
        zone=SMALL,
        policies="subnets:\n  blocked: {file: lists/blocked.txt}\n"
        "rules:\n  - name: no\n    match: {client: blocked}\n    action: refuse\n",
        files={"lists/blocked.txt": "127.0.0.9/32\n"},
    )
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    assert srv.dig("www.kit.test.", source="127.0.0.9").rcode == "REFUSED"


def test_config_file_as_it_is(dnspol, tmp_path) -> None:
    (tmp_path / "kit.zone").write_text(SMALL)
    (tmp_path / "my.yaml").write_text("zones:\n  kit.test: {file: kit.zone}\n")
    srv = dnspol(config=tmp_path / "my.yaml")
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.10"]
    (tmp_path / "kit.zone").write_text(SMALL.replace("192.0.2.10", "192.0.2.11"))
    assert srv.reload() == "ok"
    assert srv.dig("www.kit.test.").addresses == ["192.0.2.11"]
    with pytest.raises(ValueError):
        srv.reload(zone_text=SMALL)


# -- dig parsing ----------------------------------------------------------------------

CANNED = """
; <<>> DiG 9.18.49 <<>> @127.0.0.1 -p 5353 www.example.com
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1
;; WARNING: recursion requested but not available

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags: do; udp: 1232
; CLIENT-SUBNET: 192.0.2.0/24/16
; EDE: 18 (Prohibited)
;; QUESTION SECTION:
;www.Example.com.\t\tIN\tA

;; ANSWER SECTION:
www.Example.com.\t300\tIN\tA\t192.0.2.10
www.Example.com.\t300\tIN\tTXT\t"a \\"b\\"" "c\\0341"

;; Query time: 0 msec
;; SERVER: 127.0.0.1#5353(127.0.0.1) (UDP)
;; MSG SIZE  rcvd: 60
"""


def test_parse_dig_output() -> None:
    res = parse_dig(CANNED)
    assert (res.id, res.opcode, res.rcode) == (4242, "QUERY", "NOERROR")
    assert res.flags == {"qr", "aa", "rd"} and res.aa and not res.ra and not res.tc
    assert res.question[0] == ("www.Example.com.", "IN", "A")
    assert res.answer[0] == ("www.Example.com.", 300, "IN", "A", "192.0.2.10")
    assert res.answer[0].type == "A" and res.answer[0].ttl == 300
    assert res.addresses == ["192.0.2.10"]
    assert res.texts == ['a "b"c"1']
    assert res.edns.flags == {"do"} and res.edns.udp == 1232
    assert res.edns.option("client-subnet") == "192.0.2.0/24/16"
    assert res.edns.option("EDE") == "18 (Prohibited)"
    assert res.size == 60 and res.transport == "UDP"


def test_txt_strings() -> None:
    assert txt_strings('"a b" "c"') == ["a b", "c"]
    assert txt_strings('plain "q\\"uote" "\\065"') == ["plain", 'q"uote', "A"]


def test_dig_output_formats_the_kit_cannot_read(core) -> None:
    with pytest.raises(DigError, match=r"\+short"):
        core.dig("www.example.", "A", "+short")


def test_dig_error_on_silence() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        port = mute.getsockname()[1]
        with pytest.raises(DigError, match="no answer"):
            dnspol.testing.dig("127.0.0.1", port, "www.example.", "A", tcp=False, timeout=1)


# -- reports and cleanup, seen from a separate pytest run -------------------------------

CONFTEST = """
import dnspol.testing.plugin

def pytest_configure(config):
    if not config.pluginmanager.is_registered(dnspol.testing.plugin):
        config.pluginmanager.register(dnspol.testing.plugin)
"""


def _pytest_dir(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_user.py").write_text(
        f"import os, time\nZONE = {SMALL!r}\n" + textwrap.dedent(body)
    )
    return tmp_path


def _run_pytest(path: Path, *args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(path)],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _pids(path: Path, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    pid_file = path / "pids.txt"
    while time.monotonic() < deadline:
        if pid_file.exists():
            pids = [int(x) for x in pid_file.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.05)
    raise AssertionError("the inner test never started its servers")


def test_failing_test_report_shows_the_server_log(tmp_path) -> None:
    path = _pytest_dir(
        tmp_path,
        """
        def test_user_fails(dnspol, dnspol_session):
            srv = dnspol(zone=ZONE)
            shared = dnspol_session(zone=ZONE)
            with open("pids.txt", "a") as fh:
                fh.write(f"{srv.pid} {shared.pid}\\n")
            shared.dig("nope.kit.test.")
            assert srv.dig("www.kit.test.").addresses == ["203.0.113.1"]

        def test_user_passes(dnspol):
            assert dnspol(zone=ZONE).dig("www.kit.test.").addresses == ["192.0.2.10"]
        """,
    )
    proc = _run_pytest(path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    sections = [line for line in out.splitlines() if "dnspol server 127.0.0.1:" in line]
    assert len(sections) == 2, out  # the test's own server and the shared one
    assert "serving 1 zone(s): kit.test." in out
    assert wait_gone(_pids(path, 2)) == []


def test_interrupted_run_leaves_no_server(tmp_path) -> None:
    path = _pytest_dir(
        tmp_path,
        """
        def test_user_hangs(dnspol, dnspol_session):
            a = dnspol(zone=ZONE)
            b = dnspol_session(zone=ZONE)
            with open("pids.txt", "a") as fh:
                fh.write(f"{a.pid} {b.pid}\\n")
            time.sleep(120)
        """,
    )
    proc = _run_pytest(path)
    try:
        pids = _pids(path, 2)
        assert all(alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "KeyboardInterrupt" in out or "Interrupted" in out or proc.returncode == 2, out
    assert wait_gone(pids) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_runner_leaves_no_server(tmp_path) -> None:
    path = _pytest_dir(
        tmp_path,
        """
        def test_user_hangs(dnspol, dnspol_session):
            a = dnspol(zone=ZONE)
            b = dnspol_session(zone=ZONE)
            with open("pids.txt", "a") as fh:
                fh.write(f"{a.pid} {b.pid}\\n")
            time.sleep(120)
        """,
    )
    proc = _run_pytest(path)
    try:
        pids = _pids(path, 2)
        proc.kill()  # SIGKILL: no finalizer, no atexit runs
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert wait_gone(pids) == []
