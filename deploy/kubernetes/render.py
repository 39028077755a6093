"""Write the ConfigMaps of deploy/kubernetes/ from the files they carry.

    python deploy/kubernetes/render.py          # rewrite dnspol-config.yaml, dnsdist-config.yaml
    python deploy/kubernetes/render.py --check  # exit 1 if either is out of date

dnspol-config.yaml carries config/replica.yaml and every file of policies/ but the
READMEs and scripts (``*.py``): texts under ``data``, other files (a GeoIP database)
base64 under ``binaryData``; dnsdist-config.yaml carries deploy/dnsdist.conf. A
ConfigMap key cannot hold a "/", so policies/split-horizon/rules.yaml is the key
``policies__split-horizon__rules.yaml``, and the dnspol Deployment's volume puts it
back at its path (``items``). tests/test_deploy_kubernetes.py checks that the
ConfigMaps are what this script writes, and that the Deployment lists every key.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEPARATOR = "__"  # stands for "/" in a key
HEADER = "# Written by deploy/kubernetes/render.py from {sources}: edit them and run it.\n"


def dnspol_files() -> dict[str, str | bytes]:
    """Path inside the volume (relative to /etc/dnspol) → text, or bytes when not text."""
    files: dict[str, str | bytes] = {"replica.yaml": (HERE / "config" / "replica.yaml").read_text()}
    policies = ROOT / "policies"
    for path in sorted(policies.rglob("*")):
        if carried(path):
            files[f"policies/{path.relative_to(policies).as_posix()}"] = _content(path)
    return files


def carried(path: Path) -> bool:
    """A file of policies/ the pods read: not a README, a script or a compiled script."""
    return (
        path.is_file()
        and path.name != "README.md"
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
    )


def _content(path: Path) -> str | bytes:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def key_of(path: str) -> str:
    return path.replace("/", SEPARATOR)


def path_of(key: str) -> str:
    return key.replace(SEPARATOR, "/")


def config_map(name: str, component: str, files: dict[str, str | bytes]) -> dict:
    labels = {"app.kubernetes.io/name": name.split("-")[0], "app.kubernetes.io/part-of": "dnspol"}
    labels["app.kubernetes.io/component"] = component
    out = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {key: value for key, value in files.items() if isinstance(value, str)},
    }
    binary = {
        key: base64.b64encode(value).decode()
        for key, value in files.items()
        if isinstance(value, bytes)
    }
    if binary:
        out["binaryData"] = binary
    return out


def rendered() -> dict[str, str]:
    """File name in deploy/kubernetes/ → the text it should have."""
    dnspol = {key_of(path): text for path, text in dnspol_files().items()}
    dnsdist = {"dnsdist.conf": (ROOT / "deploy" / "dnsdist.conf").read_text()}
    return {
        "dnspol-config.yaml": HEADER.format(sources="config/replica.yaml and policies/")
        + dump(config_map("dnspol-config", "server", dnspol)),
        "dnsdist-config.yaml": HEADER.format(sources="deploy/dnsdist.conf")
        + dump(config_map("dnsdist-config", "load-balancer", dnsdist)),
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line texts as literal blocks, so the ConfigMaps read like the files."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def dump(document: dict) -> str:
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    if yaml.safe_load(text) != document:  # a text YAML cannot carry as it is
        raise ValueError("the ConfigMap does not read back as written")
    return text


def main(argv: list[str]) -> int:
    stale = [name for name, text in rendered().items() if _read(HERE / name) != text]
    if "--check" in argv:
        for name in stale:
            print(f"deploy/kubernetes/{name} is out of date: run deploy/kubernetes/render.py")
        return 1 if stale else 0
    for name, text in rendered().items():
        (HERE / name).write_text(text)
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
