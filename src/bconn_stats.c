/* bconn_stats.c: the bodies of stats, stats-tube, stats-job, list-tubes and
 * list-tubes-watched, filled from the core's counters and gauges (every
 * topic is a tube's queue, native ones included) and this listener's own
 * counts (commands, connections, tube users and watchers), and written by
 * bproto.c's YAML writers in beanstalkd's key order.
 */
#include "bconn_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#define BCONN_STATS_BODY 4096 /* a stats body fits; a longer one is retried */
#define BCONN_VERSION "1.12" /* the protocol spoken: clients compare it (fivebeans: >= 1.8) */

static void bconn_reply_yaml(bconn_t *c, const char *body, size_t n)
{
    char head[BPROTO_REPLY_MAX];

    bconn_reply_body(c, head, bproto_fmt_ok(head, n), body, n);
}

/* Write a body with `fn` (snprintf-like) and send it as "OK <n>". */
static void bconn_send_yaml(bconn_t *c, size_t (*fn)(char *, size_t, const void *),
                            const void *arg)
{
    char small[BCONN_STATS_BODY];
    size_t n = fn(small, sizeof small, arg);
    char *big;

    if (n <= sizeof small) {
        bconn_reply_yaml(c, small, n);
        return;
    }
    big = malloc(n);
    if (big == NULL) {
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        return;
    }
    fn(big, n, arg);
    bconn_reply_yaml(c, big, n);
    free(big);
}

static uint64_t bconn_jobs(const topic_stats_t *ts)
{
    return ts->ready + ts->delayed + ts->in_flight + ts->buried;
}

/* ---- every tube ---- */

typedef void (*bconn_tube_fn)(void *ctx, const char *name, size_t len, const topic_stats_t *ts);

typedef struct bconn_walk {
    const bconn_t *c;
    bconn_tube_fn fn;
    void *ctx;
    bool seen_default;
} bconn_walk_t;

static bool bconn_is_default(const char *name, size_t len)
{
    return len == 7 && memcmp(name, "default", 7) == 0;
}

/* A topic is a tube if beanstalk can name it and it exists as beanstalkd
 * says: used, watched, holding a job, or `default`. */
static void bconn_walk_topic(void *ctx, const topic_stats_t *ts)
{
    bconn_walk_t *w = ctx;
    const bconn_set_t *s = w->c->set;

    if (!bproto_tube_valid(ts->name, ts->name_len) ||
        !bconn_may(w->c, ts->name, ts->name_len, BCONN_LOOK))
        return;
    if (bconn_jobs(ts) == 0 && !bconn_tube_held(bconn_tube_find(s, ts->name, ts->name_len)) &&
        !bconn_is_default(ts->name, ts->name_len))
        return;
    w->seen_default |= bconn_is_default(ts->name, ts->name_len);
    w->fn(w->ctx, ts->name, ts->name_len, ts);
}

/* Visit every tube: the topics that are tubes, then the tubes only used or
 * watched (no topic yet), then `default` if it is neither. */
static void bconn_foreach_tube(const bconn_t *c, uint64_t now, bconn_tube_fn fn, void *ctx)
{
    const bconn_set_t *s = c->set;
    const broker_t *b = c->host->broker;
    bconn_walk_t w = {.c = c, .fn = fn, .ctx = ctx};
    topic_stats_t ts;

    broker_foreach_topic(b, now, bconn_walk_topic, &w);
    for (size_t i = 0; i < BCONN_TUBE_BUCKETS; i++) {
        for (const bconn_tube_t *t = s->tubes[i]; t != NULL; t = t->next) {
            if (broker_topic_stats(b, t->name, t->len, now, &ts) ||
                !bconn_may(c, t->name, t->len, BCONN_LOOK))
                continue;
            w.seen_default |= bconn_is_default(t->name, t->len);
            fn(ctx, t->name, t->len, NULL);
        }
    }
    if (!w.seen_default && bconn_may(c, "default", 7, BCONN_LOOK) &&
        !broker_topic_stats(b, "default", 7, now, &ts))
        fn(ctx, "default", 7, NULL);
}

/* ---- stats ---- */

static void bconn_stats_add(void *ctx, const char *name, size_t len, const topic_stats_t *ts)
{
    bproto_stats_t *st = ctx;

    (void)name;
    (void)len;
    st->current_tubes++;
    if (ts == NULL)
        return;
    st->current_jobs_urgent += ts->urgent;
    st->current_jobs_ready += ts->ready;
    st->current_jobs_reserved += ts->in_flight;
    st->current_jobs_delayed += ts->delayed;
    st->current_jobs_buried += ts->buried;
}

static size_t bconn_stats_write(char *out, size_t cap, const void *arg)
{
    return bproto_yaml_stats(out, cap, arg);
}

static void bconn_stats_cmds(const bconn_set_t *s, bproto_stats_t *st)
{
    const uint64_t *n = s->cmds;

    st->cmd_put = n[BCMD_PUT];
    st->cmd_peek = n[BCMD_PEEK];
    st->cmd_peek_ready = n[BCMD_PEEK_READY];
    st->cmd_peek_delayed = n[BCMD_PEEK_DELAYED];
    st->cmd_peek_buried = n[BCMD_PEEK_BURIED];
    st->cmd_reserve = n[BCMD_RESERVE];
    st->cmd_reserve_with_timeout = n[BCMD_RESERVE_TIMEOUT];
    st->cmd_delete = n[BCMD_DELETE];
    st->cmd_release = n[BCMD_RELEASE];
    st->cmd_use = n[BCMD_USE];
    st->cmd_watch = n[BCMD_WATCH];
    st->cmd_ignore = n[BCMD_IGNORE];
    st->cmd_bury = n[BCMD_BURY];
    st->cmd_kick = n[BCMD_KICK];
    st->cmd_touch = n[BCMD_TOUCH];
    st->cmd_stats = n[BCMD_STATS];
    st->cmd_stats_job = n[BCMD_STATS_JOB];
    st->cmd_stats_tube = n[BCMD_STATS_TUBE];
    st->cmd_list_tubes = n[BCMD_LIST_TUBES];
    st->cmd_list_tube_used = n[BCMD_LIST_TUBE_USED];
    st->cmd_list_tubes_watched = n[BCMD_LIST_TUBES_WATCHED];
    st->cmd_pause_tube = n[BCMD_PAUSE_TUBE];
}

static void bconn_stats_process(bproto_stats_t *st)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return;
    st->rusage_utime_sec = (uint64_t)ru.ru_utime.tv_sec;
    st->rusage_utime_usec = (uint32_t)ru.ru_utime.tv_usec;
    st->rusage_stime_sec = (uint64_t)ru.ru_stime.tv_sec;
    st->rusage_stime_usec = (uint32_t)ru.ru_stime.tv_usec;
}

void bconn_stats(bconn_t *c, uint64_t now)
{
    const bconn_set_t *s = c->set;
    bproto_stats_t st = {0};
    broker_stats_t bs;
    struct utsname u;
    bool named = uname(&u) == 0;

    broker_stats(c->host->broker, now, &bs);
    bconn_foreach_tube(c, now, bconn_stats_add, &st);
    bconn_stats_cmds(s, &st);
    bconn_stats_process(&st);
    st.job_timeouts = bs.totals.timeouts;
    st.total_jobs = bs.totals.published;
    st.max_job_size = c->parser.max_job_size;
    st.current_connections = s->nconns;
    st.current_producers = s->producers;
    st.current_workers = s->workers;
    st.current_waiting = s->waiting;
    st.total_connections = s->total_conns;
    st.pid = (uint64_t)getpid();
    st.version = BCONN_VERSION;
    st.uptime = bs.uptime_ms / 1000;
    st.draining = c->host->draining;
    st.id = s->id;
    st.hostname = named ? u.nodename : "";
    st.os = named ? u.version : "";
    st.platform = named ? u.machine : "";
    bconn_send_yaml(c, bconn_stats_write, &st);
}

/* ---- stats-tube ---- */

static size_t bconn_tube_write(char *out, size_t cap, const void *arg)
{
    return bproto_yaml_tube(out, cap, arg);
}

void bconn_stats_tube(bconn_t *c, const char *name, size_t len, uint64_t now)
{
    const bconn_tube_t *t = bconn_tube_find(c->set, name, len);
    bproto_tube_stats_t out = {.name = name, .name_len = len};
    topic_stats_t ts;

    if (broker_topic_stats(c->host->broker, name, len, now, &ts)) {
        out.current_jobs_urgent = ts.urgent;
        out.current_jobs_ready = ts.ready;
        out.current_jobs_reserved = ts.in_flight;
        out.current_jobs_delayed = ts.delayed;
        out.current_jobs_buried = ts.buried;
        out.total_jobs = ts.totals.published - (t ? t->base_published : 0);
        out.current_waiting = ts.waiting;
        out.cmd_delete = ts.totals.acked - (t ? t->base_acked : 0);
        out.cmd_pause_tube = ts.totals.pauses - (t ? t->base_pauses : 0);
        out.pause = ts.pause_ms / 1000;
        out.pause_time_left = ts.pause_left_ms / 1000;
    }
    if (t != NULL) {
        out.current_using = t->using;
        out.current_watching = t->watching;
    }
    bconn_send_yaml(c, bconn_tube_write, &out);
}

/* ---- stats-job ---- */

static const char *bconn_state_name(msg_state_t st)
{
    switch (st) {
    case MSG_DELAYED:
        return "delayed";
    case MSG_INFLIGHT:
        return "reserved";
    case MSG_BURIED:
        return "buried";
    default:
        return "ready";
    }
}

static size_t bconn_job_write(char *out, size_t cap, const void *arg)
{
    return bproto_yaml_job(out, cap, arg);
}

bool bconn_stats_job(bconn_t *c, uint64_t id, uint64_t now)
{
    br_job_info_t ji;
    bproto_job_stats_t j = {0};

    if (!broker_job_info(c->host->broker, id, now, &ji))
        return false;
    j.id = ji.id;
    j.tube = topic_name(ji.topic, &j.tube_len);
    j.state = bconn_state_name(ji.state);
    j.pri = ji.pri;
    j.age = ji.age_ms / 1000;
    j.delay = ji.delay_ms / 1000;
    j.ttr = ji.ttr_ms / 1000;
    j.time_left = ji.left_ms / 1000;
    j.reserves = ji.reserves;
    j.timeouts = ji.timeouts;
    j.releases = ji.releases;
    j.buries = ji.buries;
    j.kicks = ji.kicks;
    bconn_send_yaml(c, bconn_job_write, &j);
    return true;
}

/* ---- the lists ---- */

typedef struct bconn_names {
    const char **names;
    size_t *lens;
    size_t n, cap;
    bool oom;
} bconn_names_t;

static void bconn_names_add(void *ctx, const char *name, size_t len, const topic_stats_t *ts)
{
    bconn_names_t *v = ctx;

    (void)ts;
    if (v->oom)
        return;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        const char **names = realloc(v->names, cap * sizeof *names);
        size_t *lens = names != NULL ? realloc(v->lens, cap * sizeof *lens) : NULL;
        if (names != NULL)
            v->names = names;
        if (lens == NULL) {
            v->oom = true;
            return;
        }
        v->lens = lens;
        v->cap = cap;
    }
    v->names[v->n] = name;
    v->lens[v->n++] = len;
}

static void bconn_send_list(bconn_t *c, const bconn_names_t *v)
{
    size_t n;
    char *body;

    if (v->oom) {
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        return;
    }
    n = bproto_yaml_list(NULL, 0, v->names, v->lens, v->n);
    body = malloc(n);
    if (body == NULL) {
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        return;
    }
    bproto_yaml_list(body, n, v->names, v->lens, v->n);
    bconn_reply_yaml(c, body, n);
    free(body);
}

void bconn_list_tubes(bconn_t *c, uint64_t now)
{
    bconn_names_t v = {0};

    /* The names point into the topics and the table: sent before any
     * other broker call. */
    bconn_foreach_tube(c, now, bconn_names_add, &v);
    bconn_send_list(c, &v);
    free(v.names);
    free(v.lens);
}

void bconn_list_watched(bconn_t *c)
{
    bconn_names_t v = {0};

    for (size_t i = 0; i < c->nwatch; i++)
        bconn_names_add(&v, c->watch[i]->name, c->watch[i]->len, NULL);
    bconn_send_list(c, &v);
    free(v.names);
    free(v.lens);
}
