#!/usr/bin/env bash
# tests/bench/conns.sh: many connections (#15). 4 producers and 4 consumers
# at full speed (`sluice bench`, 64 B and 1 KiB, window 64, credit 64),
# alone, beside IDLE idle connections, and beside ACTIVE producers
# publishing RATE msg/s each (the crowd: `sluice bench --crowd-idle` and
# `--crowd-producers`, one libevent thread), interleaved run by run on one
# fresh sluiced a round. Prints msg/s and the daemon's CPU per bench
# message for each, the ratio to the run alone, and how much of a CPU the
# crowd itself took meanwhile (on a 2-core machine that is taken from the
# bench and the broker).
#
#   tests/bench/conns.sh         # IDLE=10000 ACTIVE=1000 RATE=5 RUNS=3 MESSAGES=3000000
set -euo pipefail
source "$(dirname "$0")/common.sh"
IDLE=${IDLE:-10000} ACTIVE=${ACTIVE:-1000} RATE=${RATE:-5}
RUNS=${RUNS:-3} MESSAGES=${MESSAGES:-3000000} SIZES=${SIZES:-64 1024}
ulimit -n "$(ulimit -Hn)"
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# bench SIZE: one 4/4 run against $port; prints "msg/s cpu-us/msg crowd-cpu-%"
# (the daemon's CPU per bench message, the crowd's share of one CPU meanwhile).
bench() {
    local t0 t1 c0=0 c1=0 s0 s1 out rate
    t0=$(cpu_ticks "$daemon")
    [[ -n ${crowd_pid:-} ]] && c0=$(cpu_ticks "$crowd_pid")
    s0=$(date +%s%N)
    out=$("$SLUICE" bench -s "127.0.0.1:$port" -p 4 -c 4 -n "$MESSAGES" -S "$1" -w 64 -C 64 -a 16 -j)
    s1=$(date +%s%N)
    t1=$(cpu_ticks "$daemon")
    [[ -n ${crowd_pid:-} ]] && c1=$(cpu_ticks "$crowd_pid")
    rate=$(grep -o '"msgs_per_s": *[0-9.]*' <<<"$out" | grep -o '[0-9.]*$')
    awk -v r="$rate" -v a="$t0" -v b="$t1" -v n="$MESSAGES" -v hz="$hz" -v c="$((c1 - c0))" \
        -v ns="$((s1 - s0))" 'BEGIN { printf "%.0f %.2f %.0f", r, (b - a) / hz / n * 1e6, c / hz / (ns / 1e9) * 100 }'
}

crowd() {   # crowd OPTIONS...: `sluice bench --crowd-...` in the background until it is ready
    coproc CROWD { exec "$SLUICE" bench -s "127.0.0.1:$port" "$@"; }
    crowd_pid=$CROWD_PID
    pids+=("$crowd_pid")
    local line
    read -r -t 120 line <&"${CROWD[0]}" && [[ $line == ready ]] ||
        { echo "conns.sh: the crowd ($*) did not get ready" >&2; exit 1; }
}

crowd_end() {   # SIGTERM; it exits 1 if it lost a connection or was refused
    kill "$crowd_pid"
    wait "$crowd_pid" || { echo "conns.sh: the crowd failed (exit $?)" >&2; exit 1; }
}

printf '%-6s %-5s %-26s %10s %8s %8s %8s\n' size run beside msg/s ratio us/msg crowd%
for size in $SIZES; do
    for run in $(seq "$RUNS"); do
        port=$(free_port)
        printf 'listen: [127.0.0.1:%s]\nadmin: {listen: ""}\nlog: {level: warn}\nlimits: {max_connections: %s}\n' \
            "$port" $((IDLE + ACTIVE + 64)) >"$work/conf.yaml"
        "$SLUICED" -c "$work/conf.yaml" 2>>"$work/sluiced.log" &
        daemon=$!
        pids+=("$daemon")
        for _ in $(seq 100); do "$SLUICE" -s "127.0.0.1:$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
        crowd_pid=
        read -r alone cpu _ <<<"$(bench "$size")"
        printf '%-6s %-5s %-26s %10s %8s %8s %8s\n' "$size" "$run" "nothing" "$alone" 1.00 "$cpu" -
        crowd --crowd-idle "$IDLE"
        read -r rate cpu ccpu <<<"$(bench "$size")"
        printf '%-6s %-5s %-26s %10s %8.2f %8s %8s\n' "$size" "$run" "$IDLE idle connections" "$rate" \
            "$(awk -v a="$rate" -v b="$alone" 'BEGIN { print a / b }')" "$cpu" "$ccpu"
        crowd_end
        crowd --crowd-producers "$ACTIVE" --crowd-rate "$RATE"
        read -r rate cpu ccpu <<<"$(bench "$size")"
        printf '%-6s %-5s %-26s %10s %8.2f %8s %8s\n' "$size" "$run" "$ACTIVE producers at $RATE/s" "$rate" \
            "$(awk -v a="$rate" -v b="$alone" 'BEGIN { print a / b }')" "$cpu" "$ccpu"
        crowd_end
        kill "$daemon"; wait "$daemon" 2>/dev/null || true
    done
done
