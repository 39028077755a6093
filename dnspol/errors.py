"""The one root error, and the errors each stage raises."""

from __future__ import annotations


class DnspolError(Exception):
    """Root of every error dnspol raises on purpose."""


class ConfigError(DnspolError):
    """A configuration, zone or policy file is wrong.

    ``problems`` holds every problem found, each as ``file:line: what is wrong``,
    so a check can report them all at once.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ZoneError(ConfigError):
    """A zone file cannot be loaded."""


class PolicyError(ConfigError):
    """A policy file cannot be loaded."""


class MalformedQuery(DnspolError):
    """A query that cannot be answered except with FORMERR."""
