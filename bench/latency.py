"""Latency percentiles from a ``dnsperf -v`` run (dnsperf 2.10 has no percentiles).

``dnsperf -v`` prints one line per answered query to stdout::

    > NOERROR host-0067.bench.example A 0.000075
    > NOERROR binary input 0.000161          (with -B)

the last field being the latency in seconds; a query that timed out is reported as
``> T ...`` and an interrupted one as ``> I ...`` (and in the ``Queries lost`` count).

    python bench/latency.py RAW_OUTPUT --rate QPS --out NAME.latency.json

writes count, lost, p50/p90/p99/p99.9/max/mean in ms (nearest rank; lost queries count as
infinitely slow, so a p99 with more than 1 % lost shows as ``null`` with ``p99_lost: true``),
the requested rate and dnsperf's achieved qps, and prints one line.

Also the p99 of each window of ``rate / 10`` consecutive answers (about 100 ms, in the
order dnsperf received them): ``window_p99_ms`` (the list), its median, and how many windows
had a p99 of 2 ms or more. On a shared machine a server that is descheduled for a few
milliseconds shows as a burst of slow windows while the rest stay fast; a server that is
slow by itself is slow in most windows.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

QPS = re.compile(r"Queries per second:\s*([0-9.]+)")
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
SLOW_WINDOW_MS = 2.0


def parse_verbose(path: Path) -> tuple[list[float], int, float | None]:
    """(latencies in seconds, lost or interrupted count, qps) from dnsperf -v output."""
    latencies: list[float] = []
    lost = 0
    qps = None
    with path.open("r", encoding="ascii", errors="replace") as handle:
        for line in handle:
            if not line.startswith("> "):
                match = QPS.search(line)
                if match:
                    qps = float(match.group(1))
                continue
            parts = line.split()
            if len(parts) >= 2 and parts[1] in ("T", "I"):
                lost += 1
                continue
            try:
                latencies.append(float(parts[-1]))
            except (ValueError, IndexError):
                continue
    return latencies, lost, qps


def nearest_rank(sorted_values: list[float], total: int, pct: float) -> float:
    """Nearest-rank percentile over ``total`` samples; ranks beyond the list are lost (inf)."""
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * total))
    return sorted_values[rank - 1] if rank <= len(sorted_values) else math.inf


def summarize(latencies: list[float], lost: int) -> dict[str, Any]:
    values = sorted(latencies)
    total = len(values) + lost
    out: dict[str, Any] = {"answered": len(values), "lost": lost}
    for key, pct in PERCENTILES.items():
        value = nearest_rank(values, total, pct)
        finite = math.isfinite(value)
        out[f"{key}_ms"] = round(value * 1000.0, 4) if finite else None
        out[f"{key}_lost"] = not finite and total > 0
    out["max_ms"] = round(values[-1] * 1000.0, 4) if values else None
    out["mean_ms"] = round(1000.0 * sum(values) / len(values), 4) if values else None
    return out


def fmt_ms(summary: dict, key: str) -> str:
    value = summary.get(f"{key}_ms")
    if value is None:
        return "lost" if summary.get(f"{key}_lost") else "n/a"
    return f"{value:.3f}"


def windows(latencies: list[float], size: int) -> dict[str, Any]:
    """p99 of each run of ``size`` consecutive answers, in ms."""
    size = max(100, size)
    p99s = []
    for start in range(0, len(latencies) - size + 1, size):
        chunk = sorted(latencies[start : start + size])
        p99s.append(round(nearest_rank(chunk, len(chunk), 99.0) * 1000.0, 3))
    ordered = sorted(p99s)
    return {
        "window_answers": size,
        "window_p99_ms": p99s,
        "window_p99_median_ms": ordered[len(ordered) // 2] if ordered else None,
        "windows_p99_slow": sum(1 for v in p99s if v >= SLOW_WINDOW_MS),
        "windows": len(p99s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="dnsperf -v output")
    parser.add_argument("--rate", type=int, required=True, help="the -Q rate used")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    latencies, lost, qps = parse_verbose(args.raw)
    summary = summarize(latencies, lost)
    summary["rate_requested"] = args.rate
    summary["qps_achieved"] = qps
    summary.update(windows(latencies, args.rate // 10))
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="ascii")
    achieved = summary["qps_achieved"]
    print(
        f"latency at {args.rate:,} qps (achieved {achieved or 0:,.0f}): "
        f"p50 {fmt_ms(summary, 'p50')} ms, p99 {fmt_ms(summary, 'p99')} ms, "
        f"p99.9 {fmt_ms(summary, 'p99_9')} ms, lost {lost}; "
        f"{summary['windows_p99_slow']} of {summary['windows']} ~100 ms windows with p99 >= "
        f"{SLOW_WINDOW_MS:g} ms (median window p99 {summary['window_p99_median_ms']} ms)"
    )


if __name__ == "__main__":
    main()
