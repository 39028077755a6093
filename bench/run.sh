#!/usr/bin/env bash
# bench/run.sh -- serve one zone from BIND, dnslib's DNSServer and dnspol, one after the
# other, load each with the same dnsperf query file and compare. See bench/README.md.
#
#   bash bench/run.sh [--distinct] [--mixed-case] [--edns] [--tcp] [--servers bind,dnspol,dnslib] [--seconds N]
#                     [--policy] [--all-cores] [--ecs] [--latency] [--rate QPS] [--json-out F]
#
#   --policy     dnspol serves a generated split-horizon config (10,000-prefix subnet list)
#   --all-cores  nothing pinned: named with its default threads, dnspol with its default
#                workers (one per core), dnsperf unpinned
#   --ecs        every query carries EDNS Client Subnet, from 4,000 distinct /24s
#   --mixed-case the query list 100 times over, each name in a random letter case (0x20
#                resolvers): a query's exact bytes recur only every ~1,000,000 queries
#   --latency    after each max-rate run, a fixed-rate run (half that rate, or --rate QPS)
#                with dnsperf -v, and its p50/p99/p99.9
#   --json-out F write the JSON result to F (default bench/results/<UTC timestamp>.json)
#
# Environment: BENCH_SECONDS (15), BENCH_CLIENTS (4), BENCH_OUTSTANDING (100),
# BENCH_THREADS (dnsperf -T, unset: dnsperf's default), BENCH_SERVER_CPU (0),
# BENCH_CLIENT_CPU (1), BENCH_STARTUP_TIMEOUT (10), BENCH_KEEP (0),
# DNSPOL_ARGS (extra arguments for `dnspol serve`), VENV (<repo>/.venv),
# DNSPOL (the dnspol executable, default $VENV/bin/dnspol).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
DNSPOL=${DNSPOL:-$VENV/bin/dnspol}
export PATH="$PATH:/usr/sbin:/sbin"

RUN_SECONDS=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-4}
OUTSTANDING=${BENCH_OUTSTANDING:-100}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
STARTUP_TIMEOUT=${BENCH_STARTUP_TIMEOUT:-10}
KEEP=${BENCH_KEEP:-0}
THREADS=${BENCH_THREADS:-}
MODE=repeat
MIXED_CASE=0
EDNS=0
TRANSPORT=udp
POLICY=0
ALL_CORES=0
ECS=0
LATENCY=0
RATE=""
JSON_OUT=""
SERVERS=bind,dnspol,dnslib
KNOWN_SERVERS=" bind dnspol dnslib "

ZONE=$BENCH_DIR/zone/bench.example.zone
ZONE_ORIGIN=bench.example. # the zone in $ZONE (bench/realistic/run.sh sets both)
RESULTS_DIR=$BENCH_DIR/results
POLICY_DIR=""
ECS_MIX=""
WORK=""
SERVER_PID=""
DNSPERF_PID=""
NAMED=""
CMD=()
SKIP_REASON=""
DNSPERF_ARGS=()
DNSPERF_INPUT=()
PIN_SERVER=()
PIN_CLIENT=()

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

parse_args() {
    while (($#)); do
        case $1 in
            --distinct) MODE=distinct ;;
            --mixed-case) MIXED_CASE=1 ;;
            --edns) EDNS=1 ;;
            --tcp) TRANSPORT=tcp ;;
            --policy) POLICY=1 ;;
            --all-cores) ALL_CORES=1 ;;
            --ecs) ECS=1 ;;
            --latency) LATENCY=1 ;;
            --rate) RATE=${2:?--rate needs a number}; LATENCY=1; shift ;;
            --rate=*) RATE=${1#*=}; LATENCY=1 ;;
            --json-out) JSON_OUT=${2:?--json-out needs a path}; shift ;;
            --json-out=*) JSON_OUT=${1#*=} ;;
            --servers) SERVERS=${2:?--servers needs a list}; shift ;;
            --servers=*) SERVERS=${1#*=} ;;
            --seconds) RUN_SECONDS=${2:?--seconds needs a number}; shift ;;
            --seconds=*) RUN_SECONDS=${1#*=} ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    [[ $RUN_SECONDS =~ ^[0-9]+$ && $RUN_SECONDS -gt 0 ]] || die "--seconds must be a positive integer"
    [[ -z $RATE || ($RATE =~ ^[0-9]+$ && $RATE -gt 0) ]] || die "--rate must be a positive integer"
    [[ -z $THREADS || ($THREADS =~ ^[0-9]+$ && $THREADS -gt 0) ]] || die "BENCH_THREADS must be a positive integer"
    ((ECS)) && EDNS=1 # ECS queries carry an OPT record (dnsperf -B input, not -e)
    if [[ -n $JSON_OUT && $JSON_OUT != /* ]]; then JSON_OUT=$PWD/$JSON_OUT; fi
    local name
    for name in ${SERVERS//,/ }; do
        [[ $KNOWN_SERVERS == *" $name "* ]] || die "unknown server '$name' (known:$KNOWN_SERVERS)"
    done
}

wants() { [[ ",$SERVERS," == *",$1,"* ]]; }

# --- tools ------------------------------------------------------------------------------

ensure_tools() {
    local need=()
    command -v dnsperf >/dev/null || need+=(dnsperf)
    command -v dig >/dev/null || need+=(bind9-dnsutils)
    command -v taskset >/dev/null || need+=(util-linux)
    if wants bind && ! command -v named >/dev/null; then need+=(bind9); fi
    ((${#need[@]})) || return 0
    log "installing missing packages: ${need[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"
}

check_cpus() {
    if ((ALL_CORES)); then
        log "all cores: no server and no dnsperf pinned ($(nproc) CPUs usable)"
        return 0
    fi
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to CPU $SERVER_CPU (BENCH_SERVER_CPU)"
    taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CPU $CLIENT_CPU (BENCH_CLIENT_CPU)"
    [[ $SERVER_CPU != "$CLIENT_CPU" ]] || log "warning: server and dnsperf share CPU $SERVER_CPU"
}

# --- work dir, cleanup --------------------------------------------------------------------

make_workdir() {
    # AppArmor's profile for /usr/sbin/named allows reading /var/cache/bind/**, so keep the
    # generated named.conf and the zone copy there when possible.
    if [[ -d /var/cache/bind && -w /var/cache/bind ]]; then
        WORK=$(mktemp -d /var/cache/bind/dnspol-bench.XXXXXX)
    else
        WORK=$(mktemp -d -t dnspol-bench.XXXXXX)
    fi
    chmod 755 "$WORK"
}

alive() {
    local state
    state=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID i
    SERVER_PID=""
    # The server runs in its own process group (setsid), so this also reaches any workers.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $DNSPERF_PID ]]; then
        kill -TERM "$DNSPERF_PID" 2>/dev/null || true
        wait "$DNSPERF_PID" 2>/dev/null || true
    fi
    stop_server
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then log "kept work dir $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}

# --- inputs -------------------------------------------------------------------------------

generate_inputs() {
    (cd "$BENCH_DIR" && "$PY" gen_zone.py --out "$ZONE") >&2
    QUERIES=$BENCH_DIR/zone/queries-$MODE.txt
    MIX=$BENCH_DIR/zone/queries-$MODE.mix.json
    local case_args=()
    if ((MIXED_CASE)); then
        QUERIES=$BENCH_DIR/zone/queries-$MODE.mixed-case.txt
        MIX=$BENCH_DIR/zone/queries-$MODE.mixed-case.mix.json
        case_args=(--mixed-case 100)
    fi
    (cd "$BENCH_DIR" && "$PY" gen_queries.py --mode "$MODE" --out "$QUERIES" --mix-out "$MIX" \
        "${case_args[@]}") >&2
    DNSPERF_INPUT=(-d "$QUERIES")
    if ((POLICY || ECS)); then
        # The ECS subnets are drawn against the policy's prefix list, so generate it for
        # --ecs alone too: the ECS query file is then the same with and without --policy.
        POLICY_DIR=$WORK/policy
        local trusted=()
        ((ECS)) && trusted=(--trusted-resolver 127.0.0.1/32)
        (cd "$BENCH_DIR" && "$PY" gen_policy.py --zone "$ZONE" --out-dir "$POLICY_DIR" "${trusted[@]}") >&2
    fi
    if ((ECS)); then
        local bin=$BENCH_DIR/zone/queries-$MODE.ecs.bin
        ECS_MIX=$BENCH_DIR/zone/queries-$MODE.ecs.json
        (cd "$BENCH_DIR" && "$PY" gen_ecs.py --queries "$QUERIES" --out "$bin" \
            --prefixes "$POLICY_DIR/prefixes.txt" --mix-out "$ECS_MIX") >&2
        DNSPERF_INPUT=(-d "$bin" -B)
    fi
}

# --- servers ------------------------------------------------------------------------------

apparmor_enforces_named() {
    local profiles=/sys/kernel/security/apparmor/profiles
    [[ -r $profiles ]] && grep -q 'named (enforce)' "$profiles"
}

prepare_named() {
    NAMED=$(command -v named) || return 1
    if apparmor_enforces_named && [[ $WORK != /var/cache/bind/* ]]; then
        # The profile is attached by path; a copy of the binary runs unconfined.
        cp "$NAMED" "$WORK/named-bin"
        NAMED=$WORK/named-bin
        log "apparmor enforces named and /var/cache/bind is unusable: running a copy, $NAMED"
    fi
}

write_named_conf() {
    local port=$1 dir=$WORK/named
    mkdir -p "$dir"
    cp "$ZONE" "$dir/${ZONE_ORIGIN}zone"
    cat >"$dir/named.conf" <<EOF
options {
    directory "$dir";
    pid-file none;
    session-keyfile none;
    managed-keys-directory "$dir";
    listen-on port $port { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    allow-transfer { none; };
    notify no;
    dnssec-validation no;
    querylog no;
};
controls { };
zone "${ZONE_ORIGIN%.}" {
    type primary;
    file "$dir/${ZONE_ORIGIN}zone";
};
EOF
    named-checkconf "$dir/named.conf" >&2
}

# Sets CMD to the server's command line; returns 1 (reason in SKIP_REASON) if impossible.
build_cmd() {
    local name=$1 port=$2 extra=()
    case $name in
        bind)
            [[ -n $NAMED ]] || { SKIP_REASON="named is not installed"; return 1; }
            write_named_conf "$port"
            # -g: foreground, log to stderr; -n 1: one worker thread (--all-cores: named's
            # default, one per CPU). Runs as root (no -u).
            CMD=("$NAMED" -g -c "$WORK/named/named.conf")
            ((ALL_CORES)) || CMD+=(-n 1)
            ;;
        dnslib)
            CMD=("$PY" "$BENCH_DIR/dnslib_server.py" --zone "$ZONE" --port "$port" --address 127.0.0.1)
            ;;
        dnspol)
            if [[ ! -x $DNSPOL ]]; then
                SKIP_REASON="$DNSPOL does not exist (not installed yet?)"
                return 1
            fi
            read -r -a extra <<<"${DNSPOL_ARGS:-}"
            if ((POLICY)); then
                local check
                if ! check=$("$DNSPOL" check --config "$POLICY_DIR/dnspol.yaml" 2>&1); then
                    SKIP_REASON="dnspol check rejects the generated config: $(tail -n 3 <<<"$check" | tr '\n' ' ')"
                    return 1
                fi
                log "  dnspol check: $(tail -n 1 <<<"$check")"
                CMD=("$DNSPOL" serve --config "$POLICY_DIR/dnspol.yaml")
            else
                CMD=("$DNSPOL" serve --zone "$ZONE")
            fi
            CMD+=(--listen "127.0.0.1:$port")
            # One worker process when pinned to one core; with --all-cores dnspol's default
            # (one worker per usable core, SO_REUSEPORT).
            ((ALL_CORES)) || CMD+=(--workers 1)
            CMD+=("${extra[@]}")
            ;;
    esac
}

dig_at() {
    local port=$1
    shift
    local tcp=()
    [[ $TRANSPORT == tcp ]] && tcp=(+tcp)
    dig @127.0.0.1 -p "$port" +time=1 +tries=1 "${tcp[@]}" "$@" 2>/dev/null
}

now_ms() {
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((t / 1000))
}

# Returns 0 once the server answers the zone's SOA; else 1 with the reason in SKIP_REASON.
wait_until_answering() {
    local port=$1 deadline rc=0
    deadline=$(($(now_ms) + STARTUP_TIMEOUT * 1000))
    while (($(now_ms) < deadline)); do
        if ! alive "$SERVER_PID"; then
            wait "$SERVER_PID" 2>/dev/null || rc=$?
            SERVER_PID=""
            SKIP_REASON="exited (status $rc) before answering on 127.0.0.1:$port"
            return 1
        fi
        [[ $(dig_at "$port" +short "$ZONE_ORIGIN" SOA || true) == *hostmaster* ]] && return 0
        sleep 0.2
    done
    SKIP_REASON="did not answer a SOA query ($TRANSPORT) on 127.0.0.1:$port within ${STARTUP_TIMEOUT} s"
    return 1
}

sanity_line() {
    local port=$1 a c w nx
    a=$(dig_at "$port" +short host-0001.bench.example. A | tr '\n' ' ' || true)
    c=$(dig_at "$port" +short alias-001.bench.example. A | tr '\n' ' ' || true)
    w=$(dig_at "$port" +short foo.wild.bench.example. A | tr '\n' ' ' || true)
    nx=$(dig_at "$port" nx-0001.bench.example. A | grep -o 'status: [A-Z]*' || true)
    log "  sanity: host-0001 A -> ${a:-none}| alias-001 A -> ${c:-none}| foo.wild A -> ${w:-none}| nx-0001 -> ${nx:-?}"
}

# The policy at work: an internal client, a blocked one, and (with --ecs) ECS from inside and
# outside the prefix list. Expected from dnspol: 10.99.0.1, REFUSED, 10.99.0.1, 10.0.0.1.
policy_sanity_line() {
    local port=$1 internal blocked line
    internal=$(dig_at "$port" -b 127.0.0.2 +short host-0001.bench.example. A | tr '\n' ' ' || true)
    blocked=$(dig_at "$port" -b 127.0.0.3 host-0001.bench.example. A | grep -o 'status: [A-Z]*' || true)
    line="  policy: from 127.0.0.2 -> ${internal:-none}| from 127.0.0.3 -> ${blocked:-?}"
    if ((ECS)) && [[ -n $ECS_MIX ]]; then
        local inside outside a b
        inside=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["example_inside"])' "$ECS_MIX")
        outside=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["example_outside"])' "$ECS_MIX")
        a=$(dig_at "$port" "+subnet=$inside" +short host-0001.bench.example. A | tr '\n' ' ' || true)
        b=$(dig_at "$port" "+subnet=$outside" +short host-0001.bench.example. A | tr '\n' ' ' || true)
        line+="| ECS $inside -> ${a:-none}| ECS $outside -> ${b% }"
    fi
    log "$line"
}

skip_server() {
    local name=$1 reason=$2
    echo "skipped: $reason" >"$WORK/$name.status"
    log "SKIP $name: $reason"
}

cpu_of() { "$PY" "$BENCH_DIR/proc.py" cpu "$1"; }

# "task total steal" seconds of a core, or of all CPUs ("all"), to see other processes.
core_of() {
    if [[ $1 =~ ^([0-9]+|all)$ ]]; then "$PY" "$BENCH_DIR/proc.py" core "$1"; else echo "-"; fi
}

# Runs dnsperf in the background (so a signal to this script is handled at once) and waits;
# its wall/user/system seconds go to NAME.client: they show whether dnsperf, rather than the
# server, was the limit.
#   run_dnsperf NAME PORT OUT_FILE TIMES_FILE [extra dnsperf args...]
run_dnsperf() {
    local name=$1 port=$2 out=$3 times=$4 rc=0
    shift 4
    "${PIN_CLIENT[@]}" "$PY" "$BENCH_DIR/proc.py" timed "$times" -- \
        dnsperf -s 127.0.0.1 -p "$port" "${DNSPERF_INPUT[@]}" "${DNSPERF_ARGS[@]}" "$@" \
        >"$out" 2>&1 &
    DNSPERF_PID=$!
    wait "$DNSPERF_PID" || rc=$?
    DNSPERF_PID=""
    return "$rc"
}

# The fixed-rate run of --latency: dnsperf -v -Q RATE (RATE: --rate, else half the qps the
# max-rate run just measured), one line per answer to NAME.latency.raw, reduced by
# latency.py to NAME.latency.json.
measure_latency() {
    local name=$1 port=$2 server_core=$3 client_core=$4 rate=$RATE qps cpu_before cpu_after
    local core_before client_before perf_rc=0
    if [[ -z $rate ]]; then
        qps=$(grep -E 'Queries per second' "$WORK/$name.dnsperf.txt" | awk '{ print $4 }')
        rate=$(awk -v q="${qps:-0}" 'BEGIN { printf "%d", q / 2 }')
    fi
    if ((rate < 1)); then
        log "  no rate for the latency run of $name (max run measured ${qps:-nothing})"
        return 0
    fi
    log "  latency: dnsperf -v -Q $rate for ${RUN_SECONDS} s ..."
    core_before=$(core_of "$server_core")
    client_before=$(core_of "$client_core")
    cpu_before=$(cpu_of "$SERVER_PID")
    run_dnsperf "$name" "$port" "$WORK/$name.latency.raw" "$WORK/$name.latency.client" \
        -v -Q "$rate" || perf_rc=$?
    cpu_after=$(cpu_of "$SERVER_PID")
    echo "$core_before $(core_of "$server_core")" >"$WORK/$name.latency.core"
    echo "$client_before $(core_of "$client_core")" >"$WORK/$name.latency.clientcore"
    if ! grep -q '^Statistics:' "$WORK/$name.latency.raw"; then
        log "  latency run failed (dnsperf status $perf_rc)"
        echo "failed: dnsperf exited with status $perf_rc without statistics" >"$WORK/$name.latency.status"
        return 0
    fi
    echo "$cpu_before $cpu_after" >"$WORK/$name.latency.cpu"
    "$PY" "$BENCH_DIR/latency.py" "$WORK/$name.latency.raw" --rate "$rate" \
        --out "$WORK/$name.latency.json" | sed 's/^/[bench]   /' >&2
    # Keep only the statistics (the per-query lines are large) unless BENCH_KEEP=1.
    grep -v '^> ' "$WORK/$name.latency.raw" >"$WORK/$name.latency.txt" || true
    [[ $KEEP == 1 ]] || rm -f "$WORK/$name.latency.raw"
}

bench_server() {
    local name=$1 port cpu_before cpu_after drops_before drops_after
    local core_before core_after client_before client_after perf_rc=0
    port=$("$PY" "$BENCH_DIR/proc.py" freeport)
    if ! build_cmd "$name" "$port"; then
        skip_server "$name" "$SKIP_REASON"
        return 0
    fi
    printf '%q ' "${PIN_SERVER[@]}" "${CMD[@]}" >"$WORK/$name.cmd"
    if ((ALL_CORES)); then
        log "starting $name on 127.0.0.1:$port, not pinned"
    else
        log "starting $name on 127.0.0.1:$port, pinned to CPU $SERVER_CPU"
    fi
    setsid "${PIN_SERVER[@]}" "${CMD[@]}" >"$WORK/$name.log" 2>&1 </dev/null &
    SERVER_PID=$!
    if ! wait_until_answering "$port"; then
        skip_server "$name" "$SKIP_REASON"
        tail -n 15 "$WORK/$name.log" | sed 's/^/[bench]   | /' >&2 || true
        stop_server
        return 0
    fi
    sanity_line "$port"
    if ((POLICY)) && [[ $name == dnspol ]]; then policy_sanity_line "$port"; fi
    local server_core=$SERVER_CPU client_core=$CLIENT_CPU
    if ((ALL_CORES)); then
        server_core=all
        client_core=none
        log "  dnsperf for ${RUN_SECONDS} s (not pinned) ..."
    else
        log "  dnsperf for ${RUN_SECONDS} s (pinned to CPU $CLIENT_CPU) ..."
    fi
    drops_before=$("$PY" "$BENCH_DIR/proc.py" udp-drops)
    core_before=$(core_of "$server_core")
    client_before=$(core_of "$client_core")
    cpu_before=$(cpu_of "$SERVER_PID")
    "$PY" "$BENCH_DIR/proc.py" cpus "$SERVER_PID" >"$WORK/$name.procs.before"
    run_dnsperf "$name" "$port" "$WORK/$name.dnsperf.txt" "$WORK/$name.client" || perf_rc=$?
    if ! grep -q '^Statistics:' "$WORK/$name.dnsperf.txt"; then
        local last
        last=$(grep -v '^\[' "$WORK/$name.dnsperf.txt" | grep . | tail -n 1 || true)
        echo "failed: dnsperf exited with status $perf_rc without statistics: $last" >"$WORK/$name.status"
        log "  dnsperf failed (status $perf_rc); its output:"
        grep -v '^\[Timeout\]' "$WORK/$name.dnsperf.txt" | sed 's/^/[bench]   | /' >&2
        stop_server
        return 0
    fi
    if ! alive "$SERVER_PID"; then
        echo "failed: server exited during the run" >"$WORK/$name.status"
        log "  $name exited during the run"
        stop_server
        return 0
    fi
    cpu_after=$(cpu_of "$SERVER_PID")
    "$PY" "$BENCH_DIR/proc.py" cpus "$SERVER_PID" >"$WORK/$name.procs.after"
    "$PY" "$BENCH_DIR/proc.py" rss "$SERVER_PID" >"$WORK/$name.rss" || true
    core_after=$(core_of "$server_core")
    client_after=$(core_of "$client_core")
    drops_after=$("$PY" "$BENCH_DIR/proc.py" udp-drops)
    echo "$cpu_before $cpu_after" >"$WORK/$name.cpu"
    echo "$core_before $core_after" >"$WORK/$name.core"
    echo "$client_before $client_after" >"$WORK/$name.clientcore"
    echo $((drops_after - drops_before)) >"$WORK/$name.drops"
    echo ok >"$WORK/$name.status"
    grep -E 'Queries per second|Queries lost' "$WORK/$name.dnsperf.txt" | sed 's/^ */[bench]   /' >&2 || true
    if ((LATENCY)); then
        sleep 1
        measure_latency "$name" "$port" "$server_core" "$client_core"
    fi
    if ! alive "$SERVER_PID"; then
        log "  $name exited after the run"
        echo "exited after the run" >"$WORK/$name.exited"
    fi
    stop_server
    sleep 1 # let sockets and the CPU settle before the next server
}

build_dnsperf_args() {
    # -c/-q: enough clients and outstanding queries that the server, not dnsperf, is the
    # limit (see README); dnsperf's default 5 s timeout decides what counts as "lost".
    DNSPERF_ARGS=(-l "$RUN_SECONDS" -c "$CLIENTS" -q "$OUTSTANDING")
    [[ -n $THREADS ]] && DNSPERF_ARGS+=(-T "$THREADS")
    # -e cannot be combined with -B; the ECS queries carry their own OPT record.
    ((EDNS && !ECS)) && DNSPERF_ARGS+=(-e)
    [[ $TRANSPORT == tcp ]] && DNSPERF_ARGS+=(-m tcp)
    if dnsperf -H 2>&1 | grep -q 'latency-histogram'; then
        DNSPERF_ARGS+=(-O latency-histogram)
    fi
    return 0
}

main() {
    parse_args "$@"
    [[ -x $PY ]] || die "no python at $PY (set VENV)"
    trap cleanup EXIT
    trap 'log "interrupted, cleaning up"; exit 130' INT
    trap 'log "terminated, cleaning up"; exit 143' TERM
    ensure_tools
    check_cpus
    make_workdir
    generate_inputs
    build_dnsperf_args
    if wants bind; then prepare_named || log "named not found"; fi
    log "mode=$MODE mixed_case=$MIXED_CASE transport=$TRANSPORT edns=$EDNS ecs=$ECS policy=$POLICY all_cores=$ALL_CORES latency=$LATENCY${RATE:+ rate=$RATE} seconds=$RUN_SECONDS servers=$SERVERS"
    log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local name
    for name in ${SERVERS//,/ }; do
        bench_server "$name"
    done
    local report_args=()
    [[ -n $JSON_OUT ]] && report_args+=(--json-out "$JSON_OUT")
    [[ -n $ECS_MIX ]] && report_args+=(--ecs-mix "$ECS_MIX")
    ((POLICY)) && report_args+=(--policy "$POLICY_DIR/dnspol.yaml")
    ((ALL_CORES)) && report_args+=(--all-cores)
    ((LATENCY)) && report_args+=(--latency)
    local mode=$MODE
    if ((MIXED_CASE)); then mode+=", mixed case"; fi
    "$PY" "$BENCH_DIR/report.py" --run-dir "$WORK" --results-dir "$RESULTS_DIR" \
        --servers "$SERVERS" --mix "$MIX" --mode "$mode" --transport "$TRANSPORT" \
        --edns "$EDNS" --seconds "$RUN_SECONDS" --python "$PY" "${report_args[@]}" \
        --dnsperf-args "${PIN_CLIENT[*]}${PIN_CLIENT[*]:+ }dnsperf -s 127.0.0.1 -p PORT ${DNSPERF_INPUT[*]} ${DNSPERF_ARGS[*]}"
}

# bench/realistic/run.sh sources this file for its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
