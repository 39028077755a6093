"""MaxMind DB files for tests, written with ``mmdb-writer`` (dnspol's ``test`` extra):
networks of known prefix lengths with records in the GeoIP2/GeoLite2 layout (City,
Country, ASN), for the GeoIP criteria (``server.geoip``) of a configuration under test::

    from dnspol.testing.geoip import place, write_mmdb

    write_mmdb(workdir / "city.mmdb", {"127.1.0.0/24": place("DE", "EU")})
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def place(
    country: str,
    continent: str,
    subdivision: str | None = None,
    city: str | None = None,
    geoname_id: int | None = None,
) -> dict:
    """A City/Country record: ``place("DE", "EU", "BY", "Munich", 2867714)``."""
    record: dict = {
        "continent": {"code": continent, "names": {"en": continent}},
        "country": {"iso_code": country, "names": {"en": country}},
        "registered_country": {"iso_code": country},
    }
    if subdivision is not None:
        record["subdivisions"] = [{"iso_code": subdivision, "names": {"en": subdivision}}]
    if city is not None:
        record["city"] = {"names": {"en": city}}
        if geoname_id is not None:
            record["city"]["geoname_id"] = geoname_id
    return record


def network_of(asn: int, organization: str = "Example Net") -> dict:
    """An ASN record."""
    return {"autonomous_system_number": asn, "autonomous_system_organization": organization}


def write_mmdb(
    path: str | os.PathLike[str],
    networks: Mapping[str, dict],
    *,
    database_type: str = "GeoIP2-City",
    ip_version: int = 6,
) -> str:
    """A database holding each network (CIDR text) with its record; later networks inside
    earlier ones take their part of them. IPv4 networks of an IPv6 database sit at ::/96,
    as in MaxMind's own files."""
    from mmdb_writer import MMDBWriter  # the test extra: imported when a test writes one
    from netaddr import IPNetwork, IPSet

    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description="dnspol test database",
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([IPNetwork(network)]), record)
    writer.to_db_file(os.fspath(path))
    return os.fspath(path)
