"""Summarize the runs of bench/issue6.sh: one row per target, dnspol against BIND.

    python bench/issue6.py RESULT_DIR

reads RESULT_DIR/<run>.json (written by run.sh --json-out) and RESULT_DIR/commands.txt,
prints the table and the notes, and writes RESULT_DIR/summary.json.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DNSPERF_BUSY_PCT = 90.0
SERVER_IDLE_PCT = 90.0
CORE_IDLE_PCT = 10.0
OTHER_LOAD_PCT = 3.0
LATENCY_P99_MS = 2.0


@dataclass
class Row:
    target: str
    run: str
    measure: str
    dnspol: float | None = None
    bind: float | None = None
    ratio: float | None = None
    floor: str = "-"
    met: str = "-"
    unit: str = ""
    notes: list[str] = field(default_factory=list)


def server(report: dict[str, Any] | None, name: str) -> dict[str, Any]:
    return ((report or {}).get("servers") or {}).get(name) or {}


def qps(srv: dict[str, Any]) -> float | None:
    return (srv.get("stats") or {}).get("qps")


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def met(value: float | None, ok: bool) -> str:
    return "n/a" if value is None else ("yes" if ok else "no")


def run_notes(report: dict[str, Any] | None, run: str) -> list[str]:
    """Why a figure of this run may not be a clean, server-bound measurement."""
    if report is None:
        return [f"{run}: no result (run.sh failed; see {run}.log)"]
    notes = []
    all_cores = report.get("all_cores", False)
    for name in ("bind", "dnspol"):
        srv = server(report, name)
        status = srv.get("status", "missing")
        if status != "ok":
            notes.append(f"{name}: {status}")
            continue
        stats = srv.get("stats") or {}
        lost = (stats.get("lost") or 0) + (stats.get("interrupted") or 0)
        if lost:
            notes.append(f"{name}: {lost:,} queries lost")
        if srv.get("udp_rcvbuf_drops"):
            notes.append(f"{name}: kernel dropped {srv['udp_rcvbuf_drops']:,} datagrams")
        if (stats.get("rcodes") or {}).get("SERVFAIL"):
            notes.append(f"{name}: {stats['rcodes']['SERVFAIL']:,} SERVFAIL")
        dnsperf_pct = srv.get("dnsperf_cpu_pct")
        if dnsperf_pct is not None and dnsperf_pct > DNSPERF_BUSY_PCT and not all_cores:
            notes.append(f"{name}: dnsperf at {dnsperf_pct:.0f}% of its core (client-bound)")
        util = srv.get("cpu_util_pct")
        idle = (srv.get("server_core") or {}).get("idle_pct")
        if idle is not None and not all_cores:
            if idle > CORE_IDLE_PCT:
                notes.append(f"{name}: server core idle {idle:.0f}% (server used {util:.0f}%)")
        elif util is not None and util < SERVER_IDLE_PCT and not all_cores:
            notes.append(f"{name}: server busy only {util:.0f}% of its core")
        for label, key in (("server core", "server_core"), ("dnsperf core", "client_core")):
            load = srv.get(key) or {}
            if load.get("other_processes_pct", 0.0) > OTHER_LOAD_PCT:
                where = "the machine" if all_cores else label
                notes.append(f"{name}: others took {load['other_processes_pct']:.0f}% of {where}")
        if srv.get("log_problem_lines"):
            first = (srv.get("log_problems") or [""])[0][:120]
            notes.append(f"{name}: {srv['log_problem_lines']} error/warning log lines: {first}")
        if srv.get("exited_after_run"):
            notes.append(f"{name}: server gone after the run")
        if run == "distinct" and srv.get("peak_rss_mb") is not None:
            notes.append(f"{name}: peak resident memory {srv['peak_rss_mb']:,.0f} MB")
        split = [v for v in (srv.get("cpu_seconds_by_process") or {}).values() if v > 0]
        run_time = stats.get("run_time_s")
        if all_cores and len(split) > 1 and run_time:
            pcts = ", ".join(f"{100.0 * v / run_time:.0f}%" for v in split)
            notes.append(f"{name}: CPU per process {pcts}")
    return notes


def latency_notes(report: dict[str, Any] | None) -> list[str]:
    notes = []
    for name in ("bind", "dnspol"):
        lat = server(report, name).get("latency") or {}
        if not lat:
            continue
        if lat.get("status", "ok") != "ok":
            notes.append(f"{name}: latency run {lat['status']}")
            continue
        rate, achieved = lat.get("rate_requested"), lat.get("qps_achieved")
        notes.append(
            f"{name}: at {rate:,} qps (achieved {achieved or 0:,.0f}): p50 "
            f"{fmt(lat.get('p50_ms'), '.3f')} ms, p99.9 {fmt(lat.get('p99_9_ms'), '.3f')} ms, "
            f"lost {lat.get('lost')}, server CPU {fmt(lat.get('server_cpu_pct'), '.0f')}%; "
            f"{lat.get('windows_p99_slow')} of {lat.get('windows')} ~100 ms windows with p99 "
            f">= 2 ms (median window p99 {fmt(lat.get('window_p99_median_ms'), '.3f')} ms)"
        )
        if rate and achieved is not None and achieved < 0.95 * rate:
            notes.append(f"{name}: dnsperf could not keep the rate: latencies not the server's")
        for label, key in (("server core", "server_core"), ("dnsperf core", "client_core")):
            load = lat.get(key) or {}
            if load.get("other_processes_pct", 0.0) > OTHER_LOAD_PCT:
                notes.append(
                    f"{name}: others took {load['other_processes_pct']:.0f}% of the {label} "
                    "during the latency run"
                )
    return notes


def qps_row(target: str, run: str, measure: str, report: dict | None, floor: float | None) -> Row:
    d, b = qps(server(report, "dnspol")), qps(server(report, "bind"))
    r = ratio(d, b)
    row = Row(target, run, measure, d, b, r, unit="qps")
    if floor is not None:
        row.floor = f">= {floor:.1f}x"
        row.met = met(r, r is not None and r >= floor)
    row.notes = run_notes(report, run)
    return row


def build_rows(reports: dict[str, dict | None]) -> list[Row]:
    rows: list[Row] = []
    one = reports.get("udp-1core")
    if "udp-1core" in reports:
        rows.append(qps_row("1", "udp-1core", "UDP qps, 1 core, policy", one, 1.0))
        d_us = server(one, "dnspol").get("cpu_us_per_query")
        b_us = server(one, "bind").get("cpu_us_per_query")
        measure = "CPU us/query (ratio bind/dnspol)"
        rows.append(Row("1", "udp-1core", measure, d_us, b_us, ratio(b_us, d_us), unit="us"))
    if "all-cores" in reports:
        rows.append(
            qps_row("2", "all-cores", "UDP qps, all cores, unpinned", reports["all-cores"], 1.0)
        )
    if "tcp" in reports:
        rows.append(qps_row("3", "tcp", "TCP qps, 1 core, policy", reports["tcp"], 0.5))
    if "edns" in reports:
        rows.append(qps_row("4", "edns", "EDNS (-e) qps, 1 core, policy", reports["edns"], 0.7))
    if "ecs" in reports:
        rows.append(qps_row("4", "ecs", "ECS (4,000 /24s) qps, 1 core", reports["ecs"], 0.7))
    if "udp-1core" in reports:
        d_lat = server(one, "dnspol").get("latency") or {}
        b_lat = server(one, "bind").get("latency") or {}
        d99, b99 = d_lat.get("p99_ms"), b_lat.get("p99_ms")
        row = Row("5", "udp-1core", "p99 ms at half own max rate", d99, b99, ratio(d99, b99))
        row.unit = "ms"
        row.floor = f"< {LATENCY_P99_MS:g} ms"
        row.met = met(d99, d99 is not None and d99 < LATENCY_P99_MS)
        if d99 is None and d_lat.get("p99_lost"):
            row.met = "no"
            row.notes.append("dnspol: more than 1 % of the queries were lost")
        row.notes += latency_notes(one)
        rows.append(row)
        d_med, b_med = d_lat.get("window_p99_median_ms"), b_lat.get("window_p99_median_ms")
        measure = "median p99 of ~100 ms windows, ms"
        rows.append(Row("5", "udp-1core", measure, d_med, b_med, ratio(d_med, b_med), unit="ms"))
    if "distinct" in reports:
        rows.append(
            qps_row("6", "distinct", "100k distinct names qps, policy", reports["distinct"], None)
        )
    if "mixed-case" in reports:
        measure = "UDP qps, 1 core, policy, 0x20 case"
        rows.append(qps_row("6", "mixed-case", measure, reports["mixed-case"], None))
    if "udp-zone" in reports:
        rows.append(
            qps_row("6", "udp-zone", "UDP qps, 1 core, no policy", reports["udp-zone"], None)
        )
    return rows


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def fmt_value(value: float | None, unit: str) -> str:
    if unit == "qps":
        return fmt(value, ",.0f")
    return fmt(value, ".3f" if unit == "ms" else ".1f")


def render(rows: list[Row]) -> str:
    header = ["target", "measure", "dnspol", "BIND", "ratio", "floor", "met"]
    cells = [header]
    for r in rows:
        cells.append(
            [
                r.target,
                r.measure,
                fmt_value(r.dnspol, r.unit),
                fmt_value(r.bind, r.unit),
                fmt(r.ratio, ".2f"),
                r.floor,
                r.met,
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        parts += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(parts))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_reports(out: Path, runs: list[str]) -> dict[str, dict | None]:
    reports: dict[str, dict | None] = {}
    for run in runs:
        path = out / f"{run}.json"
        reports[run] = json.loads(path.read_text()) if path.exists() else None
    return reports


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    commands: dict[str, str] = {}
    commands_file = out / "commands.txt"
    if commands_file.exists():
        for line in commands_file.read_text().splitlines():
            run, _, cmd = line.partition("\t")
            commands[run] = cmd
    runs = list(commands) or sorted(p.stem for p in out.glob("*.json") if p.stem != "summary")
    reports = load_reports(out, runs)
    rows = build_rows(reports)
    for r in rows:
        busy = out / f"{r.run}.busy-before"
        if busy.exists():
            r.notes.insert(0, f"machine {busy.read_text().strip()}% busy (others) when it started")
    first = next((r for r in reports.values() if r), None) or {}
    seconds = first.get("seconds") or 0
    print(f"\nissue 6 targets: dnspol vs BIND 9, same run, same zone and query file, {seconds:g} s")
    print("per server and run; ratio = dnspol/BIND (CPU us/query: BIND/dnspol, >1 = dnspol")
    print("cheaper; latency: dnspol/BIND, <1 = dnspol faster)\n")
    print(render(rows))
    print("\nnotes:")
    seen: set[tuple[str, str]] = set()
    for r in rows:
        for note in r.notes:
            if (r.run, note) not in seen:
                seen.add((r.run, note))
                print(f"  [{r.run}] {note}")
    print("\ncommands:")
    for run, cmd in commands.items():
        print(f"  {run}: {cmd}")
    host = first.get("host") or {}
    versions = first.get("versions") or {}
    summary = {
        "seconds_per_server": seconds,
        "host": host,
        "versions": versions,
        "commands": commands,
        "rows": [asdict(r) for r in rows],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary written to {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
