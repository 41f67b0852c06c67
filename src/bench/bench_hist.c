/* bench_hist.c: the latency histogram of `sluice bench`: log-linear
 * buckets of fixed size (no allocation while recording), merged across
 * consumers at the end, read as quantiles by the report.
 */
#include <math.h>
#include <string.h>

#include "bench.h"

void bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t bench_hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);   /* e >= SUB_BITS */
    unsigned shift = e - BENCH_HIST_SUB_BITS;
    return (size_t)(shift + 1) * BENCH_HIST_SUB + (size_t)((v >> shift) & (BENCH_HIST_SUB - 1));
}

uint64_t bench_hist_lower(size_t idx)
{
    if (idx < BENCH_HIST_SUB)
        return idx;
    size_t g = idx / BENCH_HIST_SUB, m = idx % BENCH_HIST_SUB;
    return (uint64_t)(BENCH_HIST_SUB + m) << (g - 1);
}

uint64_t bench_hist_upper(size_t idx)
{
    if (idx < BENCH_HIST_SUB)
        return idx;
    size_t g = idx / BENCH_HIST_SUB;
    return bench_hist_lower(idx) + ((uint64_t)1 << (g - 1)) - 1;
}

void bench_hist_record(bench_hist_t *h, uint64_t v)
{
    h->b[bench_hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t up = bench_hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}
