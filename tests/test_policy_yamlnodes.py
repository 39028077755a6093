"""YAML with line numbers: typed getters record problems instead of raising."""

from __future__ import annotations

import time

import pytest

from dnspol.policy import yamlnodes
from dnspol.policy.yamlnodes import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_VALUES,
    Node,
    Reader,
    did_you_mean,
    parse_yaml,
)


def parse(text: str) -> tuple[Node | None, list[str]]:
    problems: list[str] = []
    return parse_yaml(text, "f.yaml", problems), problems


def test_scalars_stay_text_as_written() -> None:
    root, problems = parse("a: 9:30\nb: no\nc: 2026-12-24\nd: '007'\n")
    assert problems == []
    reader = Reader(problems)
    entries = reader.mapping(root, "top", None)
    assert [reader.text(entries[key], key) for key in "abcd"] == ["9:30", "no", "2026-12-24", "007"]


def test_lines_of_keys_and_values() -> None:
    root, _ = parse("first: 1\nsecond:\n  - x\n  - y\n")
    (_, key, value), (_, key2, value2) = list(root.items())
    assert (key.line, value.line, key2.line) == (1, 1, 2)
    assert [item.line for item in value2.value] == [3, 4]
    assert value2.value[1].where == "f.yaml:4"


def test_duplicate_keys_and_syntax_errors() -> None:
    _, problems = parse("a: 1\nb: 2\na: 3\n")
    assert problems == ["f.yaml:3: duplicate key 'a' (first written at line 1)"]
    root, problems = parse("a: [1, 2\n")
    assert root is None and problems[0].startswith("f.yaml:2: YAML syntax error:")


def test_merge_keys() -> None:
    root, problems = parse("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n")
    assert problems == []
    use = root.value["use"][1]
    assert sorted(use.value) == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "method", "kwargs", "value", "problem"),
    [
        ("v: 12", "integer", {}, 12, None),
        ("v: 1_000", "integer", {}, 1000, None),
        ("v: '12'", "integer", {}, None, "f.yaml:1: v must be a whole number, not '12'"),
        ("v: 5", "integer", {"minimum": 10}, None, "f.yaml:1: v must be at least 10, not 5"),
        ("v: 2.5", "number", {}, 2.5, None),
        ("v: yes", "boolean", {}, True, None),
        ("v: off", "boolean", {}, False, None),
        ("v: perhaps", "boolean", {}, None, "f.yaml:1: v must be true or false, not 'perhaps'"),
        ("v:", "text", {}, None, "f.yaml:1: v must be text, not nothing (empty value)"),
        ("v: [a]", "text", {}, None, "f.yaml:1: v must be text, not a list"),
        ("v: UDP", "choice", {"choices": ["udp", "tcp"]}, "udp", None),
        (
            "v: udpp",
            "choice",
            {"choices": ["udp", "tcp"]},
            None,
            "f.yaml:1: v 'udpp' is not one of udp, tcp (did you mean 'udp'?)",
        ),
    ],
)
def test_typed_getters(text, method, kwargs, value, problem) -> None:
    root, problems = parse(text)
    reader = Reader(problems)
    node = root.value["v"][1]
    assert getattr(reader, method)(node, "v", **kwargs) == value
    assert problems == ([problem] if problem else [])


def test_texts_accepts_one_or_many() -> None:
    root, problems = parse("one: a\nmany: [a, b]\nempty: []\n")
    reader = Reader(problems)
    entries = reader.mapping(root, "top", None)
    assert [t for t, _ in reader.texts(entries["one"], "one")] == ["a"]
    assert [t for t, _ in reader.texts(entries["many"], "many")] == ["a", "b"]
    assert reader.texts(entries["empty"], "empty") == []
    assert problems == ["f.yaml:3: empty is an empty list"]


def test_unknown_keys_suggest_the_closest() -> None:
    root, problems = parse("naem: x\nmatch: {}\n")
    Reader(problems).mapping(root, "a rule", ["name", "match"])
    assert problems == ["f.yaml:1: unknown key 'naem' in a rule (did you mean 'name'?)"]


def test_did_you_mean_keeps_the_choice_spelling() -> None:
    assert did_you_mean("europe/berln", ["Europe/Berlin"]) == " (did you mean 'Europe/Berlin'?)"
    assert did_you_mean("zzz", ["Europe/Berlin"]) == ""


# --- bombs: aliases and nesting are bounded ------------------------------------------------

# A 584-byte "billion laughs": nine levels of nine aliases, 9**9 values once expanded.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_quickly_with_its_line() -> None:
    started = time.monotonic()
    root, problems = parse(ALIAS_BOMB)
    assert time.monotonic() - started < 1.0
    assert root is None
    assert len(problems) == 1
    assert problems[0].startswith("f.yaml:")
    assert "aliases" in problems[0]


def test_too_many_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlnodes, "MAX_VALUES", 1000)  # the real bound takes seconds to reach
    assert parse("a: [" + "1," * 997 + "]\n")[1] == []  # with the map, its key and the list
    root, problems = parse("a: [" + "1," * 998 + "]\n")
    assert root is None
    assert problems == ["f.yaml:1: more than 1,000 values in one file"]
    assert MAX_VALUES >= 100_000


def test_too_many_aliases_are_refused() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    root, problems = parse(text)
    assert root is None
    assert problems == [f"f.yaml:2: more than {MAX_ALIASES:,} aliases; write the values out"]


def test_a_self_referencing_anchor_is_a_problem_not_a_traceback() -> None:
    root, problems = parse("x: 1\na: &a [*a]\n")
    assert root is None
    assert problems == ["f.yaml:2: alias *a refers to the value it is inside (a loop)"]
    _, problems = parse("m: &m\n  k: *m\n")
    assert problems == ["f.yaml:2: alias *m refers to the value it is inside (a loop)"]


def test_deep_nesting_is_a_problem_not_a_traceback() -> None:
    root, problems = parse("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert root is None
    assert problems == [f"f.yaml:1: nested more than {MAX_DEPTH} levels deep"]


def test_shared_values_are_converted_once() -> None:
    root, problems = parse("a: &a [1, 2]\nb: *a\nc: *a\n")
    assert problems == []
    entries = Reader(problems).mapping(root, "top", None)
    assert entries["b"] is entries["c"]
    assert [item.value for item in entries["c"].value] == ["1", "2"]


def test_the_largest_allowed_file_limit_reads_a_small_file(tmp_path):
    """A limit is a ceiling, not a buffer size: 1 TiB allowed reads a small file."""
    path = tmp_path / "rules.yaml"
    path.write_text("rules: []\n")
    problems: list[str] = []
    node, data = yamlnodes.read_yaml_file(str(path), problems, max_bytes=2**40)
    assert problems == [] and data == b"rules: []\n"
