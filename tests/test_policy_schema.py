"""The JSON Schema validates every example and included rules file, and rejects bad shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dnspol.config import json_schema

jsonschema = pytest.importorskip("jsonschema")

POLICIES = Path(__file__).parent.parent / "policies"
FILES = sorted(POLICIES.rglob("*.yaml"))


def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_plain_json() -> None:
    assert json.loads(json.dumps(json_schema())) == json_schema()


def test_examples_exist() -> None:
    names = {str(path.relative_to(POLICIES)) for path in FILES}
    assert {
        "dnspol.yaml",
        "split-horizon/dnspol.yaml",
        "split-horizon/rules.yaml",
        "failover/dnspol.yaml",
        "weighted/dnspol.yaml",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(POLICIES)))
def test_examples_validate(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    errors = [error.message for error in validator().iter_errors(document)]
    assert errors == []


@pytest.mark.parametrize(
    "document",
    [
        {"zones": {"example.com": "z"}, "rules": [{"name": "a", "action": "explode"}]},
        {"zones": {"example.com": "z"}, "rules": [{"name": "a"}]},
        {"zones": {"example.com": "z"}, "rules": [{"name": "a", "answer": "x", "action": "drop"}]},
        {
            "zones": {"example.com": "z"},
            "rules": [{"name": "a", "action": "drop", "match": {"clinet": "corp"}}],
        },
        {
            "zones": {"example.com": "z"},
            "rules": [{"name": "a", "answer": {"weighted": {"default": 0}}}],
        },
        {"zones": {"example.com": {"file": "z", "scopes": {"default": "y"}}}},
        {"zones": {"example.com": "z"}, "server": {"listen": "localhost"}},
        {
            "zones": {"example.com": "z"},
            "rules": [{"name": "a", "action": "drop", "match": {"time": {"tz": "UTC"}}}],
        },
        {"rulez": []},
    ],
)
def test_bad_documents_fail(document: dict) -> None:
    assert list(validator().iter_errors(document))
