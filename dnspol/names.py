"""Domain names as dnspol keeps them: a tuple of lowercased label bytes.

Names are normalised once, when a zone is loaded or a query decoded, so every
comparison after that is a plain tuple compare or dict lookup. ``("www",
"example", "com")`` is written ``(b"www", b"example", b"com")``; the root is ``()``.
"""

from __future__ import annotations

from dnslib import DNSLabel

Name = tuple[bytes, ...]

ROOT: Name = ()


def from_text(text: str) -> Name:
    """Parse presentation text (``www.Example.com.``) into a normalised name."""
    text = text.strip()
    if text in (".", ""):
        return ROOT
    return tuple(label.lower() for label in DNSLabel(text).label)


def from_label(label: DNSLabel) -> Name:
    return tuple(part.lower() for part in label.label)


def to_text(name: Name) -> str:
    """Presentation form with a trailing dot, escaping as dnslib does."""
    return str(DNSLabel(name)) if name else "."


def to_label(name: Name) -> DNSLabel:
    return DNSLabel(list(name))


def is_subdomain(name: Name, parent: Name) -> bool:
    """True when ``name`` is ``parent`` or lies below it."""
    return len(name) >= len(parent) and name[len(name) - len(parent) :] == parent


def relative_labels(name: Name, parent: Name) -> Name:
    """Labels of ``name`` above ``parent`` (which must enclose it)."""
    return name[: len(name) - len(parent)]


def to_wire(name: Name) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in name) + b"\x00"


def from_wire(wire: bytes) -> Name:
    """An uncompressed name in wire form (already checked, e.g. a query's lowered name)."""
    labels = []
    at = 0
    length = wire[0]
    while length:
        labels.append(wire[at + 1 : at + 1 + length])
        at += length + 1
        length = wire[at]
    return tuple(labels)
