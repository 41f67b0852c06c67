#!/usr/bin/env bash
# tests/bench/targets.sh: the broker issue's own throughput targets, measured
# the way docs/benchmarks.md reports them: 1 producer, 1 consumer, 64-byte
# messages, window 64, credit 64, ACKs of 16 ids and of 1 id. BLOCKS blocks;
# in each, a loopback round-trip reference (redis-benchmark PING with one
# request in flight, when redis-benchmark is there) and RUNS runs of each
# ack size, a fresh daemon per ack size. Prints every run and the medians.
#
#   tests/bench/targets.sh                 # 4 blocks of 7 runs of 2,000,000
#   BLOCKS=2 RUNS=5 MESSAGES=1000000 tests/bench/targets.sh
#
# Environment: SLUICED, SLUICE (default build/src/sluiced, build/src/sluice),
# BLOCKS (4), RUNS (7), MESSAGES (2000000).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
SLUICED=${SLUICED:-$top/build/src/sluiced}
SLUICE=${SLUICE:-$top/build/src/sluice}
BLOCKS=${BLOCKS:-4}
RUNS=${RUNS:-7}
MESSAGES=${MESSAGES:-2000000}

. "$top/tests/bench/common.sh"

wait_port() {
    for ((i = 0; i < 500; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.01
    done
    echo "targets.sh: nothing listens on $1" >&2
    exit 1
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { printf "%d\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ping_port=
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    ping_port=$(free_port)
    redis-server --port "$ping_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$ping_port"
fi

echo "sluice targets at $(cd "$top" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ), load $(cut -d' ' -f1 /proc/loadavg)"
for ((blk = 1; blk <= BLOCKS; blk++)); do
    if [[ -n $ping_port ]]; then
        ping=$(redis-benchmark -p "$ping_port" -t ping_inline -c 1 -P 1 -n 100000 -q 2>/dev/null |
            tr '\r' '\n' | awk '/requests per second/ { print int($2) }' | tail -1)
        echo "block $blk: loopback PING/s $ping"
    fi
    for ack in 16 1; do
        port=$(free_port)
        printf 'listen: [127.0.0.1:%s]\nadmin: {listen: ""}\n' "$port" >"$work/sluiced.yaml"
        "$SLUICED" -c "$work/sluiced.yaml" 2>"$work/sluiced.log" &
        pids+=($!)
        wait_port "$port"
        for ((r = 1; r <= RUNS; r++)); do
            json=$("$SLUICE" bench -s "127.0.0.1:$port" -n "$MESSAGES" -S 64 -w 64 -C 64 -a "$ack" -j) || {
                echo "targets.sh: run failed verification: $json" >&2
                exit 1
            }
            rate=$(sed -n 's/.*"msgs_per_s":\([0-9]*\).*/\1/p' <<<"$json")
            echo "block $blk: ack $ack run $r: $rate msgs/s"
            echo "$rate" >>"$work/ack$ack.b$blk"
            echo "$rate" >>"$work/ack$ack.all"
        done
        kill "${pids[-1]}"
        wait "${pids[-1]}" 2>/dev/null || true
        unset 'pids[-1]'
    done
done
for ack in 16 1; do
    for ((blk = 1; blk <= BLOCKS; blk++)); do
        echo "ack $ack block $blk median: $(median <"$work/ack$ack.b$blk")"
    done
    echo "ack $ack all $((BLOCKS * RUNS)) runs: median $(median <"$work/ack$ack.all"), min $(sort -g "$work/ack$ack.all" | head -1), max $(sort -g "$work/ack$ack.all" | tail -1)"
done
