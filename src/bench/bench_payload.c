/* bench_payload.c: the payload every `sluice bench` message carries: run
 * id, send time, producer and sequence number under a checksum that also
 * covers the padding, so a consumer can tell a whole, intact message of
 * this run from a damaged or stale one.
 */
#include <string.h>

#include "bench.h"

/* One word into a lane: a bijection of h, so any change survives. */
static inline uint64_t bench_mix_word(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 32);
}

/* A fast word-at-a-time hash: enough to notice any changed, moved or
 * missing byte, cheap enough not to slow the consumer down. Every step is
 * a bijection of h, so any change survives to the end. Four lanes while 32
 * bytes remain, so a word's multiply does not wait for the previous one's
 * (one chain made the check of a 1 KiB payload 15 % of the bench's CPU);
 * the lanes start apart and are folded in order, so a word moved from one
 * lane to another still changes the sum. */
static uint64_t bench_mix(uint64_t h, const unsigned char *p, size_t n)
{
    if (n >= 32) {
        /* Four named lanes, not an array: gcc turns an array of lanes into
         * SSE2 code that emulates the 64-bit multiply (113 ns a KiB against
         * 77 here, and 211 with one chain). */
        uint64_t a = h, b = h ^ 0x9E3779B97F4A7C15ull, c = h ^ 0xC2B2AE3D27D4EB4Full,
                 d = h ^ 0x165667B19E3779F9ull, w[4];
        for (; n >= 32; p += 32, n -= 32) {
            memcpy(w, p, 32);
            a = bench_mix_word(a, w[0]);
            b = bench_mix_word(b, w[1]);
            c = bench_mix_word(c, w[2]);
            d = bench_mix_word(d, w[3]);
        }
        h = bench_mix_word(bench_mix_word(bench_mix_word(a, b), c), d);
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = bench_mix_word(h, w);
    }
    for (; n > 0; p++, n--) {
        h = (h ^ *p) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
    }
    return h;
}

/* Mix all 64 bits into the 32 we keep. */
static uint32_t bench_mix_end(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* The padding goes first, so a producer hashes it once per run
 * (bench_pad_init) and only the 20 header bytes per message. */
static uint64_t bench_pad_sum(const char *buf, size_t size)
{
    return bench_mix(0x9E3779B97F4A7C15ull ^ (size - 4), (const unsigned char *)buf + BENCH_HDR_SIZE,
                     size - BENCH_HDR_SIZE);
}

static uint32_t bench_sum(const char *buf, uint64_t pad_sum)
{
    return bench_mix_end(bench_mix(pad_sum, (const unsigned char *)buf + 4, BENCH_HDR_SIZE - 4));
}

uint64_t bench_pad_init(char *buf, size_t size, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = BENCH_HDR_SIZE; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (char)(x >> 24);
    }
    return bench_pad_sum(buf, size);
}

void bench_payload_stamp(char *buf, uint64_t pad_sum, const bench_stamp_t *st)
{
    memcpy(buf + 4, &st->run, 4);
    memcpy(buf + 8, &st->ts_ns, 8);
    memcpy(buf + 16, &st->producer, 4);
    memcpy(buf + 20, &st->seq, 4);
    uint32_t sum = bench_sum(buf, pad_sum);
    memcpy(buf, &sum, 4);
}

bool bench_payload_check(const char *buf, size_t len, size_t size, bench_stamp_t *st)
{
    uint32_t sum;

    if (len != size || len < BENCH_HDR_SIZE)
        return false;
    memcpy(&sum, buf, 4);
    if (sum != bench_sum(buf, bench_pad_sum(buf, len)))
        return false;
    memcpy(&st->run, buf + 4, 4);
    memcpy(&st->ts_ns, buf + 8, 8);
    memcpy(&st->producer, buf + 16, 4);
    memcpy(&st->seq, buf + 20, 4);
    return true;
}
