#!/usr/bin/env bash
# tests/bench/compare.sh: sluice vs Redis Streams vs beanstalkd on this
# machine, in one session, with `sluice bench` speaking each server's own
# protocol. Starts its own servers on loopback (a fresh one per
# configuration, so peak RSS belongs to that configuration), runs each
# configuration several times, and prints a markdown table of medians and
# spreads, broker CPU time per message and peak RSS.
#
#   tests/bench/compare.sh                 # everything, 5 runs each
#   RUNS=3 MESSAGES=100000 tests/bench/compare.sh
#   TARGETS="sluice redis-streams" SIZES=64 LOADS="1/1" tests/bench/compare.sh
#
# redis-lists (LPUSH, BLMPOP) does no acknowledgement, and relay (`sluice
# bench --relay-listen`: frames in, frames out, nothing kept) is the copy
# floor: both are there to compare with, not the same work.
#
# Environment: SLUICED, SLUICE (default build/src/sluiced, build/src/sluice),
# REDIS_SERVER (redis-server), BEANSTALKD (beanstalkd), RUNS (5), MESSAGES
# (200000 per run), SIZES ("64 1024"), LOADS ("1/1 4/4": producers/consumers),
# TARGETS ("sluice redis-streams beanstalkd"; also redis-lists, relay), BENCH_ARGS (extra options for
# every run, e.g. "--window 128"), RAW (file to append every run's JSON to).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
SLUICED=${SLUICED:-$top/build/src/sluiced}
SLUICE=${SLUICE:-$top/build/src/sluice}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
BEANSTALKD=${BEANSTALKD:-beanstalkd}
RUNS=${RUNS:-5}
MESSAGES=${MESSAGES:-200000}
SIZES=${SIZES:-"64 1024"}
LOADS=${LOADS:-"1/1 4/4"}
TARGETS=${TARGETS:-"sluice redis-streams beanstalkd"}
BENCH_ARGS=${BENCH_ARGS:-}
RAW=${RAW:-}

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "compare.sh: $*" >&2; exit 1; }

for prog in "$SLUICED" "$SLUICE"; do
    [[ -x $prog ]] || die "$prog not built (./build.sh)"
done
for t in $TARGETS; do
    case $t in
    redis-streams | redis-lists) command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found (apt-get install redis-server)" ;;
    beanstalkd) command -v "$BEANSTALKD" >/dev/null || die "$BEANSTALKD not found (apt-get install beanstalkd)" ;;
    sluice | relay) ;;
    *) die "unknown target $t" ;;
    esac
done

# A loopback port that was free a moment ago.
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}

wait_port() {
    local port=$1 i
    for ((i = 0; i < 500; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# start_server TARGET: sets server_pid and addr.
start_server() {
    local port
    port=$(free_port)
    addr=127.0.0.1:$port
    case $1 in
    sluice)
        printf 'listen: [127.0.0.1:%s]\nadmin: {listen: ""}\n' "$port" >"$work/sluiced.yaml"
        "$SLUICED" -c "$work/sluiced.yaml" 2>"$work/server.log" &
        ;;
    redis-streams | redis-lists)
        "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$work" >"$work/server.log" 2>&1 &
        ;;
    relay)
        "$SLUICE" bench --relay-listen "$addr" >"$work/server.log" 2>&1 &
        ;;
    beanstalkd)
        # -z: jobs up to 1 MiB, as sluice's default max_message (its own default is 65,535 B)
        "$BEANSTALKD" -l 127.0.0.1 -p "$port" -z 1048576 >"$work/server.log" 2>&1 &
        ;;
    esac
    server_pid=$!
    wait_port "$port" || { cat "$work/server.log" >&2; die "$1 did not start"; }
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# utime+stime of the server in clock ticks (fields 14 and 15 of stat; the
# command name in field 2 may hold spaces, so count from its ')').
cpu_ticks() {
    sed 's/.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }'
}

hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status"
}

json_field() {
    sed -n "s/.*\"$1\":\\([0-9.]*\\).*/\\1/p" <<<"$2"
}

# "median (min-max)" of numbers on stdin, printed with format $1.
stats() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf(f " (" f "-" f ")\n", m, v[1], v[NR]) }'
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

hz=$(getconf CLK_TCK)
rows=()
load_start=$(cut -d' ' -f1 /proc/loadavg)

for size in $SIZES; do
    for load in $LOADS; do
        p=${load%/*}
        c=${load#*/}
        for target in $TARGETS; do
            start_server "$target"
            # BENCH_ARGS is split into words on purpose
            read -r -a extra <<<"$BENCH_ARGS"
            args=(-T "$target" -s "$addr" -p "$p" -c "$c" -S "$size" "${extra[@]}")
            # warm-up, not counted: first-touch allocations, connection set-up
            "$SLUICE" bench "${args[@]}" -n $((MESSAGES / 10)) --json >/dev/null ||
                die "warm-up failed: sluice bench ${args[*]}"
            rates=() mbs=() p50=() p99=() cpu=() ok=0
            for ((r = 1; r <= RUNS; r++)); do
                t0=$(cpu_ticks)
                if out=$("$SLUICE" bench "${args[@]}" -n "$MESSAGES" --json); then ok=$((ok + 1)); fi
                t1=$(cpu_ticks)
                [[ -n $RAW ]] && echo "$out" >>"$RAW"
                rates+=("$(json_field msgs_per_s "$out")")
                mbs+=("$(json_field mb_per_s "$out")")
                p50+=("$(json_field p50 "$out")")
                p99+=("$(json_field p99 "$out")")
                cpu+=("$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$MESSAGES" 'BEGIN { print d / hz / n * 1e6 }')")
                echo "compare.sh: $target $load ${size}B run $r: ${rates[-1]} msg/s" >&2
            done
            hwm=$(hwm_kib)
            stop_server
            rows+=("| $target | $load | $size | $(printf '%s\n' "${rates[@]}" | stats '%.0f') \
| $(printf '%s\n' "${mbs[@]}" | median | xargs printf '%.1f') \
| $(printf '%s\n' "${p50[@]}" | stats '%.0f') | $(printf '%s\n' "${p99[@]}" | stats '%.0f') \
| $(printf '%s\n' "${cpu[@]}" | stats '%.2f') | $(awk -v k="$hwm" 'BEGIN { printf("%.1f", k / 1024) }') \
| $ok/$RUNS |")
        done
    done
done

echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)"
echo "Servers: $("$SLUICED" --version 2>&1 | head -n 1); $("$REDIS_SERVER" --version 2>/dev/null | awk '{ print $1, $2, $3 }' || true); $("$BEANSTALKD" -v 2>/dev/null || true)"
echo "Runs: $RUNS x $MESSAGES messages per configuration, acked; medians with (min-max)."
echo "Load average (1 min): $load_start at the start, $(cut -d' ' -f1 /proc/loadavg) at the end."
echo
echo "| target | producers/consumers | size (B) | msgs/s | MB/s | p50 latency (us) | p99 latency (us) | broker CPU (us/msg) | peak RSS (MiB) | runs verified |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
