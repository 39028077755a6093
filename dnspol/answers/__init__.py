"""The answer tables: every answer a zone gives, compiled when a configuration loads.

This package is the only writer of them. ``compile`` turns each served zone and each of
its scopes into a ``View`` (``tables``): the final bytes after the question for every
(owner, type), and templates for the answers a query name that is not an owner gets
(NXDOMAIN, NODATA, wildcard, referral), keyed by the longest part of the name the zone
knows. ``assemble`` turns one of those into a reply at run time: header, the client's own
question, the prepared tail, the OPT record. Nothing here is filled by traffic, so no
query can grow or flush it.

Every prepared answer is made by the reference path (``zones.lookup`` and
``dnspol.packer``, the fully decoded path the handler falls back to), or byte for byte as
it would make it; tests compare the two over random zones and queries.
"""

from dnspol.answers.assemble import (
    OUTSIDE,
    AnswerTables,
    Found,
    find,
    find_plain,
    opt_record,
    option,
    refused_reply,
    reply,
)
from dnspol.answers.compile import REFERENCE_TYPES, plain_answers
from dnspol.answers.compile import compile_tables as _compile_zones
from dnspol.collector import collector_paused


def compile_tables(zones, variants) -> AnswerTables:  # noqa: ANN001 - ZoneSet, Mapping
    """The answer tables of a snapshot's zones and their scopes."""
    with collector_paused():  # every object made here lives as long as the tables
        by_origin = _compile_zones(zones, variants)
        tables = AnswerTables(by_origin, plain_answers(by_origin))
        if tables.signed:
            tables.secure_plain, tables.secure_plain_names = plain_answers(by_origin, True)
        return tables


__all__ = [
    "OUTSIDE",
    "REFERENCE_TYPES",
    "AnswerTables",
    "Found",
    "compile_tables",
    "find",
    "find_plain",
    "opt_record",
    "option",
    "refused_reply",
    "reply",
]
