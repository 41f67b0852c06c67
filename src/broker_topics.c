/* broker_topics.c: the broker's topic registry (name -> topic, a chained
 * hash table that grows; topics live as long as the broker), each topic's
 * limits from the config, and what reads every topic: the statistics and
 * the mirror's walk over every message.
 */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

static size_t broker_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return (size_t)h;
}

/* broker.h's: a topic is opaque outside the core, but its name is not. */
const char *topic_name(const topic_t *t, size_t *len)
{
    if (len != NULL)
        *len = t->name_len;
    return t->name;
}

topic_t *broker_find(const broker_t *b, const char *name, size_t len)
{
    topic_t *t = b->buckets[broker_hash(name, len) & (b->nbuckets - 1)];

    for (; t != NULL; t = t->hnext)
        if (t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

/* The limits for a topic: its own entry in cfg->topics, else the defaults.
 * (Read straight from the config: the core does not call config.c.) */
static const topic_conf_t *broker_conf_for(const config_t *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->ntopics; i++) {
        const char *n = cfg->topics[i].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return &cfg->topics[i].conf;
    }
    return &cfg->defaults;
}

static void broker_rehash(broker_t *b)
{
    size_t n = b->nbuckets * 2;
    topic_t **nb = calloc(n, sizeof(*nb));

    /* Without memory the chains just get longer. */
    if (nb == NULL)
        return;
    for (size_t i = 0; i < b->nbuckets; i++) {
        topic_t *t = b->buckets[i], *next;
        for (; t != NULL; t = next) {
            size_t h = broker_hash(t->name, t->name_len) & (n - 1);
            next = t->hnext;
            t->hnext = nb[h];
            nb[h] = t;
        }
    }
    free(b->buckets);
    b->buckets = nb;
    b->nbuckets = n;
}

/* Create a topic with no limit checks. NULL when out of memory. */
topic_t *broker_create(broker_t *b, const char *name, size_t len)
{
    topic_t *t;
    size_t h;

    if (broker_heap_reserve(b, b->ntopics + b->nclients + 1) < 0)
        return NULL;
    t = topic_new(name, len, broker_conf_for(b->cfg, name, len));
    if (t == NULL)
        return NULL;
    h = broker_hash(name, len) & (b->nbuckets - 1);
    t->hnext = b->buckets[h];
    b->buckets[h] = t;
    b->ntopics++;
    if (b->ntopics > b->nbuckets)
        broker_rehash(b);
    return t;
}

topic_t *broker_autocreate(broker_t *b, const char *name, size_t len)
{
    if (!b->cfg->auto_create_topics || b->ntopics >= b->cfg->limits.max_topics)
        return NULL;
    return broker_create(b, name, len);
}

bool broker_moved(const broker_t *b, const char *topic, size_t tlen)
{
    return b->cfg->cluster.nnodes > 0 && broker_find(b, topic, tlen) == NULL &&
           config_elsewhere(b->cfg, topic, tlen);
}

static int broker_ensure(broker_t *b, const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;

    if (len == 0 || broker_find(b, name, len) != NULL)
        return 0;
    return broker_create(b, name, len) != NULL ? 0 : -1;
}

/* Topics named in the config, and their dead-letter topics, always exist;
 * in a cluster, only those this node owns (the others exist on theirs),
 * with the dead-letter topics they feed, which stay beside them. */
int broker_create_configured(broker_t *b)
{
    const config_t *cfg = b->cfg;

    for (size_t i = 0; i < cfg->ntopics; i++) {
        const char *name = cfg->topics[i].name;

        if (config_elsewhere(cfg, name, strlen(name)))
            continue;
        if (broker_ensure(b, name) < 0 ||
            broker_ensure(b, cfg->topics[i].conf.dead_letter) < 0)
            return -1;
    }
    return broker_ensure(b, cfg->defaults.dead_letter);
}

int broker_topics_init(broker_t *b)
{
    b->nbuckets = 64;
    b->buckets = calloc(b->nbuckets, sizeof(*b->buckets));
    return b->buckets != NULL ? 0 : -1;
}

void broker_topics_free(broker_t *b)
{
    for (size_t i = 0; b->buckets != NULL && i < b->nbuckets; i++) {
        topic_t *t = b->buckets[i], *next;
        for (; t != NULL; t = next) {
            next = t->hnext;
            topic_free(t);
        }
    }
    free(b->buckets);
    b->buckets = NULL;
}

void broker_topics_reconf(broker_t *b)
{
    for (size_t i = 0; i < b->nbuckets; i++)
        for (topic_t *t = b->buckets[i]; t != NULL; t = t->hnext)
            t->conf = broker_conf_for(b->cfg, t->name, t->name_len);
}

/* ---- introspection ---- */

void broker_stats(const broker_t *b, uint64_t now, broker_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->uptime_ms = now > b->start ? now - b->start : 0;
    out->clients = b->nclients;
    out->topics = b->ntopics;
    out->messages = b->count;
    out->bytes = b->bytes;
    out->blocked_producers = b->nparked;
    out->totals = b->totals;
}

bool broker_topic_stats(const broker_t *b, const char *name, size_t len, uint64_t now,
                        topic_stats_t *out)
{
    const topic_t *t = broker_find(b, name, len);

    if (t == NULL)
        return false;
    topic_fill_stats(t, now, out);
    return true;
}

static int broker_cmp_topics(const void *x, const void *y)
{
    const topic_t *a = *(const topic_t *const *)x, *b = *(const topic_t *const *)y;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int r = memcmp(a->name, b->name, n);

    if (r != 0)
        return r;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

void broker_foreach_topic(const broker_t *b, uint64_t now,
                          void (*fn)(void *ctx, const topic_stats_t *ts), void *ctx)
{
    topic_t **all;
    size_t n = 0;
    topic_stats_t ts;

    if (b->ntopics == 0)
        return;
    all = malloc(b->ntopics * sizeof(*all));
    if (all == NULL)
        return;
    for (size_t i = 0; i < b->nbuckets; i++)
        for (topic_t *t = b->buckets[i]; t != NULL; t = t->hnext)
            all[n++] = t;
    qsort(all, n, sizeof(*all), broker_cmp_topics);
    for (size_t i = 0; i < n; i++) {
        topic_fill_stats(all[i], now, &ts);
        fn(ctx, &ts);
    }
    free(all);
}

/* ---- the mirror's resynchronisation ---- */

static void broker_visit_queue(const msgq_t *q, const topic_t *t,
                               void (*fn)(void *ctx, const topic_t *t, const msg_t *m),
                               void *ctx)
{
    const msg_t *m;

    TAILQ_FOREACH(m, &q->list, link)
        fn(ctx, t, m);
}

/* Read-only: fn must not change the broker (the re-entrancy rule). */
void broker_foreach_message(const broker_t *b,
                            void (*fn)(void *ctx, const topic_t *t, const msg_t *m), void *ctx)
{
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (const topic_t *t = b->buckets[i]; t != NULL; t = t->hnext) {
            broker_visit_queue(&t->ready, t, fn, ctx);
            for (size_t j = 0; j < t->ndelayed; j++)
                fn(ctx, t, t->delayed[j]);
            broker_visit_queue(&t->inflight, t, fn, ctx);
            broker_visit_queue(&t->held, t, fn, ctx);
            broker_visit_queue(&t->buried, t, fn, ctx);
        }
    }
}
