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
# GeoIP values (dnspol.policy.geoip): ISO codes, AS numbers, city names or GeoNames ids
_GEO = {
    "country": _one_or_many({"type": "string", "pattern": r"^[A-Za-z]{2}$"}),
    "continent": _one_or_many(
        {"type": "string", "pattern": r"^([Aa][FfNnSs]|[Ee][Uu]|[Nn][Aa]|[Oo][Cc]|[Ss][Aa])$"}
    ),
    "subdivision": _one_or_many({"type": "string", "pattern": r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$"}),
    "city": _one_or_many({"type": ["string", "integer"]}),
    "asn": _one_or_many({"type": ["string", "integer"], "pattern": r"^(?i:AS)?\d+$"}),
    "region": {**_one_or_many(_TEXT), "description": "names under regions:"},
}
_REGION = {
    "type": "object",
    "description": "GeoIP values and other regions; a client in any of them is in the region",
    "properties": _GEO,
    "additionalProperties": False,
    "minProperties": 1,
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
        **_GEO,
        "healthy": {**_one_or_many(_TEXT), "description": "checks (checks:) that must be up"},
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
                            "additionalProperties": {
                                "oneOf": [
                                    {"type": "number", "exclusiveMinimum": 0},
                                    {
                                        "type": "object",
                                        "description": "a member skipped while a check is down",
                                        "properties": {
                                            "weight": {"type": "number", "exclusiveMinimum": 0},
                                            "check": _one_or_many(_TEXT),
                                        },
                                        "required": ["weight"],
                                        "additionalProperties": False,
                                    },
                                ]
                            },
                            "minProperties": 1,
                        }
                    },
                    "required": ["weighted"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "description": "the record set a records: check watches, healthy "
                    "addresses only; none healthy: all, or the fallback scope",
                    "properties": {"members": _TEXT, "fallback": _TEXT},
                    "required": ["members"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "description": "the first scope whose checks are all up; none: the last",
                    "properties": {
                        "failover": {
                            "type": "array",
                            "minItems": 2,
                            "items": {
                                "oneOf": [
                                    _TEXT,
                                    {
                                        "type": "object",
                                        "additionalProperties": _one_or_many(_TEXT),
                                        "minProperties": 1,
                                        "maxProperties": 1,
                                    },
                                ]
                            },
                        }
                    },
                    "required": ["failover"],
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
_TRANSFER_MATCH = {
    "type": "object",
    "description": "as a rule's match; 'key' is the TSIG key the request was signed with",
    "properties": {
        "client": _ADDRESSES,
        "server": _ADDRESSES,
        "key": _one_or_many(_TEXT),
        "qtype": _one_or_many({"enum": ["AXFR", "IXFR", "axfr", "ixfr"]}),
        "time": _one_or_many({"$ref": "#/$defs/window"}),
        "any": {"type": "array", "items": {"$ref": "#/$defs/transfer_match"}, "minItems": 1},
        "all": {"type": "array", "items": {"$ref": "#/$defs/transfer_match"}, "minItems": 1},
        "not": {"$ref": "#/$defs/transfer_match"},
    },
    "additionalProperties": False,
}
_TRANSFER = {
    "type": "object",
    "description": "who may transfer zones (AXFR, IXFR); the first match decides; none: refuse",
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
        "description": {"type": "string"},
        "zone": {"type": "string", "description": "omit for a server-wide rule"},
        "enabled": {"type": "boolean"},
        "match": {"$ref": "#/$defs/transfer_match"},
        "action": {"enum": ["allow", "refuse", "drop"]},
    },
    "required": ["name", "action"],
    "additionalProperties": False,
}
_KEY = {
    "type": "object",
    "description": "a TSIG key (RFC 8945); its name is the key's name in this mapping",
    "properties": {
        "algorithm": {"enum": ["hmac-sha256", "hmac-sha384", "hmac-sha512"]},
        "secret_file": {
            "type": "string",
            "minLength": 1,
            "description": "base64 secret, or a key file as tsig-keygen writes it",
        },
        "scope": {"type": "string", "description": "transfers signed with it get this scope"},
    },
    "required": ["secret_file"],
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
                "notify": _one_or_many(
                    {
                        "oneOf": [
                            {"type": "string", "description": "ADDRESS[:PORT] of a secondary"},
                            {
                                "type": "object",
                                "properties": {"address": _TEXT, "key": _TEXT},
                                "required": ["address"],
                                "additionalProperties": False,
                            },
                        ]
                    }
                ),
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
_SECONDS = {"type": "number", "minimum": 0.01, "maximum": 86400}
_COMMON_CHECK = {
    "interval": {**_SECONDS, "description": "seconds between probes (default 5)"},
    "timeout": {**_SECONDS, "description": "seconds a probe may take (default 2)"},
    "rise": {"type": "integer", "minimum": 1, "maximum": 100, "description": "default 2"},
    "fall": {"type": "integer", "minimum": 1, "maximum": 100, "description": "default 3"},
    "source": {"type": "string", "description": "local address probes are sent from"},
}
_HTTP_CHECK = {
    "url": _TEXT,
    "status": {"type": "integer", "minimum": 100, "maximum": 599},
    "body": {"type": "string"},
    "host": _TEXT,
}


def _check_kind(kind: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"kind": {"const": kind}, **_COMMON_CHECK, **properties},
        "required": ["kind", *required],
        "additionalProperties": False,
    }


_CHECK = {
    "oneOf": [
        _check_kind("tcp", ["target"], {"target": _TEXT}),
        _check_kind(
            "tcp",
            ["records", "port"],
            {"records": _TEXT, "port": {"type": "integer", "minimum": 1, "maximum": 65535}},
        ),
        _check_kind("http", ["url"], _HTTP_CHECK),
        _check_kind("https", ["url"], {**_HTTP_CHECK, "verify": {"type": "boolean"}}),
        _check_kind(
            "dns",
            ["server", "name"],
            {"server": _TEXT, "name": _TEXT, "type": _TEXT, "rcode": _TEXT, "answer": _TEXT},
        ),
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
        "journal": {"type": ["string", "null"], "minLength": 1},
        "geoip": {
            "type": ["object", "null"],
            "description": "MaxMind DB files: country (or city) for country and continent, "
            "city for subdivision and city, asn for asn",
            "properties": {"country": _TEXT, "city": _TEXT, "asn": _TEXT},
            "additionalProperties": False,
        },
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
            "regions": {"type": "object", "additionalProperties": _REGION},
            "zones": {
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/zone"},
                "minProperties": 1,
            },
            "checks": {
                "type": ["object", "null"],
                "propertyNames": {"pattern": r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"},
                "additionalProperties": {"$ref": "#/$defs/check"},
            },
            "rules": {"$ref": "#/$defs/rules"},
            "keys": {"type": "object", "additionalProperties": {"$ref": "#/$defs/key"}},
            "transfers": {"type": ["array", "null"], "items": {"$ref": "#/$defs/transfer"}},
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
                "transfer": _TRANSFER,
                "transfer_match": _TRANSFER_MATCH,
                "key": _KEY,
                "check": _CHECK,
            },
        }
    )
