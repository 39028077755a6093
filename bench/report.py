"""Turn the raw files of one bench/run.sh run into a table and a JSON result file.

Reads, for every server S in --servers, from --run-dir:
  S.status       "ok" or "skipped: reason" / "failed: reason"
  S.dnsperf.txt  dnsperf's stdout+stderr
  S.cpu          "cpu_seconds_before cpu_seconds_after" (server process tree)
  S.client       "wall user system" seconds of the dnsperf process
  S.core         "task total steal" seconds of the server's core, before then after
  S.clientcore   the same for dnsperf's core
  S.drops        UDP receive-buffer drops counted by the kernel during the run
  S.cmd          the server's command line
and writes the table to stdout and the JSON to --results-dir/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BASELINE = "bind"
DNSPERF_BUSY_PCT = 90.0
SERVER_IDLE_PCT = 90.0
OTHER_LOAD_PCT = 3.0
TABLE_HEADER = ("server", "qps", "avg ms", "sd ms", "p99 ms", "lost")
TABLE_HEADER += ("CPU us/q", "CPU %", "dnsperf CPU %", "qps vs bind")
NUM = r"([0-9]+(?:\.[0-9]+)?)"


@dataclass
class DnsperfStats:
    sent: int | None = None
    completed: int | None = None
    lost: int | None = None
    interrupted: int = 0
    qps: float | None = None
    run_time_s: float | None = None
    avg_latency_ms: float | None = None
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    stddev_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    rcodes: dict[str, int] = field(default_factory=dict)
    avg_request_bytes: int | None = None
    avg_response_bytes: int | None = None
    tcp_reconnections: int | None = None


@dataclass
class CoreLoad:
    """What else ran on a core during the run, in % of the core's time."""

    other_processes_pct: float
    steal_pct: float


@dataclass
class ServerResult:
    name: str
    status: str
    command: str = ""
    stats: DnsperfStats | None = None
    cpu_seconds: float | None = None
    cpu_us_per_query: float | None = None
    cpu_util_pct: float | None = None
    dnsperf_cpu_pct: float | None = None
    server_core: CoreLoad | None = None
    client_core: CoreLoad | None = None
    udp_rcvbuf_drops: int | None = None
    qps_vs_bind: float | None = None
    dnsperf_output: str = ""


def search_number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match.group(1)) if match else None


def as_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def parse_rcodes(text: str) -> dict[str, int]:
    match = re.search(r"^\s*Response codes:\s*(.*)$", text, flags=re.MULTILINE)
    if not match:
        return {}
    return {code: int(n) for code, n in re.findall(r"([A-Z]+) ([0-9]+) \(", match.group(1))}


def parse_p99(text: str) -> float | None:
    """p99 in seconds from a ``-O latency-histogram`` block (dnsperf >= 2.11), else None."""
    block = text.split("Latency bucket (s):", 1)
    if len(block) < 2:
        return None
    buckets: list[tuple[float, int]] = []
    for line in block[1].splitlines()[1:]:
        match = re.match(r"^\s*" + NUM + r" - " + NUM + r":\s+([0-9]+)\s*$", line)
        if not match:
            break
        buckets.append((float(match.group(2)), int(match.group(3))))
    total = sum(count for _, count in buckets)
    seen = 0
    for upper, count in buckets:
        seen += count
        if total and seen >= 0.99 * total:
            return upper
    return None


def parse_dnsperf(output: str) -> DnsperfStats:
    # Only the query statistics, not the "Connection Statistics" that TCP mode adds.
    text, _, conn_text = output.partition("Connection Statistics:")
    latency = re.search(
        r"Average Latency \(s\):\s*" + NUM + r"(?: \(min " + NUM + r", max " + NUM + r"\))?",
        text,
    )
    sizes = re.search(r"Average packet size:\s*request ([0-9]+), response ([0-9]+)", text)
    return DnsperfStats(
        sent=as_int(search_number(r"Queries sent:\s*" + NUM, text)),
        completed=as_int(search_number(r"Queries completed:\s*" + NUM, text)),
        lost=as_int(search_number(r"Queries lost:\s*" + NUM, text)),
        interrupted=as_int(search_number(r"Queries interrupted:\s*" + NUM, text)) or 0,
        qps=search_number(r"Queries per second:\s*" + NUM, text),
        run_time_s=search_number(r"Run time \(s\):\s*" + NUM, text),
        avg_latency_ms=to_ms(float(latency.group(1))) if latency else None,
        min_latency_ms=to_ms(float(latency.group(2))) if latency and latency.group(2) else None,
        max_latency_ms=to_ms(float(latency.group(3))) if latency and latency.group(3) else None,
        stddev_latency_ms=to_ms(search_number(r"Latency StdDev \(s\):\s*" + NUM, text)),
        p99_latency_ms=to_ms(parse_p99(text)),
        rcodes=parse_rcodes(text),
        avg_request_bytes=int(sizes.group(1)) if sizes else None,
        avg_response_bytes=int(sizes.group(2)) if sizes else None,
        tcp_reconnections=as_int(search_number(r"Reconnections:\s*" + NUM, conn_text)),
    )


def drop_timeout_lines(output: str) -> str:
    """dnsperf prints one "[Timeout]" line per lost query; keep only a count of them."""
    lines = output.splitlines()
    kept = [ln for ln in lines if not ln.startswith("[Timeout]")]
    if len(kept) < len(lines):
        kept.append(f"({len(lines) - len(kept)} '[Timeout] Query timed out' lines removed)")
    return "\n".join(kept) + "\n"


def read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def load_server(run_dir: Path, name: str) -> ServerResult:
    status = read_text(run_dir / f"{name}.status").strip() or "skipped: not run"
    result = ServerResult(name=name, status=status, command=read_text(run_dir / f"{name}.cmd"))
    result.command = result.command.strip()
    if status != "ok":
        return result
    output = read_text(run_dir / f"{name}.dnsperf.txt")
    result.stats = parse_dnsperf(output)
    result.dnsperf_output = drop_timeout_lines(output)
    add_cpu(result, read_text(run_dir / f"{name}.cpu").split())
    client = client_times(read_text(run_dir / f"{name}.client").split())
    if client is not None:
        wall, client_cpu = client
        result.dnsperf_cpu_pct = 100.0 * client_cpu / wall if wall > 0 else None
        result.client_core = core_load(read_text(run_dir / f"{name}.clientcore"), client_cpu)
    if result.cpu_seconds is not None:
        result.server_core = core_load(read_text(run_dir / f"{name}.core"), result.cpu_seconds)
    drops = read_text(run_dir / f"{name}.drops").strip()
    result.udp_rcvbuf_drops = int(drops) if drops.lstrip("-").isdigit() else None
    return result


def core_load(text: str, own_seconds: float) -> CoreLoad | None:
    """Load on a core besides the process under test (``own_seconds``) during the run."""
    fields = text.split()
    if len(fields) != 6:
        return None
    task0, total0, steal0, task1, total1, steal1 = (float(f) for f in fields)
    total = total1 - total0
    if total <= 0:
        return None
    other = max(0.0, (task1 - task0) - own_seconds)
    return CoreLoad(100.0 * other / total, 100.0 * (steal1 - steal0) / total)


def client_times(fields: list[str]) -> tuple[float, float] | None:
    """(wall, user+system) seconds of dnsperf from the "wall user system" line."""
    try:
        wall, user, system = (float(f) for f in fields[-3:])
    except ValueError:
        return None
    return wall, user + system


def add_cpu(result: ServerResult, cpu_fields: list[str]) -> None:
    stats = result.stats
    if len(cpu_fields) < 2 or stats is None:
        return
    result.cpu_seconds = float(cpu_fields[1]) - float(cpu_fields[0])
    if stats.completed:
        result.cpu_us_per_query = result.cpu_seconds * 1e6 / stats.completed
    if stats.run_time_s:
        result.cpu_util_pct = 100.0 * result.cpu_seconds / stats.run_time_s


def add_ratios(results: list[ServerResult]) -> None:
    base = next((r for r in results if r.name == BASELINE and r.stats), None)
    if base is None or base.stats is None or not base.stats.qps:
        return
    for result in results:
        if result.stats and result.stats.qps is not None:
            result.qps_vs_bind = result.stats.qps / base.stats.qps


def saturation_warnings(result: ServerResult) -> list[str]:
    """Say when a figure is not a server-bound maximum."""
    warnings = []
    if result.dnsperf_cpu_pct is not None and result.dnsperf_cpu_pct > DNSPERF_BUSY_PCT:
        warnings.append(
            f"dnsperf used {result.dnsperf_cpu_pct:.0f}% of its core: the client may be the "
            "limit, so this qps is a lower bound"
        )
    for label, load in (("the server's", result.server_core), ("dnsperf's", result.client_core)):
        if load and load.other_processes_pct > OTHER_LOAD_PCT:
            pct = load.other_processes_pct
            warnings.append(f"other processes took {pct:.0f}% of {label} core during the run")
        if load and load.steal_pct > OTHER_LOAD_PCT:
            warnings.append(f"the hypervisor stole {load.steal_pct:.0f}% of {label} core")
    if result.cpu_util_pct is not None and result.cpu_util_pct < SERVER_IDLE_PCT:
        warnings.append(
            f"the server used only {result.cpu_util_pct:.0f}% of its core: not saturated "
            "(waiting on the client, on I/O, or sleeping)"
        )
    return warnings


def fmt(value: float | int | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def fmt_ratio(value: float | None) -> str:
    """Two decimals, but keep two significant digits for tiny ratios (0.00083)."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def table_rows(results: list[ServerResult]) -> list[list[str]]:
    rows = [list(TABLE_HEADER)]
    for r in results:
        s = r.stats or DnsperfStats()
        lost = None if s.lost is None else s.lost + s.interrupted
        rows.append(
            [
                r.name,
                fmt(s.qps, ",.0f"),
                fmt(s.avg_latency_ms, ".3f"),
                fmt(s.stddev_latency_ms, ".3f"),
                fmt(s.p99_latency_ms, ".3f"),
                fmt(lost, ",d"),
                fmt(r.cpu_us_per_query, ".1f"),
                fmt(r.cpu_util_pct, ".0f"),
                fmt(r.dnsperf_cpu_pct, ".0f"),
                fmt_ratio(r.qps_vs_bind),
            ]
        )
    return rows


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def mix_summary(mix: dict[str, Any]) -> str:
    total = mix.get("lines") or 1
    parts = [f"{cat} {100.0 * n / total:.1f}%" for cat, n in mix.get("categories", {}).items()]
    head = (
        f"query mix ({mix.get('mode')}: {mix.get('lines')} lines, "
        f"{mix.get('distinct_qnames')} distinct names)"
    )
    return f"{head}: " + ", ".join(parts)


def run_quiet(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines[0].strip() if lines and proc.returncode == 0 else "n/a"


def versions(python: str) -> dict[str, str]:
    return {
        "named": run_quiet(["named", "-v"]),
        "dnsperf": run_quiet(["sh", "-c", "dnsperf -h 2>&1 | grep -i '^Version'"]),
        "python": run_quiet([python, "-c", "import sys; print(sys.version.split()[0])"]),
        "dnslib": run_quiet([python, "-c", "import dnslib; print(dnslib.version)"]),
        "dnspol": run_quiet([python, "-c", "import dnspol; print(dnspol.__version__)"]),
    }


def host_info() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.*)$", cpuinfo.read_text(), flags=re.MULTILINE)
        model = found.group(1) if found else ""
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu_model": model,
        "loadavg_at_end": os.getloadavg(),
    }


def build_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--results-dir", type=Path, required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("--mix", type=Path, required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--transport", required=True)
    p.add_argument("--edns", type=int, default=0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--dnsperf-args", default="")
    p.add_argument("--python", default=sys.executable)
    return p.parse_args()


def main() -> None:
    args = build_args()
    results = [load_server(args.run_dir, name) for name in args.servers.split(",") if name]
    add_ratios(results)
    mix = json.loads(args.mix.read_text())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    edns = "EDNS on" if args.edns else "no EDNS"
    print(f"\nmode: {args.mode}, transport: {args.transport}, {edns}, ", end="")
    print(f"{args.seconds:g} s per server")
    print(mix_summary(mix))
    print(f"dnsperf {args.dnsperf_args}\n")
    print(render_table(table_rows(results)))
    print()
    for r in results:
        if r.stats and r.stats.rcodes:
            print(f"{r.name} rcodes: " + ", ".join(f"{k} {v}" for k, v in r.stats.rcodes.items()))
        if r.stats and r.stats.tcp_reconnections:
            print(f"{r.name}: dnsperf had to reconnect {r.stats.tcp_reconnections:,} times")
        if r.udp_rcvbuf_drops:
            drops = f"{r.udp_rcvbuf_drops:,}"
            print(f"{r.name}: the kernel dropped {drops} UDP datagrams (a receive buffer was full)")
        if r.status != "ok":
            print(f"{r.name}: {r.status}")
        for warning in saturation_warnings(r):
            print(f"{r.name}: warning: {warning}")
    ratios = [
        f"{r.name}/{BASELINE} = {fmt_ratio(r.qps_vs_bind)}"
        for r in results
        if r.qps_vs_bind is not None and r.name != BASELINE
    ]
    if ratios:
        print("qps ratios (same run): " + ", ".join(ratios))
    report = {
        "timestamp": stamp,
        "mode": args.mode,
        "transport": args.transport,
        "edns": bool(args.edns),
        "seconds": args.seconds,
        "dnsperf_args": args.dnsperf_args,
        "query_mix": mix,
        "host": host_info(),
        "versions": versions(args.python),
        "servers": {r.name: asdict(r) for r in results},
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
