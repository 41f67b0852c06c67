/* bench_seen.c: which (producer, sequence number) pairs of a `sluice
 * bench` run arrived: one lock-free bitmap per producer, marked by every
 * consumer, so a second copy is a duplicate and an accepted number never
 * marked is a loss.
 */
#include <stdlib.h>

#include "bench_int.h"

#define SEEN_CHUNK_WORDS ((1u << BENCH_SEEN_CHUNK_SHIFT) / 64)

int bench_seen_mark(bench_seen_t *s, uint32_t seq)
{
    _Atomic uint64_t *ch =
        atomic_load_explicit(&s->chunk[seq >> BENCH_SEEN_CHUNK_SHIFT], memory_order_acquire);

    if (!ch) {
        _Atomic uint64_t *fresh = calloc(SEEN_CHUNK_WORDS, sizeof *fresh);
        if (!fresh)
            return -1;
        _Atomic uint64_t *expect = NULL;
        if (atomic_compare_exchange_strong(&s->chunk[seq >> BENCH_SEEN_CHUNK_SHIFT], &expect,
                                           fresh)) {
            ch = fresh;
        } else {
            free(fresh);   /* another consumer made it first */
            ch = expect;
        }
    }
    uint32_t off = seq & ((1u << BENCH_SEEN_CHUNK_SHIFT) - 1);
    uint64_t bit = (uint64_t)1 << (off & 63);
    uint64_t old = atomic_fetch_or_explicit(&ch[off >> 6], bit, memory_order_relaxed);
    return (old & bit) ? 0 : 1;
}

bool bench_seen_has(bench_seen_t *s, uint32_t seq)
{
    _Atomic uint64_t *ch = atomic_load(&s->chunk[seq >> BENCH_SEEN_CHUNK_SHIFT]);
    uint32_t off = seq & ((1u << BENCH_SEEN_CHUNK_SHIFT) - 1);

    return ch && (atomic_load_explicit(&ch[off >> 6], memory_order_relaxed) >> (off & 63)) & 1;
}

void bench_seen_free(bench_seen_t *s)
{
    for (size_t i = 0; i < BENCH_SEEN_NCHUNKS; i++)
        free((void *)atomic_load(&s->chunk[i]));
}
