/* bench_report.c: what `sluice bench` prints at the end: the text report
 * with a latency histogram on a 1-2-5 scale, or one JSON object with the
 * same numbers and the raw buckets (--json).
 */
#include <stdio.h>
#include <string.h>

#include "bench_int.h"

static void bench_fmt_ns(char *out, size_t n, uint64_t ns)
{
    /* %g: "10 us" for the histogram rows, "108.5 us" for percentiles */
    if (ns < 1000)
        snprintf(out, n, "%llu ns", (unsigned long long)ns);
    else if (ns < 1000000)
        snprintf(out, n, "%.4g us", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(out, n, "%.4g ms", (double)ns / 1e6);
    else
        snprintf(out, n, "%.4g s", (double)ns / 1e9);
}


/* Rows on a 1-2-5 scale (<= 10 us, <= 20 us, <= 50 us, ...) between the
 * fastest and the slowest message; each fine bucket goes to the row of
 * its midpoint, so row edges are as exact as the buckets (about 3%). */
#define BENCH_ROWS 36

static void bench_print_hist(const bench_hist_t *h)
{
    uint64_t limit[BENCH_ROWS], rows[BENCH_ROWS] = { 0 }, peak = 0;
    int lo = BENCH_ROWS, hi = -1;
    static const unsigned steps[3] = { 1, 2, 5 };

    for (int r = 0; r < BENCH_ROWS; r++) {  /* 1 us .. 50000 s */
        uint64_t p10 = 1000;
        for (int k = 0; k < r / 3; k++)
            p10 *= 10;
        limit[r] = steps[r % 3] * p10;
    }
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        uint64_t mid = bench_hist_lower(i) / 2 + bench_hist_upper(i) / 2;
        int r = 0;
        while (r < BENCH_ROWS - 1 && mid > limit[r])
            r++;
        rows[r] += h->b[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    for (int r = lo; r <= hi; r++)
        peak = rows[r] > peak ? rows[r] : peak;
    printf("\nlatency histogram\n");
    for (int r = lo; r <= hi; r++) {
        char up[32], bar[41];
        bench_fmt_ns(up, sizeof up, limit[r]);
        size_t len = peak ? (size_t)((rows[r] * 40 + peak - 1) / peak) : 0;
        memset(bar, '#', len);
        bar[len] = '\0';
        printf("  <= %-9s %10llu %6.2f%%  %s\n", up, (unsigned long long)rows[r],
               100.0 * (double)rows[r] / (double)h->count, bar);
    }
}

void bench_report_text(const bench_opts_t *o, const bench_result_t *r)
{
    double rate = r->elapsed > 0 ? (double)r->received / r->elapsed : 0;
    char p50[32], p90[32], p99[32], p999[32], mx[32];

    bench_fmt_ns(p50, sizeof p50, bench_hist_quantile(r->hist, 0.50));
    bench_fmt_ns(p90, sizeof p90, bench_hist_quantile(r->hist, 0.90));
    bench_fmt_ns(p99, sizeof p99, bench_hist_quantile(r->hist, 0.99));
    bench_fmt_ns(p999, sizeof p999, bench_hist_quantile(r->hist, 0.999));
    bench_fmt_ns(mx, sizeof mx, r->hist->max);
    if (o->topics)
        printf("target      %s at %s, topics %s.0 .. %s.%u\n", o->target->name, o->addr,
               o->topic, o->topic, o->topics - 1);
    else
        printf("target      %s at %s, topic %s\n", o->target->name, o->addr, o->topic);
    printf("load        %u producers, %u consumers, %zu B messages, window %u, credit %u, ack batch %u\n",
           o->producers, o->consumers, o->size, o->window, o->credit, o->ack_batch);
    printf("throughput  %.0f msg/s, %.2f MB/s (%llu messages in %.3f s)\n", rate,
           rate * (double)o->size / 1e6, (unsigned long long)r->received, r->elapsed);
    printf("latency     p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n", p50, p90, p99, p999, mx);
    printf("messages    sent %llu, accepted %llu, received %llu, lost %llu, duplicates %llu, "
           "corrupt %llu\n",
           (unsigned long long)r->sent, (unsigned long long)r->accepted,
           (unsigned long long)r->received, (unsigned long long)r->lost,
           (unsigned long long)r->dups, (unsigned long long)r->corrupt);
    if (r->stale || r->unconfirmed || r->errors)
        printf("also        %llu stale (from earlier runs, ignored), %llu unconfirmed, %llu errors\n",
               (unsigned long long)r->stale, (unsigned long long)r->unconfirmed,
               (unsigned long long)r->errors);
    if (r->nper_node) {
        printf("per node   ");
        for (size_t i = 0; i < r->nper_node; i++)
            printf("%s %s %llu", i ? "," : "", r->per_node[i].addr,
                   (unsigned long long)r->per_node[i].received);
        printf(" (messages received)\n");
    }
    if (r->hist->count)
        bench_print_hist(r->hist);
}

void bench_report_json(const bench_opts_t *o, const bench_result_t *r)
{
    double rate = r->elapsed > 0 ? (double)r->received / r->elapsed : 0;
    const bench_hist_t *h = r->hist;

    printf("{\"target\":\"%s\",\"addr\":\"%s\",\"topic\":\"%s\",\"producers\":%u,\"consumers\":%u,"
           "\"size\":%zu,\"window\":%u,\"credit\":%u,\"ack_batch\":%u,",
           o->target->name, o->addr, o->topic, o->producers, o->consumers, o->size, o->window,
           o->credit, o->ack_batch);
    printf("\"sent\":%llu,\"accepted\":%llu,\"received\":%llu,\"lost\":%llu,\"duplicates\":%llu,"
           "\"corrupt\":%llu,\"stale\":%llu,\"unconfirmed\":%llu,\"errors\":%llu,",
           (unsigned long long)r->sent, (unsigned long long)r->accepted,
           (unsigned long long)r->received, (unsigned long long)r->lost,
           (unsigned long long)r->dups, (unsigned long long)r->corrupt,
           (unsigned long long)r->stale, (unsigned long long)r->unconfirmed,
           (unsigned long long)r->errors);
    if (o->topics)
        printf("\"topics\":%u,", o->topics);
    if (r->nper_node) {
        printf("\"per_node\":{");
        for (size_t i = 0; i < r->nper_node; i++)
            printf("%s\"%s\":%llu", i ? "," : "", r->per_node[i].addr,
                   (unsigned long long)r->per_node[i].received);
        printf("},");
    }
    printf("\"elapsed_s\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,", r->elapsed, rate,
           rate * (double)o->size / 1e6);
    printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
           "\"mean\":%.1f},",
           (double)bench_hist_quantile(h, 0.5) / 1e3, (double)bench_hist_quantile(h, 0.9) / 1e3,
           (double)bench_hist_quantile(h, 0.99) / 1e3, (double)bench_hist_quantile(h, 0.999) / 1e3,
           (double)h->max / 1e3, h->count ? h->sum / (double)h->count / 1e3 : 0.0);
    printf("\"histogram\":[");
    bool first = true;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        printf("%s[%.3f,%llu]", first ? "" : ",", (double)bench_hist_upper(i) / 1e3,
               (unsigned long long)h->b[i]);
        first = false;
    }
    printf("]}\n");
}
