#!/usr/bin/env bash
# bench/issue6.sh -- measure every target of the issue "Speed: answer as fast per core as
# BIND, with policies on, on every core": one bench/run.sh invocation per case, BIND and
# dnspol in each (same zone, same query file), then one summary table. See bench/README.md.
#
#   bash bench/issue6.sh
#
# Environment: BENCH_SECONDS (10 s per server and run), ISSUE6_RUNS (comma list of the runs
# below, default all), ISSUE6_OUT (result dir, default bench/results/issue6-<UTC timestamp>;
# an existing one keeps the results of the runs not repeated, and the summary covers all),
# ISSUE6_QUIET_PCT (10) and ISSUE6_QUIET_WAIT (180): before each run, wait up to that many
# seconds for the machine to be less busy than that % of all CPUs (over 2 s); then run anyway.
# Everything else (BENCH_CLIENTS, BENCH_THREADS, DNSPOL_ARGS, ...) is passed on to run.sh.
#
# Runs (all with dnspol on the generated split-horizon policy, --policy, except udp-zone):
#   udp-1core   UDP, both servers pinned to CPU 0, dnsperf to CPU 1, then the latency run at
#               half of each server's max rate (targets 1 and 5)
#   all-cores   UDP, nothing pinned: named default threads, dnspol default workers (target 2)
#   tcp         dnsperf -m tcp, pinned (target 3)
#   edns        dnsperf -e, pinned (target 4)
#   ecs         ECS from 4,000 distinct /24s, dnspol trusts 127.0.0.1, pinned (target 4)
#   distinct    100,000 distinct names, pinned (information)
#   mixed-case  the query list in random letter case (0x20), pinned (information: no exact
#               repeats, every answer from the keyed store)
#   udp-zone    UDP, pinned, dnspol --zone without a policy (information: the policy's cost)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
RUN_SECONDS=${BENCH_SECONDS:-10}
ALL_RUNS=udp-1core,all-cores,tcp,edns,ecs,distinct,mixed-case,udp-zone
RUNS=${ISSUE6_RUNS:-$ALL_RUNS}
OUT=${ISSUE6_OUT:-$BENCH_DIR/results/issue6-$(date -u +%Y%m%dT%H%M%SZ)}
QUIET_PCT=${ISSUE6_QUIET_PCT:-10}
QUIET_WAIT=${ISSUE6_QUIET_WAIT:-180}

log() { printf '[issue6] %s\n' "$*" >&2; }

case ${1:-} in
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
    "") ;;
    *) log "unknown argument: $1 (see --help)"; exit 2 ;;
esac
[[ $RUN_SECONDS =~ ^[0-9]+$ && $RUN_SECONDS -gt 0 ]] || { log "BENCH_SECONDS must be a positive integer"; exit 2; }

run_args() {
    case $1 in
        udp-1core) echo "--policy --latency" ;;
        all-cores) echo "--policy --all-cores" ;;
        tcp) echo "--policy --tcp" ;;
        edns) echo "--policy --edns" ;;
        ecs) echo "--policy --ecs" ;;
        distinct) echo "--policy --distinct" ;;
        mixed-case) echo "--policy --mixed-case" ;;
        udp-zone) echo "" ;;
        *) return 1 ;;
    esac
}

# Percent of all CPUs busy over the next 2 s (other sessions share this machine).
busy_pct() {
    local before after
    before=$("$PY" "$BENCH_DIR/proc.py" core all)
    sleep 2
    after=$("$PY" "$BENCH_DIR/proc.py" core all)
    awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " ");
        total = y[2] - x[2]; printf "%d", (total > 0 ? 100 * (y[1] - x[1]) / total : 0) }'
}

wait_quiet() {
    local waited=0 busy
    while true; do
        busy=$(busy_pct)
        waited=$((waited + 2))
        ((busy < QUIET_PCT)) && return 0
        if ((waited >= QUIET_WAIT)); then
            log "    machine still ${busy}% busy after ${QUIET_WAIT} s; running anyway"
            echo "$busy" >"$OUT/$1.busy-before"
            return 0
        fi
        ((waited % 30 == 0)) && log "    machine ${busy}% busy (other sessions); waiting for < ${QUIET_PCT}% ..."
    done
}

for name in ${RUNS//,/ }; do
    run_args "$name" >/dev/null || { log "unknown run '$name' (known: $ALL_RUNS)"; exit 2; }
done

mkdir -p "$OUT"
log "results in $OUT, $RUN_SECONDS s per server and run, runs: $RUNS"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Re-running some runs into an existing ISSUE6_OUT replaces just their results and commands.
touch "$OUT/commands.txt"
for name in ${RUNS//,/ }; do
    grep -v -P "^\Q$name\E\t" "$OUT/commands.txt" >"$OUT/commands.txt.new" || true
    mv "$OUT/commands.txt.new" "$OUT/commands.txt"
    rm -f "$OUT/$name.json" "$OUT/$name.busy-before"
done
for name in ${RUNS//,/ }; do
    read -r -a args <<<"$(run_args "$name")"
    cmd=(bash "$BENCH_DIR/run.sh" --servers "bind,dnspol" --seconds "$RUN_SECONDS" "${args[@]}"
        --json-out "$OUT/$name.json")
    printf '%s\t%s\n' "$name" "${cmd[*]}" >>"$OUT/commands.txt"
    wait_quiet "$name"
    log "=== $name: ${cmd[*]}"
    rc=0
    "${cmd[@]}" >"$OUT/$name.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "    run.sh exited with status $rc (see $OUT/$name.log)"
        ((rc < 128)) || exit "$rc" # interrupted: stop here
    fi
    # The table of that run, as run.sh printed it.
    sed -n '/^server /,/^$/p' "$OUT/$name.log" | sed 's/^/[issue6]     /' >&2
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" "$BENCH_DIR/issue6.py" "$OUT"
