"""Write geo/example-city.mmdb, the small GeoIP database of this example.

MaxMind's and DB-IP's databases may not be copied into this repository, so the example
brings its own: a MaxMind DB file in the GeoIP2-City layout whose networks sit in
127.0.0.0/8 (loopback: ``dig -b 127.10.0.5`` plays a client in Germany on any Linux
machine) and in documentation ranges (for ECS). Run it again after changing NETWORKS:

    python policies/geo-split/make_geo_db.py      (needs mmdb-writer: pip install mmdb-writer)

Serving real traffic, point ``server.geoip.city`` at GeoLite2-City.mmdb (or DB-IP's
dbip-city-lite.mmdb) instead.
"""

from __future__ import annotations

from pathlib import Path

from dnspol.testing.geoip import place, write_mmdb

DATABASE = Path(__file__).resolve().parent / "geo" / "example-city.mmdb"
NETWORKS = {
    "127.10.0.0/24": place("DE", "EU", "BE", "Berlin", 2950159),  # in the EU
    "127.10.1.0/24": place("CH", "EU", "ZH", "Zurich", 2657896),  # in Europe, not in the EU
    "127.10.2.0/25": place("FR", "EU", "IDF", "Paris", 2988507),
    "127.20.0.0/16": place("US", "NA", "CA", "San Jose", 5392171),
    "127.21.0.0/20": place("BR", "SA", "SP", "São Paulo", 3448439),
    "127.30.0.0/22": place("JP", "AS", "13", "Tokyo", 1850147),
    "198.51.100.0/24": place("FR", "EU"),  # ECS examples: a French /24 ...
    "203.0.113.0/26": place("NO", "EU"),  # ... and a Norwegian /26 (Europe, not the EU)
    "2001:db8:e0::/48": place("DE", "EU"),
}


def main() -> None:
    DATABASE.parent.mkdir(exist_ok=True)
    write_mmdb(DATABASE, NETWORKS, database_type="GeoIP2-City")
    print(f"wrote {DATABASE}")


if __name__ == "__main__":
    main()
