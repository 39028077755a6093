"""Shared servers and helpers for the integration tests (real server, real dig).

The ``dnspol`` / ``dnspol_session`` fixtures come from ``dnspol.testing.plugin``,
registered by the ``pytest11`` entry point once dnspol is installed; from a
bare checkout this conftest registers the plugin itself.
"""

from __future__ import annotations

import shutil

import pytest
from itkit import EXAMPLE, SUB2

import dnspol.testing
import dnspol.testing.plugin


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(dnspol.testing.plugin):
        config.pluginmanager.register(dnspol.testing.plugin)


def pytest_collection_modifyitems(config, items) -> None:
    if shutil.which("dig") is None:
        skip = pytest.mark.skip(reason="dig is not installed (bind9-dnsutils)")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def core(dnspol_session) -> dnspol.testing.Server:
    """One server for every read-only test: example. with its child zone sub2.example."""
    return dnspol_session(zones={"example.": EXAMPLE, "sub2.example.": SUB2})
