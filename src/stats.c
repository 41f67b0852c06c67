/* stats.c: the YAML bodies of STATS replies.
 *
 * Field names are the protocol's; sizes are plain integers so any YAML
 * reader (and `grep`) gets numbers. Topic names are quoted: a name such as
 * "1" or "true" must stay a string.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "counters.h"
#include "version.h"

/* Append to out, never past cap; returns the new length. */
static size_t stats_put(char *out, size_t cap, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t stats_put(char *out, size_t cap, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (len + 1 >= cap)
        return len;
    va_start(ap, fmt);
    n = vsnprintf(out + len, cap - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return len;
    len += (size_t)n;
    return len < cap ? len : cap - 1;
}

static size_t stats_put_totals(char *out, size_t cap, size_t len, const br_counters_t *c)
{
#define STATS_COUNTER(f, help) len = stats_put(out, cap, len, #f ": %" PRIu64 "\n", c->f);
    SLUICE_COUNTERS(STATS_COUNTER)
#undef STATS_COUNTER
    return len;
}

size_t stats_yaml_server(char *out, size_t cap, const broker_stats_t *s, const stats_extra_t *x)
{
    size_t len = 0;

    out[0] = '\0';
    len = stats_put(out, cap, len,
                    "version: %s\n"
                    "uptime_s: %" PRIu64 "\n"
                    "connections: %" PRIu64 "\n"
                    "topics: %" PRIu64 "\n"
                    "messages: %" PRIu64 "\n"
                    "bytes: %" PRIu64 "\n",
                    SLUICE_VERSION, s->uptime_ms / 1000, x->connections, s->topics,
                    s->messages, s->bytes);
    len = stats_put_totals(out, cap, len, &s->totals);
    len = stats_put(out, cap, len,
                    "blocked_producers: %" PRIu64 "\n"
                    "max_loop_stall_ms: %" PRIu64 "\n"
                    "redis:\n"
                    "  connected: %s\n"
                    "  lag_ops: %" PRIu64 "\n",
                    s->blocked_producers, x->max_loop_stall_ms,
                    x->redis_connected ? "true" : "false", x->redis_lag_ops);
    return len;
}

size_t stats_yaml_topic(char *out, size_t cap, const topic_stats_t *t)
{
    size_t len = 0;

    out[0] = '\0';
    len = stats_put(out, cap, len, "topic: \"%.*s\"\n", (int)t->name_len, t->name);
#define STATS_GAUGE(f, metric, help) len = stats_put(out, cap, len, #f ": %" PRIu64 "\n", t->f);
    SLUICE_TOPIC_GAUGES(STATS_GAUGE)
#undef STATS_GAUGE
    len = stats_put(out, cap, len, "overflow: %s\n", config_overflow_name(t->overflow));
    return stats_put_totals(out, cap, len, &t->totals);
}
