"""What a kit server serves: the zones, scopes, rules and files a test gives, written to disk.

This module owns turning the texts a test passes to ``Server`` (or to
``Server.reload``) into what ``dnspol serve`` reads: zone files under
``zones/``, the other files the rules name, and ``dnspol.yaml`` with the
``zones:`` section the kit adds (policies/README.md). It keeps the texts, so a
reload rewrites only what changed hands and keeps the rest.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ScopeSource", "ServedFiles", "ZoneSource"]

ZoneSource = str | os.PathLike[str]
ScopeSource = ZoneSource | Mapping[str, ZoneSource]  # text/path (an overlay) or {"file": …}

_FIRST_ORIGIN = re.compile(r"^\$ORIGIN[ \t]+([^\s;]+)", re.IGNORECASE | re.MULTILINE)


class ServedFiles:
    """The texts a server serves, by origin; ``write`` puts them where the server reads them."""

    def __init__(self) -> None:
        self.zones: dict[str, str] = {}  # "example.com." → zone text
        self.scopes: dict[str, dict[str, tuple[str, str]]] = {}  # origin → scope → (kind, text)
        self.policies: str | None = None
        self.files: dict[str, str] = {}  # path relative to the config → text

    def serves_something(self) -> bool:
        """Zones were given, or the policies name their own ``zones:``."""
        return bool(self.zones) or "zones" in _top_keys(self.policies)

    def update(
        self,
        zone_text: ZoneSource | None,
        origin: str | None,
        zones: Mapping[str, ZoneSource | None] | None,
        scopes: Mapping[str, Mapping[str, ScopeSource | None]] | None,
        policies: ZoneSource | None,
        files: Mapping[str, ZoneSource] | None,
    ) -> None:
        """Take what is given; a zone or scope given as None is removed."""
        if zone_text is not None:
            zone_text = _text_of(zone_text)
            name = origin or _origin_of(zone_text)
            if name is None:
                raise ValueError("zone text has no absolute $ORIGIN: pass origin='example.com'")
            self.zones[_dotted(name)] = zone_text
        elif origin is not None:
            raise ValueError("origin= goes with zone_text=")
        for name, value in (zones or {}).items():
            if value is None:
                self.zones.pop(_dotted(name), None)
                self.scopes.pop(_dotted(name), None)
            else:
                self.zones[_dotted(name)] = _text_of(value)
        for name, variants in (scopes or {}).items():
            into = self.scopes.setdefault(_dotted(name), {})
            for scope, value in variants.items():
                if value is None:
                    into.pop(scope, None)
                elif isinstance(value, Mapping):
                    if len(value) != 1 or next(iter(value)) not in ("file", "overlay"):
                        raise ValueError(f"scope {scope!r}: give {{'file': text}} or an overlay")
                    kind, text = next(iter(value.items()))
                    into[scope] = (kind, _text_of(text))
                else:
                    into[scope] = ("overlay", _text_of(value))
        if policies is not None:
            self.policies = _text_of(policies)
        for rel, value in (files or {}).items():
            self.files[rel] = value if isinstance(value, str) else _text_of(value)
        if self.zones and "zones" in _top_keys(self.policies):
            raise ValueError(
                "policies= has its own 'zones:'; give zones there or in zones=, not both"
            )

    def write(self, workdir: Path, config_path: Path) -> dict[str, Path]:
        """Zone, scope and other files, then the config naming them (policies/README.md).

        Returns each origin's zone file.
        """
        zone_dir = workdir / "zones"
        zone_dir.mkdir(parents=True, exist_ok=True)
        lines = ["zones:"] if self.zones else []
        zone_paths: dict[str, Path] = {}
        for origin, text in self.zones.items():
            stem = _safe_stem(origin)
            path = zone_dir / f"{stem}.zone"
            _atomic_write(path, text)
            zone_paths[origin] = path
            lines.append(f"  {_yaml_str(origin.rstrip('.') or '.')}:")
            lines.append(f"    file: {_yaml_str(f'zones/{path.name}')}")
            variants = self.scopes.get(origin, {})
            if variants:
                lines.append("    scopes:")
            for scope, (kind, scope_text) in variants.items():
                scope_path = zone_dir / f"{stem}.{_safe_stem(scope)}.zone"
                _atomic_write(scope_path, scope_text)
                entry = f"{{{kind}: {_yaml_str(f'zones/{scope_path.name}')}}}"
                lines.append(f"      {_yaml_str(scope)}: {entry}")
        for rel, text in self.files.items():
            target = (workdir / rel).resolve()
            if workdir.resolve() not in target.parents:
                raise ValueError(f"files: {rel!r} is not a path inside the work directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, text)
        head = self.policies or ""
        if head and not head.endswith("\n"):
            head += "\n"
        if head and lines:
            head += "\n# added by dnspol.testing: the zones given to the kit\n"
        _atomic_write(config_path, head + "\n".join(lines) + ("\n" if lines else ""))
        return zone_paths


def _origin_of(text: str) -> str | None:
    match = _FIRST_ORIGIN.search(text)
    if match and match.group(1).endswith("."):
        return match.group(1)
    return None


def _text_of(value: str | os.PathLike[str]) -> str:
    """A file's text, or text written in a test (common indentation removed)."""
    if isinstance(value, os.PathLike):
        return Path(value).read_text(encoding="utf-8")
    return textwrap.dedent(value)


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.rstrip(".") or "root")


def _dotted(origin: str) -> str:
    return origin.rstrip(".").lower() + "."


def _top_keys(yaml_text: str | None) -> set[str]:
    """Top-level keys of a YAML mapping (empty when it is not one)."""
    if not yaml_text:
        return set()
    import yaml

    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError:
        return set()  # the server will say what is wrong, with line numbers
    return set(data) if isinstance(data, dict) else set()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
