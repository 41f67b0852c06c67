#!/usr/bin/env bash
# tests/bench/beanstalk.sh: sluice's beanstalk listener against beanstalkd
# 1.12 on the same work (issue #11's throughput proof). `sluice bench -T
# beanstalkd` speaks the beanstalk protocol to both: producers `use` a tube
# and pipeline `put`, consumers `watch` it, keep `reserve-with-timeout`s in
# flight and `delete` what they took. Every configuration (size x load) runs
# against every server in turn, RUNS times over, so a busy moment of a
# shared machine falls on all of them alike; each run gets a fresh server
# and a warm-up that is not counted. Prints every run and a markdown table
# of medians (min-max), with the server's CPU time per message (utime +
# stime from /proc, over the counted run).
#
#   tests/bench/beanstalk.sh                     # 5 runs of everything
#   RUNS=3 SIZES=64 LOADS="1/1" tests/bench/beanstalk.sh
#
# The servers (SERVERS, all by default):
#   sluice            sluiced with `beanstalk: {listen: [...]}`, no mirror
#   beanstalkd        beanstalkd -l 127.0.0.1 -p PORT: in memory, as sluice is
#                     without its Redis mirror (the fair pair)
#   beanstalkd-binlog beanstalkd -b DIR: its write-ahead log on, fsync left
#                     to the kernel (its default; -f would be slower still)
#
# Environment: SLUICED, SLUICE (default build/src/sluiced, build/src/sluice),
# BEANSTALKD (beanstalkd), RUNS (5), SIZES ("64 1024"), LOADS ("1/1 4/4":
# producer/consumer connections), SERVERS, MESSAGES_SLUICE (1000000) and
# MESSAGES_BEANSTALKD (100000): messages per run (each run is then a few
# seconds long on either), BENCH_ARGS (extra options for every run).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
SLUICED=${SLUICED:-$top/build/src/sluiced}
SLUICE=${SLUICE:-$top/build/src/sluice}
BEANSTALKD=${BEANSTALKD:-beanstalkd}
RUNS=${RUNS:-5}
SIZES=${SIZES:-"64 1024"}
LOADS=${LOADS:-"1/1 4/4"}
SERVERS=${SERVERS:-"sluice beanstalkd beanstalkd-binlog"}
MESSAGES_SLUICE=${MESSAGES_SLUICE:-1000000}
MESSAGES_BEANSTALKD=${MESSAGES_BEANSTALKD:-100000}
BENCH_ARGS=${BENCH_ARGS:-}

. "$top/tests/bench/common.sh"

die() { echo "beanstalk.sh: $*" >&2; exit 1; }
[[ -x $SLUICED && -x $SLUICE ]] || die "build sluiced and sluice first (./build.sh)"
command -v "$BEANSTALKD" >/dev/null || die "$BEANSTALKD not found (apt-get install beanstalkd)"

server_pid=
wait_port() {
    for ((i = 0; i < 500; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# start SERVER: a fresh one; sets server_pid and addr.
start() {
    local port
    port=$(free_port)
    addr=127.0.0.1:$port
    rm -rf "$work/binlog" && mkdir -p "$work/binlog"
    case $1 in
    sluice)
        printf 'listen: [127.0.0.1:0]\nadmin: {listen: ""}\nbeanstalk: {listen: [127.0.0.1:%s]}\n' \
            "$port" >"$work/sluiced.yaml"
        env -u NOTIFY_SOCKET "$SLUICED" -c "$work/sluiced.yaml" 2>"$work/server.log" &
        ;;
    beanstalkd) "$BEANSTALKD" -l 127.0.0.1 -p "$port" 2>"$work/server.log" & ;;
    beanstalkd-binlog) "$BEANSTALKD" -l 127.0.0.1 -p "$port" -b "$work/binlog" 2>"$work/server.log" & ;;
    *) die "unknown server $1" ;;
    esac
    server_pid=$!
    pids+=("$server_pid")
    wait_port "$port" || { cat "$work/server.log" >&2; die "$1 did not start"; }
}

stop() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

cpu_ticks() { sed 's/.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }'; }
json_field() { sed -n "s/.*\"$1\":\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
stats() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf(f " (" f "-" f ")\n", m, v[1], v[NR]) }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

hz=$(getconf CLK_TCK)
load_start=$(cut -d' ' -f1 /proc/loadavg)
declare -A rate cpu verified
read -r -a extra <<<"$BENCH_ARGS"

for ((r = 1; r <= RUNS; r++)); do
    for size in $SIZES; do
        for load in $LOADS; do
            for s in $SERVERS; do
                n=$MESSAGES_BEANSTALKD
                [[ $s == sluice ]] && n=$MESSAGES_SLUICE
                start "$s"
                args=(-T beanstalkd -s "$addr" -p "${load%/*}" -c "${load#*/}" -S "$size" "${extra[@]}")
                "$SLUICE" bench "${args[@]}" -n $((n / 10)) --json >/dev/null ||
                    die "warm-up failed: sluice bench ${args[*]} ($s)"
                t0=$(cpu_ticks)
                ok=1
                out=$("$SLUICE" bench "${args[@]}" -n "$n" --json) || ok=0
                t1=$(cpu_ticks)
                stop
                k="$s $load $size"
                m=$(json_field msgs_per_s "$out")
                rate[$k]+="$m "
                cpu[$k]+="$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN { print d / hz / n * 1e6 }') "
                verified[$k]=$((${verified[$k]:-0} + ok))
                echo "beanstalk.sh: run $r: $s $load ${size}B: $m msg/s$( ((ok)) || echo ' (NOT verified)')" >&2
            done
        done
    done
done

echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), shared with other work"
echo "Servers: $("$SLUICED" --version 2>&1 | head -n 1); $("$BEANSTALKD" -v 2>&1 | head -n 1)"
echo "Runs: $RUNS interleaved, $MESSAGES_SLUICE (sluice) / $MESSAGES_BEANSTALKD (beanstalkd) messages each; medians (min-max)."
echo "Load average (1 min): $load_start at the start, $(cut -d' ' -f1 /proc/loadavg) at the end."
echo
echo "| server | connections (put/reserve) | size (B) | msgs/s | server CPU (us/msg) | x beanstalkd | runs verified |"
echo "|---|---|---|---|---|---|---|"
for size in $SIZES; do
    for load in $LOADS; do
        base=$(tr ' ' '\n' <<<"${rate[beanstalkd $load $size]:-}" | grep . | median || true)
        for s in $SERVERS; do
            k="$s $load $size"
            med=$(tr ' ' '\n' <<<"${rate[$k]}" | grep . | median)
            x=$(awk -v a="$med" -v b="${base:-0}" 'BEGIN { if (b > 0) printf("%.1f", a / b); else printf("-") }')
            echo "| $s | $load | $size | $(tr ' ' '\n' <<<"${rate[$k]}" | grep . | stats '%.0f') \
| $(tr ' ' '\n' <<<"${cpu[$k]}" | grep . | stats '%.2f') | $x | ${verified[$k]}/$RUNS |"
        done
    done
done
