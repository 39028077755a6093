"""docs/testing.md promises copyable examples: run every one of them as a user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
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
