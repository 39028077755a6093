#!/usr/bin/env bash
# bench/scale.sh -- how long dnspol takes to load, and how much memory it holds, with one
# zone of 1,000,000 records and with 100,000 zones of 10 records each. The zones are
# generated (deterministically) into a temporary directory. See "Scale" in bench/README.md.
#
#   bash bench/scale.sh [--records N] [--zones N] [--only big,many] [--keep]
#
# Environment: VENV (<repo>/.venv), DNSPOL (the dnspol executable, default $VENV/bin/dnspol),
# TMPDIR (where the zones are written, ~130 MB and 100,000 files), BENCH_KEEP=1 (= --keep:
# leave the generated zones there and print where).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
DNSPOL=${DNSPOL:-$VENV/bin/dnspol}
RECORDS=1000000
ZONES=100000
ONLY=big,many
KEEP=${BENCH_KEEP:-0}
WORK=""

log() { printf '[scale] %s\n' "$*" >&2; }

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

while (($#)); do
    case $1 in
        --records) RECORDS=${2:?--records needs a number}; shift ;;
        --zones) ZONES=${2:?--zones needs a number}; shift ;;
        --only) ONLY=${2:?--only needs big, many or big,many}; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) log "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
done

[[ -x $PY ]] || { log "no Python at $PY (set VENV)"; exit 1; }
[[ -x $DNSPOL ]] || { log "no dnspol at $DNSPOL (set DNSPOL)"; exit 1; }
command -v dig >/dev/null || log "dig not found: the served zones are asked with dnspython"
[[ -x /usr/bin/time ]] || log "/usr/bin/time not found: peak memory comes from wait4(2)"

cleanup() {
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then
            log "kept the generated zones in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dnspol-scale.XXXXXX")
[[ ,$ONLY, == *,big,* ]] || RECORDS=0
[[ ,$ONLY, == *,many,* ]] || ZONES=0
log "generating $RECORDS records in one zone and $ZONES zones of 10 records into $WORK"
"$PY" "$BENCH_DIR/scale.py" gen "$WORK" --records "$RECORDS" --zones "$ZONES"
"$PY" "$BENCH_DIR/scale.py" run "$WORK" --only "$ONLY" --dnspol "$DNSPOL"
