#!/usr/bin/env bash
# tests/grafana_names.sh: the Grafana dashboard cannot fall behind /metrics.
# Every sluice_* name in contrib/grafana/sluice.json's queries must be a
# sample of a real sluiced's /metrics (server families and per-topic ones,
# with a topic that has traffic), and the file must be JSON that Grafana can
# import: panels with a type, a grid position and at least one target.
set -uo pipefail
src=${SLUICE_SRCDIR:?}
sluiced=${SLUICED:?}
sluice=${SLUICE:?}
dash=$src/contrib/grafana/sluice.json
fails=0
tmp=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

python3 - "$dash" <<'PY' || fail "$dash is not an importable dashboard"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["panels"], "no panels"
for p in d["panels"]:
    assert p.get("type") and p.get("gridPos") and p.get("targets"), p.get("title")
    for t in p["targets"]:
        assert t.get("expr") and t.get("refId"), p["title"]
PY

cat > "$tmp/sluiced.yaml" <<'YAML'
listen: [127.0.0.1:0]
admin: {listen: "127.0.0.1:0"}
topics:
  orders: {max_bytes: 1MiB}
YAML
SLUICED_PORT_FILE=$tmp/ports "$sluiced" -c "$tmp/sluiced.yaml" 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do
    [[ -s $tmp/ports ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[[ -s $tmp/ports ]] || { cat "$tmp/log"; echo "FAIL: sluiced did not start"; exit 1; }
addr=$(head -n1 "$tmp/ports")
admin=$(awk '$1 == "admin" { print $2 }' "$tmp/ports")

"$sluice" -s "$addr" pub orders one two three >/dev/null || fail "pub failed"
"$sluice" -s "$addr" get orders >/dev/null || fail "get failed"

# /metrics over HTTP/1.0 by hand: no curl needed.
exec 3<>"/dev/tcp/${admin%:*}/${admin##*:}" || { echo "FAIL: cannot reach $admin"; exit 1; }
printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3
tr -d '\r' <&3 >"$tmp/metrics"
exec 3<&-
grep -q '^HTTP/1\.[01] 200' "$tmp/metrics" || fail "/metrics did not answer 200: $(head -n1 "$tmp/metrics")"

names=$(grep -o 'sluice_[a-z_]*' "$dash" | sort -u)
n=$(wc -w <<<"$names")
# A broken extraction must not pass: the dashboard has a dozen families.
(( n >= 10 )) || fail "only $n metric names found in $dash"
for name in $names; do
    grep -Eq "^$name(\{| )" "$tmp/metrics" || fail "$name is in the dashboard but not in /metrics"
done
# ...and the per-topic families really carry the topic label it filters on.
grep -q '^sluice_topic_ready_messages{topic="orders"} 2$' "$tmp/metrics" ||
    fail "no sluice_topic_ready_messages{topic=\"orders\"} 2 in /metrics"

echo "$n dashboard names checked against /metrics, $fails failures"
(( fails == 0 ))
