/* place.h: which node of a cluster owns a topic, by rendezvous
 * (highest-random-weight) hashing of the topic's name: every client and
 * every broker that holds the same node list computes the same owner with
 * no coordinator, and adding or removing one of N nodes moves only the
 * topics that node wins or held (about 1/N of them).
 *
 * A node is named by its address exactly as the node list spells it
 * ("10.0.0.1:7700"); the weight of (node, topic) is
 *   fmix64(FNV-1a-64(node bytes, one 0x00 byte, topic bytes))
 * with MurmurHash3's 64-bit finalizer as fmix64, and the highest weight
 * wins (the lower index on a tie). docs/scaling.md spells it out for other
 * clients; clients/python/sluice.py has the same function.
 */
#ifndef SLUICE_PLACE_H
#define SLUICE_PLACE_H

#include <stddef.h>
#include <stdint.h>

/* The weight of `node` for `topic` (tlen bytes, no NUL needed). */
uint64_t place_weight(const char *node, const char *topic, size_t tlen);

/* The index in nodes[0..n) of topic's owner; n must be at least 1. */
size_t place_owner(const char *const *nodes, size_t n, const char *topic, size_t tlen);

#endif
