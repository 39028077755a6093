"""The docs promise copyable examples: run them as a user would.

docs/testing.md's Python examples run under pytest and unittest, and its shell recipes
for the fake clock run in bash, as written, in a copy of the repository's ``policies/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from itkit import free_port, need

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "testing.md"
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
