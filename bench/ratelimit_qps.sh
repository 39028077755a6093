#!/usr/bin/env bash
# bench/ratelimit_qps.sh -- what response-rate limiting costs a legitimate load.
#
# Serves the bundled example (policies/dnspol.yaml) with one worker pinned to CPU 0,
# without and with `server.rate_limit` (rates so high that nothing is limited: every
# answer is accounted, none dropped), loads each with dnsperf pinned to CPU 1, and
# prints qps and the server's CPU µs per query; ROUNDS pairs, alternating.
#
#   bash bench/ratelimit_qps.sh [ROUNDS]        (default 3; RUN_SECONDS=10 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECONDS_PER_RUN=${RUN_SECONDS:-10}
VENV=${VENV:-.venv}
command -v dnsperf >/dev/null || { apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null; }
work=$(mktemp -d -t dnspol-rrl.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r policies "$work/"
base=$work/policies/dnspol.yaml
sed 's/^  listen: .*/  listen: ["127.0.0.1:5390"]/' "$base" >"$work/policies/off.yaml"
sed 's/^  listen: .*/  listen: ["127.0.0.1:5391"]\n  rate_limit: {responses_per_second: 1000000}/' \
  "$base" >"$work/policies/on.yaml"
printf '%s\n' "www.example.com A" "mail.example.com A" "example.com SOA" \
  "nope.example.com A" "api.example.com AAAA" "www.example.com AAAA" >"$work/queries"

run() {
  local mode=$1 port=$2 pid t0 t1 out done
  taskset -c 0 "$VENV/bin/dnspol" serve --config "$work/policies/$mode.yaml" --workers 1 \
    --no-watch --control none >"$work/$mode.log" 2>&1 &
  pid=$!
  sleep 2
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$SECONDS_PER_RUN" -c 4 -q 100 2>&1)
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  done=$(awk '/Queries completed/ {print $3}' <<<"$out")
  printf '%-4s qps %8.0f  lost %s  server CPU %.2f µs/query\n' "$mode" \
    "$(awk '/Queries per second/ {print $4}' <<<"$out")" "$(awk '/Queries lost/ {print $3}' <<<"$out")" \
    "$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $done" | bc -l)"
}
for _ in $(seq "$ROUNDS"); do run off 5390; run on 5391; done
