#!/usr/bin/env bash
# tests/bench/scale.sh: aggregate acked throughput over 1, 2 and 4 brokers
# (#14). Each broker is a fresh sluiced with a cluster section naming all of
# them, pinned to CPU (k mod nproc) with taskset; `sluice bench --nodes
# --topics` runs P producers and P consumers, topic k on its owner. The
# topics' base name is chosen so that they spread evenly over the brokers
# (rendezvous placement gives 4 topics over 4 nodes unevenly as often as
# not). Prints, per broker count: msg/s, the brokers' CPU per message (all
# of them together), and per-node efficiency: msg/s per broker CPU-second
# against the one-broker run.
#
#   tests/bench/scale.sh       # BROKERS="1 2 4" P=4 MESSAGES=400000 SIZE=64 RUNS=3
set -euo pipefail
source "$(dirname "$0")/common.sh"
BROKERS=${BROKERS:-1 2 4} P=${P:-4} MESSAGES=${MESSAGES:-400000} SIZE=${SIZE:-64} RUNS=${RUNS:-3}
hz=$(getconf CLK_TCK)
ncpu=$(nproc)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# even_base NODES P: a base name whose topics base.0..base.P-1 fall on the
# nodes as evenly as P allows (the placement of clients/python/sluice.py).
even_base() {
    /usr/bin/python3 - "$1" "$2" "$top/clients/python" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import sluice
nodes, p = sys.argv[1].split(","), int(sys.argv[2])
for i in range(100000):
    base = f"scale{i}"
    count = [0] * len(nodes)
    for k in range(p):
        count[sluice.place_owner(nodes, f"{base}.{k}")] += 1
    if max(count) - min(count) <= (0 if p % len(nodes) == 0 else 1):
        print(base)
        break
PY
}

echo "scale.sh: $ncpu CPUs; broker k pinned to CPU k mod $ncpu; the bench's $((2 * P)) threads unpinned"
printf '%-8s %-4s %10s %12s %12s\n' brokers run msg/s cpu-us/msg efficiency
declare -A base_rate=()
for run in $(seq "$RUNS"); do
    for n in $BROKERS; do
        ports=() nodes=""
        for k in $(seq 0 $((n - 1))); do ports+=("$(free_port)"); done
        for p in "${ports[@]}"; do nodes+="${nodes:+,}127.0.0.1:$p"; done
        bpids=()
        for k in $(seq 0 $((n - 1))); do
            cat >"$work/n$k.yaml" <<EOF2
listen: [127.0.0.1:${ports[$k]}]
admin: {listen: ""}
log: {level: warn}
cluster: {self: "127.0.0.1:${ports[$k]}", nodes: [${nodes//,/, }]}
EOF2
            taskset -c $((k % ncpu)) "$SLUICED" -c "$work/n$k.yaml" 2>>"$work/sluiced.log" &
            bpids+=($!)
            pids+=($!)
        done
        for p in "${ports[@]}"; do
            for _ in $(seq 100); do "$SLUICE" -s "127.0.0.1:$p" ping >/dev/null 2>&1 && break; sleep 0.05; done
        done
        base=$(even_base "$nodes" "$P")
        t0=0
        for b in "${bpids[@]}"; do t0=$((t0 + $(cpu_ticks "$b"))); done
        out=$("$SLUICE" bench --nodes "$nodes" --topics "$P" -t "$base" -p "$P" -c "$P" \
            -n "$MESSAGES" -S "$SIZE" -w 64 -C 64 -a 16 -j)
        t1=0
        for b in "${bpids[@]}"; do t1=$((t1 + $(cpu_ticks "$b"))); done
        rate=$(grep -o '"msgs_per_s": *[0-9.]*' <<<"$out" | grep -o '[0-9.]*$')
        cpu=$(awk -v a="$t0" -v b="$t1" -v m="$MESSAGES" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz / m * 1e6 }')
        # msg/s per broker CPU-second is 1e6 / cpu-us-per-msg
        per=$(awk -v c="$cpu" 'BEGIN { printf "%.0f", 1e6 / c }')
        [[ $n == 1 ]] && base_rate[$run]=$per
        eff=$(awk -v a="$per" -v b="${base_rate[$run]:-$per}" 'BEGIN { printf "%.2f", a / b }')
        printf '%-8s %-4s %10.0f %12s %12s\n' "$n" "$run" "$rate" "$cpu" "$eff"
        for b in "${bpids[@]}"; do kill "$b"; wait "$b" 2>/dev/null || true; done
    done
done
