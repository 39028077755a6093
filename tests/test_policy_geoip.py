"""GeoIP criteria: MaxMind DB files walked once at load into the prefix sets ``client:`` uses.

The databases are written by the tests (``dnspol.testing.geoip``, mmdb-writer) with networks of
known prefix lengths, so each expected ECS SCOPE is the length of a network written here.
"""

from __future__ import annotations

import ipaddress
import os
import random
import textwrap
from pathlib import Path

import pytest

from dnspol.config import check_config, load_config
from dnspol.names import from_text
from dnspol.policy import Decider, Policy, QueryFacts
from dnspol.policy.geoip import DatabaseError, GeoIn, _Opened, parse_term, record_terms
from dnspol.testing.geoip import network_of, place, write_mmdb

DATA = Path(__file__).parent / "data" / "policy"
MUNICH, PARIS = 2867714, 2988507
CITY_NETWORKS = {
    "127.1.0.0/24": place("DE", "EU", "BY", "Munich", MUNICH),
    "127.1.1.0/25": place("FR", "EU", "IDF", "Paris", PARIS),  # 127.1.1.128/25: no record
    "127.1.2.0/23": place("GB", "EU", "ENG", "London"),
    "127.2.0.0/16": place("US", "NA", "CA", "San Jose"),
    "198.51.100.0/22": place("JP", "AS"),
    "198.51.101.0/24": place("KR", "AS"),  # cuts the /22 into a /24, this /24 and a /23
    "2001:db8:1::/48": place("DE", "EU"),
    "2001:db8:2::/47": place("US", "NA"),
}
ASN_NETWORKS = {
    "127.1.0.0/20": network_of(64500, "Example Carrier"),
    "127.2.0.0/17": network_of(64501),
}
# every network of CITY_NETWORKS as the walk must find it: (network, country)
WALKED = {
    ("127.1.0.0/24", "DE"),
    ("127.1.1.0/25", "FR"),
    ("127.1.2.0/23", "GB"),
    ("127.2.0.0/16", "US"),
    ("198.51.100.0/24", "JP"),
    ("198.51.101.0/24", "KR"),
    ("198.51.102.0/23", "JP"),
    ("2001:db8:1::/48", "DE"),
    ("2001:db8:2::/47", "US"),
}
RULES = """
server:
  trusted_resolvers: [127.0.0.1/32]
  geoip:
    city: geo/city.mmdb
    asn: geo/asn.mmdb
regions:
  dach: {country: [DE, AT, CH]}
  western-europe: {region: dach, country: [FR, GB]}
rules:
  - name: munich
    zone: example.com
    match: {qname: city.example.com, city: munich}
    answer: dr
  - name: paris-by-id
    zone: example.com
    match: {qname: city.example.com, city: PARIS_ID}
    answer: internal
  - name: bavaria
    zone: example.com
    match: {qname: sub.example.com, subdivision: de-by}
    answer: dr
  - name: carrier
    zone: example.com
    match: {qname: asn.example.com, asn: AS64500}
    answer: dr
  - name: germany
    zone: example.com
    match: {qname: www.example.com, country: de}
    answer: dr
  - name: west
    zone: example.com
    match: {qname: www.example.com, region: western-europe}
    answer: internal
  - name: not-europe
    zone: example.com
    match: {qname: eu.example.com, not: {continent: EU}}
    answer: dr
""".replace("PARIS_ID", str(PARIS))
ZONES = f"""
zones:
  example.com:
    file: {DATA}/example.com.zone
    scopes:
      internal: {{overlay: {DATA}/example.com.internal.zone}}
      dr: {DATA}/example.com.dr.zone
"""


def make_config(tmp_path: Path, rules: str = RULES, *, city: bool = True, asn: bool = True) -> Path:
    (tmp_path / "geo").mkdir(exist_ok=True)
    if city:
        write_mmdb(tmp_path / "geo" / "city.mmdb", CITY_NETWORKS)
    if asn:
        write_mmdb(tmp_path / "geo" / "asn.mmdb", ASN_NETWORKS, database_type="GeoLite2-ASN")
    path = tmp_path / "dnspol.yaml"
    path.write_text(textwrap.dedent(rules) + textwrap.dedent(ZONES))
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    return load_config(make_config(tmp_path_factory.mktemp("geoip"))).policy


def facts(qname: str, client: str, ecs: str | None = None) -> QueryFacts:
    return QueryFacts(
        client=ipaddress.ip_address(client),
        ecs=ipaddress.ip_network(ecs) if ecs else None,
        server=ipaddress.ip_address("127.0.0.1"),
        transport="udp",
        qname=from_text(qname),
        qtype=1,
        zone=from_text("example.com"),
        now=0.0,
    )


def ask(policy: Policy, qname: str, client: str, ecs: str | None = None):
    return policy.evaluate(facts(qname, client, ecs), random.Random(0))


# --- the walk ---------------------------------------------------------------------------------


def test_the_walk_finds_every_network_at_its_own_length(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "city.mmdb", CITY_NETWORKS)
    opened = _Opened(path)
    try:
        found = set()
        for value, bits, length, _ in opened.networks():
            network = ipaddress.ip_network((value, length))
            assert network.max_prefixlen == bits
            found.add((str(network), opened.record(value, bits)["country"]["iso_code"]))
    finally:
        opened.close()
    assert found == WALKED


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_every_record_size_is_walked(tmp_path: Path, monkeypatch, record_size: int) -> None:
    """mmdb-writer picks the smallest size that fits; big databases use 28 or 32 bits."""
    import maxminddb
    import mmdb_writer

    picked = mmdb_writer.TreeWriter._adjust_record_size

    def forced(self) -> None:  # noqa: ANN001 - mmdb-writer's TreeWriter
        picked(self)
        self.record_size = record_size
        self.data_offset = record_size * 2 / 8 * self._node_counter

    monkeypatch.setattr(mmdb_writer.TreeWriter, "_adjust_record_size", forced)
    path = write_mmdb(tmp_path / "city.mmdb", CITY_NETWORKS)
    opened = _Opened(path)
    try:
        assert opened.record_size == record_size
        found = {
            (
                str(ipaddress.ip_network((value, length))),
                opened.record(value, bits)["country"]["iso_code"],
            )
            for value, bits, length, _ in opened.networks()
        }
    finally:
        opened.close()
    assert found == WALKED
    with maxminddb.open_database(path) as reader:  # the writer wrote what it meant to
        record, length = reader.get_with_prefix_len("198.51.102.7")
        assert (record["country"]["iso_code"], length) == ("JP", 23)


def test_aliases_of_the_ipv4_subtree_are_walked_once(tmp_path: Path) -> None:
    """MaxMind's IPv6 databases point ::ffff:0:0/96 (and 2002::/16) at the IPv4 subtree;
    its networks are IPv4 networks, found once, at ::/96."""
    import maxminddb

    alias = ipaddress.IPv6Network("::ffff:0:0/96")
    networks = {**CITY_NETWORKS, str(alias): place("ZZ", "AN")}  # a slot to point elsewhere
    path = write_mmdb(tmp_path / "city.mmdb", networks)
    data = bytearray(Path(path).read_bytes())
    opened = _Opened(path)
    assert opened.record_size == 24

    def read(node: int) -> tuple[int, int]:  # two 24-bit records a node
        return (
            int.from_bytes(data[node * 6 : node * 6 + 3], "big"),
            int.from_bytes(data[node * 6 + 3 : node * 6 + 6], "big"),
        )

    ipv4_start = opened._ipv4_start(lambda tree, node: read(node))
    opened.close()
    node = 0
    for depth in range(95):
        node = read(node)[(int(alias.network_address) >> (127 - depth)) & 1]
    last = (int(alias.network_address) >> 32) & 1  # the 96th bit
    slot = node * 6 + 3 * last
    data[slot : slot + 3] = ipv4_start.to_bytes(3, "big")  # ::ffff:0:0/96 -> IPv4
    Path(path).write_bytes(bytes(data))
    with maxminddb.open_database(path) as reader:
        assert reader.get("::ffff:127.1.0.9")["country"]["iso_code"] == "DE"  # an alias
    opened = _Opened(path)
    try:
        found = [
            (str(ipaddress.ip_network((value, length))), opened.record(value, bits))
            for value, bits, length, _ in opened.networks()
        ]
    finally:
        opened.close()
    assert sorted((net, rec["country"]["iso_code"]) for net, rec in found) == sorted(WALKED)


def test_a_search_tree_with_a_loop_is_refused_not_walked_forever(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "city.mmdb", CITY_NETWORKS)
    data = bytearray(Path(path).read_bytes())
    data[3:6] = (0).to_bytes(3, "big")  # the root's right child: the root again
    Path(path).write_bytes(bytes(data))
    opened = _Opened(path)
    try:
        with pytest.raises(DatabaseError, match="not a tree"):
            list(opened.networks())
    finally:
        opened.close()


def test_a_truncated_database_is_refused(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "city.mmdb", CITY_NETWORKS)
    data = Path(path).read_bytes()
    metadata = data.rindex(b"\xab\xcd\xefMaxMind.com")
    Path(path).write_bytes(data[:100] + data[metadata:])  # the metadata, not the tree
    with pytest.raises(DatabaseError):
        _Opened(path)


def test_an_ipv4_only_database_is_walked_too(tmp_path: Path) -> None:
    networks = {k: v for k, v in CITY_NETWORKS.items() if ":" not in k}
    path = write_mmdb(tmp_path / "v4.mmdb", networks, ip_version=4)
    opened = _Opened(path)
    try:
        found = {str(ipaddress.ip_network((v, n))) for v, _, n, _ in opened.networks()}
    finally:
        opened.close()
    assert found == {network for network, _ in WALKED if ":" not in network}


# --- decisions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "qname, client, scope, rule",
    [
        ("www.example.com", "127.1.0.9", "dr", "germany"),
        ("www.example.com", "127.1.1.9", "internal", "west"),  # FR, in the region
        ("www.example.com", "127.1.3.200", "internal", "west"),  # GB
        ("www.example.com", "127.1.1.200", "default", None),  # no record for this /25
        ("www.example.com", "127.2.3.4", "default", None),  # US
        ("city.example.com", "127.1.0.1", "dr", "munich"),  # by name, any case
        ("city.example.com", "127.1.1.1", "internal", "paris-by-id"),  # by GeoNames id
        ("sub.example.com", "127.1.0.1", "dr", "bavaria"),
        ("sub.example.com", "127.2.0.1", "default", None),  # US-CA
        ("asn.example.com", "127.1.15.255", "dr", "carrier"),  # the ASN database's /20
        ("asn.example.com", "127.1.16.0", "default", None),
        ("eu.example.com", "127.2.0.1", "dr", "not-europe"),
        ("eu.example.com", "127.1.2.1", "default", None),
    ],
)
def test_geoip_rules_decide_by_the_client_address(policy, qname, client, scope, rule) -> None:
    decision = ask(policy, qname, client)
    assert (decision.scope, decision.rule) == (scope, rule)


@pytest.mark.parametrize(
    "qname, ecs, scope, ecs_scope",
    [
        # the SCOPE is the length of the database network that matched
        ("www.example.com", "127.1.0.0/24", "dr", 24),
        ("www.example.com", "127.1.0.77/32", "dr", 24),
        ("www.example.com", "127.1.1.0/28", "internal", 25),  # FR's /25 (region west)
        ("www.example.com", "127.1.2.0/24", "internal", 23),  # GB's /23
        ("www.example.com", "127.1.0.0/16", "dr", 16),  # clamped to SOURCE
        ("asn.example.com", "127.1.5.0/24", "dr", 20),  # the ASN database's /20
        ("www.example.com", "2001:db8:1:ff00::/56", "dr", 48),
        # outside every network a rule names: kept apart from the nearest one
        ("city.example.com", "127.2.0.0/24", "default", 15),  # 127.0.0.0/15 holds Munich
    ],
)
def test_the_ecs_scope_is_the_prefix_length_of_the_matched_network(
    policy, qname, ecs, scope, ecs_scope
) -> None:
    decision = ask(policy, qname, "127.0.0.1", ecs)
    assert (decision.scope, decision.ecs_scope) == (scope, ecs_scope)


def test_ecs_from_an_untrusted_resolver_is_not_geolocated(policy) -> None:
    decision = ask(policy, "www.example.com", "127.0.0.2", "127.1.0.0/24")
    assert decision.scope == "default"  # 127.0.0.2 has no record: ECS ignored


def test_jp_networks_cut_by_kr_keep_their_own_lengths(tmp_path: Path) -> None:
    rules = RULES.replace("country: de}", "country: jp}")
    policy = load_config(make_config(tmp_path, rules)).policy
    assert ask(policy, "www.example.com", "127.0.0.1", "198.51.102.0/24").ecs_scope == 23
    assert ask(policy, "www.example.com", "127.0.0.1", "198.51.100.0/24").ecs_scope == 24
    kr = ask(policy, "www.example.com", "127.0.0.1", "198.51.101.0/24")
    assert (kr.scope, kr.ecs_scope) == ("default", 24)


def ecs_option(network: str) -> bytes:
    net = ipaddress.ip_network(network)
    family = 1 if net.version == 4 else 2
    address = net.network_address.packed[: (net.prefixlen + 7) // 8]
    return family.to_bytes(2, "big") + bytes((net.prefixlen, 0)) + address


def test_the_decider_decides_as_the_reference_does(policy) -> None:
    decider = Decider.build(policy)
    names = ["www.example.com", "city.example.com", "sub.example.com", "asn.example.com"]
    names.append("eu.example.com")
    clients = ["127.1.0.9", "127.1.1.9", "127.1.1.200", "127.1.3.1", "127.2.9.9", "127.9.0.1"]
    networks = ["127.1.0.0/24", "127.1.1.0/28", "127.1.0.0/16", "2001:db8:1::/56", "10.0.0.0/8"]
    for qname in names:
        for client in clients:
            for ecs in (None, *networks):
                source = "127.0.0.1" if ecs else client
                expected = ask(policy, qname, source, ecs)
                decided = decider.decide(
                    source,
                    ecs_option(ecs) if ecs else None,
                    ipaddress.ip_address("127.0.0.1"),
                    "udp",
                    from_text(qname),
                    1,
                    from_text("example.com"),
                    0.0,
                    random.Random(0),
                )
                assert decided == expected, (qname, client, ecs)


def test_a_compiled_geoip_criterion_is_a_client_criterion(policy) -> None:
    germany = next(rule for rule in policy.rules if rule.name == "germany")
    leaf = next(c for c in germany.criteria.children if isinstance(c, GeoIn))
    assert leaf.subject == "client"
    assert sorted(str(prefix) for prefix in leaf.prefixes) == ["127.1.0.0/24", "2001:db8:1::/48"]


# --- explain ----------------------------------------------------------------------------------


def test_explain_shows_the_record_that_matched_and_the_one_that_did_not(policy) -> None:
    explanation = policy.explain(facts("www.example.com", "127.1.1.9"), random.Random(0))
    traces = {trace.name: trace for trace in explanation.rules}
    germany = " ".join(traces["germany"].reasons)
    assert "client 127.1.1.9 is not in country DE" in germany
    assert "city.mmdb network 127.1.1.0/25: continent EU, country FR" in germany
    west = " ".join(traces["west"].reasons)
    assert "client matched country FR" in west
    assert "network 127.1.1.0/25" in west and "city Paris (2988507)" in west


# --- problems -------------------------------------------------------------------------------


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_missing_database_is_reported_at_each_rule_that_needs_it(tmp_path: Path) -> None:
    path = make_config(tmp_path, asn=False)
    problems = check_config(path)
    line = line_of(path, "asn: AS64500")
    assert problems == [
        f"{path}:{line}: rule 'carrier': AS64500 needs the GeoIP database {tmp_path}/geo/asn.mmdb "
        f"(server.geoip.asn, {path}:{line_of(path, 'asn: geo/asn.mmdb')}): no such file"
    ]


def test_an_unreadable_database_is_reported(tmp_path: Path) -> None:
    path = make_config(tmp_path)
    (tmp_path / "geo" / "city.mmdb").write_bytes(b"not a database" * 100)
    problems = check_config(path)
    problems = [p for p in problems if not p.startswith("warning: ")]
    assert problems and all(p.endswith(": not a readable MaxMind DB file") for p in problems)
    lines = {int(p.split(":")[1]) for p in problems}
    assert line_of(path, "country: de}") in lines and line_of(path, "city: munich") in lines


def test_a_configured_database_no_rule_reads_is_checked_too(tmp_path: Path) -> None:
    path = make_config(tmp_path, RULES.split("rules:")[0] + "rules: []\n", asn=False)
    assert check_config(path) == [
        f"{path}:{line_of(path, 'asn: geo/asn.mmdb')}: GeoIP database "
        f"{tmp_path}/geo/asn.mmdb: no such file"
    ]


def test_a_rule_needing_an_unconfigured_database_says_which_to_set(tmp_path: Path) -> None:
    rules = RULES.replace("    asn: geo/asn.mmdb\n", "")
    path = make_config(tmp_path, rules)
    assert check_config(path) == [
        f"{path}:{line_of(path, 'asn: AS64500')}: rule 'carrier': asn needs a GeoIP database: set "
        "server.geoip.asn to a MaxMind DB file"
    ]


@pytest.mark.parametrize(
    "match, message",
    [
        ("{country: Germany}", "country 'Germany' is not an ISO 3166-1 code"),
        ("{continent: XX}", "continent 'XX' is not one of AF, AN, AS, EU, NA, OC, SA"),
        ("{subdivision: BY}", "subdivision 'BY' is not an ISO 3166-2 code"),
        ("{asn: ASX}", "asn 'ASX' is not an AS number"),
        ("{region: dahc}", "unknown region 'dahc' (did you mean 'dach'?)"),
    ],
)
def test_bad_values_are_reported_at_their_line(tmp_path: Path, match: str, message: str) -> None:
    rules = RULES.replace("{qname: www.example.com, country: de}", match)
    path = make_config(tmp_path, rules)
    problems = check_config(path)
    assert len(problems) == 1 and message in problems[0], problems
    assert problems[0].startswith(f"{path}:{line_of(path, match)}: ")


def test_a_value_no_network_has_is_a_warning(tmp_path: Path) -> None:
    rules = RULES.replace("country: de}", "country: uk}")  # the ISO code is GB
    path = make_config(tmp_path, rules)
    assert check_config(path) == [
        f"warning: {path}:{line_of(path, 'country: uk}')}: no network of "
        f"{tmp_path}/geo/city.mmdb has country UK, so it matches no client"
    ]


def test_regions_that_name_each_other_in_a_loop_are_reported(tmp_path: Path) -> None:
    rules = RULES.replace("dach: {country: [DE, AT, CH]}", "dach: {region: western-europe}")
    problems = check_config(make_config(tmp_path, rules))
    assert any("regions name each other in a loop" in p for p in problems), problems


RECORDS = [
    # GeoLite2-City
    (
        {
            "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
            "country": {"iso_code": "DE", "geoname_id": 2921044, "is_in_european_union": True},
            "subdivisions": [{"iso_code": "BY", "names": {"en": "Bavaria"}}],
            "city": {"geoname_id": 2867714, "names": {"en": "Munich", "de": "München"}},
        },
        {
            ("continent", "EU"),
            ("country", "DE"),
            ("subdivision", "DE-BY"),
            ("city", 2867714),
            ("city", "munich"),
        },
    ),
    # DB-IP's dbip-city-lite: no subdivision codes, no GeoNames ids
    (
        {
            "continent": {"code": "EU", "names": {"en": "Europe"}},
            "country": {"iso_code": "FR", "is_in_european_union": True},
            "subdivisions": [{"names": {"en": "Île-de-France"}}],
            "city": {"names": {"en": "Paris"}},
        },
        {("continent", "EU"), ("country", "FR"), ("city", "paris")},
    ),
    # GeoLite2-ASN and dbip-asn-lite
    (
        {"autonomous_system_number": 3320, "autonomous_system_organization": "DTAG"},
        {("asn", 3320)},
    ),
    # GeoLite2-Country: an anonymous proxy has a registered country only
    ({"registered_country": {"iso_code": "US"}, "traits": {}}, set()),
    ("not a map", set()),
]


@pytest.mark.parametrize("record, terms", RECORDS)
def test_record_terms_read_maxmind_and_dbip_layouts(record, terms) -> None:
    assert record_terms(record) == terms


def test_parse_term_normalises() -> None:
    assert parse_term("country", "de") == ("country", "DE")
    assert parse_term("asn", "as3320") == ("asn", 3320)
    assert parse_term("city", "São Paulo") == ("city", "são paulo")
    assert parse_term("city", "2950159") == ("city", 2950159)
    assert parse_term("subdivision", "us-ca") == ("subdivision", "US-CA")


def test_a_database_is_a_watched_file(tmp_path: Path) -> None:
    from dnspol.server import FileWatch

    config = load_config(make_config(tmp_path))
    assert str(tmp_path / "geo" / "city.mmdb") in config.files
    assert str(tmp_path / "geo" / "asn.mmdb") in config.files
    watch = FileWatch(config.files, read_since_ns=2**63)  # every file as read by the load
    assert not watch.changed(config.files)
    write_mmdb(tmp_path / "geo" / "asn.new", {"127.9.0.0/16": network_of(64999)})
    os.replace(tmp_path / "geo" / "asn.new", tmp_path / "geo" / "asn.mmdb")  # geoipupdate
    assert watch.changed(config.files)  # the server reloads
    reloaded = load_config(tmp_path / "dnspol.yaml").policy
    assert ask(reloaded, "asn.example.com", "127.1.5.5").scope == "default"  # AS64500 gone
