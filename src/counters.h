/* counters.h: every message counter and every per-topic gauge, listed once.
 *
 * Each list is an X-macro. The structs (br_counters_t and topic_stats_t,
 * below, so that topic.h needs them and not broker.h), the STATS bodies
 * (stats.c), /metrics and /stats (admin.c), the Redis stats hashes
 * (mirror_stats.c), and what `sluice top` and `sluice stats` read back
 * (topview.c, sluice_stats.c) are all generated from these lists, in this
 * order, so a new counter is one line here plus the code in the core that
 * counts it. Names are the protocol's
 * (docs/protocol.md, STATS) and must not change: dashboards read them.
 */
#ifndef SLUICE_COUNTERS_H
#define SLUICE_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* X(field, help): a uint64_t that only grows, per topic and summed for the
 * server; /metrics calls it sluice_messages_<field>_total (per topic
 * sluice_topic_messages_<field>_total). */
#define SLUICE_COUNTERS(X)                                                                        \
    /* accepted (+OK) */                                                                          \
    X(published, "Messages accepted (PUB answered +OK).")                                        \
    /* every push, redeliveries included */                                                       \
    X(delivered, "Messages pushed to consumers, redeliveries included.")                         \
    X(acked, "Messages acknowledged and removed.")                                                \
    /* returned after a delivery: NACK, deadline, disconnect (a message that                     \
     * dies instead is not counted here) */                                                       \
    X(redelivered, "Messages made ready again after a delivery (NACK, ack deadline, disconnect).") \
    /* dropped after max_deliveries with no dead-letter topic, or when the                       \
     * dead-letter topic had no room (counted in the source topic) */                             \
    X(dead, "Messages dropped after max_deliveries with no dead-letter topic to take them.")     \
    X(dropped, "Messages evicted by the drop-oldest policy.")                                    \
    /* -FULL answers, block timeouts included */                                                  \
    X(rejected, "PUBs answered -FULL (reject policy or block timeout).")                        \
    /* deliveries whose ack deadline (or TTR) passed */                                           \
    X(timeouts, "Deliveries whose ack deadline passed before an ack.")                            \
    X(buries, "Messages buried (BURY, beanstalk bury).")                                          \
    X(kicks, "Buried or delayed messages kicked back to ready.")                                  \
    X(pauses, "PAUSE commands (beanstalk pause-tube) on the topic.")

/* X(field, metric, help): a uint64_t that says how a topic is now; metric
 * is its /metrics name after "sluice_". STATS, /stats and Redis print
 * `overflow` after these, then the counters. */
#define SLUICE_TOPIC_GAUGES(X)                                                                    \
    X(ready, "topic_ready_messages", "Messages ready for delivery.")                              \
    X(delayed, "topic_delayed_messages", "Messages waiting out a delay.")                         \
    X(in_flight, "topic_in_flight_messages", "Messages delivered and not yet acknowledged.")      \
    /* payload bytes, held (confirm mode) messages included */                                    \
    X(bytes, "topic_message_bytes", "Payload bytes held by the topic.")                           \
    X(consumers, "topic_consumers", "Connections subscribed to the topic.")                       \
    /* parked PUBs */                                                                             \
    X(blocked_producers, "topic_blocked_producers", "PUBs parked until the topic has room.")      \
    X(max_messages, "topic_max_messages", "The topic's max_messages bound.")                      \
    X(max_bytes, "topic_max_bytes", "The topic's max_bytes bound (payload bytes).")               \
    X(buried, "topic_buried_messages", "Messages buried, waiting for a kick.")                    \
    /* ready with a priority below 1024 */                                                        \
    X(urgent, "topic_urgent_messages", "Ready messages with a priority below 1024.")              \
    /* clients waiting in a RESERVE (beanstalk's current-waiting) */                               \
    X(waiting, "topic_waiting_clients", "Clients waiting in a reserve.")                          \
    X(paused, "topic_paused", "1 while the topic is paused (PAUSE, beanstalk pause-tube).")      \
    X(max_lag, "topic_max_lag", "The topic's max_lag bound (ready messages; 0: off).")

typedef struct br_counters {
#define BR_COUNTER_FIELD(f, help) uint64_t f;
    SLUICE_COUNTERS(BR_COUNTER_FIELD)
#undef BR_COUNTER_FIELD
} br_counters_t;

typedef struct topic_stats {
    const char *name;
    size_t name_len;
#define BR_GAUGE_FIELD(f, metric, help) uint64_t f;
    SLUICE_TOPIC_GAUGES(BR_GAUGE_FIELD)
#undef BR_GAUGE_FIELD
    overflow_policy_t overflow;
    br_counters_t totals;
    /* Not printed (beanstalk's stats-tube shows them in seconds): the
     * pause given, and what is left of it; 0 when not paused. */
    uint64_t pause_ms, pause_left_ms;
} topic_stats_t;

#endif
