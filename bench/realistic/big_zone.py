"""A realistic zone of 1,000,000 records, and 100,000 small zones, served by dnspol.

    python bench/realistic/big_zone.py [--records 1000000] [--zones 100000]
        [--only big,many] [--timeout 600] [--keep] [--json-out FILE]

Both cases run ``dnspol serve --listen 127.0.0.1:PORT --no-watch --control none`` with its
default workers (one per usable core), nothing pinned, one case after the other:

* ``big``: ``gen_zone.py --records N`` (the realistic zone, cut at exactly N records);
  ``--zone FILE``. Measures the seconds from the start until the zone's SOA is answered
  (dig over UDP every 0.1 s), the proportional set size (PSS, from /proc/PID/smaps_rollup)
  of the whole process tree once it answers (supervisor, generation, workers; shared
  pages counted once), the bytes of PSS per record above the PSS of the same server with
  a zone of 100 records (``tiny``, measured first: the interpreters), then a reload: SIGHUP to the
  supervisor, the tree's PSS sampled every 0.1 s until the new generation serves and the
  old one is gone (``bench/scale.py``'s ``measure_reload``), its peak relative to the
  steady PSS, and the PSS after.
* ``many``: N zones of 10 records (``bench/scale.py gen``) named in one config file;
  ``--config``. Seconds until the last zone's SOA is answered, PSS, bytes per record.

The zones go to a temporary directory (``$TMPDIR``), removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gen_zone as z
from _bench import bench_module

HERE = Path(__file__).resolve().parent
POLL_SECONDS = 0.1
TINY_RECORDS = 100  # the baseline: a server with (almost) nothing loaded


@dataclass
class Case:
    name: str
    command: str
    records: int = 0
    zones: int = 0
    status: str = "ok"
    seconds_to_answer: float | None = None
    pss_mb: float | None = None
    bytes_per_record: float | None = None  # PSS above the ``tiny`` case's, per record
    reload_seconds: float | None = None
    reload_peak_pss_mb: float | None = None
    reload_peak_vs_steady: float | None = None
    pss_after_reload_mb: float | None = None
    processes: int | None = None
    notes: list[str] = field(default_factory=list)


def soa_answered(port: int, origin: str) -> bool:
    cmd = ["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=1", origin, "SOA"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return "hostmaster" in out


def dig_a(port: int, name: str) -> str:
    cmd = ["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=2", "+tries=1", name, "A"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()


def start(dnspol: str, args: list[str], cwd: Path, log: Path) -> tuple[subprocess.Popen, int]:
    port = bench_module("proc").free_port()
    cmd = [dnspol, "serve", "--listen", f"127.0.0.1:{port}", "--no-watch", "--control", "none"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*cmd, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, port


def wait_answering(proc: subprocess.Popen, port: int, origin: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if soa_answered(port, origin):
            return True
        time.sleep(POLL_SECONDS)
    return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serve_case(case: Case, dnspol: str, args: list[str], work: Path, origin: str, timeout: float):
    """Start, time until ``origin``'s SOA answers, read the tree's PSS; return the
    running process (the caller stops it) or None."""
    scale = bench_module("scale")
    log = work / f"{case.name}.log"
    began = time.perf_counter()
    proc, port = start(dnspol, args, work, log)
    if not wait_answering(proc, port, origin, timeout):
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        case.status = f"did not answer {origin} SOA (exit {proc.poll()}): {' | '.join(tail)}"
        stop(proc)
        return None, port, log
    case.seconds_to_answer = round(time.perf_counter() - began, 2)
    time.sleep(1.0)  # the workers fork from the loaded generation as it answers
    case.pss_mb = round(scale.tree_pss_mb(proc.pid), 1)
    case.processes = 1 + len(bench_module("proc").descendants(proc.pid))
    return proc, port, log


def run_big(work: Path, records: int, dnspol: str, timeout: float, name: str = "big") -> Case:
    zone = work / f"real.example.{name}.zone"
    manifest = z.write_zone(zone, z.DEFAULT_NAMES, records)
    case = Case(name, f"dnspol serve --zone {zone.name} (default workers)", records=records)
    case.notes.append(f"{manifest['entries']:,} entries, {manifest['owner_names']:,} owner names")
    proc, port, log = serve_case(case, dnspol, ["--zone", str(zone)], work, z.ORIGIN, timeout)
    if proc is None:
        return case
    try:
        probes = list(manifest["probes"])
        missing = [name for name in probes if not dig_a(port, name)]
        case.notes.append(f"probes {'unanswered: ' + str(missing) if missing else 'answered'}")
        if name == "tiny":
            return case
        row = bench_module("scale").measure_reload(
            case.name, proc, log, probes, ("127.0.0.1", port)
        )
        if row.seconds is None:
            case.notes.append(f"reload: {row.note}")
        else:
            case.reload_seconds = round(row.seconds, 2)
            case.reload_peak_pss_mb = round(row.rss_mb, 1)
            case.pss_after_reload_mb = round(row.rss_now_mb, 1)
            case.reload_peak_vs_steady = round(row.rss_mb / case.pss_mb, 2)
            case.notes.append(f"reload: {row.note}")
    finally:
        stop(proc)
    return case


def run_many(work: Path, zones: int, dnspol: str, timeout: float) -> Case:
    scale = bench_module("scale")
    scale.generate(work, 0, zones)
    case = Case("many", f"dnspol serve --config {scale.MANY_CONFIG} (default workers)")
    case.zones, case.records = zones, zones * 10
    last = scale.small_zone_origin(zones - 1)
    proc, port, _ = serve_case(case, dnspol, ["--config", scale.MANY_CONFIG], work, last, timeout)
    if proc is None:
        return case
    try:
        first = f"www.{scale.small_zone_origin(0)}"
        case.notes.append(f"{first} A -> {dig_a(port, first) or 'NO ANSWER'}")
    finally:
        stop(proc)
    return case


def add_bytes_per_record(cases: list[Case]) -> None:
    """PSS above the tiny zone's (the interpreters, the code) divided by the records."""
    tiny = next((c for c in cases if c.name == "tiny" and c.pss_mb is not None), None)
    for c in cases:
        if tiny is not None and c is not tiny and c.pss_mb is not None and c.records:
            c.bytes_per_record = round((c.pss_mb - tiny.pss_mb) * 1024 * 1024 / c.records, 1)


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_cases(cases: list[Case]) -> None:
    header = f"{'case':<5} {'records':>10} {'to answer s':>11} {'PSS MB':>8} {'B/record':>9} "
    header += f"{'reload s':>8} {'peak PSS MB':>11} {'peak/steady':>11} {'PSS after MB':>12}"
    print()
    print(header)
    print("-" * len(header))
    for c in cases:
        print(
            f"{c.name:<5} {c.records:>10,} {fmt(c.seconds_to_answer, '.1f'):>11} "
            f"{fmt(c.pss_mb, ',.0f'):>8} {fmt(c.bytes_per_record, ',.0f'):>9} "
            f"{fmt(c.reload_seconds, '.1f'):>8} {fmt(c.reload_peak_pss_mb, ',.0f'):>11} "
            f"{fmt(c.reload_peak_vs_steady, '.2f'):>11} {fmt(c.pss_after_reload_mb, ',.0f'):>12}"
        )
        print(f"      {c.command}; {c.processes or '?'} processes; status: {c.status}")
        for note in c.notes:
            print(f"      {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--zones", type=int, default=100_000)
    parser.add_argument("--only", default="big,many")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to answer")
    parser.add_argument("--dnspol", default=str(Path(sys.executable).parent / "dnspol"))
    parser.add_argument("--keep", action="store_true", help="keep the generated zones")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if not shutil.which("dig"):
        parser.error("dig is needed (apt-get install bind9-dnsutils)")
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="dnspol-bigzone."))
    cases: list[Case] = []
    try:
        print("[big_zone] a tiny zone, for the baseline ...", file=sys.stderr, flush=True)
        cases.append(run_big(work, TINY_RECORDS, args.dnspol, args.timeout, "tiny"))
        if "big" in only:
            print(f"[big_zone] {args.records:,} records ...", file=sys.stderr, flush=True)
            cases.append(run_big(work, args.records, args.dnspol, args.timeout))
        if "many" in only:
            print(f"[big_zone] {args.zones:,} zones ...", file=sys.stderr, flush=True)
            cases.append(run_many(work, args.zones, args.dnspol, args.timeout))
    finally:
        if args.keep:
            print(f"[big_zone] kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    add_bytes_per_record(cases)
    print_cases(cases)
    if args.json_out:
        args.json_out.write_text(json.dumps([asdict(c) for c in cases], indent=1) + "\n")
    return 0 if all(c.status == "ok" for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
