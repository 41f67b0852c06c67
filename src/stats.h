/* stats.h: the YAML bodies of STATS replies, from the core's counters. */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* What the server knows beyond the core. */
typedef struct stats_extra {
    uint64_t connections;
    bool redis_connected;
    uint64_t redis_lag_ops;
    uint64_t max_loop_stall_ms;
} stats_extra_t;

#define STATS_BODY_MAX 2048

/* Write the server body into out (cap bytes, NUL-terminated); returns its
 * length (truncated to cap-1, which STATS_BODY_MAX always fits). */
size_t stats_yaml_server(char *out, size_t cap, const broker_stats_t *s, const stats_extra_t *x);

/* Write one topic's body. */
size_t stats_yaml_topic(char *out, size_t cap, const topic_stats_t *t);

#endif
