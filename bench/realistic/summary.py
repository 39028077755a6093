"""One table over every load of a bench/realistic/run.sh run, and summary.json.

Reads the per-load JSON files that bench/report.py wrote into --dir (``<load>.json``) and
prints, per load and server: qps, lost queries, server CPU µs per query, both as a ratio
to BIND in the same load of the same run, and how often dnsperf went through the file.
Writes ``<dir>/summary.json`` with the same figures, the zone's manifest and the servers'
versions.

Usage: python bench/realistic/summary.py --dir DIR --loads zipf,flood --servers bind,dnspol
           [--zone-manifest real.example.N.json] [--all-cores 0|1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

BASELINE = "bind"
HEADER = ("load", "server", "qps", "lost", "CPU us/q", "qps vs bind", "CPU/q vs bind", "passes")
HEADER += ("status",)
VERSION_COMMANDS = {
    "named": ["named", "-v"],
    "nsd": ["nsd", "-v"],
    "knotd": ["knotd", "-V"],
    "dnsperf": ["sh", "-c", "dnsperf -h 2>&1 | grep -i '^Version'"],
}


def version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else "n/a"


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def rows_of(load: str, report: dict[str, Any], servers: list[str]) -> list[dict[str, Any]]:
    found = report.get("servers", {})
    base = found.get(BASELINE, {})
    base_cpu = base.get("cpu_us_per_query")
    lines = (report.get("query_mix") or {}).get("lines")
    rows = []
    for name in servers:
        result = found.get(name, {})
        stats = result.get("stats") or {}
        lost = stats.get("lost")
        cpu = result.get("cpu_us_per_query")
        rows.append(
            {
                "load": load,
                "server": name,
                "status": result.get("status", "not run"),
                "qps": stats.get("qps"),
                "lost": None if lost is None else lost + stats.get("interrupted", 0),
                "cpu_us_per_query": cpu,
                "qps_vs_bind": result.get("qps_vs_bind"),
                "cpu_per_query_vs_bind": ratio(cpu, base_cpu) if name != BASELINE else 1.0,
                "rcodes": stats.get("rcodes", {}),
                # how many times dnsperf went through the query file: above 1, questions
                # (and every flood name) came again
                "passes": ratio(stats.get("sent"), lines),
            }
        )
    return rows


def fmt(value: float | int | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render(rows: list[dict[str, Any]]) -> str:
    table = [list(HEADER)]
    for r in rows:
        table.append(
            [
                r["load"],
                r["server"],
                fmt(r["qps"], ",.0f"),
                fmt(r["lost"], ",d"),
                fmt(r["cpu_us_per_query"], ".1f"),
                fmt(r["qps_vs_bind"], ".2f"),
                fmt(r["cpu_per_query_vs_bind"] if r["cpu_us_per_query"] else None, ".2f"),
                fmt(r["passes"], ".2f"),
                r["status"][:40],
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:-1], widths[2:-1], strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--loads", required=True)
    parser.add_argument("--servers", required=True)
    parser.add_argument("--zone-manifest", type=Path, default=None)
    parser.add_argument("--all-cores", type=int, default=0)
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    rows: list[dict[str, Any]] = []
    for load in (x for x in args.loads.split(",") if x):
        path = args.dir / f"{load}.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        rows += rows_of(load, report, servers)
    placement = "nothing pinned" if args.all_cores else "server and dnsperf pinned"
    print(f"\nsummary ({placement}; ratios against BIND in the same load of this run):\n")
    print(render(rows))
    summary = {
        "all_cores": bool(args.all_cores),
        "zone": json.loads(args.zone_manifest.read_text()) if args.zone_manifest else None,
        "versions": {name: version(cmd) for name, cmd in VERSION_COMMANDS.items()},
        "rows": rows,
    }
    out = args.dir / "summary.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    if any((r["passes"] or 0) > 1 for r in rows):
        print("passes > 1: dnsperf replayed the query file; make it longer (--lines)")
    print(f"\nper-load results in {args.dir}/<load>.json, this table in {out}")


if __name__ == "__main__":
    main()
