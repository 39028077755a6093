"""What the package declares about itself matches the repository.

pyproject.toml declares each dependency's lowest version (and, where dnspol leans on
internals, a ceiling); constraints/floor.txt pins exactly those lowest versions, and
scripts/test.sh runs the tests at them; constraints/latest.txt pins the newest versions
tested, which the test virtualenv and the container image install.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FLOOR = ROOT / "constraints" / "floor.txt"
LATEST = ROOT / "constraints" / "latest.txt"

# The one shape of requirement dnspol writes: a floor, optionally a ceiling.
_NAME = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
_REQUIREMENT = re.compile(_NAME + r">=(?P<floor>[\d.]+)(?:,<(?P<ceiling>[\d.]+))?")
_PIN = re.compile(_NAME + r"==(?P<version>[\d.]+)")

Release = tuple[int, ...]


def canonical(name: str) -> str:
    """PEP 503's normal form: PyYAML, pyyaml and py_yaml are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> Release:
    """A release number to compare: 6 and 6.0 are one version (PEP 440)."""
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def declared() -> dict[str, tuple[Release, Release | None]]:
    """Every dependency pyproject declares, runtime and extras: name -> (floor, ceiling)."""
    requirements = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        requirements += extra
    out = {}
    for requirement in requirements:
        match = _REQUIREMENT.fullmatch(requirement.replace(" ", ""))
        assert match, f"{requirement!r}: write 'name>=floor' or 'name>=floor,<ceiling'"
        ceiling = match["ceiling"]
        out[canonical(match["name"])] = (
            release(match["floor"]),
            release(ceiling) if ceiling else None,
        )
    return out


def pins(path: Path) -> dict[str, Release]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = _PIN.fullmatch(line)
            assert match, f"{path.name}: {line!r} is not 'name==version'"
            out[canonical(match["name"])] = release(match["version"])
    return out


def test_the_license_file_is_the_license_pyproject_declares():
    declared_license = PROJECT["license"]["text"]
    assert (ROOT / "LICENSE").read_text().splitlines()[0] == f"{declared_license} License"


def test_the_floor_constraints_are_the_declared_minimums():
    floors = {name: floor for name, (floor, _) in declared().items()}
    assert pins(FLOOR) == floors


def test_the_tested_versions_are_ones_pyproject_allows():
    tested = pins(LATEST)
    for name, (floor, ceiling) in declared().items():
        assert name in tested, f"{name}: no tested version in {LATEST.name}"
        assert floor <= tested[name], f"{name}: {LATEST.name} pins below the declared floor"
        if ceiling is not None:
            assert tested[name] < ceiling, f"{name}: {LATEST.name} pins at or above the ceiling"


def test_the_readme_names_the_versions_the_constraint_files_pin():
    floors, tested = pins(FLOOR), pins(LATEST)
    rows = re.findall(
        r"^\| ([\w.-]+) \| ([\d.]+)[^|]*\| ([\d.]+) \|$", (ROOT / "README.md").read_text(), re.M
    )
    runtime = {canonical(re.split(r"[<>=]", r)[0]) for r in PROJECT["dependencies"]}
    assert {canonical(name) for name, _, _ in rows} == runtime
    for name, lowest, newest in rows:
        assert release(lowest) == floors[canonical(name)], name
        assert release(newest) == tested[canonical(name)], name


def test_dnspython_has_a_ceiling_because_the_loader_subclasses_its_reader():
    """dnspol.zones.reader overrides dns.zonefile.Reader's private methods and state, which
    any minor release may change: only versions the test command has run are allowed."""
    floor, ceiling = declared()["dnspython"]
    assert ceiling is not None
    assert ceiling[:2] == (floor[0], floor[1] + 1)  # the floor's minor series, no further


def test_the_image_installs_the_tested_versions():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copies = [line for line in lines if line.startswith("COPY ") and "constraints" in line]
    assert copies, "the Dockerfile does not copy the constraints file into the build"
    installs = [line for line in lines if line.startswith("RUN pip install")]
    assert installs == ["RUN pip install -c constraints/latest.txt . && rm -rf /src"]
    assert "!constraints/" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_test_command_runs_the_suite_at_the_floor_and_at_the_tested_versions():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "constraints/floor.txt" in setup and "constraints/latest.txt" in setup
    test = (ROOT / "scripts" / "test.sh").read_text()
    assert "scripts/setup.sh --floor --test" in test
    assert ".venv-floor/bin/pytest" in test
    assert test.rstrip().splitlines()[-1].startswith("exec .venv/bin/pytest")


def test_ci_runs_the_readme_test_command():
    commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert len(commands) == 1 and commands[0].startswith("bash scripts/test.sh")
    assert "bash scripts/test.sh " in (ROOT / "README.md").read_text()
