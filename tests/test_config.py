"""load_config / check_config: settings, zones and scopes, problems with exact lines, examples."""

from __future__ import annotations

import ipaddress
import random
import textwrap
import time
from pathlib import Path

import pytest

from dnspol.config import (
    Config,
    check_config,
    config_from_zone_files,
    load_config,
    parse_listen,
)
from dnspol.errors import ConfigError
from dnspol.names import from_text
from dnspol.policy import Action, QueryFacts

DATA = (Path(__file__).parent / "data" / "policy").resolve()
POLICIES = Path(__file__).parent.parent / "policies"
EXAMPLES = [
    POLICIES / "dnspol.yaml",
    POLICIES / "split-horizon" / "dnspol.yaml",
    POLICIES / "failover" / "dnspol.yaml",
    POLICIES / "weighted" / "dnspol.yaml",
    POLICIES / "health-failover" / "dnspol.yaml",
]
ZONES = f"""\
zones:
  example.com:
    file: {DATA}/example.com.zone
    scopes:
      internal: {{overlay: {DATA}/example.com.internal.zone}}
      dr: {DATA}/example.com.dr.zone
"""


def write(tmp_path: Path, text: str, name: str = "dnspol.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, textwrap.dedent(text))
    return [problem.replace(f"{tmp_path}/", "") for problem in check_config(path)]


# --- examples --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(POLICIES)))
def test_examples_load_without_problems_or_warnings(path: Path) -> None:
    assert check_config(path) == []
    config = load_config(path)
    assert config.policy.has_rules
    assert str(path) in config.files


def test_bundled_example_listens_on_5353() -> None:
    config = load_config(POLICIES / "dnspol.yaml")
    assert config.listen == (("127.0.0.1", 5353),)
    assert config.chaos == {"version.bind": "dnspol"}


# --- settings ---------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONES))
    assert config.listen == (("127.0.0.1", 5353),)
    assert config.udp_max_payload == 1232
    assert config.seed is None
    assert dict(config.chaos) == {}
    assert config.timezone == "UTC"
    assert not config.policy.has_rules
    assert config.path == str(tmp_path / "dnspol.yaml")


def test_server_settings(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            textwrap.dedent(
                """\
            server:
              listen: ["127.0.0.1:5300", "[::1]:5300"]
              udp_max_payload: 1400
              trusted_resolvers: [10.0.0.0/8, "2001:db8::53"]
              trusted_proxies: [127.0.0.1]
              seed: 42
              chaos: {Version.Bind.: "dnspol test", hostname.bind: ns1}
              timezone: Europe/Berlin
              tcp_idle_timeout: 2.5
              tcp_max_connections: 10
              cache_entries: 500
              metrics: "127.0.0.1:9153"
            """
            )
            + ZONES,
        )
    )
    assert config.listen == (("127.0.0.1", 5300), ("::1", 5300))
    assert config.udp_max_payload == 1400
    assert config.seed == 42
    assert dict(config.chaos) == {"version.bind": "dnspol test", "hostname.bind": "ns1"}
    assert config.timezone == "Europe/Berlin"
    assert config.tcp_idle_timeout == 2.5 and config.tcp_max_connections == 10
    assert not hasattr(config, "cache_entries")
    assert any("server.cache_entries has no effect" in w for w in config.warnings)
    assert config.metrics == ("127.0.0.1", 9153)
    assert config.policy.is_trusted_resolver(ipaddress.ip_address("10.2.3.4"))
    assert config.trusted_proxies.contains_address(ipaddress.ip_address("127.0.0.1"))


# --- limits on what a load reads (configuration bombs) ---------------------------------------


def test_limit_settings_and_their_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ZONES)).reload_timeout == 600.0
    limits = "server: {reload_timeout: 2.5, generate_max_records: 10, zone_max_records: 9}\n"
    assert load_config(write(tmp_path, limits + ZONES)).reload_timeout == 2.5
    problems = problems_of(tmp_path, "server: {reload_timeout: 0, zone_max_bytes: -1}\n" + ZONES)
    assert problems == [
        "dnspol.yaml:1: zone_max_bytes must be between 1 and 1099511627776, not -1",
        "dnspol.yaml:1: reload_timeout must be between 1 and 86400, not 0",
    ]


def test_zone_limits_apply_to_the_zone_files(tmp_path: Path) -> None:
    size = (DATA / "example.com.zone").stat().st_size
    problems = problems_of(tmp_path, "server: {zone_max_bytes: 100}\n" + ZONES)
    assert f"{DATA}/example.com.zone:1: the file is {size:,} bytes, above the limit of 100 " \
        "(server: zone_max_bytes)" in problems  # fmt: skip
    problems = problems_of(tmp_path, "server: {zone_max_records: 5}\n" + ZONES)
    assert any("more than 5 records in the zone (server: zone_max_records)" in p for p in problems)


def test_an_oversized_rule_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "rules: []\n" + "# padding\n" * 100, "big.yaml")
    problems = problems_of(
        tmp_path, "server: {rule_file_max_bytes: 100}\nrules:\n  - include: big.yaml\n" + ZONES
    )
    assert problems == [
        "big.yaml:1: the file is 1,010 bytes, above the limit of 100 (server: rule_file_max_bytes)"
    ]


def test_an_alias_bomb_in_the_config_is_one_problem(tmp_path: Path) -> None:
    levels = "".join(f"x{n + 1}: &x{n + 1} [{', '.join([f'*x{n}'] * 9)}]\n" for n in range(9))
    started = time.monotonic()
    problems = problems_of(tmp_path, "x0: &x0 [lol, lol, lol, lol]\n" + levels + ZONES)
    assert time.monotonic() - started < 2.0
    assert problems == [
        "dnspol.yaml:6: aliases expand to more than 100,000 values; write the values out"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:53", ("127.0.0.1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "::1:53", "localhost:53", "[::1]", "1.2.3.4:70000"])
def test_parse_listen_errors(text: str) -> None:
    with pytest.raises(ValueError, match="must be ADDRESS:PORT"):
        parse_listen(text)


# --- zones and scopes ---------------------------------------------------------------------------


def rrset(config: Config, scope: str, name: str, rtype: str):
    from dnslib import QTYPE

    zone = config.variants[(from_text("example.com"), scope)]
    node = zone.node(from_text(name))
    return None if node is None else node.get(getattr(QTYPE, rtype))


def test_zones_and_scopes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONES))
    origin = from_text("example.com")
    assert config.zones.get(origin) is config.variants[(origin, "default")]
    assert {scope for (_, scope) in config.variants} == {"default", "internal", "dr"}
    assert config.variants[(origin, "dr")].scope == "dr"
    assert str(rrset(config, "dr", "www.example.com", "A").rdatas[0]) == "198.51.100.10"
    assert rrset(config, "dr", "mail.example.com", "A") is None  # a whole file, not an overlay
    for path in ("example.com.zone", "example.com.internal.zone", "example.com.dr.zone"):
        assert f"{DATA}/{path}" in config.files


def test_overlay_replaces_rrsets_and_keeps_the_rest(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONES))
    internal = config.variants[(from_text("example.com"), "internal")]
    assert internal.scope == "internal"
    assert str(rrset(config, "internal", "www.example.com", "A").rdatas[0]) == "10.0.0.10"
    assert rrset(config, "internal", "www.example.com", "AAAA") is not None  # kept
    assert str(rrset(config, "internal", "mail.example.com", "A").rdatas[0]) == "192.0.2.25"
    assert rrset(config, "internal", "intra.example.com", "A") is not None  # added
    # alias was a CNAME in the default; an A in the overlay replaces it
    assert rrset(config, "internal", "alias.example.com", "CNAME") is None
    assert rrset(config, "internal", "alias.example.com", "A") is not None
    assert internal.soa.rdatas[0] == config.zones.get(from_text("example.com")).soa.rdatas[0]
    assert from_text("intra.example.com") in internal.existing


def test_digest_follows_file_contents(tmp_path: Path) -> None:
    zone = tmp_path / "example.com.zone"
    zone.write_text((DATA / "example.com.zone").read_text())
    path = write(tmp_path, "zones: {example.com: example.com.zone}\n")
    first = load_config(path)
    assert load_config(path).digest == first.digest
    zone.write_text(zone.read_text() + "new IN A 192.0.2.99\n")
    assert load_config(path).digest != first.digest
    assert first.files == (str(path), str(zone))


def test_config_from_zone_files() -> None:
    config = config_from_zone_files(
        [DATA / "example.com.zone", DATA / "example.org.zone"],
        listen=["127.0.0.1:5400"],
        udp_max_payload=1400,
        seed=3,
        trusted_resolvers=["127.0.0.0/8"],
        chaos={"version.bind": "x"},
    )
    assert config.path is None
    assert config.listen == (("127.0.0.1", 5400),)
    assert (config.udp_max_payload, config.seed) == (1400, 3)
    assert len(config.zones) == 2
    assert not config.policy.has_rules
    assert config.policy.is_trusted_resolver(ipaddress.ip_address("127.0.0.9"))
    assert set(config.variants) == {
        (from_text("example.com"), "default"),
        (from_text("example.org"), "default"),
    }


def test_config_from_zone_files_reports_every_problem(tmp_path: Path) -> None:
    bad = write(tmp_path, "$ORIGIN bad.test.\n@ IN A 192.0.2.1\n", "bad.test.zone")
    with pytest.raises(ConfigError) as error:
        config_from_zone_files(
            [DATA / "example.com.zone", DATA / "example.com.zone", bad], colour=1
        )
    text = "\n".join(error.value.problems)
    assert (
        "already served" in text and "bad.test.zone" in text and "unknown setting 'colour'" in text
    )


# --- problems, with exact lines -------------------------------------------------------------------


PROBLEMS = [
    (
        """\
        rule: []
        """,
        ["dnspol.yaml:1: unknown key 'rule' in the config file (did you mean 'rules'?)"],
    ),
    (
        """\
        server:
          udp_max_payload: big
          listen: [127.0.0.1]
          timezone: Europe/Berln
          seed: "7"
        """,
        [
            "dnspol.yaml:2: udp_max_payload must be a whole number, not 'big'",
            "dnspol.yaml:3: listen address '127.0.0.1' must be ADDRESS:PORT, e.g. 127.0.0.1:5353"
            " or [::1]:5353",
            "dnspol.yaml:4: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)",
            "dnspol.yaml:5: seed must be a whole number, not '7'",
        ],
    ),
    (
        """\
        server: {udp_max_payload: 100}
        """,
        ["dnspol.yaml:1: udp_max_payload must be between 512 and 65535, not 100"],
    ),
    (
        """\
        subnets:
          corp:
            - 10.1.0.0/8
            - lab2
          "1bad": [10.0.0.0/8]
        """,
        [
            "dnspol.yaml:3: '10.1.0.0/8' has host bits set; the network is 10.0.0.0/8",
            "dnspol.yaml:4: unknown subnet 'lab2'",
            "dnspol.yaml:5: subnet name '1bad' must start with a letter (letters, digits, _ . -"
            " after that)",
        ],
    ),
    (
        """\
        subnets:
          a: [b]
          b: [a]
        """,
        [
            "dnspol.yaml:3: subnets name each other in a loop: a → b → a",
        ],
    ),
    (
        """\
        rules:
          - name: a
            match:
              clinet: corp
            answer: interal
          - name: a
            zone: example.co
            action: refuse
        """,
        [
            "dnspol.yaml:4: unknown key 'clinet' in match (did you mean 'client'?)",
            "dnspol.yaml:5: no zone has a scope 'interal' (did you mean 'internal'?)",
            "dnspol.yaml:6: duplicate rule name 'a' (first at dnspol.yaml:2)",
            "dnspol.yaml:7: zone 'example.co' is not served (did you mean 'example.com'?)",
        ],
    ),
    (
        """\
        rules:
          - name: z
            zone: example.com
            answer: dr2
        """,
        [
            "dnspol.yaml:4: zone example.com. has no scope 'dr2' (scopes: default, dr, "
            "internal) (did you mean 'dr'?)"
        ],
    ),
    (
        """\
        rules:
          - name: w
            answer:
              weighted:
                default: 0
                internal: -1
                dr: lots
        """,
        [
            "dnspol.yaml:5: weight of 'default' must be above 0, not 0",
            "dnspol.yaml:6: weight of 'internal' must be above 0, not -1",
            "dnspol.yaml:7: weight of 'dr' must be a number, not 'lots'",
        ],
    ),
    (
        """\
        rules:
          - name: w
            answer: {weighted: {}}
        """,
        ["dnspol.yaml:3: weighted needs at least one scope: weight"],
    ),
    (
        """\
        rules:
          - name: t
            match:
              time: {between: "25:00-26:00", tz: Mars/Base, days: [tues], dates: "2026-13-01"}
              qtype: AAA
              qname: "a..b"
              client: [192.0.2.1/24]
              transport: quic
            action: drop
        """,
        [
            "dnspol.yaml:4: '25:00' is not a time of day (00:00 to 23:59, or 24:00 as an end)",
            "dnspol.yaml:4: 'tues' is not a day; use mon, tue, wed, thu, fri, sat, sun, ranges "
            "like mon-fri, or weekdays / weekend",
            "dnspol.yaml:4: '2026-13-01' is not a date or date range (YYYY-MM-DD or "
            "YYYY-MM-DD..YYYY-MM-DD)",
            "dnspol.yaml:4: unknown time zone 'Mars/Base' (use an IANA name such as Europe/Berlin)",
            "dnspol.yaml:5: unknown qtype 'AAA' (did you mean 'AAAA'?)",
            "dnspol.yaml:6: qname 'a..b' is not a name; write www.example.com (exactly), "
            "*.example.com (strictly below) or .example.com (the name and below)",
            "dnspol.yaml:7: '192.0.2.1/24' has host bits set; the network is 192.0.2.0/24",
            "dnspol.yaml:8: transport 'quic' is not one of udp, tcp",
        ],
    ),
    (
        """\
        rules:
          - name: t
            match: {time: {between: "03:00-03:00"}}
            action: drop
          - name: u
            match: {time: {tz: UTC}}
            action: drop
        """,
        [
            "dnspol.yaml:3: time window '03:00-03:00' starts where it ends; write 00:00-24:00 "
            "for the whole day",
            "dnspol.yaml:6: a time window needs 'between', 'days' and/or 'dates'",
        ],
    ),
    (
        """\
        rules:
          - match: {}
            answer: default
            action: drop
          - name: "bad name!"
            action: refuse
          - name: x
          - name: y
            action: answer
          - name: z
            enabled: maybe
            action: drop
        """,
        [
            "dnspol.yaml:2: a rule needs 'name'",
            "dnspol.yaml:2: a rule needs exactly one of 'answer: <scope>' or 'action: "
            "refuse|drop|nxdomain'",
            "dnspol.yaml:5: rule name 'bad name!' must be 1-63 letters, digits, '_', '.' or '-'",
            "dnspol.yaml:7: a rule needs exactly one of 'answer: <scope>' or 'action: "
            "refuse|drop|nxdomain'",
            "dnspol.yaml:9: write 'answer: <scope>' instead of 'action: answer'",
            "dnspol.yaml:11: enabled must be true or false, not 'maybe'",
        ],
    ),
    (
        """\
        rules:
          - name: a
            match: {any: [], not: [1], all: {qtype: A}}
            action: drop
        """,
        [
            "dnspol.yaml:3: any needs at least one match",
            "dnspol.yaml:3: match must be a mapping (key: value), not a list",
            "dnspol.yaml:3: all must be a list, not a mapping",
        ],
    ),
    (
        """\
        rules:
          - name: a
            action: drop
            name: b
        """,
        ["dnspol.yaml:4: duplicate key 'name' (first written at line 2)"],
    ),
    (
        """\
        rules:
          - name: a
            action: [drop
        """,
        ["dnspol.yaml:4: YAML syntax error: expected ',' or ']', but got ':'"],
    ),
    (
        """\
        rules:
          - include: nothing/*.yaml
        """,
        ["dnspol.yaml:2: include 'nothing/*.yaml' matches no file"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), PROBLEMS)
def test_problems_name_file_and_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems_of(tmp_path, textwrap.dedent(text) + ZONES) == expected


def test_weighted_needs_a_zone_with_every_scope(tmp_path: Path) -> None:
    write(tmp_path, "$ORIGIN example.org.\n$TTL 60\nwww IN A 192.0.2.7\n", "org-blue.zone")
    problems = problems_of(
        tmp_path,
        f"""\
        zones:
          example.com:
            file: {DATA}/example.com.zone
            scopes: {{dr: {DATA}/example.com.dr.zone}}
          example.org:
            file: {DATA}/example.org.zone
            scopes: {{blue: {{overlay: org-blue.zone}}}}
        rules:
          - name: mixed
            answer:
              weighted: {{dr: 1, blue: 1}}
          - name: huge
            answer: {{weighted: {{dr: 1e999}}}}
        """,
    )
    assert problems == [
        "dnspol.yaml:11: no zone has every scope named here (dr, blue)",
        "dnspol.yaml:13: weight of 'dr' must be above 0, not inf",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
        server: {udp_max_payload: big}
        subnets: {corp: [10.1.0.0/8]}
        rules:
          - {name: a, match: {clinet: corp}, action: drop}
          - {name: b, answer: nowhere}
        """
        )
        + ZONES,
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert [problem.split(": ", 1)[0] for problem in error.value.problems] == [
        f"{path}:1",
        f"{path}:2",
        f"{path}:4",
        f"{path}:5",
    ]


def test_zone_problems(tmp_path: Path) -> None:
    write(tmp_path, "$ORIGIN example.com.\n@ IN A 192.0.2.1\n", "z/bad.zone")
    write(tmp_path, "www IN CNAME a\n", "z/overlay.zone")
    problems = problems_of(
        tmp_path,
        """\
        zones:
          example.com:
            file: z/missing.zone
          example.org:
            file: z/bad.zone
          example.net:
            file: z/missing-too.zone
            scopes:
              default: z/x.zone
              in: {overlay: z/overlay.zone, file: z/bad.zone}
          "bad..name": z/x.zone
        """,
    )
    assert problems[:-1] == [
        "dnspol.yaml:3: zone file z/missing.zone does not exist",
        "dnspol.yaml:7: zone file z/missing-too.zone does not exist",
        "dnspol.yaml:9: scope name 'default' must be a word other than 'default' (letters, "
        "digits, _ and -)",
        "dnspol.yaml:10: scope 'in' needs exactly one of 'file' or 'overlay'",
        "dnspol.yaml:11: zone 'bad..name' is not a domain name",
    ]
    assert problems[-1].startswith("z/bad.zone:2: ")  # the loader's words, its file and line


def test_zone_file_errors_come_from_the_zone_file(tmp_path: Path) -> None:
    write(tmp_path, "$ORIGIN example.org.\n$TTL 60\n@ IN A 192.0.2.1\n", "org.zone")
    write(
        tmp_path, "$ORIGIN example.com.\n$TTL 60\nwww IN CNAME a\nwww IN A 192.0.2.1\n", "ov.zone"
    )
    problems = problems_of(
        tmp_path,
        f"""\
        zones:
          example.org: org.zone
          example.com:
            file: {DATA}/example.com.zone
            scopes:
              inside: {{overlay: ov.zone}}
        """,
    )
    assert problems, problems
    assert any(problem.startswith("org.zone:") for problem in problems), problems
    assert any(
        problem.startswith("ov.zone:3") or problem.startswith("ov.zone:4") for problem in problems
    ), problems


def test_prefix_list_problems_name_the_list_file(tmp_path: Path) -> None:
    write(tmp_path, "# list\n10.0.0.0/8\n\n10.1.0.0/8  # typo\nnonsense\n", "lists/p.txt")
    problems = problems_of(tmp_path, "subnets: {big: {file: lists/p.txt}}\n" + ZONES)
    assert problems == [
        "lists/p.txt:4: '10.1.0.0/8' has host bits set; the network is 10.0.0.0/8",
        "lists/p.txt:5: 'nonsense' is not an IP address or CIDR prefix",
    ]


def test_missing_prefix_list(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "subnets:\n  big: {file: nope.txt}\n" + ZONES)
    assert problems == [
        "dnspol.yaml:2: cannot read prefix list nope.txt: No such file or directory"
    ]


def test_included_rule_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        rules:
          - name: from-include
            match: {clinet: x}
            action: drop
          - include: deeper.yaml
        """,
        "rules/a.yaml",
    )
    write(tmp_path, "rules:\n  - include: a.yaml\n", "rules/deeper.yaml")
    write(
        tmp_path, "rules: [{name: second, action: refuse, match: {qtype: ANY}}]\n", "rules/b.yaml"
    )
    problems = problems_of(tmp_path, "rules:\n  - include: [rules/a.yaml, rules/b.yaml]\n" + ZONES)
    assert problems == [
        "rules/a.yaml:3: unknown key 'clinet' in match (did you mean 'client'?)",
        f"rules/deeper.yaml:2: include loop: {tmp_path}/rules/a.yaml includes itself".replace(
            f"{tmp_path}/", ""
        ),
    ]


def test_included_rules_keep_their_place_in_order(tmp_path: Path) -> None:
    write(tmp_path, "rules: [{name: middle, action: refuse}]\n", "more.yaml")
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
        rules:
          - {name: first, match: {qtype: MX}, action: drop}
          - include: more.yaml
          - {name: last, match: {qtype: TXT}, action: drop}
        """
        )
        + ZONES,
    )
    config = load_config(path)
    assert config.policy.rule_names == ("first", "middle", "last")
    assert str(tmp_path / "more.yaml") in config.files
    assert config.policy.rules[1].where == f"{tmp_path}/more.yaml:1"


def test_a_diamond_of_includes_reads_each_file_once(tmp_path: Path) -> None:
    # 15 levels of two files, each including both files of the next: 2**15 paths to the leaf
    levels = 15
    for level in range(levels):
        below = f"[d{level + 1}a.yaml, d{level + 1}b.yaml]" if level + 1 < levels else "leaf.yaml"
        for side in "ab":
            write(tmp_path, f"rules:\n  - include: {below}\n", f"rules/d{level}{side}.yaml")
    write(
        tmp_path, "rules: [{name: leaf, match: {qtype: ANY}, action: refuse}]\n", "rules/leaf.yaml"
    )
    path = write(tmp_path, "rules:\n  - include: rules/d0a.yaml\n" + ZONES)
    started = time.monotonic()
    config = load_config(path)
    assert time.monotonic() - started < 2.0
    assert config.policy.rule_names == ("leaf",)
    assert config.policy.rules[0].where == f"{tmp_path}/rules/leaf.yaml:1"


def test_a_file_included_twice_keeps_its_first_place(tmp_path: Path) -> None:
    write(tmp_path, "rules: [{name: common, match: {qtype: ANY}, action: refuse}]\n", "common.yaml")
    write(tmp_path, "rules:\n  - include: common.yaml\n  - {name: own, action: drop}\n", "b.yaml")
    path = write(tmp_path, "rules:\n  - include: [common.yaml, b.yaml]\n" + ZONES)
    assert load_config(path).policy.rule_names == ("common", "own")


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "") == ["dnspol.yaml:1: the file is empty"]
    assert problems_of(tmp_path, "- a\n") == [
        "dnspol.yaml:1: the config file must be a mapping (key: value), not a list"
    ]
    assert problems_of(tmp_path, "server: {}\n") == [
        "dnspol.yaml:1: no zones: name at least one under 'zones:'"
    ]
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml")


def test_warnings_do_not_stop_loading(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
        rules:
          - {name: all, action: refuse}
          - {name: never, match: {qtype: A}, action: drop}
        """
        )
        + ZONES,
    )
    config = load_config(path)
    assert config.warnings == (
        f"warning: {path}:3: rule 'never' can never match: rule 'all' ({path}:2) has no "
        "criteria, so it matches every query first",
    )
    assert check_config(path) == list(config.warnings)


def test_loaded_policy_decides(tmp_path: Path) -> None:
    config = load_config(POLICIES / "split-horizon" / "dnspol.yaml")

    def scope_for(client: str, server: str = "127.0.0.1", ecs: str | None = None) -> str:
        facts = QueryFacts(
            client=ipaddress.ip_address(client),
            ecs=ipaddress.ip_network(ecs) if ecs else None,
            server=ipaddress.ip_address(server),
            transport="udp",
            qname=from_text("www.example.com"),
            qtype=1,
            zone=from_text("example.com"),
            now=0.0,
        )
        decision = config.policy.evaluate(facts, random.Random())
        assert decision.action is Action.ANSWER
        return decision.scope

    assert scope_for("127.0.0.1") == "default"
    assert scope_for("127.0.0.2") == "internal"
    assert scope_for("127.0.1.77") == "internal"
    assert scope_for("127.0.0.1", server="127.0.0.53") == "internal"
    assert scope_for("127.0.0.1", ecs="10.20.0.0/16") == "internal"
    assert scope_for("127.0.0.9", ecs="10.20.0.0/16") == "default"  # not a trusted resolver
