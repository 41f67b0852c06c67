#!/usr/bin/env bash
# tests/bench/metrics_plot.sh: the picture in docs/monitoring.md, drawn from
# real data. A sluiced with its admin endpoint runs three phases of load
# while /metrics is scraped every second (the same names the Grafana
# dashboard in contrib/grafana/sluice.json queries); gnuplot then draws the
# dashboard's four main panels from the samples:
#   0-15 s   `sluice bench` on topic orders: publish and ack at full speed;
#   15-30 s  a producer floods topic audit, which nobody reads, until its
#            max_bytes bound parks it (fill 100 %, one parked producer);
#   30-45 s  a consumer drains audit; the producer is released and finishes.
#
#   tests/bench/metrics_plot.sh [OUT.png]     # default docs/img/metrics.png
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICED=${SLUICED:-build/src/sluiced}
SLUICE=${SLUICE:-build/src/sluice}
out=${1:-docs/img/metrics.png}
. tests/bench/common.sh

cat >"$work/sluiced.yaml" <<'YAML'
listen: [127.0.0.1:0]
admin: {listen: "127.0.0.1:0"}
topics:
  orders: {max_bytes: 8MiB}
  audit: {max_bytes: 4MiB, overflow: block}
YAML
SLUICED_PORT_FILE=$work/ports "$SLUICED" -c "$work/sluiced.yaml" 2>"$work/log" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/ports ]] && break; sleep 0.05; done
addr=$(head -n1 "$work/ports")
admin=$(awk '$1 == "admin" { print $2 }' "$work/ports")

# scrape T: one line "T published acked ready(orders) ready(audit)
# fill%(orders) fill%(audit) parked(orders) parked(audit)".
scrape() {
    local m
    exec 3<>"/dev/tcp/${admin%:*}/${admin##*:}"
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
    m=$(tr -d '\r' <&3)
    exec 3<&-
    awk -v t="$1" '
        { v[$1] = $2 }
        END {
            o = "{topic=\"orders\"}"; a = "{topic=\"audit\"}"
            printf "%s %s %s %s %s %.1f %.1f %s %s\n", t,
                v["sluice_messages_published_total"], v["sluice_messages_acked_total"],
                v["sluice_topic_ready_messages" o] + 0, v["sluice_topic_ready_messages" a] + 0,
                100 * v["sluice_topic_message_bytes" o] / v["sluice_topic_max_bytes" o],
                100 * v["sluice_topic_message_bytes" a] / v["sluice_topic_max_bytes" a],
                v["sluice_topic_blocked_producers" o] + 0, v["sluice_topic_blocked_producers" a] + 0
        }' <<<"$m"
}

t0=$(date +%s.%N)
( "$SLUICE" bench -s "$addr" -t orders -d 15 -p 2 -c 2 >"$work/bench.out" 2>&1 ) &
pids+=($!)
for t in $(seq 0 45); do
    case $t in
    15) ( head -c 12000000 /dev/zero | tr '\0' x | fold -w 99 |
              "$SLUICE" -s "$addr" pub audit >/dev/null 2>&1 ) &
        pids+=($!) ;;
    30) ( "$SLUICE" -s "$addr" sub audit -c 256 >/dev/null 2>&1 ) &
        pids+=($!) ;;
    esac
    scrape "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')" >>"$work/samples"
    sleep 1
done

# per-second rates of the two counters, as Grafana's rate() draws them
awk 'NR > 1 { print $1, ($2 - p) / ($1 - t), ($3 - q) / ($1 - t) } { t = $1; p = $2; q = $3 }' \
    "$work/samples" >"$work/rates"
mkdir -p "$(dirname "$out")"
gnuplot <<GP
set terminal pngcairo noenhanced size 1200,800 font "DejaVu Sans,10"
set output "$out"
set multiplot layout 2,2 title "sluiced /metrics, scraped every second (tests/bench/metrics_plot.sh)"
set xlabel "seconds"
set grid
set key top right
set logscale y
set title "Messages per second (server, log scale): rate(sluice_messages_{published,acked}_total)"
plot "$work/rates" using 1:2 with lines lw 2 title "published", "" using 1:3 with lines lw 2 title "acked"
unset logscale y
set title "Ready by topic: sluice_topic_ready_messages"
plot "$work/samples" using 1:4 with lines lw 2 title "orders", "" using 1:5 with lines lw 2 title "audit"
set title "Fill by topic: sluice_topic_message_bytes / sluice_topic_max_bytes (%)"
set yrange [0:110]
plot "$work/samples" using 1:6 with lines lw 2 title "orders", "" using 1:7 with lines lw 2 title "audit"
set title "Parked producers by topic: sluice_topic_blocked_producers"
set yrange [0:*]
plot "$work/samples" using 1:8 with steps lw 2 title "orders", "" using 1:9 with steps lw 2 title "audit"
unset multiplot
GP
cp "$work/samples" "${out%.png}.dat"
echo "metrics_plot.sh: wrote $out and ${out%.png}.dat"
