"""The JSON Schema (draft 2020-12) of dnspol config files and included rule files.

Editors use it for completion and early errors (``dnspol schema > dnspol.schema.json``, then
point the YAML language server at it). It describes shapes only; ``dnspol check`` also checks
meaning: names that must exist, time zones, CIDR host bits, shadowed rules.
"""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://dnspol.invalid/schema/dnspol.schema.json"


def _one_or_many(item: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}


_TEXT = {"type": "string", "minLength": 1}
_ADDRESSES = {
    **_one_or_many(_TEXT),
    "description": "subnet names, CIDR prefixes or addresses (any of them matches)",
}
_WINDOW = {
    "type": "object",
    "description": "wall-clock window; days/dates name the day the window starts",
    "properties": {
        "between": {"type": "string", "pattern": r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$"},
        "days": _one_or_many({"type": "string", "pattern": r"^[A-Za-z]+(-[A-Za-z]+)?$"}),
        "dates": _one_or_many(
            {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}(\.\.\d{4}-\d{2}-\d{2})?$"}
        ),
        "tz": {"type": "string", "description": "IANA time zone, e.g. Europe/Berlin"},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["between"]}, {"required": ["days"]}, {"required": ["dates"]}],
}
_MATCH = {
    "type": "object",
    "description": "every key must match (AND); a list under one key matches any item (OR)",
    "properties": {
        "client": _ADDRESSES,
        "source": _ADDRESSES,
        "server": _ADDRESSES,
        "transport": _one_or_many({"enum": ["udp", "tcp"]}),
        "family": _one_or_many({"enum": ["ipv4", "ipv6"]}),
        "qname": _one_or_many(_TEXT),
        "qtype": _one_or_many({"type": ["string", "integer"]}),
        "time": _one_or_many({"$ref": "#/$defs/window"}),
        "any": {"type": "array", "items": {"$ref": "#/$defs/match"}, "minItems": 1},
        "all": {"type": "array", "items": {"$ref": "#/$defs/match"}, "minItems": 1},
        "not": {"$ref": "#/$defs/match"},
    },
    "additionalProperties": False,
}
_RULE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
        "description": {"type": "string"},
        "zone": {"type": "string", "description": "omit for a server-wide rule"},
        "enabled": {"type": "boolean"},
        "match": {"$ref": "#/$defs/match"},
        "answer": {
            "oneOf": [
                {"type": "string", "description": "a scope name; 'default' is the zone file"},
                {
                    "type": "object",
                    "properties": {
                        "weighted": {
                            "type": "object",
                            "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                            "minProperties": 1,
                        }
                    },
                    "required": ["weighted"],
                    "additionalProperties": False,
                },
            ]
        },
        "action": {"enum": ["refuse", "drop", "nxdomain"]},
        "use_ecs": {"type": "boolean"},
    },
    "required": ["name"],
    "oneOf": [{"required": ["answer"]}, {"required": ["action"]}],
    "additionalProperties": False,
}
_INCLUDE = {
    "type": "object",
    "properties": {"include": _one_or_many(_TEXT)},
    "required": ["include"],
    "additionalProperties": False,
}
_RULES = {"type": ["array", "null"], "items": {"oneOf": [{"$ref": "#/$defs/rule"}, _INCLUDE]}}
_SCOPE = {
    "oneOf": [
        {"type": "string", "description": "a whole zone file"},
        {
            "type": "object",
            "properties": {"file": _TEXT, "overlay": _TEXT},
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        },
    ]
}
_ZONE = {
    "oneOf": [
        {"type": "string", "description": "the zone file (default scope)"},
        {
            "type": "object",
            "properties": {
                "file": _TEXT,
                "scopes": {
                    "type": "object",
                    "propertyNames": {
                        "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,62}$",
                        "not": {"const": "default"},
                    },
                    "additionalProperties": {"$ref": "#/$defs/scope"},
                },
            },
            "required": ["file"],
            "additionalProperties": False,
        },
    ]
}
_SUBNET = {
    "oneOf": [
        {"type": "array", "items": _TEXT, "minItems": 1},
        {
            "type": "object",
            "properties": {
                "file": _one_or_many(_TEXT),
                "prefixes": {"type": "array", "items": _TEXT},
            },
            "additionalProperties": False,
            "minProperties": 1,
        },
    ]
}
_LISTEN = {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+):\d{1,5}$"}
# the keys with a shape of their own; the scalar settings come from dnspol.settings
_SERVER = {
    "type": "object",
    "properties": {
        "listen": _one_or_many(_LISTEN),
        "trusted_resolvers": _ADDRESSES,
        "trusted_proxies": _ADDRESSES,
        "chaos": {"type": "object", "additionalProperties": {"type": "string"}},
        "timezone": {"type": "string"},
        "metrics": {"oneOf": [_LISTEN, {"type": "null"}]},
        "nsid": {"type": "string", "minLength": 1, "maxLength": 128},
        "control": {"type": ["string", "null"], "minLength": 1},
    },
    "additionalProperties": False,
}


def json_schema() -> dict[str, Any]:
    """A fresh copy of the schema (callers may change it)."""
    import copy

    from dnspol import cookies, dnstap, ratelimit, settings  # each declares its own settings
    from dnspol.dnssec import policy as dnssec_policy

    server = copy.deepcopy(_SERVER)
    server["properties"].update(settings.json_schema_properties())
    server["properties"]["rate_limit"] = ratelimit.json_schema()
    server["properties"]["cookies"] = {"oneOf": [{"type": "boolean"}, cookies.json_schema()]}
    server["properties"]["dnstap"] = {"oneOf": [dnstap.json_schema(), {"type": "null"}]}
    zone = copy.deepcopy(_ZONE)
    zone["oneOf"][1]["properties"]["dnssec"] = dnssec_policy.json_schema()
    config_file = {
        "type": "object",
        "properties": {
            "server": server,
            "subnets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/subnet"}},
            "zones": {
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/zone"},
                "minProperties": 1,
            },
            "rules": {"$ref": "#/$defs/rules"},
        },
        "required": ["zones"],
        "additionalProperties": False,
    }
    rules_file = {
        "type": "object",
        "properties": {"rules": {"$ref": "#/$defs/rules"}},
        "required": ["rules"],
        "additionalProperties": False,
    }
    return copy.deepcopy(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
            "title": "dnspol configuration or included rules file",
            "anyOf": [config_file, rules_file],
            "$defs": {
                "match": _MATCH,
                "window": _WINDOW,
                "rule": _RULE,
                "rules": _RULES,
                "scope": _SCOPE,
                "zone": zone,
                "subnet": _SUBNET,
            },
        }
    )
