#!/usr/bin/env bash
# tests/cluster_failover.sh: issue #14's proof with real hosts on one
# machine. Network namespaces joined by veth links to one bridge play the
# hosts: three brokers (each with a Sentinel beside it), a Redis master and
# its replica, a standby host and a client host. A load of producers and
# consumers over 32 topics (tests/cluster_load.py) runs through the
# brokers in confirm mode; then one broker's host dies (kill -9, its link
# down) together with the Redis master (kill -9). Sentinel promotes the
# replica, the surviving brokers follow it, a watchdog on the standby host
# sees the dead broker's address stop answering and takes it over (the
# address, then sluiced with the dead node's own config, which restores
# its topics from Redis), and the killed Redis comes back as systemd would
# restart it (Sentinel makes it a replica). The load counts confirmed
# messages lost (must be 0), duplicates and each topic's longest outage.
#
#   cluster_failover.sh [SECONDS]   publish for SECONDS (default 20)
#
# Everything lives in namespaces named slc<pid>-*, made and removed here;
# no traffic leaves them. Needs root (ip netns). In CI (CI=true) a missing
# tool or namespace is a failure; elsewhere a skip (77), never a pass.
set -uo pipefail
duration=${1:-${CLUSTER_SECONDS:-20}}
fault_at=$((duration / 3))
src=${SLUICE_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
py=/usr/bin/python3

unusable() {
    echo "cluster_failover: $*"
    [[ ${CI:-} == true ]] && { echo "FAIL: CI=true and $*"; exit 1; }
    exit 77
}
for tool in ip arping redis-server redis-sentinel redis-cli "$py"; do
    command -v "$tool" >/dev/null || unusable "$tool is not installed (build.sh installs it)"
done
[[ -x ${SLUICED:-} ]] || { echo "FAIL: SLUICED is not set to a program"; exit 1; }
((EUID == 0)) || unusable "network namespaces need root"

tag=slc$$
net=10.201.0
work=$(mktemp -d "${TMPDIR:-/tmp}/$tag.XXXXXX")
declare -A ip=([h1]=$net.11 [h2]=$net.12 [h3]=$net.13 [r1]=$net.21 [r2]=$net.22
               [r3]=$net.23 [sb]=$net.31 [cl]=$net.41)
# Redis replicas (REPLICAS, 1 or 2; default 2). The brokers' +OK waits for
# one replica (redis.replicas: 1): with two, the failover leaves the new
# master one to wait on; with one, confirmed PUBs pause until the killed
# master is back as a replica, about 17 s here, so give REPLICAS=1 at
# least 40 s of load (docs/scaling.md has both figures).
nrep=${REPLICAS:-2}
replica_hosts=(r2)
((nrep >= 2)) && replica_hosts+=(r3)
hosts=(h1 h2 h3 r1 "${replica_hosts[@]}" sb cl)
nodes=${ip[h1]}:7700,${ip[h2]}:7700,${ip[h3]}:7700
sentinels="[${ip[h1]}:26379, ${ip[h2]}:26379, ${ip[h3]}:26379]"
declare -A pid=()

ns() { echo "$tag-$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }
# bg_ns KEY HOST COMMAND...: COMMAND in the background on HOST, its pid in
# pid[KEY] (ip netns exec execs the command, so the pid is the command's).
bg_ns() { local key=$1 h=$2; shift 2; ip netns exec "$(ns "$h")" "$@" & pid[$key]=$!; }
log() { printf '%s cluster_failover: %s\n' "$(date +%T.%3N)" "$*"; }

cleanup() {
    local h p
    disown -a
    for h in "${hosts[@]}"; do
        for p in $(ip netns pids "$(ns "$h")" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    for h in "${hosts[@]}" lan; do ip netns del "$(ns "$h")" 2>/dev/null; done
    if [[ ${KEEP:-} != 1 ]]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

# ---- the network: one bridge in a namespace of its own, a veth a host ----
ip netns add "$(ns lan)" 2>/dev/null || unusable "cannot make a network namespace"
in_ns lan ip link add br0 type bridge
in_ns lan ip link set br0 up
i=0
for h in "${hosts[@]}"; do
    i=$((i + 1))
    ip netns add "$(ns "$h")"
    ip link add "$tag-v$i" type veth peer name eth0 netns "$(ns "$h")"
    ip link set "$tag-v$i" netns "$(ns lan)"
    in_ns lan ip link set "$tag-v$i" master br0 up
    in_ns "$h" ip link set lo up
    in_ns "$h" ip addr add "${ip[$h]}/24" dev eth0
    in_ns "$h" ip link set eth0 up
done

# ---- Redis: a master, a replica, three Sentinels ----
redis() {   # redis HOST [args...]: a redis-server on HOST, in the background
    local h=$1
    shift
    mkdir -p "$work/$h"
    bg_ns "$h.redis" "$h" redis-server --bind "${ip[$h]}" --port 6379 --protected-mode no \
        --save '' --appendonly no --dir "$work/$h" --logfile "$work/$h/redis.log" "$@"
}
redis r1
for h in "${replica_hosts[@]}"; do redis "$h" --replicaof "${ip[r1]}" 6379; done
for h in h1 h2 h3; do
    mkdir -p "$work/$h"
    cat >"$work/$h/sentinel.conf" <<EOF
port 26379
bind ${ip[$h]}
protected-mode no
dir $work/$h
logfile $work/$h/sentinel.log
sentinel monitor mymaster ${ip[r1]} 6379 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 4000
EOF
    bg_ns "$h.sentinel" "$h" redis-sentinel "$work/$h/sentinel.conf"
done

# until each Sentinel knows the replica and the two other Sentinels
wait_for() {   # wait_for SECONDS WHAT COMMAND...
    local end=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { echo "FAIL: timed out waiting for $what"; exit 1; }
        sleep 0.2
    done
}
sentinel_ready() {
    local h out
    for h in h1 h2 h3; do
        out=$(in_ns cl redis-cli -h "${ip[$h]}" -p 26379 sentinel master mymaster 2>/dev/null) || return 1
        grep -A1 -x num-slaves <<<"$out" | tail -n1 | grep -qx "$nrep" || return 1
        grep -A1 -x num-other-sentinels <<<"$out" | tail -n1 | grep -qx 2 || return 1
    done
}
wait_for 60 "the Sentinels to find each other" sentinel_ready
log "redis master ${ip[r1]}, $nrep replicas, 3 sentinels agree"

# ---- the brokers ----
broker_conf() {   # broker_conf NODE: the config of node hN (a standby uses it too)
    cat <<EOF
listen: [${ip[$1]}:7700]
admin: {listen: ""}
cluster:
  self: ${ip[$1]}:7700
  nodes: [${nodes//,/, }]
redis:
  enabled: true
  sentinels: $sentinels
  master: mymaster
  prefix: sluice:$1
  confirm: true
  confirm_timeout: 2s
  replicas: 1
  restore: true
EOF
}
broker() {   # broker HOST NODE: sluiced with node NODE's config, on HOST
    broker_conf "$2" >"$work/$2.yaml"
    bg_ns "$1.sluiced" "$1" "$SLUICED" -c "$work/$2.yaml" 2>>"$work/$1.$2.sluiced.log"
}
answers() { in_ns "$1" timeout 0.3 bash -c "exec 3<>/dev/tcp/${2%:*}/${2#*:}" 2>/dev/null; }
for h in h1 h2 h3; do broker "$h" "$h"; done
for h in h1 h2 h3; do wait_for 30 "broker $h" answers cl "${ip[$h]}:7700"; done
log "brokers $nodes up"

# ---- the load, the fault, the takeover ----
in_ns cl "$py" "$src/tests/cluster_load.py" --nodes "$nodes" --topics 32 \
    --duration "$duration" --fault-file "$work/fault" --ready-file "$work/ready" \
    >"$work/report.json" 2>"$work/load.log" &
load=$!
wait_for 60 "every topic's first +OK" test -e "$work/ready"
log "load running on 32 topics; the fault in $fault_at s"
sleep "$fault_at"

log "FAULT: kill -9 broker h1 and its Sentinel, h1's link down; kill -9 the Redis master r1"
kill -9 "${pid[h1.sluiced]}" "${pid[h1.sentinel]}" "${pid[r1.redis]}"
in_ns h1 ip link set eth0 down
touch "$work/fault"
t_fault=$(date +%s.%N)
wait "${pid[h1.sluiced]}" "${pid[h1.sentinel]}" "${pid[r1.redis]}" 2>/dev/null
# systemd restarts the killed Redis on its own host after 2 s (Restart=).
(sleep 2 && redis r1 && log "r1's redis restarted (Sentinel turns it into a replica)") &

# The standby's watchdog: three failed probes of h1's address in a row.
misses=0
until ((misses >= 3)); do
    if answers sb "${ip[h1]}:7700"; then misses=0; else misses=$((misses + 1)); fi
    sleep 0.2
done
t_detect=$(date +%s.%N)
log "standby: h1 does not answer; taking over ${ip[h1]}"
in_ns sb ip addr add "${ip[h1]}/24" dev eth0
# what keepalived does for a moved address: tell the LAN its new owner
in_ns sb arping -q -U -c 2 -w 1 -I eth0 "${ip[h1]}"
broker sb h1
wait_for 60 "the standby to answer" answers cl "${ip[h1]}:7700"
t_standby=$(date +%s.%N)
log "standby serves h1's topics"

wait "$load"
rc=$?
log "load finished, status $rc"
master=$(in_ns cl redis-cli -h "${ip[h2]}" -p 26379 sentinel get-master-addr-by-name mymaster | head -n1)
"$py" - "$work/report.json" "$t_fault" "$t_detect" "$t_standby" "$master" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
fault, detect, standby = map(float, sys.argv[2:5])
print(f"confirmed {r['confirmed']}, received {r['received']}, LOST {r['lost']}, "
      f"duplicates {r['duplicates']}, stored but unconfirmed {r['stored_unconfirmed']}, "
      f"failed PUBs {r['failed_pubs']}, reconnects {r['reconnects']}")
print(f"h1 detected dead after {detect - fault:.1f} s, standby serving after {standby - fault:.1f} s; "
      f"redis master now {sys.argv[5]}")
by = {}
for t, g in r["gap_s"].items():
    by.setdefault(r["owner"][t], []).append(g)
for node, gaps in sorted(by.items()):
    print(f"  {node}: {len(gaps)} topics, longest outage {max(gaps):.1f} s, median {sorted(gaps)[len(gaps)//2]:.1f} s")
if r["lost"]:
    print("lost, first of each topic:", r["lost_examples"])
if r.get("never_resumed"):
    print("never confirmed again:", r["never_resumed"])
print("errors:", r["errors"])
EOF
if ((rc != 0)); then
    for f in "$work"/*.log "$work"/*/sentinel.log; do echo "==> $f"; tail -n 30 "$f"; done
    echo "FAIL"
else
    echo "PASS"
fi
exit "$rc"
