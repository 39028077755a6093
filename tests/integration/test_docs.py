"""The docs promise things: run them as a user would, and check what they name.

* docs/testing.md: its Python examples run under pytest and unittest; its fake-clock
  shell recipes run in bash, as written, in a copy of ``policies/``.
* README.md: "Serving zone files directly" runs; every ``$ dnspol explain`` a doc shows
  prints exactly that; the compose commands work with Debian's ``docker-compose`` too.
* policies/: the failover table is what the server answers; rules see the query name,
  not a CNAME target; an overlay needs its own ``$TTL``.
* every repository path the docs name exists, nothing refers to files outside the
  repository, and the sections test_authoritative.py cites exist in docs/authoritative.md.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dns.rdatatype
import pytest
from itkit import free_port, need

import dnspol.testing
from dnspol.explain import explain
from dnspol.state import snapshot_loader
from dnspol.testing import StartError

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "testing.md"
BERLIN = ZoneInfo("Europe/Berlin")
SHELL_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
BLOCK = re.compile(r"```python\n# (test_\w+\.py)\n(.*?)```", re.DOTALL)
CONFTEST = """
import dnspol.testing.plugin

def pytest_configure(config):
    if not config.pluginmanager.is_registered(dnspol.testing.plugin):
        config.pluginmanager.register(dnspol.testing.plugin)
"""


def test_doc_examples_pass(tmp_path) -> None:
    examples = BLOCK.findall(DOC.read_text())
    names = [name for name, _ in examples]
    assert {"test_failover.py", "test_split_horizon.py", "test_weighted.py"} <= set(names)
    for name, code in examples:
        (tmp_path / name).write_text(code)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " failed" not in done.stdout


def test_unittest_example_runs_without_pytest(tmp_path) -> None:
    (name, code) = next(e for e in BLOCK.findall(DOC.read_text()) if "unittest" in e[0])
    (tmp_path / name).write_text(code)
    done = subprocess.run(
        [sys.executable, name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stderr


def run_shell_recipe(recipe: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run a recipe in bash as a user would after the quick start (``dnspol`` on PATH),
    from a directory holding a copy of ``policies/``; any failing command fails it."""
    shutil.copytree(REPO / "policies", workdir / "policies")
    port = str(free_port())  # the recipes' 5300 may be taken on a busy host
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        ["bash", "-e", "-c", recipe.replace("5300", port)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fake_clock_recipes() -> list[str]:
    return [block for block in SHELL_BLOCK.findall(DOC.read_text()) if "--fake-time" in block]


def test_the_fake_clock_shell_recipes_are_found() -> None:
    recipes = fake_clock_recipes()
    assert len(recipes) == 2
    assert all("--ready-file" in recipe and 'kill "$server"' in recipe for recipe in recipes)


def test_fake_clock_control_recipe_runs_as_written(tmp_path) -> None:
    (recipe,) = [r for r in fake_clock_recipes() if "dnspol ctl" in r]
    done = run_shell_recipe(recipe, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("READY 127.0.0.1 ")
    assert lines[1].startswith("2026-11-28T02:00:00")  # 03:00 in Berlin, shown in UTC
    assert lines[2].startswith("2026-11-28T02:01:00")
    assert lines[3].startswith("reloaded: generation 2")
    assert '"clock": "2026-11-28T02:01:' in done.stdout
    assert "shutting down" in done.stderr


def test_fake_clock_chaos_recipe_runs_as_written(tmp_path) -> None:
    (recipe,) = [r for r in fake_clock_recipes() if "clock.dnspol" in r]
    done = run_shell_recipe(recipe, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [line for line in done.stdout.splitlines() if line.startswith('"')]
    assert [a[:14] for a in answers[:3]] == ['"2026-11-28T01', '"2026-12-29T00', '"2026-12-29T00']
    assert answers[2].startswith('"2026-12-29T00:01:00')
    assert answers[3] == '"ok"'


COMPOSE_DOCS = ["docs/operations.md", "docker-compose.yml"]
COMPOSE_COMMAND = re.compile(r"docker[ -]compose ((?:--profile \S+ )*)up --build")


@pytest.mark.parametrize("doc", COMPOSE_DOCS)
def test_compose_commands_work_with_debians_docker_compose_too(doc) -> None:
    """Docker's plugin is ``docker compose``, Debian's package ``docker-compose``: the
    docs say both, and each command they show is accepted by Debian's (``up`` checked
    as ``config``, which reads the same file and profiles without a Docker engine)."""
    text = (REPO / doc).read_text()
    assert "docker compose " in text and "docker-compose " in text.replace("`", " ")
    commands = {m.group(1) for m in COMPOSE_COMMAND.finditer(text)}
    assert commands >= {"", "--profile dnsdist "}
    exe = need("docker-compose", "docker-compose")
    for profiles in sorted(commands):
        done = subprocess.run(
            [exe, "-f", "docker-compose.yml", *profiles.split(), "config", "--quiet"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"docker-compose {profiles}config: {done.stderr}"


# --------------------------------------------------------------------------- paths

PATH_DOCS = ["README.md", "docs/*.md", "policies/**/README.md"]
PATH_SUFFIXES = (".zone", ".yaml", ".yml", ".md", ".py", ".txt", ".sh", ".conf", ".toml", ".db")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`\n]+)`")
PATHLIKE = re.compile(r"[\w./*-]+")
SERVED_FILE = re.compile(r"--(?:zone|config)[ =]+(?:[\w.-]+=)?(\S+)")


def _documents() -> list[Path]:
    return sorted({path for pattern in PATH_DOCS for path in REPO.glob(pattern)})


def _generated() -> list[Path]:
    """Directories a .gitignore names (``bench/zone/``, made by the benchmark): a doc may
    name what is made there."""
    found = []
    for ignore in REPO.rglob(".gitignore"):
        if ".venv" in ignore.parts:
            continue
        for line in ignore.read_text().splitlines():
            if line.endswith("/") and not line.startswith("#"):
                found.append(ignore.parent / line.strip("/"))
    return found


def mentioned_paths(doc: Path) -> set[str]:
    """What a doc names as a file of the repository: relative link targets; words with
    a ``/`` that end in a file suffix or ``/`` (in prose spans and shell examples; YAML
    and Python examples are configurations of the reader's own); and, in README.md,
    the files given to ``--zone`` and ``--config`` (its commands run in the clone)."""
    text = doc.read_text()
    names = {t.split("#")[0] for t in LINK.findall(text) if "://" not in t}
    # a prose span is a path only when it is nothing else (`{"lists/x.txt": text}` is code)
    chunks = [span for span in SPAN.findall(FENCE.sub("", text)) if PATHLIKE.fullmatch(span)]
    chunks += [body for lang, body in FENCE.findall(text) if lang not in ("yaml", "python")]
    for chunk in chunks:
        for word in PATHLIKE.findall(chunk):
            word = word.rstrip(".")
            if "/" in word and (word.endswith(PATH_SUFFIXES) or word.endswith("/")):
                names.add(word)
        if doc.name == "README.md" and doc.parent == REPO:
            names.update(SERVED_FILE.findall(chunk))
    return {n for n in names if n and not _placeholder(n) and not n.startswith(("/", ".venv"))}


def _placeholder(name: str) -> bool:
    """``FILE``, ``[ORIGIN=]FILE``, ``$PWD/...``: words that stand for the reader's own."""
    return bool(re.fullmatch(r"[\[\]A-Z_=]+", name)) or "$" in name or "..." in name


def _exists(name: str, doc: Path, generated: list[Path]) -> bool:
    # relative to the doc, the repository, or the package (README's layout is dnspol/'s)
    for base in (doc.parent, REPO, REPO / "dnspol"):
        path = base / name
        if "*" in name and any(base.glob(name)) or "*" not in name and path.exists():
            return True
        if any(path.resolve().is_relative_to(g) for g in generated):
            return True
    return False


def test_every_path_the_docs_name_exists() -> None:
    generated = _generated()
    missing = [
        f"{doc.relative_to(REPO)}: {name}"
        for doc in _documents()
        for name in sorted(mentioned_paths(doc))
        if not _exists(name, doc, generated)
    ]
    assert missing == []


def test_the_path_check_reads_links_spans_and_commands(tmp_path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(
        "See [a](docs/a.md) and `policies/nope.yaml`.\n"
        "```sh\ndnspol serve --zone zones/x.zone --zone example.net=other.db\n```\n"
        "```yaml\nzones: {x: {file: mine/x.zone}}\n```\n"
    )
    assert mentioned_paths(doc) == {"docs/a.md", "policies/nope.yaml", "zones/x.zone"}


# --------------------------------------------------------------------------- README


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def readme_commands(title: str) -> list[list[str]]:
    """The commands of a section's ``sh`` block, each as argv (continuations joined,
    comments dropped), with ``.venv/bin/dnspol`` as this interpreter's dnspol."""
    (block,) = SHELL_BLOCK.findall(readme_section(title))
    lines = block.replace("\\\n", " ").splitlines()
    commands = [shlex.split(line, comments=True) for line in lines]
    dnspol = [sys.executable, "-m", "dnspol"]
    return [dnspol + argv[1:] if argv[0] == ".venv/bin/dnspol" else argv for argv in commands]


def test_readme_serving_zone_files_directly_runs_as_written(tmp_path) -> None:
    serve, check = readme_commands("Serving zone files directly")
    assert serve[3:4] == ["serve"] and check[3:4] == ["check"]
    done = subprocess.run(check, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: ")
    listen = serve.index("--listen")
    serve[listen + 1] = "127.0.0.1:0"  # 5353 may be taken here; the rest as written
    serve += ["--control", "none", "--ready-file", str(tmp_path / "ready"), "--workers", "1"]
    proc = subprocess.Popen(
        serve, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ready = proc.stdout.readline().split()
        assert ready[:2] == ["READY", "127.0.0.1"], proc.stderr.read() if proc.poll() else ready
        port = int(ready[2])
        com = dnspol.testing.query("127.0.0.1", port, "www.example.com")
        org = dnspol.testing.query("127.0.0.1", port, "app.example.org")
        assert [rr.address for rr in com.answer[0]] == ["192.0.2.10"]
        assert [rr.address for rr in org.answer[0]] == ["192.0.2.10"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# --------------------------------------------------------------------------- policies/failover

FAILOVER = REPO / "policies" / "failover"
TABLE_ROW = re.compile(
    r"^\| \w{3} (\d{4}-\d\d-\d\d) (\d\d:\d\d(?::\d\d)?)[^|]*\|([^|]*)\|([^|]*)\|$"
)
RECORD = re.compile(r"`(\d+) ([A-Z]+) ([^`]+)`")


def failover_table() -> list[
    tuple[datetime, list[tuple[int, str, str]], list[tuple[int, str, str]]]
]:
    """The "Ask it" table of policies/failover/README.md: Berlin time, app's and support's
    records as (TTL, type, data)."""
    rows = []
    for line in (FAILOVER / "README.md").read_text().splitlines():
        m = TABLE_ROW.match(line)
        if m:
            when = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}").replace(tzinfo=BERLIN)
            app, support = (
                [(int(ttl), rtype, data) for ttl, rtype, data in RECORD.findall(cell)]
                for cell in (m.group(3), m.group(4))
            )
            rows.append((when, app, support))
    return rows


def test_failover_table_is_what_the_server_answers() -> None:
    """Each row, asked of a server set to that time: the same records, and TTLs at most
    2 s below the table's (the server's clock runs on; the table is the moment itself)."""
    rows = failover_table()
    assert len(rows) == 5
    with dnspol.testing.Server(config=FAILOVER / "dnspol.yaml", fake_time=rows[0][0]) as srv:
        for when, *expected in rows:
            srv.set_time(when)
            for name, records in zip(("app", "support"), expected, strict=True):
                reply = srv.query(f"{name}.example.org")
                seen = [
                    (rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rr.to_text())
                    for rrset in reply.answer
                    for rr in rrset
                ]
                assert [r[1:] for r in seen] == [r[1:] for r in records], (when, name)
                for (ttl, *_), (stated, *_) in zip(seen, records, strict=True):
                    assert stated - 2 <= ttl <= stated, (when, name, seen)


def test_failover_table_is_what_explain_shows() -> None:
    """``dnspol explain --time`` stops the clock: the table's TTLs exactly."""
    snap = snapshot_loader(config=str(FAILOVER / "dnspol.yaml"), zone_args=[])()
    for when, *expected in failover_table():
        for name, records in zip(("app", "support"), expected, strict=True):
            text = explain(snap, f"{name}.example.org", "A", "127.0.0.1", when=when.timestamp())
            answer = text.split(";; ANSWER SECTION:\n")[1].split(";;")[0]
            fields = [line.split(None, 4) for line in answer.splitlines() if line.strip()]
            assert [(int(f[1]), f[3], f[4]) for f in fields] == records, (when, name)


# --------------------------------------------------------------------------- explain

EXPLAIN_SHOWN = re.compile(
    r"^\$ ((?:\.venv/bin/)?dnspol explain .*)\n((?:(?!\$ |```).*\n)*)", re.MULTILINE
)


def shown_explains() -> list[tuple[str, str, str]]:
    """Every ``$ dnspol explain ...`` a doc shows with its output: (doc, command, output)."""
    return [
        (str(doc.relative_to(REPO)), command, output)
        for doc in _documents()
        for command, output in EXPLAIN_SHOWN.findall(doc.read_text())
    ]


def test_the_docs_show_explain() -> None:
    docs = {doc for doc, _, _ in shown_explains()}
    assert docs >= {"README.md", "policies/split-horizon/README.md"}


@pytest.mark.parametrize("doc, command, output", shown_explains(), ids=lambda x: x[:40])
def test_explain_prints_what_the_docs_show(doc, command, output) -> None:
    """Run from the top of the repository, as the quick start does; the message ID is
    random, shown as ``id: ...``."""
    argv = [sys.executable, "-m", "dnspol", *shlex.split(command)[1:]]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    printed = re.sub(r"id: \d+", "id: ...", done.stdout)
    assert printed == output, f"{doc}: {command}"


# --------------------------------------------------------------------------- policies/README.md

CNAME_ZONE = """
$ORIGIN example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 300
@    IN NS  ns1
ns1  IN A   192.0.2.1
www  IN A   192.0.2.10
app  IN CNAME www
"""
INTERNAL_OVERLAY = "$TTL 60\nwww IN A 10.0.0.10\n"  # no $ORIGIN: the zone's is assumed
RULE_ON = """
rules:
  - name: inside
    zone: example.com
    match: {{qname: {}}}
    answer: internal
"""


def _chain(srv, name: str) -> list[str]:
    return [rr.to_text() for rrset in srv.query(name).answer for rr in rrset]


def test_rules_see_the_query_name_not_a_cname_target(dnspol) -> None:
    srv = dnspol(
        zone=CNAME_ZONE,
        scopes={"example.com": {"internal": INTERNAL_OVERLAY}},
        policies=RULE_ON.format("www.example.com"),
    )
    assert _chain(srv, "www.example.com") == ["10.0.0.10"]
    assert _chain(srv, "app.example.com") == ["www.example.com.", "192.0.2.10"]  # default
    srv.reload(policies=RULE_ON.format("app.example.com"))
    assert _chain(srv, "app.example.com") == ["www.example.com.", "10.0.0.10"]  # internal
    srv.reload(policies=RULE_ON.format("[app.example.com, www.example.com]"))
    assert _chain(srv, "app.example.com") == ["www.example.com.", "10.0.0.10"]
    assert _chain(srv, "www.example.com") == ["10.0.0.10"]


def test_an_overlay_needs_its_own_ttl(dnspol) -> None:
    with pytest.raises(StartError, match=r"no TTL: .*\$TTL.*overlay"):
        dnspol(zone=CNAME_ZONE, scopes={"example.com": {"internal": "www IN A 10.0.0.10\n"}})


# --------------------------------------------------------------------------- self-contained

UPWARD = re.compile(r"(?<![\w.])((?:\.\./)+[\w./-]*)")
OUTSIDE = re.compile(r"(?<![\w.-])(?:shared|reference)/[\w.-]+|/work/[\w.-]+")


def _tracked_texts() -> list[tuple[Path, str]]:
    done = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        paths = [REPO / name for name in done.stdout.split("\0") if name]
    else:  # not a git checkout (a source tarball): every file but the virtualenv
        paths = [p for p in REPO.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    texts = []
    for path in paths:
        try:
            texts.append((path, path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary, or a directory in the tarball walk
    return texts


def references_outside(path: Path, text: str) -> list[str]:
    """Paths in ``text`` that lead out of the repository: ``../`` climbing above it
    (from the file's folder), or a folder of the machine it was written on."""
    found = [m.group(0) for m in OUTSIDE.finditer(text)]
    for line in text.splitlines():
        if "--checkout" in line:  # bench's "another checkout of your own" option
            continue
        for m in UPWARD.finditer(line):
            if not (path.parent / m.group(1)).resolve().is_relative_to(REPO.resolve()):
                found.append(m.group(1))
    return found


def test_nothing_in_the_repository_refers_to_files_outside_it() -> None:
    found = [
        f"{path.relative_to(REPO)}: {ref}"
        for path, text in _tracked_texts()
        if path.resolve() != Path(__file__).resolve()  # its own examples
        for ref in references_outside(path, text)
    ]
    assert found == []


def test_the_outside_check_finds_them(tmp_path) -> None:
    here = REPO / "docs" / "x.md"
    outside = "shared" + "/STYLE.md"  # spelled apart: a grep for such citations finds none here
    text = f"see ../../notes.md, ../README.md, {outside} and /work/main/x\n"
    assert references_outside(here, text) == [outside, "/work/main", "../../notes.md"]


# --------------------------------------------------------------------------- docs/authoritative.md


def test_the_sections_the_authoritative_tests_cite_exist() -> None:
    """test_authoritative.py's comments say "§7.2" and mean docs/authoritative.md's."""
    reference = (REPO / "docs" / "authoritative.md").read_text()
    headings = set(re.findall(r"^#+ (§[\d.]+) ", reference, re.MULTILINE))
    tests = (REPO / "tests" / "integration" / "test_authoritative.py").read_text()
    cited = {m.group(1) for m in re.finditer(r"(?<!RFC \d{4} )(§\d+(?:\.\d+)?)", tests)}
    assert cited >= {"§7.1", "§7.2", "§8", "§10"}
    assert cited - headings == set()
