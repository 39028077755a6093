#!/usr/bin/env bash
# bench/realistic/run.sh -- dnspol next to BIND, NSD and Knot under traffic that looks real:
# a 200,000-name zone, and per load one dnsperf query file that every server gets in turn,
# in the same run. One table per load. See "Realistic traffic" in bench/README.md.
#
#   bash bench/realistic/run.sh [--loads zipf,flood,mix,policy] [--servers bind,dnspol,nsd,knot]
#                               [--seconds 20] [--names 200000] [--lines 1000000]
#                               [--all-cores] [--out DIR]
#
#   --loads      which query files, in that order (all four)
#   --servers    which servers, in that order, for every load (all four)
#   --seconds    dnsperf run time per server and load (20)
#   --names      entries in the zone (200,000; about 1.8 records each)
#   --lines      lines per query file (1,000,000)
#   --all-cores  nothing pinned: dnspol with its default workers, named with its default
#                threads, NSD with one server process per CPU, Knot with its default workers
#   --out DIR    where the JSON results go (bench/realistic/results/<UTC timestamp>)
#
# Environment as bench/run.sh (BENCH_CLIENTS, BENCH_OUTSTANDING, BENCH_THREADS,
# BENCH_SERVER_CPU, BENCH_CLIENT_CPU, BENCH_KEEP, VENV, DNSPOL, DNSPOL_ARGS), and
# BENCH_STARTUP_TIMEOUT (120 here: a server gets that long to load the zone).
set -euo pipefail

REALISTIC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The server start-up, probing, CPU accounting, dnsperf runs and report of bench/run.sh.
# shellcheck source=../run.sh
source "$REALISTIC_DIR/../run.sh"

STARTUP_TIMEOUT=${BENCH_STARTUP_TIMEOUT:-120}
RUN_SECONDS=${BENCH_SECONDS:-20}
KNOWN_SERVERS=" bind dnspol nsd knot "
SERVERS=bind,dnspol,nsd,knot
LOADS=zipf,flood,mix,policy
KNOWN_LOADS=" zipf flood mix policy "
NAMES=200000
LINES=1000000
OUT_DIR=""
RUN_ROOT=""
INPUTS=$REALISTIC_DIR/zone
ZONE_ORIGIN=real.example.
DNSPOL_ARGS=${DNSPOL_ARGS---control none}
MANIFEST=""

realistic_usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

realistic_args() {
    while (($#)); do
        case $1 in
            --loads) LOADS=${2:?--loads needs a list}; shift ;;
            --servers) SERVERS=${2:?--servers needs a list}; shift ;;
            --seconds) RUN_SECONDS=${2:?--seconds needs a number}; shift ;;
            --names) NAMES=${2:?--names needs a number}; shift ;;
            --lines) LINES=${2:?--lines needs a number}; shift ;;
            --all-cores) ALL_CORES=1 ;;
            --out) OUT_DIR=${2:?--out needs a directory}; shift ;;
            -h|--help) realistic_usage; exit 0 ;;
            *) realistic_usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    local n
    for n in RUN_SECONDS NAMES LINES; do
        [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "${n,,} must be a positive integer"
    done
    for n in ${SERVERS//,/ }; do
        [[ $KNOWN_SERVERS == *" $n "* ]] || die "unknown server '$n' (known:$KNOWN_SERVERS)"
    done
    for n in ${LOADS//,/ }; do
        [[ $KNOWN_LOADS == *" $n "* ]] || die "unknown load '$n' (known:$KNOWN_LOADS)"
    done
    OUT_DIR=${OUT_DIR:-$REALISTIC_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)}
    [[ $OUT_DIR == /* ]] || OUT_DIR=$PWD/$OUT_DIR
}

# bench/run.sh's ensure_tools, plus NSD and Knot when asked for.
eval "base_$(declare -f ensure_tools)"
ensure_tools() {
    base_ensure_tools
    local need=()
    if wants nsd && ! command -v nsd >/dev/null; then need+=(nsd); fi
    if wants knot && ! command -v knotd >/dev/null; then need+=(knot); fi
    ((${#need[@]})) || return 0
    log "installing missing packages: ${need[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >&2 ||
        log "could not install ${need[*]}: those servers will be skipped"
}

# --- inputs: generated once per size into bench/realistic/zone/, regenerated when a
# generator changed ----------------------------------------------------------------------

stale() { # stale OUT INPUT... : OUT is missing or older than an input
    local out=$1 input
    shift
    [[ -s $out ]] || return 0
    for input in "$@"; do [[ $input -nt $out ]] && return 0; done
    return 1
}

generate_zone() {
    ZONE=$INPUTS/real.example.$NAMES.zone
    MANIFEST=$INPUTS/real.example.$NAMES.json
    if stale "$MANIFEST" "$REALISTIC_DIR/gen_zone.py"; then
        "$PY" "$REALISTIC_DIR/gen_zone.py" --names "$NAMES" --out "$ZONE" --manifest "$MANIFEST" >&2
    fi
    POLICY_DIR=$INPUTS/policy-$NAMES
    if wants_load policy && stale "$POLICY_DIR/dnspol.yaml" "$REALISTIC_DIR/gen_policy.py" "$ZONE"; then
        "$PY" "$REALISTIC_DIR/gen_policy.py" --zone "$ZONE" --names "$NAMES" --out-dir "$POLICY_DIR" >&2
    fi
}

wants_load() { [[ ",$LOADS," == *",$1,"* ]]; }

# Sets QUERIES, MIX, dnsperf's input and the policy/ECS switches for one load.
generate_queries() {
    local load=$1 base=$INPUTS/queries-$1-$NAMES-$LINES extra=()
    QUERIES=$base.txt
    MIX=$base.json
    if [[ $load == policy ]]; then
        extra=(--prefixes "$POLICY_DIR/prefixes.txt" --bin-out "$base.ecs.bin")
    fi
    if stale "$MIX" "$REALISTIC_DIR/gen_queries.py" "$REALISTIC_DIR/gen_zone.py"; then
        "$PY" "$REALISTIC_DIR/gen_queries.py" --load "$load" --names "$NAMES" --lines "$LINES" \
            --out "$QUERIES" --mix-out "$MIX" "${extra[@]}" >&2
    fi
    DNSPERF_INPUT=(-d "$QUERIES")
    POLICY=0 ECS=0 EDNS=0 ECS_MIX=""
    if [[ $load == policy ]]; then
        POLICY=1 ECS=1 EDNS=1
        DNSPERF_INPUT=(-d "$base.ecs.bin" -B)
        ECS_MIX=$base.ecs.json
        "$PY" -c 'import json, sys; json.dump(json.load(open(sys.argv[1]))["ecs"], open(sys.argv[2], "w"))' \
            "$MIX" "$ECS_MIX"
    fi
}

# --- NSD and Knot: configured to run as this user, in the load's work dir --------------

write_nsd_conf() {
    local port=$1 dir=$WORK/nsd servers=1 reuseport=no
    mkdir -p "$dir"
    if ((ALL_CORES)); then servers=$(nproc) reuseport=yes; fi
    cat >"$dir/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1
    port: $port
    do-ip6: no
    server-count: $servers
    reuseport: $reuseport
    username: ""
    chroot: ""
    zonesdir: "$dir"
    database: ""
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    pidfile: "$dir/nsd.pid"
    verbosity: 0
    # Debian's NSD limits responses to 200 per second per /24 by default; the other
    # servers limit nothing, and dnsperf is one client.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "${ZONE_ORIGIN%.}"
    zonefile: "$ZONE"
EOF
    nsd-checkconf "$dir/nsd.conf" >&2
}

write_knot_conf() {
    local port=$1 dir=$WORK/knot workers=""
    mkdir -p "$dir/db"
    ((ALL_CORES)) || workers=$'\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1'
    cat >"$dir/knot.conf" <<EOF
server:
    rundir: "$dir"
    listen: 127.0.0.1@$port$workers
log:
  - target: stderr
    any: notice
database:
    storage: "$dir/db"
control:
    listen: "$dir/knot.sock"
template:
  - id: default
    storage: "$dir"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: "$ZONE_ORIGIN"
    file: "$ZONE"
EOF
    knotc -c "$dir/knot.conf" conf-check >&2
}

eval "base_$(declare -f build_cmd)"
build_cmd() {
    local name=$1 port=$2
    case $name in
        nsd)
            command -v nsd >/dev/null || { SKIP_REASON="nsd is not installed"; return 1; }
            write_nsd_conf "$port" || { SKIP_REASON="nsd-checkconf rejects the config"; return 1; }
            # -d: foreground; one server process when pinned (server-count 1)
            CMD=(nsd -d -c "$WORK/nsd/nsd.conf")
            ;;
        knot)
            command -v knotd >/dev/null || { SKIP_REASON="knotd is not installed"; return 1; }
            write_knot_conf "$port" || { SKIP_REASON="knotc conf-check rejects the config"; return 1; }
            CMD=(knotd -c "$WORK/knot/knot.conf")
            ;;
        *) base_build_cmd "$@" ;;
    esac
}

probe() { # probe PORT NAME TYPE: the answer's data, or the status when there is none
    local out
    out=$(dig_at "$1" +short "$2" "$3" | tr '\n' ' ' || true)
    [[ -n $out ]] && { echo "${out% }"; return 0; }
    dig_at "$1" "$2" "$3" | grep -o 'status: [A-Z]*' || echo "?"
}

# Replaces bench/run.sh's: the realistic zone's names.
sanity_line() {
    local port=$1 host cname deleg referral
    host=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["probes"][1])' "$MANIFEST")
    cname=beta3.team0.$ZONE_ORIGIN
    deleg=www.media7.team1.$ZONE_ORIGIN
    referral=$(dig_at "$port" "$deleg" A | grep -c 'IN[[:space:]]*NS' || true)
    log "  sanity: $host A -> $(probe "$port" "$host" A) | $cname A -> $(probe "$port" "$cname" A)" \
        "| u1.wild A -> $(probe "$port" u1.wild.$ZONE_ORIGIN A) | $deleg -> $referral NS" \
        "| eu (ENT) -> $(probe "$port" eu.$ZONE_ORIGIN A) | nx -> $(probe "$port" nx.$ZONE_ORIGIN A)"
}

# Replaces bench/run.sh's: the first overlaid name of the realistic policy.
policy_sanity_line() {
    local port=$1 host inside outside
    host=$(awk '$3 == "IN" && $4 == "A" { print $1; exit }' "$POLICY_DIR/real.example.internal.zone")
    host=$host.$ZONE_ORIGIN
    inside=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["example_inside"])' "$ECS_MIX")
    outside=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["example_outside"])' "$ECS_MIX")
    log "  policy: $host from 127.0.0.2 -> $(dig_at "$port" -b 127.0.0.2 +short "$host" A | tr -d '\n')" \
        "| from 127.0.0.3 -> $(dig_at "$port" -b 127.0.0.3 "$host" A | grep -o 'status: [A-Z]*' || echo '?')" \
        "| ECS $inside -> $(dig_at "$port" "+subnet=$inside" +short "$host" A | tr -d '\n')" \
        "| ECS $outside -> $(dig_at "$port" "+subnet=$outside" +short "$host" A | tr -d '\n')"
}

run_load() {
    local load=$1 name
    WORK=$RUN_ROOT/$load
    mkdir -p "$WORK"
    generate_queries "$load"
    build_dnsperf_args
    log "load $load: $(wc -l <"$QUERIES") queries, $RUN_SECONDS s per server, servers $SERVERS"
    for name in ${SERVERS//,/ }; do
        bench_server "$name"
    done
    local report_args=()
    [[ -n $ECS_MIX ]] && report_args+=(--ecs-mix "$ECS_MIX")
    ((POLICY)) && report_args+=(--policy "$POLICY_DIR/dnspol.yaml")
    ((ALL_CORES)) && report_args+=(--all-cores)
    echo
    echo "=== load: $load ==="
    "$PY" "$BENCH_DIR/report.py" --run-dir "$WORK" --results-dir "$OUT_DIR" \
        --json-out "$OUT_DIR/$load.json" --servers "$SERVERS" --mix "$MIX" --mode "$load" \
        --transport udp --edns "$EDNS" --seconds "$RUN_SECONDS" --python "$PY" "${report_args[@]}" \
        --dnsperf-args "${PIN_CLIENT[*]}${PIN_CLIENT[*]:+ }dnsperf -s 127.0.0.1 -p PORT ${DNSPERF_INPUT[*]} ${DNSPERF_ARGS[*]}"
}

realistic_cleanup() {
    local rc=$?
    [[ -n $RUN_ROOT ]] && WORK=$RUN_ROOT
    (exit "$rc")
    cleanup
}

realistic_main() {
    realistic_args "$@"
    [[ -x $PY ]] || die "no python at $PY (set VENV)"
    trap realistic_cleanup EXIT
    trap 'log "interrupted, cleaning up"; exit 130' INT
    trap 'log "terminated, cleaning up"; exit 143' TERM
    ensure_tools
    check_cpus
    make_workdir
    RUN_ROOT=$WORK
    mkdir -p "$INPUTS" "$OUT_DIR"
    generate_zone
    if wants bind; then prepare_named || log "named not found"; fi
    log "zone $ZONE ($("$PY" -c 'import json, sys; m = json.load(open(sys.argv[1])); print(f"{m["records"]:,} records, {m["entries"]:,} entries")' "$MANIFEST"))"
    log "loads=$LOADS servers=$SERVERS seconds=$RUN_SECONDS all_cores=$ALL_CORES"
    log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local load
    for load in ${LOADS//,/ }; do
        run_load "$load"
    done
    "$PY" "$REALISTIC_DIR/summary.py" --dir "$OUT_DIR" --loads "$LOADS" --servers "$SERVERS" \
        --zone-manifest "$MANIFEST" --all-cores "$ALL_CORES"
}

realistic_main "$@"
