#!/usr/bin/env bash
# tests/bigmem.sh [MiB]: the broker's memory follows the payload it holds
# (#15, huge messages). Two runs, each against a fresh sluiced:
#   - one 16 MiB message (limits.max_message raised) is published and
#     delivered intact; holding it costs the message once, and delivering
#     it nothing more (the push is written from the message's memory);
#   - a topic of max_bytes MiB (default 128; `make soak` fills 1 GiB) is
#     filled with 1 KiB messages through `sluice pub` and drained by `sluice
#     sub`; the daemon's peak RSS stays within 10 % of the payload.
# Memory, not time, is asserted (peak RSS from /proc, VmHWM). Plain build
# only: the sanitizers' shadow memory and quarantine would be measured too.
set -euo pipefail
mib=${1:-128}
SLUICED=${SLUICED:?} SLUICE=${SLUICE:?}
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bigmem.XXXXXX")
daemon=
trap '[[ -n $daemon ]] && kill "$daemon" 2>/dev/null; rm -rf "$work"' EXIT

fail() { echo "FAIL: $*"; exit 1; }
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

start() {   # start: a fresh sluiced on an ephemeral port; sets daemon, addr
    [[ -n $daemon ]] && { kill "$daemon"; wait "$daemon" 2>/dev/null || true; }
    cat >"$work/conf.yaml" <<EOF
listen: [127.0.0.1:0]
admin: {listen: ""}
limits: {max_message: 16MiB, max_memory: $((mib * 2 + 64))MiB}
defaults: {max_bytes: ${mib}MiB, max_messages: 100000000}
EOF
    : >"$work/log"
    "$SLUICED" -c "$work/conf.yaml" 2>"$work/log" &
    daemon=$!
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*info: listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$work/log")
        [[ -n $addr ]] && return 0
        sleep 0.05
    done
    cat "$work/log"
    fail "sluiced did not listen"
}
stat_of() { "$SLUICE" -s "$addr" stats "$1" | awk -v k="$2:" '$1 == k { print $2 }'; }

# ---- one 16 MiB message ----
start
size=$((16 << 20))
head -c "$size" /dev/urandom >"$work/big"
base=$(kib "$daemon" VmRSS)
"$SLUICE" -s "$addr" pub -f "$work/big" big
held=$(($(kib "$daemon" VmRSS) - base))
"$SLUICE" -s "$addr" get big --raw >"$work/big.out"
cmp -s "$work/big" "$work/big.out" || fail "the 16 MiB message came back different"
peak=$(($(kib "$daemon" VmHWM) - base))
echo "16 MiB message: held costs $((held / 1024)) MiB, the peak while delivering $((peak / 1024)) MiB above the idle daemon"
((held <= size / 1024 * 11 / 10)) || fail "holding 16 MiB took $held KiB"
((peak <= size / 1024 * 11 / 10)) || fail "delivering 16 MiB took $peak KiB at the peak (a copy of it)"

# ---- a topic of $mib MiB, filled and drained ----
start
n=$((mib * 1024))
base=$(kib "$daemon" VmRSS)
{ yes "$(head -c 1023 /dev/zero | tr "\\0" x)" || true; } | head -n "$n" | "$SLUICE" -s "$addr" pub fill
[[ $(stat_of fill ready) == "$n" ]] || fail "the topic holds $(stat_of fill ready) of $n messages"
payload=$(($(stat_of fill bytes) / 1024))
full=$(($(kib "$daemon" VmRSS) - base))
"$SLUICE" -s "$addr" sub fill -n "$n" -c 256 >/dev/null
[[ $(stat_of fill acked) == "$n" && $(stat_of fill bytes) == 0 ]] || fail "the topic did not drain"
peak=$(($(kib "$daemon" VmHWM) - base))
after=$(($(kib "$daemon" VmRSS) - base))
echo "$mib MiB topic of 1 KiB messages: payload $((payload / 1024)) MiB; RSS above the idle daemon full $((full / 1024)) MiB, peak $((peak / 1024)) MiB ($((peak * 100 / payload - 100)) % over the payload), drained $((after / 1024)) MiB"
((peak <= payload * 11 / 10)) || fail "peak RSS $peak KiB for $payload KiB of payload (more than 10 % over)"
echo PASS
