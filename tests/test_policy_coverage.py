"""Warnings for rules that can never match because an earlier rule always matches first."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dnspol.config import check_config

DATA = (Path(__file__).parent / "data" / "policy").resolve()
ZONES = f"""\
subnets:
  corp: [10.0.0.0/8]
  branch: [10.1.0.0/16]
zones:
  example.com:
    file: {DATA}/example.com.zone
    scopes:
      dr: {DATA}/example.com.dr.zone
  example.org: {DATA}/example.org.zone
"""


def warnings_for(tmp_path: Path, rules: str, server: str = "") -> list[str]:
    path = tmp_path / "dnspol.yaml"
    path.write_text(
        textwrap.dedent(server) + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  ") + ZONES
    )
    found = [line.replace(f"{tmp_path}/", "") for line in check_config(path)]
    assert all(line.startswith("warning: ") for line in found), found
    return [line.split(": rule ", 1)[1] for line in found]


def shadow(later: str, earlier: str, line: int, catch_all: bool = False) -> str:
    how = (
        "has no criteria, so it matches every query first"
        if catch_all
        else "matches every query this one would, and runs first"
    )
    return f"{later!r} can never match: rule {earlier!r} (dnspol.yaml:{line}) {how}"


CASES = [
    (  # a catch-all shadows everything after it in its list
        """\
        - {name: all, zone: example.com, answer: dr}
        - {name: late, zone: example.com, match: {qtype: A}, action: drop}
        """,
        [shadow("late", "all", 2, catch_all=True)],
    ),
    (  # identical criteria
        """\
        - {name: one, match: {client: corp, qtype: A}, action: drop}
        - {name: two, match: {qtype: A, client: corp}, action: refuse}
        """,
        [shadow("two", "one", 2)],
    ),
    (  # broader subnet first; the narrower one never matches
        """\
        - {name: wide, match: {client: corp}, action: drop}
        - {name: narrow, match: {client: [branch, 10.2.0.0/16]}, action: refuse}
        """,
        [shadow("narrow", "wide", 2)],
    ),
    (  # narrower first is the right order: no warning
        """\
        - {name: narrow, match: {client: branch}, action: drop}
        - {name: wide, match: {client: corp}, action: refuse}
        """,
        [],
    ),
    (  # fewer criteria are broader
        """\
        - {name: any-a, match: {qtype: [A, AAAA]}, action: drop}
        - {name: corp-a, match: {qtype: A, client: corp, transport: udp}, action: refuse}
        """,
        [shadow("corp-a", "any-a", 2)],
    ),
    (  # a disabled rule shadows nothing
        """\
        - {name: off, enabled: false, action: drop}
        - {name: on, match: {qtype: A}, action: drop}
        """,
        [],
    ),
    (  # server-wide rules run first, wherever they are written
        """\
        - {name: zonal, zone: example.org, match: {qtype: MX}, action: drop}
        - {name: refuse-all, action: refuse}
        """,
        [shadow("zonal", "refuse-all", 3, catch_all=True)],
    ),
    (  # a server-wide answer acts only in zones that have its scope
        """\
        - {name: dr-all, answer: dr}
        - {name: com, zone: example.com, match: {qtype: A}, answer: default}
        - {name: org, zone: example.org, match: {qtype: A}, action: drop}
        """,
        [shadow("com", "dr-all", 2, catch_all=True)],
    ),
    (  # zone rules refuse/drop only in their zone; server-wide ones everywhere
        """\
        - {name: zonal, zone: example.com, action: drop}
        - {name: global, match: {qtype: A}, action: drop}
        """,
        [],
    ),
    (  # qname: suffix forms cover exact names below them
        """\
        - {name: below, match: {qname: "*.example.com"}, action: drop}
        - {name: www, match: {qname: www.example.com}, action: drop}
        - {name: apex, match: {qname: example.com}, action: drop}
        - {name: tree, match: {qname: .example.org}, action: drop}
        - {name: deep, match: {qname: ["*.a.example.org", b.example.org]}, action: drop}
        """,
        [shadow("www", "below", 2), shadow("deep", "tree", 5)],
    ),
    (  # any: every alternative must be covered
        """\
        - {name: mx-or-txt, match: {qtype: [MX, TXT]}, action: drop}
        - {name: either, match: {any: [{qtype: MX}, {qtype: TXT}]}, action: drop}
        - {name: not-all, match: {any: [{qtype: MX}, {qtype: A}]}, action: drop}
        """,
        [shadow("either", "mx-or-txt", 2)],
    ),
    (  # the same time window covers; another does not
        """\
        - {name: night, match: {time: {between: "22:00-06:00"}}, action: drop}
        - {name: night-a, match: {qtype: A, time: {between: "22:00-06:00"}}, action: drop}
        - {name: late, match: {time: {between: "23:00-05:00"}}, action: drop}
        """,
        [shadow("night-a", "night", 2)],
    ),
    (  # a zone rule naming a name outside its zone
        """\
        - {name: stray, zone: example.com, match: {qname: www.example.org}, action: drop}
        """,
        ["'stray': qname www.example.org is outside zone example.com., so it never matches there"],
    ),
]


@pytest.mark.parametrize(("rules", "expected"), CASES)
def test_shadowed_rules(tmp_path: Path, rules: str, expected: list[str]) -> None:
    assert warnings_for(tmp_path, rules) == expected


RESOLVERS = "server: {trusted_resolvers: [127.0.0.1]}\n"
ECS_RULES = """\
- {name: block, match: {client: corp}, action: refuse}
- {name: steer, zone: example.com, match: {client: branch}, answer: dr}
"""


def test_ecs_view_differs_when_resolvers_are_trusted(tmp_path: Path) -> None:
    """refuse sees the packet source, answers see ECS: with ECS in play they differ."""
    assert warnings_for(tmp_path, ECS_RULES, RESOLVERS) == []
    assert warnings_for(tmp_path, ECS_RULES) == [shadow("steer", "block", 2)]
