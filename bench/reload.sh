#!/usr/bin/env bash
# bench/reload.sh -- reloads under load lose nothing.
#
# Serves the bundled example (policies/dnspol.yaml, on a free port) under a steady
# dnsperf load and reloads it RELOADS times (default 100): each time it rewrites the
# zone's serial and sends SIGHUP, so every reload really builds and swaps a new
# snapshot (file watching is off, so the count is exact). At the end it prints dnsperf's sent / completed / lost
# counts and response codes, how many reloads the server logged, and what a probing
# client saw (bench/switch_probe.py: back-to-back UDP and TCP questions; an answer
# from an older configuration after a newer one is counted as old-after-new), and
# exits 1 if a query was lost, a SERVFAIL came back, a reload did not happen, or
# the probe saw an old answer after a new one.
#
#   bash bench/reload.sh [RELOADS]        (QPS=20000 by default: a steady, not saturating, load)
#   WORKERS=2 bash bench/reload.sh        (worker processes: each reload starts a new generation
#                                         of them, and the old one finishes; ~1 s per reload)
set -euo pipefail
cd "$(dirname "$0")/.."
RELOADS=${1:-100}
QPS=${QPS:-20000}
WORKERS=${WORKERS:-1}
VENV=${VENV:-.venv}
command -v dnsperf >/dev/null || { apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null; }

work=$(mktemp -d -t dnspol-reload.XXXXXX)
cleanup() { [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp -r policies "$work/"
zone=$work/policies/split-horizon/zones/example.com.zone
for n in www mail nope api; do echo "$n.example.com A"; done >"$work/queries"

"$VENV/bin/dnspol" serve --config "$work/policies/dnspol.yaml" --listen 127.0.0.1:0 --workers "$WORKERS" --no-watch \
  --ready-file "$work/ready" >/dev/null 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do [[ -s $work/ready ]] && break; sleep 0.1; done
port=$(awk '{print $2}' "$work/ready")
# with workers, each reload is a new generation of processes: ~0.5 s until it serves
seconds=$(( WORKERS > 1 ? RELOADS + 5 : RELOADS / 4 + 5 ))
done_line="INFO loaded"
[[ $WORKERS -gt 1 ]] && done_line="serving; the previous one is finishing"
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$seconds" -Q "$QPS" -c 2 >"$work/dnsperf.out" 2>&1 &
perf=$!
"$VENV/bin/python" bench/switch_probe.py "$port" "$seconds" >"$work/probe.out" 2>&1 &
probe=$!
sleep 2
serial=$(grep -oE '[0-9]{10}' "$zone" | head -1)
for i in $(seq "$RELOADS"); do
  sed -i "s/$serial/$((serial + i))/" "$zone"
  serial=$((serial + i))
  kill -HUP "$pid"
  # one reload at a time (SIGHUPs sent while one is loading are folded into one more)
  for _ in $(seq 100); do
    (( $(grep -c "$done_line" "$work/server.log" || true) >= i )) && break
    sleep 0.05
  done
  sleep 0.2
done
wait "$perf"
wait "$probe" || true
sleep 1  # the last old generation finishes
reloaded=$(grep -c "$done_line" "$work/server.log" || true)
expected=$RELOADS
failed=$(grep -c "reload failed" "$work/server.log" || true)
grep -E "Queries (sent|completed|lost)|Response codes|Queries per second" "$work/dnsperf.out"
# several digs, from new source ports each: with workers, every one must serve the last serial
served=$(for _ in 1 2 3 4 5 6 7 8; do dig @127.0.0.1 -p "$port" example.com SOA +short; done |
  awk '{print $3}' | sort -u | paste -sd' ')
echo "reloads logged: $reloaded of $expected, failed: $failed; serial served at the end: $served (file: $serial)"
cat "$work/probe.out"
if [[ $WORKERS -gt 1 ]]; then  # the gap while no generation answers (queries wait in the sockets)
  grep -oE "switched to generation [0-9]+ in [0-9.]+ ms" "$work/server.log" | awk '{print $6}' |
    sort -n | awk '{v[NR]=$1} END {if (NR) printf "switch-over gap: median %.1f ms, max %.1f ms over %d switches\n", v[int((NR+1)/2)], v[NR], NR}'
fi
old_after_new=$(awk '/^probe:/ {print $4}' "$work/probe.out")
probe_lost=$(awk '/^probe:/ {print $6}' "$work/probe.out")
lost=$(awk '/Queries lost:/ {print $3}' "$work/dnsperf.out")
servfail=$(grep -oE "SERVFAIL [0-9]+" "$work/dnsperf.out" | awk "{print \$2}" || true)
if [[ ${lost:-1} != 0 || -n $servfail || $reloaded -lt $expected || $served != "$serial" \
      || ${old_after_new:-1} != 0 || ${probe_lost:-1} != 0 ]]; then
  echo "FAIL: lost=${lost:-?} servfail=${servfail:-0} reloads=$reloaded old-after-new=${old_after_new:-?}" >&2
  exit 1
fi
echo "OK: $reloaded reloads under load, 0 lost, no SERVFAIL, 0 old-after-new"
