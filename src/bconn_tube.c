/* bconn_tube.c: which tubes beanstalk connections use and watch.
 *
 * The queue behind a tube is the core's topic of the same name, created by
 * the first put or reserve and never deleted (topics outlive everything).
 * beanstalkd's tubes come and go instead: one exists while a connection uses
 * or watches it or it holds a job, and `default` always. So this module
 * counts users and watchers per name (a chained hash table of entries that
 * are freed at zero), and a tube exists if it has an entry here or its topic
 * holds a job. `use` and `watch` create nothing in the core: a client that
 * watches a thousand names costs entries here, never topics. Topics outlive
 * their tubes, so each entry keeps its topic's counters at the tube's last
 * birth, and stats-tube counts from there.
 */
#include "bconn_int.h"

#include "clock.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static uint32_t bconn_tube_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h % BCONN_TUBE_BUCKETS;
}

bconn_tube_t *bconn_tube_find(const bconn_set_t *s, const char *name, size_t len)
{
    for (bconn_tube_t *t = s->tubes[bconn_tube_hash(name, len)]; t != NULL; t = t->next)
        if (t->len == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

/* Nobody pointed at the tube and its topic holds no job: for beanstalkd it
 * did not exist, and it is born now, its counts from zero. (A tube that
 * jobs kept alive meanwhile keeps its counts.) `default` is never born. */
static void bconn_tube_born(const bconn_set_t *s, bconn_tube_t *t)
{
    topic_stats_t ts;

    if (bconn_tube_held(t) || (t->len == 7 && memcmp(t->name, "default", 7) == 0) ||
        !broker_topic_stats(s->host->broker, t->name, t->len, clock_ms(), &ts) ||
        ts.ready + ts.delayed + ts.in_flight + ts.buried > 0)
        return;
    t->base_published = ts.totals.published;
    t->base_acked = ts.totals.acked;
    t->base_pauses = ts.totals.pauses;
}

/* The entry for name, made if needed; the caller counts itself in. */
bconn_tube_t *bconn_tube_ref(bconn_set_t *s, const char *name, size_t len)
{
    bconn_tube_t *t = bconn_tube_find(s, name, len);
    uint32_t h;

    if (t != NULL || len == 0 || len > BPROTO_TUBE_MAX) {
        if (t != NULL)
            bconn_tube_born(s, t);
        return t;
    }
    /* Bounded: entries kept for topics are at most max_topics, and as many
     * again may be names only used or watched (OUT_OF_MEMORY beyond). */
    if (s->ntubes / 2 >= s->host->cfg->limits.max_topics)
        return NULL;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    memcpy(t->name, name, len);
    t->len = (uint8_t)len;
    bconn_tube_born(s, t);
    h = bconn_tube_hash(name, len);
    t->next = s->tubes[h];
    s->tubes[h] = t;
    s->ntubes++;
    return t;
}

/* Free the entry once nobody uses or watches it, unless its topic exists
 * (its counts' base is kept for the next birth). */
void bconn_tube_unref(bconn_set_t *s, bconn_tube_t *t)
{
    bconn_tube_t **pp;
    topic_stats_t ts;

    if (t == NULL || bconn_tube_held(t) ||
        broker_topic_stats(s->host->broker, t->name, t->len, clock_ms(), &ts))
        return;
    for (pp = &s->tubes[bconn_tube_hash(t->name, t->len)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            s->ntubes--;
            free(t);
            return;
        }
    }
}

bool bconn_use(bconn_t *c, const char *name, size_t len)
{
    bconn_tube_t *t = bconn_tube_ref(c->set, name, len);

    if (t == NULL)
        return false;
    t->using++;
    if (c->use != NULL) {
        c->use->using--;
        bconn_tube_unref(c->set, c->use);
    }
    c->use = t;
    return true;
}

static ssize_t bconn_watch_find(const bconn_t *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nwatch; i++)
        if (c->watch[i]->len == len && memcmp(c->watch[i]->name, name, len) == 0)
            return (ssize_t)i;
    return -1;
}

bool bconn_watch(bconn_t *c, const char *name, size_t len)
{
    bconn_tube_t *t;

    if (bconn_watch_find(c, name, len) >= 0)
        return true;
    if (c->nwatch == c->capwatch) {
        size_t cap = c->capwatch ? c->capwatch * 2 : 4;
        bconn_tube_t **v = realloc(c->watch, cap * sizeof *v);
        if (v == NULL)
            return false;
        c->watch = v;
        c->capwatch = cap;
    }
    t = bconn_tube_ref(c->set, name, len);
    if (t == NULL)
        return false;
    t->watching++;
    c->watch[c->nwatch++] = t;
    return true;
}

int bconn_ignore(bconn_t *c, const char *name, size_t len)
{
    ssize_t i = bconn_watch_find(c, name, len);
    bconn_tube_t *t;

    if (i < 0)
        return 1;
    if (c->nwatch == 1)
        return 0;
    t = c->watch[i];
    /* The last takes its place, as in beanstalkd (list-tubes-watched
     * prints this order). */
    c->watch[i] = c->watch[--c->nwatch];
    t->watching--;
    bconn_tube_unref(c->set, t);
    return 1;
}

void bconn_tubes_drop(bconn_t *c)
{
    for (size_t i = 0; i < c->nwatch; i++) {
        c->watch[i]->watching--;
        bconn_tube_unref(c->set, c->watch[i]);
    }
    free(c->watch);
    c->watch = NULL;
    c->nwatch = c->capwatch = 0;
    if (c->use != NULL) {
        c->use->using--;
        bconn_tube_unref(c->set, c->use);
        c->use = NULL;
    }
}

bool bconn_tube_exists(const bconn_set_t *s, const char *name, size_t len, uint64_t now)
{
    topic_stats_t ts;

    if (bconn_tube_held(bconn_tube_find(s, name, len)) ||
        (len == 7 && memcmp(name, "default", 7) == 0))
        return true;
    if (!broker_topic_stats(s->host->broker, name, len, now, &ts))
        return false;
    return ts.ready + ts.delayed + ts.in_flight + ts.buried > 0;
}
