#!/usr/bin/env bash
# tests/bench/confirm.sh: the durability issue's figures, all in one session:
# sluice in confirm mode (durability memory, then always) against a private
# Redis on a unix socket, Redis Streams alone at the same AOF setting, and
# beanstalkd with its binlog (-f 0: fsync on every write), all driven by
# `sluice bench` (64 B, window 64, credit 64, ACKs of 16 ids). For each run:
# messages per second and the CPU each server used per message (from
# /proc/PID/stat). Then the producer-connection sweep (1, 4, 16, 64).
#
#   tests/bench/confirm.sh                  # MESSAGES=300000 RUNS=3
#   SLUICED=build/src/sluiced SLUICE=build/src/sluice MESSAGES=100000 RUNS=1 tests/bench/confirm.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICED=${SLUICED:-build/src/sluiced}
SLUICE=${SLUICE:-build/src/sluice}
MESSAGES=${MESSAGES:-300000}
RUNS=${RUNS:-3}
SWEEP=${SWEEP:-1 4 16 64}
# beanstalkd fsyncs every job (-f 0): a few thousand a second, so fewer
BEANSTALK_MESSAGES=${BEANSTALK_MESSAGES:-20000}

. tests/bench/common.sh

wait_for() { # wait_for CMD...: until it succeeds (5 s)
    for ((i = 0; i < 500; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.01; done
    echo "confirm.sh: gave up waiting for: $*" >&2
    exit 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# redis_start always|none: a fresh Redis on $work/redis.sock, pid in $redis_pid.
redis_start() {
    rm -rf "$work/redis" && mkdir -p "$work/redis"
    local aof=(--appendonly no)
    [[ $1 == always ]] && aof=(--appendonly yes --appendfsync always)
    redis-server --port 0 --unixsocket "$work/redis.sock" --save '' --dir "$work/redis" \
        "${aof[@]}" --daemonize no >"$work/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for redis-cli -s "$work/redis.sock" ping
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# run LABEL SERVERPID... -- BENCH ARGS: one bench run, its rate and CPU/msg.
run() {
    local label=$1 spids=() t0=() t1=() out rate
    shift
    while [[ $1 != -- ]]; do spids+=("$1"); shift; done
    shift
    for p in "${spids[@]}"; do t0+=("$(cpu_ticks "$p")"); done
    local n=${N:-$MESSAGES}
    out=$("$SLUICE" bench -n "$n" -S 64 -w 64 -C 64 -a 16 -j "$@")
    rate=$(grep -o '"msgs_per_s": *[0-9.]*' <<<"$out" | grep -o '[0-9.]*$')
    local cpu=""
    for i in "${!spids[@]}"; do
        t1=$(cpu_ticks "${spids[$i]}")
        cpu+=" $(awk -v a="${t0[$i]}" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.2f", (b - a) / hz / n * 1e6 }')us"
    done
    printf '%-44s %10.0f msg/s   cpu/msg:%s\n' "$label" "$rate" "$cpu"
}

sluice_start() { # sluice_start DURABILITY [CONFIRM]
    local port
    port=$(free_port)
    cat >"$work/sluiced.yaml" <<EOF
listen: [127.0.0.1:$port]
admin: {listen: ""}
redis:
  enabled: true
  address: unix:$work/redis.sock
  confirm: ${2:-true}
  durability: $1
  restore: false
EOF
    "$SLUICED" -c "$work/sluiced.yaml" 2>"$work/sluiced.log" &
    sluiced_pid=$!
    pids+=("$sluiced_pid")
    sluice_addr=127.0.0.1:$port
    wait_for "$SLUICE" ping -s "$sluice_addr"
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $MESSAGES messages a run, 64 B, -w 64 -C 64 -a 16"
for durability in memory always; do
    aof=none
    [[ $durability == always ]] && aof=always
    for ((r = 1; r <= RUNS; r++)); do
        redis_start "$aof"
        sluice_start "$durability"
        run "sluice confirm, durability $durability (broker, redis)" "$sluiced_pid" "$redis_pid" -- \
            -s "$sluice_addr"
        stop "$sluiced_pid"
        stop "$redis_pid"
        redis_start "$aof"
        run "redis streams, AOF $aof (redis)" "$redis_pid" -- \
            -T redis-streams -s "unix:$work/redis.sock"
        stop "$redis_pid"
    done
done
# the price of confirm: the same work with the mirror on but +OK at once
for ((r = 1; r <= RUNS; r++)); do
    redis_start none
    sluice_start memory false
    run "sluice, mirror on, no confirm (broker, redis)" "$sluiced_pid" "$redis_pid" -- \
        -s "$sluice_addr"
    stop "$sluiced_pid"
    stop "$redis_pid"
done
if command -v beanstalkd >/dev/null; then
    for ((r = 1; r <= RUNS; r++)); do
        port=$(free_port)
        rm -rf "$work/binlog" && mkdir -p "$work/binlog"
        beanstalkd -l 127.0.0.1 -p "$port" -b "$work/binlog" -f 0 &
        bpid=$!
        pids+=("$bpid")
        wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
        N=$BEANSTALK_MESSAGES run "beanstalkd -b -f 0 (beanstalkd)" "$bpid" -- -T beanstalkd -s "127.0.0.1:$port"
        stop "$bpid"
    done
fi
for durability in memory always; do
    aof=none
    [[ $durability == always ]] && aof=always
    for p in $SWEEP; do
        redis_start "$aof"
        sluice_start "$durability"
        run "sluice confirm $durability, $p producers" "$sluiced_pid" "$redis_pid" -- \
            -s "$sluice_addr" -p "$p"
        stop "$sluiced_pid"
        stop "$redis_pid"
    done
done
