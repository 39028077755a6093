"""What signing costs: time and memory to sign a generated zone, and a reload with signing.

Generates ``real.example.`` with ``bench/realistic/gen_zone.py --records R`` (or takes
``--zone FILE``), makes a throwaway KSK+ZSK (ECDSAP256SHA256) or a CSK (ED25519) in BIND's
format, writes a config with an overlay scope that changes ``--overlay`` names, and measures
in this process:

- ``load``: reading the config and zone (what an unsigned reload reads);
- ``sign``: ``dnspol.dnssec.sign.sign_all`` over the default scope and the overlay scope,
  with ``--workers`` processes (``server.sign_workers``);
- ``snapshot``: the whole reload with signing (``snapshot_from_config``: sign, then compile
  the answer tables), and the same without ``dnssec:`` for comparison.

Memory: resident set after each step and the peak (``ru_maxrss``; the workers' own peak
separately). Prints one JSON object.

Usage: python bench/dnssec_sign.py --records 100000 [--workers 2] [--algorithm 13|15]
           [--denial nsec|nsec3] [--overlay 100] [--zone FILE] [--no-reload]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.dnssec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dnspol.config import load_config  # noqa: E402
from dnspol.dnssec.sign import sign_all  # noqa: E402
from dnspol.state import snapshot_from_config  # noqa: E402

ORIGIN = "real.example."


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def write_key(directory: Path, algorithm: int, flags: int) -> str:
    """A key pair in BIND's format (what dnssec-keygen writes), made with cryptography."""
    import base64

    if algorithm == 15:
        private = ed25519.Ed25519PrivateKey.generate()
        secret = private.private_bytes_raw()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        secret = private.private_numbers().private_value.to_bytes(32, "big")
    dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=flags)
    base = f"K{ORIGIN}+{algorithm:03d}+{dns.dnssec.key_id(dnskey):05d}"
    (directory / f"{base}.key").write_text(f"{ORIGIN} IN DNSKEY {dnskey.to_text()}\n")
    (directory / f"{base}.private").write_text(
        f"Private-key-format: v1.3\nAlgorithm: {algorithm}\n"
        f"PrivateKey: {base64.b64encode(secret).decode()}\n"
    )
    return base


def write_overlay(zone: Path, out: Path, count: int) -> None:
    """An overlay that gives the first ``count`` A records other addresses."""
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 300"]
    with open(zone) as fh:
        for line in fh:
            words = line.split()
            if len(lines) - 2 >= count:
                break
            if len(words) >= 5 and words[3] == "A" and not words[0].startswith(("$", "@")):
                lines.append(f"{words[0]} 300 IN A 10.{len(lines) % 250}.0.1")
    out.write_text("\n".join(lines) + "\n")


def write_config(directory: Path, zone: Path, keys: list[str], denial: str, signed: bool) -> Path:
    config = directory / ("signed.yaml" if signed else "unsigned.yaml")
    dnssec = f"    dnssec: {{keys: [{', '.join(keys)}], denial: {denial}}}\n" if signed else ""
    config.write_text(
        f"server:\n  zone_max_records: 20000000\n"
        f"zones:\n  {ORIGIN}:\n    file: {zone}\n"
        f"    scopes:\n      internal: {{overlay: overlay.zone}}\n{dnssec}"
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--zone", type=Path, help="a real.example. zone (else generated)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--algorithm", type=int, choices=(13, 15), default=13)
    parser.add_argument("--denial", choices=("nsec", "nsec3"), default="nsec")
    parser.add_argument("--overlay", type=int, default=100, help="names the overlay changes")
    parser.add_argument("--no-reload", action="store_true", help="skip the snapshot timings")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dnssec-bench-"))
    zone = args.zone
    if zone is None:
        zone = work / "real.example.zone"
        gen = ROOT / "bench" / "realistic" / "gen_zone.py"
        made = [sys.executable, str(gen), "--records", str(args.records), "--out", str(zone)]
        subprocess.run(made, check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen_cpu = before.ru_utime + before.ru_stime  # the zone generator's, not signing's
    if args.algorithm == 13:
        keys = [write_key(work, 13, 257), write_key(work, 13, 256)]
    else:
        keys = [write_key(work, 15, 257)]
    write_overlay(zone, work / "overlay.zone", args.overlay)
    signed_config = write_config(work, zone, keys, args.denial, True)
    result: dict[str, object] = {
        "records": args.records,
        "workers": args.workers,
        "algorithm": args.algorithm,
        "denial": args.denial,
        "keys": len(keys),
        "rss_start_mib": round(rss_mib(), 1),
    }

    began = time.perf_counter()
    cfg = load_config(signed_config)
    result["load_s"] = round(time.perf_counter() - began, 2)
    gc.collect()
    result["rss_loaded_mib"] = round(rss_mib(), 1)
    default = cfg.zones.get(next(iter(cfg.dnssec)))
    result["rrsets"] = sum(len(node) for node in default.nodes.values())

    began, cpu = time.perf_counter(), time.process_time()
    signed = sign_all(cfg.zones, cfg.variants, cfg.dnssec, workers=args.workers)
    result["sign_s"] = round(time.perf_counter() - began, 2)
    result["sign_cpu_s_this_process"] = round(time.process_time() - cpu, 2)
    gc.collect()
    result["rss_signed_mib"] = round(rss_mib(), 1)
    result["peak_mib"] = round(peak_mib(), 1)
    result["peak_workers_mib"] = round(peak_mib(resource.RUSAGE_CHILDREN), 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["sign_cpu_s_workers"] = round(children.ru_utime + children.ru_stime - gen_cpu, 2)
    signed_default = signed.variants[(default.origin, "default")]
    result["rrsigs"] = sum(
        len(node[46].rdatas) for node in signed_default.nodes.values() if 46 in node
    )
    result["rrsets_per_s"] = round(result["rrsets"] / result["sign_s"])  # type: ignore[operator]
    del signed, signed_default, default, cfg
    gc.collect()

    if not args.no_reload:
        unsigned_config = write_config(work, zone, keys, args.denial, False)
        for name, path in (
            ("reload_unsigned_s", unsigned_config),
            ("reload_signed_s", signed_config),
        ):
            began = time.perf_counter()
            snap = snapshot_from_config(load_config(path))
            result[name] = round(time.perf_counter() - began, 2)
            del snap
            gc.collect()
        result["peak_after_reloads_mib"] = round(peak_mib(), 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
