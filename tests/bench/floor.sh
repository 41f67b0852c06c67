#!/usr/bin/env bash
# tests/bench/floor.sh: sluice beside the relay floor (#15). One producer,
# one consumer, window 64, credit 64, one ACK per message, at each size; a
# fresh server per run, the servers' runs interleaved (BASE_SLUICED first
# when given, then SLUICED, then the relay of `sluice bench
# --relay-listen`), each run verified by the bench (exit 0). Prints one line
# a run: what, size, msg/s, MB/s, p50 and p99 (us), and the server's CPU
# (user + system from /proc/PID/stat) per message in us.
#
# Environment: SLUICED, SLUICE (build/src), BASE_SLUICED (optional: a
# second daemon, e.g. main's, to compare with), BOUNDED (optional: a
# count; adds a row for SLUICED with defaults.max_messages at it), LAG
# (optional: a count; a row with defaults.max_lag at it), SIZES ("64 1024 16384
# 65536"), RUNS (3), MESSAGES (a count for every size; by default 200000
# up to 1 KiB, 50000 at 16 KiB, 20000 above), RAW=FILE (every run's --json).
set -euo pipefail
source "$(dirname "$0")/common.sh"
SIZES=${SIZES:-64 1024 16384 65536}
RUNS=${RUNS:-3}
ticks=$(getconf CLK_TCK)

messages_for() {
    if [[ -n ${MESSAGES:-} ]]; then echo "$MESSAGES"
    elif (($1 <= 1024)); then echo 200000
    elif (($1 <= 16384)); then echo 50000
    else echo 20000; fi
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_daemon BIN [MAX_MESSAGES [MAX_LAG]]: a fresh daemon on a free port;
# sets $spid and $saddr.
start_daemon() {
    rm -f "$work/port"
    printf 'admin: {listen: ""}\ndefaults: {max_messages: %s, max_lag: %s}\n' "${2:-100000}" \
        "${3:-0}" >"$work/conf.yaml"
    SLUICED_PORT_FILE=$work/port "$1" -c "$work/conf.yaml" -l 127.0.0.1:0 2>"$work/sluiced.log" &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 500); do [[ -s $work/port ]] && break; sleep 0.01; done
    saddr=$(head -1 "$work/port")
}

start_relay() {
    "$SLUICE" bench --relay-listen 127.0.0.1:0 >"$work/relay" &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 500); do [[ -s $work/relay ]] && break; sleep 0.01; done
    saddr=$(sed 's/^relay listening on //' "$work/relay")
}

# one WHAT SIZE: a run against the server just started, then stop it.
one() {
    local what=$1 size=$2 n target=sluice
    n=$(messages_for "$size")
    [[ $what == relay ]] && target=relay
    true
    local c0 c1 json
    c0=$(cpu_ticks "$spid")
    json=$("$SLUICE" bench -T "$target" -s "$saddr" -n "$n" -S "$size" -w 64 -C 64 -a 1 --json)
    c1=$(cpu_ticks "$spid")
    kill "$spid"
    wait "$spid" 2>/dev/null || true
    [[ -n ${RAW:-} ]] && echo "$json" >>"$RAW"
    local rate mb p50 p99
    rate=$(grep -o '"msgs_per_s":[0-9.]*' <<<"$json" | cut -d: -f2)
    mb=$(grep -o '"mb_per_s":[0-9.]*' <<<"$json" | cut -d: -f2)
    p50=$(grep -o '"p50":[0-9.]*' <<<"$json" | cut -d: -f2)
    p99=$(grep -o '"p99":[0-9.]*' <<<"$json" | cut -d: -f2)
    awk -v w="$what" -v s="$size" -v r="$rate" -v m="$mb" -v a="$p50" -v b="$p99" \
        -v c=$((c1 - c0)) -v t="$ticks" -v n="$n" \
        'BEGIN { printf "%-8s %6d %9.0f msg/s %8.1f MB/s  p50 %9.0f us  p99 %9.0f us  cpu %5.2f us/msg\n",
                 w, s, r, m, a, b, c * 1e6 / t / n }'
}

echo "# $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
for size in $SIZES; do
    for _ in $(seq "$RUNS"); do
        if [[ -n ${BASE_SLUICED:-} ]]; then
            start_daemon "$BASE_SLUICED"
            one base "$size"
        fi
        start_daemon "$SLUICED"
        one sluice "$size"
        if [[ -n ${BOUNDED:-} ]]; then
            start_daemon "$SLUICED" "$BOUNDED"
            one bounded "$size"
        fi
        if [[ -n ${LAG:-} ]]; then
            start_daemon "$SLUICED" 100000 "$LAG"
            one lag "$size"
        fi
        start_relay
        one relay "$size"
    done
done
echo "# $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
