/* dec.h: unsigned decimals written fast, for the formatters on the hot
 * path (proto.c's replies and pushes, mbuf.c's RESP arguments to Redis):
 * one division per two digits, straight into the caller's buffer, no
 * reversing copy. Inline: every message's id passes through it several
 * times.
 */
#ifndef SLUICE_DEC_H
#define SLUICE_DEC_H

#include <stddef.h>
#include <stdint.h>

static inline unsigned dec_digits(uint64_t v)
{
    unsigned n = 1;

    while (v >= 10000) {
        v /= 10000;
        n += 4;
    }
    return n + (v >= 10) + (v >= 100) + (v >= 1000);
}

/* v's digits into out (room for 20, not NUL-terminated); how many. */
static inline size_t dec_u64(char *out, uint64_t v)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    /* Attempts and small sizes: most pushes carry two such numbers. */
    if (v < 10) {
        out[0] = (char)('0' + v);
        return 1;
    }
    if (v < 100) {
        out[0] = pairs[2 * v];
        out[1] = pairs[2 * v + 1];
        return 2;
    }
    unsigned n = dec_digits(v), i = n;

    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        i -= 2;
        out[i] = pairs[2 * r];
        out[i + 1] = pairs[2 * r + 1];
    }
    if (v >= 10) {
        out[0] = pairs[2 * v];
        out[1] = pairs[2 * v + 1];
    } else {
        out[0] = (char)('0' + v);
    }
    return n;
}

#endif
