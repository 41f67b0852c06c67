/* place.c: rendezvous hashing of topic names over a node list (place.h). */
#include <string.h>

#include "place.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_bytes(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* FNV-1a alone mixes its last bytes poorly; the finalizer spreads them
 * over all 64 bits, so one trailing character moves the winner. */
static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

uint64_t place_weight(const char *node, const char *topic, size_t tlen)
{
    const unsigned char zero = 0;
    uint64_t h = FNV_OFFSET;

    h = fnv_bytes(h, (const unsigned char *)node, strlen(node));
    h = fnv_bytes(h, &zero, 1);
    h = fnv_bytes(h, (const unsigned char *)topic, tlen);
    return fmix64(h);
}

size_t place_owner(const char *const *nodes, size_t n, const char *topic, size_t tlen)
{
    size_t best = 0;
    uint64_t top = place_weight(nodes[0], topic, tlen);

    for (size_t i = 1; i < n; i++) {
        uint64_t w = place_weight(nodes[i], topic, tlen);
        if (w > top) {
            top = w;
            best = i;
        }
    }
    return best;
}
