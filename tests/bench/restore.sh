#!/usr/bin/env bash
# tests/bench/restore.sh: restore at scale (the durability issue): N queued
# 64-byte messages (default 10,000,000) written straight into a private
# Redis in the mirror's key schema, then a broker started with restore: the
# seconds its log reports for the restore, the wall time until it listens,
# Redis's CPU meanwhile, and the broker's RSS afterwards in bytes per
# message (RSS after the restore minus the RSS of the same broker started
# on an empty Redis).
#
#   tests/bench/restore.sh                # N=10000000 RUNS=3
#   N=1000000 RUNS=1 tests/bench/restore.sh
#   SCHEMA=old N=1000000 tests/bench/restore.sh   # the single-hash schema of before the shards
#   META=1 N=1000000 tests/bench/restore.sh       # beanstalk jobs: a meta record each
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICED=${SLUICED:-build/src/sluiced}
N=${N:-10000000}
RUNS=${RUNS:-3}
SCHEMA=${SCHEMA:-shards}
META=${META:-0}

. tests/bench/common.sh

redis-server --port 0 --unixsocket "$work/redis.sock" --save '' --appendonly no \
    --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=("$!")
for ((i = 0; i < 500; i++)); do redis-cli -s "$work/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.01; done

# The mirror's schema (docs/redis.md): next_id, the topic set, the topic's
# shard set, one message hash of 65,536 ids per shard with its pin (or,
# with SCHEMA=old, one hash for all); payloads of 64 bytes, in HSETs of
# 1,000 fields.
fill() {
    python3 - "$N" "$SCHEMA" "$META" <<'PY' | redis-cli -s "$work/redis.sock" --pipe >/dev/null
import sys
n, schema, meta = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
out = sys.stdout.buffer
def cmd(*args):
    b = [b"*%d\r\n" % len(args)]
    for a in args:
        b.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(b)
def key(i):
    return b"sluice:messages:bench" if schema == "old" else b"sluice:msg:%d:bench" % (i >> 16)
out.write(cmd(b"SET", b"sluice:next_id", b"%d" % (n + 1)))
out.write(cmd(b"SADD", b"sluice:message_topics", b"bench"))
if schema == "old":
    out.write(cmd(b"HSET", key(0), b"pin", b"x" * 100))
else:
    for s in range(0, ((n) >> 16) + 1):
        out.write(cmd(b"SADD", b"sluice:shards:bench", b"%d" % s))
        out.write(cmd(b"HSET", b"sluice:msg:%d:bench" % s, b"pin", b"x" * 100))
pay = b"p" * 64
lo = 1
while lo <= n:
    hi = min(lo + 1000, n + 1, ((lo >> 16) + 1) << 16)  # one shard per HSET
    args = [b"HSET", key(lo)]
    for i in range(lo, hi):
        args += [b"%d" % i, pay]
    out.write(cmd(*args))
    if meta and schema != "old":  # a ready job: priority 100, TTR 120 s
        args = [b"HSET", b"sluice:meta:%d:bench" % (lo >> 16)]
        for i in range(lo, hi):
            args += [b"%d" % i, b"r:0:100:120000:0:1700000000000:0:0:0:0"]
        out.write(cmd(*args))
    lo = hi
PY
}

cat >"$work/sluiced.yaml" <<YAML
listen: [127.0.0.1:$(free_port)]
admin: {listen: ""}
limits: {max_memory: 64GiB}
defaults: {max_messages: $((N + 1)), max_bytes: 64GiB}
redis:
  enabled: true
  address: unix:$work/redis.sock
  mirror: messages
  restore: true
YAML

# Redis's CPU seconds so far (user + system)
redis_cpu() {
    redis-cli -s "$work/redis.sock" info cpu | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { print s }'
}

# rss PID: resident bytes
rss() { awk '/^VmRSS:/ { printf "%.0f\n", $2 * 1024 }' "/proc/$1/status"; }

# start: a broker on the current Redis; waits for "listening", sets $pid $secs
start() {
    local t0 t1
    t0=$(date +%s.%N)
    "$SLUICED" -c "$work/sluiced.yaml" 2>"$work/sluiced.log" &
    pid=$!
    until grep -q "listening" "$work/sluiced.log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/sluiced.log" >&2; exit 1; }
        sleep 0.05
    done
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

# the baseline: the same broker with nothing to restore
redis-cli -s "$work/redis.sock" flushall >/dev/null
start
sleep 0.5
base=$(rss "$pid")
stop

for ((r = 1; r <= RUNS; r++)); do
    redis-cli -s "$work/redis.sock" flushall >/dev/null
    fill
    c0=$(redis_cpu)
    start
    sleep 0.5
    got=$(grep -o 'restored [0-9]* messages ([0-9]* topics) in [0-9.]* s' "$work/sluiced.log")
    rcpu=$(awk -v a="$c0" -v b="$(redis_cpu)" 'BEGIN { printf "%.2f", b - a }')
    bpm=$(awk -v a="$(rss "$pid")" -v b="$base" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')
    echo "run $r: $got; listening after ${secs} s (Redis CPU ${rcpu} s); RSS $(($(rss "$pid") >> 20)) MiB, ${bpm} B/msg over the empty broker"
    # a clean stop rewrites nothing it restored; the next run refills anyway
    stop
done
