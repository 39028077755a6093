"""dnspol: a policy-driven authoritative DNS server."""

__version__ = "0.1.0"
