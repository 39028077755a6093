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
  S.procs.before, S.procs.after  "pid:cpu_seconds ..." per process of the server's tree
  S.rss          "rss_kb peak_kb pss_kb" of the server's process tree after the run (summed)
  S.log          the server's stdout+stderr (error lines and the tail go to the JSON)
  S.exited       present if the server was gone after the run
and with --latency (the fixed-rate dnsperf -v run):
  S.latency.json percentiles from latency.py
  S.latency.cpu  server CPU seconds before/after that run; S.latency.client its dnsperf times
  S.latency.txt  that dnsperf run's output without the per-query lines
and writes the table to stdout and the JSON to --results-dir/<timestamp>.json (or
--json-out). With --all-cores, S.core holds the whole machine's CPU times (/proc/stat "cpu").
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
CORE_IDLE_PCT = 10.0
OTHER_LOAD_PCT = 3.0
TABLE_HEADER = ("server", "qps", "avg ms", "sd ms", "p99 ms", "lost")
TABLE_HEADER += ("CPU us/q", "CPU %", "core idle %", "dnsperf CPU %", "qps vs bind")
LATENCY_HEADER = ("server", "rate", "achieved", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms")
LATENCY_HEADER += ("max ms", "lost", "CPU %", "slow windows")
NUM = r"([0-9]+(?:\.[0-9]+)?)"
# Lines of a Python server's log worth showing (named -g logs plenty of normal lines).
LOG_PROBLEM = re.compile(r"Traceback|Error|ERROR|Exception|exception|WARNING|CRITICAL")
LOG_TAIL_LINES = 20


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
    idle_pct: float | None = None  # the core did nothing
    irq_pct: float | None = None  # interrupts and softirq (loopback packet delivery)


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
    cpu_seconds_by_process: dict[str, float] = field(default_factory=dict)
    rss_mb: float | None = None  # resident memory of the server's processes after the run
    peak_rss_mb: float | None = None  # and their peaks (VmHWM), summed
    pss_mb: float | None = None  # proportional: pages shared by forked workers counted once
    exited_after_run: bool = False
    log_problem_lines: int = 0
    log_problems: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    latency: dict[str, Any] | None = None
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


def add_log(result: ServerResult, log_text: str) -> None:
    lines = log_text.splitlines()
    result.log_tail = lines[-LOG_TAIL_LINES:]
    if result.name == BASELINE:
        return  # named's log is normal chatter; its problems show as failed runs
    problems = [ln for ln in lines if LOG_PROBLEM.search(ln)]
    result.log_problem_lines = len(problems)
    result.log_problems = problems[:10]


def load_latency(run_dir: Path, name: str, all_cores: bool) -> dict[str, Any] | None:
    status = read_text(run_dir / f"{name}.latency.status").strip()
    text = read_text(run_dir / f"{name}.latency.json")
    if not text:
        return {"status": status} if status else None
    latency: dict[str, Any] = json.loads(text)
    latency["status"] = status or "ok"
    cpu = read_text(run_dir / f"{name}.latency.cpu").split()
    client = client_times(read_text(run_dir / f"{name}.latency.client").split())
    if len(cpu) == 2 and client is not None and client[0] > 0:
        server_cpu = float(cpu[1]) - float(cpu[0])
        latency["server_cpu_pct"] = 100.0 * server_cpu / client[0]
        latency["dnsperf_cpu_pct"] = 100.0 * client[1] / client[0]
        own = server_cpu + (client[1] if all_cores else 0.0)
        server_core = core_load(read_text(run_dir / f"{name}.latency.core"), own)
        client_core = core_load(read_text(run_dir / f"{name}.latency.clientcore"), client[1])
        latency["server_core"] = asdict(server_core) if server_core else None
        latency["client_core"] = asdict(client_core) if client_core else None
    latency["dnsperf_output"] = drop_timeout_lines(read_text(run_dir / f"{name}.latency.txt"))
    return latency


def load_server(run_dir: Path, name: str, all_cores: bool = False) -> ServerResult:
    status = read_text(run_dir / f"{name}.status").strip() or "skipped: not run"
    result = ServerResult(name=name, status=status, command=read_text(run_dir / f"{name}.cmd"))
    result.command = result.command.strip()
    add_log(result, read_text(run_dir / f"{name}.log"))
    result.exited_after_run = (run_dir / f"{name}.exited").exists()
    if status != "ok":
        return result
    output = read_text(run_dir / f"{name}.dnsperf.txt")
    result.stats = parse_dnsperf(output)
    result.dnsperf_output = drop_timeout_lines(output)
    add_cpu(result, read_text(run_dir / f"{name}.cpu").split())
    client = client_times(read_text(run_dir / f"{name}.client").split())
    client_cpu = 0.0
    if client is not None:
        wall, client_cpu = client
        result.dnsperf_cpu_pct = 100.0 * client_cpu / wall if wall > 0 else None
        result.client_core = core_load(read_text(run_dir / f"{name}.clientcore"), client_cpu)
    if result.cpu_seconds is not None:
        # --all-cores: ".core" is the whole machine, where dnsperf runs too.
        own = result.cpu_seconds + (client_cpu if all_cores else 0.0)
        result.server_core = core_load(read_text(run_dir / f"{name}.core"), own)
    result.latency = load_latency(run_dir, name, all_cores)
    result.cpu_seconds_by_process = process_split(
        read_text(run_dir / f"{name}.procs.before"), read_text(run_dir / f"{name}.procs.after")
    )
    memory = read_text(run_dir / f"{name}.rss").split()
    if len(memory) == 3 and all(v.isdigit() for v in memory):
        result.rss_mb, result.peak_rss_mb, result.pss_mb = (round(int(v) / 1024, 1) for v in memory)
    drops = read_text(run_dir / f"{name}.drops").strip()
    result.udp_rcvbuf_drops = int(drops) if drops.lstrip("-").isdigit() else None
    return result


def process_split(before: str, after: str) -> dict[str, float]:
    """CPU seconds each process of the server's tree used during the run (pid -> s)."""

    def parse(text: str) -> dict[str, float]:
        pairs = (item.split(":", 1) for item in text.split())
        return {pid: float(sec) for pid, sec in pairs}

    start, end = parse(before), parse(after)
    return {pid: round(sec - start.get(pid, 0.0), 2) for pid, sec in end.items()}


def core_load(text: str, own_seconds: float) -> CoreLoad | None:
    """Load on a core besides the process under test (``own_seconds``) during the run.

    ``text``: "task total steal [idle irq]" seconds before, then the same after (3 or 5
    values each; the older 3-value form has no idle and irq figures)."""
    try:
        values = [float(f) for f in text.split()]
    except ValueError:
        return None  # "-": not measured (no pinned core)
    if len(values) not in (6, 10):
        return None
    half = len(values) // 2
    delta = [b - a for a, b in zip(values[:half], values[half:], strict=True)]
    task, total, steal = delta[0], delta[1], delta[2]
    if total <= 0:
        return None
    other = max(0.0, task - own_seconds)
    load = CoreLoad(100.0 * other / total, 100.0 * steal / total)
    if half == 5:
        load.idle_pct = 100.0 * delta[3] / total
        load.irq_pct = 100.0 * delta[4] / total
    return load


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


def saturation_warnings(result: ServerResult, all_cores: bool = False) -> list[str]:
    """Say when a figure is not a server-bound maximum."""
    warnings = []
    if all_cores:
        load = result.server_core
        if load and load.other_processes_pct > OTHER_LOAD_PCT:
            pct = load.other_processes_pct
            warnings.append(f"other processes took {pct:.0f}% of the machine during the run")
        if load and load.steal_pct > OTHER_LOAD_PCT:
            warnings.append(f"the hypervisor stole {load.steal_pct:.0f}% of the machine")
        return warnings
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
    idle = result.server_core.idle_pct if result.server_core else None
    if idle is not None:
        # The process's CPU % misses the softirq time of its packets: judge by the core's idle.
        if idle > CORE_IDLE_PCT:
            warnings.append(
                f"the server's core was idle {idle:.0f}% of the run (the server used "
                f"{fmt(result.cpu_util_pct, '.0f')}%): not saturated (waiting on the client)"
            )
    elif result.cpu_util_pct is not None and result.cpu_util_pct < SERVER_IDLE_PCT:
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
                fmt(r.server_core.idle_pct if r.server_core else None, ".0f"),
                fmt(r.dnsperf_cpu_pct, ".0f"),
                fmt_ratio(r.qps_vs_bind),
            ]
        )
    return rows


def latency_warnings(latency: dict[str, Any]) -> list[str]:
    """Say when the fixed-rate run did not measure the server alone."""
    if latency.get("status", "ok") != "ok":
        return [latency["status"]]
    warnings = []
    rate, achieved = latency.get("rate_requested"), latency.get("qps_achieved")
    if rate and achieved is not None and achieved < 0.95 * rate:
        warnings.append(
            f"dnsperf sent only {achieved:,.0f} of the {rate:,} qps asked: the client or the "
            "machine could not keep the rate, so these latencies are not the server's alone"
        )
    for label, key in (("the server's", "server_core"), ("dnsperf's", "client_core")):
        load = latency.get(key) or {}
        if load.get("other_processes_pct", 0.0) > OTHER_LOAD_PCT:
            pct = load["other_processes_pct"]
            warnings.append(f"other processes took {pct:.0f}% of {label} core (or the machine)")
    return warnings


def fmt_ms(latency: dict[str, Any], key: str) -> str:
    value = latency.get(f"{key}_ms")
    if value is None:
        return "lost" if latency.get(f"{key}_lost") else "n/a"
    return f"{value:.3f}"


def latency_rows(results: list[ServerResult]) -> list[list[str]]:
    rows = [list(LATENCY_HEADER)]
    for r in results:
        lat = r.latency
        if not lat or lat.get("status") != "ok":
            continue
        rows.append(
            [
                r.name,
                fmt(lat.get("rate_requested"), ",d"),
                fmt(lat.get("qps_achieved"), ",.0f"),
                fmt_ms(lat, "p50"),
                fmt_ms(lat, "p90"),
                fmt_ms(lat, "p99"),
                fmt_ms(lat, "p99_9"),
                fmt(lat.get("max_ms"), ".3f"),
                fmt(lat.get("lost"), ",d"),
                fmt(lat.get("server_cpu_pct"), ".0f"),
                f"{lat.get('windows_p99_slow', '?')}/{lat.get('windows', '?')}",
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
    p.add_argument("--json-out", type=Path, default=None, help="instead of results-dir/<ts>")
    p.add_argument("--policy", type=Path, default=None, help="dnspol's generated config")
    p.add_argument("--ecs-mix", type=Path, default=None, help="gen_ecs.py's summary")
    p.add_argument("--all-cores", action="store_true")
    p.add_argument("--latency", action="store_true")
    return p.parse_args()


def print_notes(results: list[ServerResult], all_cores: bool) -> None:
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
        busy = {pid: sec for pid, sec in r.cpu_seconds_by_process.items() if sec > 0}
        if len(busy) > 1 and r.stats and r.stats.run_time_s:
            run = r.stats.run_time_s
            split = ", ".join(f"{100.0 * sec / run:.0f}%" for sec in busy.values())
            print(f"{r.name}: CPU by process (% of one core): {split}")
        if r.rss_mb is not None:
            memory = f"{r.rss_mb:,.0f} MB (PSS {r.pss_mb:,.0f} MB, peak {r.peak_rss_mb:,.0f} MB)"
            print(f"{r.name}: resident memory after the run {memory}")
        if r.exited_after_run:
            print(f"{r.name}: the server was gone after the run")
        if r.log_problem_lines:
            print(f"{r.name}: {r.log_problem_lines} log line(s) with errors/warnings, e.g.:")
            for line in r.log_problems[:3]:
                print(f"    {line[:160]}")
        if r.latency:
            for warning in latency_warnings(r.latency):
                print(f"{r.name}: latency run: warning: {warning}")
        for warning in saturation_warnings(r, all_cores):
            print(f"{r.name}: warning: {warning}")


def main() -> None:
    args = build_args()
    names = [name for name in args.servers.split(",") if name]
    results = [load_server(args.run_dir, name, args.all_cores) for name in names]
    add_ratios(results)
    mix = json.loads(args.mix.read_text())
    ecs_mix = json.loads(args.ecs_mix.read_text()) if args.ecs_mix else None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    edns = "EDNS on" if args.edns else "no EDNS"
    print(f"\nmode: {args.mode}, transport: {args.transport}, {edns}, ", end="")
    print(f"{args.seconds:g} s per server")
    policy = "on (split horizon, 10,000-prefix list)" if args.policy else "off (--zone)"
    placement = "nothing pinned (--all-cores)" if args.all_cores else "server and dnsperf pinned"
    print(f"dnspol policy: {policy}; {placement}")
    print(mix_summary(mix))
    if ecs_mix:
        print(
            f"ECS: every query, from {ecs_mix['ecs_subnets']:,} distinct "
            f"/{ecs_mix['ecs_source_prefix_length']}s "
            f"({ecs_mix['ecs_subnets_inside_prefix_list']:,} inside the policy's prefix list)"
        )
    print(f"dnsperf {args.dnsperf_args}\n")
    print(render_table(table_rows(results)))
    if args.all_cores:
        print("(--all-cores: CPU % is of one core, so up to 100 x cores; dnsperf shares the cores)")
    print()
    if args.latency:
        rows = latency_rows(results)
        rate_rule = "at half of each server's max qps above (or --rate)"
        print(f"latency, fixed rate {rate_rule}, dnsperf -v, {args.seconds:g} s:")
        print(render_table(rows) if len(rows) > 1 else "(no latency run completed)")
        print()
    print_notes(results, args.all_cores)
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
        "policy": bool(args.policy),
        "policy_config": read_text(args.policy) if args.policy else None,
        "ecs": ecs_mix,
        "all_cores": args.all_cores,
        "latency": args.latency,
        "query_mix": mix,
        "host": host_info(),
        "versions": versions(args.python),
        "servers": {r.name: asdict(r) for r in results},
    }
    out = args.json_out or args.results_dir / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
